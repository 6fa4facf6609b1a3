// phi::services::StudyKeys: which study key protects which study, shared by
// the ingest and erasure services; and the bootstrap of the vault's
// derivation secret from the catalog.
//
// Resolve(study token) returns the study's key id, loading its wrapped key
// from the catalog into the vault, or creating a fresh key for a study not
// seen before. A fresh key stays "unpersisted" (its wrapped form kept here)
// until a catalog transaction has stored it, so that concurrent first
// instances of one study share one key. Forget() drops a study (erasure).
//
// StudyKeys is also the coherence hub of the StudyCache it owns (decrypted
// study attributes and instance headers, study_cache.h): every writer of a
// study's sealed PHI already goes through it, so MarkPersisted (after each
// ingest commit) and StudyChanged (after an HL7 reseal commit) invalidate the
// study's cache entry, and Forget (after an erasure commit) wipes it.
// Thread-safety: thread-safe; mu_ guards the map; the cache has its own lock.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "libphi/index/catalog.h"
#include "libphi/services/study_cache.h"
#include "libphi/vault/key_vault.h"

namespace phi::services {

// Encodes a WrappedKey for the catalog's meta table (and decodes it).
std::string EncodeWrappedKey(const vault::WrappedKey& wk);
Result<vault::WrappedKey> DecodeWrappedKey(std::string_view blob);

// The catalog meta key of the wrapped derivation secret.
inline constexpr const char* kDerivationSecretMeta = "vault.derivation_secret";

// Loads the derivation secret from the catalog, creating and persisting it on
// first start. REQUIRES: called once at start-up, before any IndexToken/AuditMac.
Status BootstrapDerivationSecret(vault::KeyVault& vault, index::Catalog& catalog);

class StudyKeys {
 public:
  StudyKeys(vault::KeyVault& vault, index::Catalog& catalog, StudyCacheOptions cache = {})
      : vault_(vault), catalog_(catalog), cache_(cache) {}

  struct Resolved {
    std::string key_id;
    // Set while the key is not yet in the catalog: the caller's transaction
    // must store it (see EnsurePersisted).
    std::optional<vault::WrappedKey> unpersisted;
  };

  // The key of the study with that StudyInstanceUID token (see header comment).
  Result<Resolved> Resolve(const index::Token& study_token);
  // Inside a write transaction: stores the key if it is not in the catalog yet.
  static Status EnsurePersisted(index::WriteTxn& txn, const Resolved& r);
  // After a successful ingest commit: the key is in the catalog now, and the
  // study's rows changed (the cache re-reads them).
  void MarkPersisted(const index::Token& study_token);
  // After a commit that replaced the study's sealed PHI (HL7 update, merge).
  void StudyChanged(const index::Token& study_token) { cache_.Invalidate(study_token); }
  // Loads a known key id (from a catalog row) into the vault.
  Status Load(const std::string& key_id);
  // Vault operations with the study key, reloading it from the catalog when
  // the vault's LRU cache has evicted it.
  Result<std::unique_ptr<crypto::AesGcm>> Cipher(const std::string& key_id);
  Result<std::string> Seal(const std::string& key_id, std::string_view aad,
                           std::string_view plaintext);
  Result<std::string> Open(const std::string& key_id, std::string_view aad, std::string_view box);
  // The study was erased: forget its mapping (the vault forgets the key) and
  // wipe its cached attributes and headers.
  void Forget(const index::Token& study_token);

  StudyCache& cache() { return cache_; }

 private:
  static constexpr size_t kMaxEntries = 100000;

  vault::KeyVault& vault_;
  index::Catalog& catalog_;
  std::mutex mu_;
  std::unordered_map<std::string, Resolved> by_token_;  // guarded by mu_
  StudyCache cache_;
};

}  // namespace phi::services
