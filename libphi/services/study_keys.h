// phi::services::StudyKeys: which study key protects which study, shared by
// the ingest and erasure services; and the bootstrap of the vault's
// derivation secret from the catalog.
//
// Resolve(study token) returns the study's key id, loading its wrapped key
// from the catalog into the vault, or creating a fresh key for a study not
// seen before. A fresh key stays "unpersisted" (its wrapped form kept here)
// until a catalog transaction has stored it, so that concurrent first
// instances of one study share one key. Forget() drops a study (erasure).
// Thread-safety: thread-safe; mu_ guards the map.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "libphi/index/catalog.h"
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
  StudyKeys(vault::KeyVault& vault, index::Catalog& catalog) : vault_(vault), catalog_(catalog) {}

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
  // After a successful commit: the key is in the catalog now.
  void MarkPersisted(const index::Token& study_token);
  // Loads a known key id (from a catalog row) into the vault.
  Status Load(const std::string& key_id);
  // Vault operations with the study key, reloading it from the catalog when
  // the vault's LRU cache has evicted it.
  Result<std::unique_ptr<crypto::AesGcm>> Cipher(const std::string& key_id);
  Result<std::string> Seal(const std::string& key_id, std::string_view aad,
                           std::string_view plaintext);
  Result<std::string> Open(const std::string& key_id, std::string_view aad, std::string_view box);
  // The study was erased: forget its mapping (the vault forgets the key).
  void Forget(const index::Token& study_token);

 private:
  static constexpr size_t kMaxEntries = 100000;

  vault::KeyVault& vault_;
  index::Catalog& catalog_;
  std::mutex mu_;
  std::unordered_map<std::string, Resolved> by_token_;  // guarded by mu_
};

}  // namespace phi::services
