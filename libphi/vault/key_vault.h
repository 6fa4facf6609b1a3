// phi::vault::KeyVault: the only holder of KEKs and plaintext study keys
// (DESIGN.md "Key hierarchy"; STYLE.md "vault/ plays the monitor").
//
// It owns:
//  - the KEKs (256-bit, from systemd credentials or key files, see
//    kek_source.h), in locked no-dump memory; none is ever returned;
//  - a bounded LRU cache of plaintext study keys, in one locked no-dump
//    arena; a slot is wiped when its key is evicted or forgotten;
//  - the derived index and audit keys.
// The API is small and message-shaped so that it could later move behind a
// socketpair into its own process: every argument is checked, results are
// wrapped keys, ciphertexts, tokens and MACs, never key bytes.
// The vault is SQLite-free: callers persist WrappedKey values (table
// study_keys; the derivation secret in the catalog's meta table).
//
// Formats (stable, they are on disk):
//  - key_id: 32 lowercase hex characters (128 bits). Ids made by this version
//    on are time-ordered (like UUIDv7): the first 12 hex digits are the creation time in
//    Unix milliseconds (48 bits, big-endian), the other 20 are random (80 bits);
//    ids made by one vault strictly increase (when the fresh id does not sort
//    after the previous one - same millisecond, clock stepped back - it is the
//    previous id plus a random 1..2^32). Rows keyed
//    by a new key id (study_keys, patient_keys, hl7_messages, studies...) thus
//    land on the rightmost B-tree pages instead of random ones: fewer WAL pages
//    per commit (libphi/hl7/README.md, "Performance"). Older ids (128 random
//    bits) stay valid: nothing parses the time back, the id is only a name.
//    What it reveals: the key's creation time to the millisecond, to whoever
//    sees the id (audit records, erasure certificates, logs, .phg headers).
//    study_keys.created_at, the audit time and the object's file times show
//    the same (to the second); it is our receive time, not a patient date.
//  - WrappedKey.wrapped = crypto::SealBox(KEK, aad, key) = nonce(12) || ct(32) || tag(16),
//    aad = "phigate-study-key-v1" || key_id || kek_id for study keys and
//          "phigate-derivation-secret-v1" || key_id || kek_id for the derivation secret,
//    so a wrapped key moved to another key id, KEK id or purpose fails to open.
//  - SealField box = SealBox(study key, "phigate-field-v1" || key_id || aad, plaintext).
//
// Derived keys and KEK rotation. The index and audit keys must survive KEK
// rotation, so they are not derived from a KEK: a random 32-byte "derivation
// secret" is created once (CreateDerivationSecret), stored wrapped under the
// active KEK like a study key, rewrapped on rotation (RewrapDerivationSecret),
// and loaded at start-up (LoadDerivationSecret). Then
//   index key = HKDF-SHA256(derivation secret, salt = "", info = "phigate index v1")
//   audit key = HKDF-SHA256(derivation secret, salt = "", info = "phigate audit v1")
//   IndexToken(attribute, value) = HMAC-SHA256(index key, attribute || 0x00 || value)
//   AuditMac(data) = HMAC-SHA256(audit key, data)
// IndexToken and AuditMac REQUIRE a loaded derivation secret: calling them
// before is a wiring bug and aborts (PHI_CHECK); derivation_loaded() tells.
//
// Thread-safety: every method may be called from any thread. KEKs are
// immutable after Open; the study-key cache is guarded by mu_; the derived
// keys are written once under mu_ and published through derived_ready_.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "libphi/config/config.h"
#include "libphi/crypto/crypto.h"
#include "libphi/util/env.h"
#include "libphi/util/status.h"
#include "libphi/vault/kek_source.h"

namespace phi::vault {

inline constexpr size_t kKeyIdChars = 32;
inline constexpr size_t kWrappedKeyBytes =
    crypto::kGcmNonceBytes + crypto::kKeyBytes + crypto::kGcmTagBytes;  // 60
inline constexpr size_t kMaxKekIdChars = 64;
inline constexpr size_t kMaxFieldBytes = 1 << 20;  // SealField plaintext bound

// A study key (or the derivation secret) as stored: safe to persist and log
// key_id/kek_id (internal ids); `wrapped` is binary.
struct WrappedKey {
  std::string key_id;   // 32 lowercase hex chars
  std::string kek_id;   // the KEK it is wrapped under
  std::string wrapped;  // nonce || ct || tag, kWrappedKeyBytes
  bool operator==(const WrappedKey&) const = default;
};

struct VaultOptions {
  size_t max_cached_keys = 4096;  // LRU bound on plaintext study keys (>= 1)
  // Refuse KEK files on the storage root's filesystem. Only a storage root that
  // is not a dedicated volume (storage.require_encrypted_volume: false: dev and
  // tests) turns this off; a KEK under the storage root is always refused.
  bool kek_off_storage_filesystem = true;
};

class KeyVault {
 public:
  // Loads and checks every configured KEK (see kek_source.h). Fails when no KEK
  // is configured, an id is empty, duplicated, longer than kMaxKekIdChars or not
  // [A-Za-z0-9._-], `keys.active` is not one of them, or any KEK fails to load.
  static Result<std::unique_ptr<KeyVault>> Open(const config::KeysConfig& keys,
                                                const Path& storage_root, Env& env,
                                                VaultOptions options = {});
  ~KeyVault();
  KeyVault(const KeyVault&) = delete;
  KeyVault& operator=(const KeyVault&) = delete;

  // ---- study keys
  // A fresh random 256-bit key with a fresh key id, cached, wrapped under the active KEK.
  Result<WrappedKey> CreateStudyKey();
  // Unwraps (KEK by id: NotFound if not configured; Corruption if it does not
  // authenticate; InvalidArgument for a malformed key id) and caches it.
  // Idempotent: loading a cached key re-verifies it and marks it recently used.
  Status LoadStudyKey(const WrappedKey& wk);
  // Wipes the key from the cache (erasure). No-op if it is not cached.
  void ForgetStudyKey(std::string_view key_id);
  // The same key wrapped under the active KEK (rotate-kek). Verifies it opens;
  // returns an equal copy when it is already under the active KEK. Does not cache.
  Result<WrappedKey> Rewrap(const WrappedKey& wk);

  // An AES-256-GCM context keyed with the loaded study key (object segments).
  // NotFound if the key is not loaded. The context's key schedule lives in
  // OpenSSL memory and is cleansed when the AesGcm is destroyed.
  Result<std::unique_ptr<crypto::AesGcm>> NewCipher(std::string_view key_id);
  // Encrypts / decrypts one index column value with the study key (format above).
  // NotFound if the key is not loaded; OpenField: Corruption on any tamper or
  // wrong aad; InvalidArgument if plaintext > kMaxFieldBytes.
  Result<std::string> SealField(std::string_view key_id, std::string_view aad,
                                std::string_view plaintext);
  Result<std::string> OpenField(std::string_view key_id, std::string_view aad,
                                std::string_view box);

  // ---- derivation secret, derived keys
  // Creates the derivation secret, loads it, returns it wrapped under the active
  // KEK for the caller to persist. AlreadyExists if one is already loaded.
  Result<WrappedKey> CreateDerivationSecret();
  // Loads a persisted derivation secret. Idempotent for the same secret;
  // AlreadyExists if a different one is already loaded.
  Status LoadDerivationSecret(const WrappedKey& wk);
  // The derivation secret wrapped under the active KEK (rotate-kek).
  Result<WrappedKey> RewrapDerivationSecret(const WrappedKey& wk);
  bool derivation_loaded() const { return derived_ready_.load(std::memory_order_acquire); }

  // Blind index token. REQUIRES: derivation_loaded(); attribute has no NUL byte.
  crypto::Digest IndexToken(std::string_view attribute, std::string_view value) const;
  // Audit chain MAC. REQUIRES: derivation_loaded().
  crypto::Digest AuditMac(crypto::ByteSpan data) const;

  // ---- introspection (ids only)
  std::string active_kek_id() const { return active_; }
  std::vector<std::string> kek_ids() const;  // in configuration order
  size_t cached_keys() const;
  // Hex SHA-256 of the wrapped bytes, for erasure certificates.
  static std::string Fingerprint(const WrappedKey& wk);

  // Test-only: how many cache slots hold non-zero bytes (wiped slots are zero).
  size_t NonZeroSlotsForTest() const;

 private:
  KeyVault(std::vector<Kek> keks, std::string active, Env& env, size_t capacity);

  const Kek* FindKek(std::string_view id) const;
  Result<crypto::SecretBytes> Unwrap(const WrappedKey& wk, std::string_view purpose) const;
  // Unwrap into `out` (kKeyBytes; wiped on failure).
  Status UnwrapInto(const WrappedKey& wk, std::string_view purpose,
                    crypto::MutableByteSpan out) const;
  Result<WrappedKey> Wrap(crypto::ByteSpan key, std::string key_id, std::string_view purpose) const;
  Result<std::string> NewKeyId();
  void CacheInsert(const std::string& key_id, crypto::ByteSpan key);  // REQUIRES: mu_ held
  crypto::ByteSpan Slot(uint32_t slot) const;
  Result<std::unique_ptr<crypto::AesGcm>> CipherFor(std::string_view key_id);
  Status SetDerivation(crypto::SecretBytes secret);

  const std::vector<Kek> keks_;  // immutable after Open
  const std::string active_;
  Env& env_;
  const size_t capacity_;

  // The study-key cache: most recently used at the front of lru_.
  struct Entry {
    std::string key_id;
    uint32_t slot;
  };
  mutable std::mutex mu_;
  crypto::SecretBytes arena_;         // guarded by mu_: capacity_ * kKeyBytes
  std::vector<uint32_t> free_slots_;  // guarded by mu_
  std::list<Entry> lru_;              // guarded by mu_
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;  // guarded by mu_

  // The last id NewKeyId returned (raw bytes), for strictly increasing ids.
  std::mutex id_mu_;
  std::array<std::byte, kKeyIdChars / 2> last_id_{};  // guarded by id_mu_

  // Written once under mu_, then read-only; readers check derived_ready_ first.
  crypto::SecretBytes derivation_secret_;
  crypto::SecretBytes index_key_;
  crypto::SecretBytes audit_key_;
  std::atomic<bool> derived_ready_{false};
};

}  // namespace phi::vault
