// KeyVault. See key_vault.h for the formats and the key hierarchy.
#include "libphi/vault/key_vault.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <set>

#include "libphi/util/log.h"

namespace phi::vault {
namespace {

constexpr std::string_view kStudyPurpose = "phigate-study-key-v1";
constexpr std::string_view kDerivationPurpose = "phigate-derivation-secret-v1";
constexpr std::string_view kFieldPurpose = "phigate-field-v1";
constexpr std::string_view kIndexLabel = "phigate index v1";
constexpr std::string_view kAuditLabel = "phigate audit v1";
constexpr size_t kKeyIdTimeBytes = 6;  // 48-bit millisecond prefix of new key ids

// A per-thread locked, no-dump buffer for one key on its way into the cache,
// so that creating or loading a study key does not mmap/mlock/munmap a fresh
// SecretBytes each time (that was ~18% of the catalog writer's CPU when HL7
// created a patient key per message). Wiped when the guard goes.
class ScratchKey {
 public:
  ScratchKey() : buf_(Buffer()) {}
  ~ScratchKey() { OPENSSL_cleanse(buf_.mutable_span().data(), buf_.size()); }
  ScratchKey(const ScratchKey&) = delete;
  ScratchKey& operator=(const ScratchKey&) = delete;
  crypto::MutableByteSpan span() { return buf_.mutable_span(); }

 private:
  static crypto::SecretBytes& Buffer() {
    thread_local crypto::SecretBytes buf(crypto::kKeyBytes);
    return buf;
  }
  crypto::SecretBytes& buf_;
};

bool ValidKeyId(std::string_view id) {
  return id.size() == kKeyIdChars && std::all_of(id.begin(), id.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

bool ValidKekId(std::string_view id) {
  return !id.empty() && id.size() <= kMaxKekIdChars &&
         std::all_of(id.begin(), id.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  c == '.' || c == '_' || c == '-';
         });
}

std::string WrapAad(std::string_view purpose, std::string_view key_id, std::string_view kek_id) {
  std::string aad;
  aad.reserve(purpose.size() + key_id.size() + kek_id.size());
  aad.append(purpose).append(key_id).append(kek_id);
  return aad;
}

std::string FieldAad(std::string_view key_id, std::string_view aad) {
  std::string full;
  full.reserve(kFieldPurpose.size() + key_id.size() + aad.size());
  full.append(kFieldPurpose).append(key_id).append(aad);
  return full;
}

}  // namespace

Result<std::unique_ptr<KeyVault>> KeyVault::Open(const config::KeysConfig& keys,
                                                 const Path& storage_root, Env& env,
                                                 VaultOptions options) {
  if (keys.keks.empty()) return Status::InvalidArgument("keys: no KEK configured");
  if (options.max_cached_keys == 0 || options.max_cached_keys > (size_t{1} << 24)) {
    return Status::InvalidArgument("vault: max_cached_keys must be 1..16777216");
  }
  std::set<std::string> seen;
  for (const auto& k : keys.keks) {
    if (!ValidKekId(k.id)) {
      return Status::InvalidArgument("keys: KEK id \"" + k.id.substr(0, kMaxKekIdChars) +
                                     "\" must be 1-64 characters of [A-Za-z0-9._-]");
    }
    if (!seen.insert(k.id).second) {
      return Status::InvalidArgument("keys: KEK id \"" + k.id + "\" is configured twice");
    }
  }
  if (seen.count(keys.active) == 0) {
    return Status::InvalidArgument("keys: active KEK \"" + keys.active.substr(0, kMaxKekIdChars) +
                                   "\" is not one of the configured KEKs");
  }
  std::vector<Kek> keks;
  keks.reserve(keys.keks.size());
  for (const auto& k : keys.keks) {
    PHI_ASSIGN_OR_RETURN(Kek kek, LoadKek(k, storage_root, options.kek_off_storage_filesystem));
    keks.push_back(std::move(kek));
  }
  std::unique_ptr<KeyVault> v(
      new KeyVault(std::move(keks), keys.active, env, options.max_cached_keys));
  PHI_LOG(kInfo, "key vault opened",
          {{"keks", v->keks_.size()}, {"active_kek", log::Safe(v->active_)}});
  return v;
}

KeyVault::KeyVault(std::vector<Kek> keks, std::string active, Env& env, size_t capacity)
    : keks_(std::move(keks)),
      active_(std::move(active)),
      env_(env),
      capacity_(capacity),
      arena_(capacity * crypto::kKeyBytes) {
  free_slots_.reserve(capacity);
  for (size_t i = capacity; i > 0; --i) free_slots_.push_back(static_cast<uint32_t>(i - 1));
}

KeyVault::~KeyVault() = default;  // every SecretBytes (arena, KEKs, derived) wipes itself

std::vector<std::string> KeyVault::kek_ids() const {
  std::vector<std::string> ids;
  for (const auto& k : keks_) ids.push_back(k.id);
  return ids;
}

const Kek* KeyVault::FindKek(std::string_view id) const {
  for (const auto& k : keks_) {
    if (k.id == id) return &k;
  }
  return nullptr;
}

Result<std::string> KeyVault::NewKeyId() {
  // 48-bit Unix milliseconds || 80 random bits (format in key_vault.h).
  std::array<std::byte, kKeyIdChars / 2> raw{};
  PHI_RETURN_IF_ERROR(env_.RandomBytes(std::span(raw).subspan(kKeyIdTimeBytes)));
  const int64_t ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(env_.Now().time_since_epoch()).count();
  const uint64_t t = ms < 0 ? 0 : static_cast<uint64_t>(ms);
  for (size_t i = 0; i < kKeyIdTimeBytes; ++i) {
    raw[i] = static_cast<std::byte>((t >> (8 * (kKeyIdTimeBytes - 1 - i))) & 0xff);
  }
  std::lock_guard<std::mutex> lock(id_mu_);
  if (raw <= last_id_) {
    // Same millisecond, or the clock went back: the previous id plus a random
    // increment of 1..2^32, so that ids stay strictly increasing and unguessable
    // from their neighbour to 32 bits.
    std::array<std::byte, 4> inc{};
    PHI_RETURN_IF_ERROR(env_.RandomBytes(inc));
    uint64_t carry = 1;
    for (size_t i = 0; i < inc.size(); ++i) carry += static_cast<uint64_t>(inc[i]) << (8 * i);
    raw = last_id_;
    for (size_t i = raw.size(); i-- > 0 && carry != 0;) {
      carry += static_cast<uint64_t>(raw[i]);
      raw[i] = static_cast<std::byte>(carry & 0xff);
      carry >>= 8;
    }
    // An overflow of all 128 bits would need 2^96 ids in one millisecond.
    PHI_CHECK(carry == 0);
  }
  last_id_ = raw;
  return crypto::ToHex(raw);
}

Result<WrappedKey> KeyVault::Wrap(crypto::ByteSpan key, std::string key_id,
                                  std::string_view purpose) const {
  const Kek* kek = FindKek(active_);
  PHI_CHECK(kek != nullptr);
  std::string aad = WrapAad(purpose, key_id, kek->id);
  PHI_ASSIGN_OR_RETURN(std::string box,
                       crypto::SealBox(kek->key.span(), crypto::AsBytes(aad), key));
  return WrappedKey{std::move(key_id), kek->id, std::move(box)};
}

Result<crypto::SecretBytes> KeyVault::Unwrap(const WrappedKey& wk, std::string_view purpose) const {
  crypto::SecretBytes key(crypto::kKeyBytes);
  PHI_RETURN_IF_ERROR(UnwrapInto(wk, purpose, key.mutable_span()));
  return key;
}

Status KeyVault::UnwrapInto(const WrappedKey& wk, std::string_view purpose,
                            crypto::MutableByteSpan out) const {
  PHI_CHECK(out.size() == crypto::kKeyBytes);
  if (!ValidKeyId(wk.key_id)) {
    return Status::InvalidArgument("wrapped key: key id is not 32 lowercase hex characters");
  }
  const Kek* kek = FindKek(wk.kek_id);
  if (kek == nullptr) {
    return Status::NotFound("key " + wk.key_id + " is wrapped under KEK \"" +
                            wk.kek_id.substr(0, kMaxKekIdChars) + "\", which is not configured");
  }
  if (wk.wrapped.size() != kWrappedKeyBytes) {
    return Status::Corruption("key " + wk.key_id + ": wrapped key has " +
                              std::to_string(wk.wrapped.size()) + " bytes, expected " +
                              std::to_string(kWrappedKeyBytes));
  }
  std::string aad = WrapAad(purpose, wk.key_id, kek->id);
  Status s =
      crypto::OpenBoxInto(kek->key.span(), crypto::AsBytes(aad), crypto::AsBytes(wk.wrapped), out);
  if (!s.ok()) return s.WithContext("unwrap key " + wk.key_id + " under KEK " + kek->id);
  return Status::Ok();
}

// ---------------------------------------------------------------- cache

crypto::ByteSpan KeyVault::Slot(uint32_t slot) const {
  return arena_.span().subspan(size_t{slot} * crypto::kKeyBytes, crypto::kKeyBytes);
}

void KeyVault::CacheInsert(const std::string& key_id, crypto::ByteSpan key) {
  PHI_CHECK(key.size() == crypto::kKeyBytes);
  auto it = index_.find(key_id);
  if (it != index_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second);
    std::byte* dst = arena_.mutable_span().data() + size_t{it->second->slot} * crypto::kKeyBytes;
    std::memcpy(dst, key.data(), key.size());
    return;
  }
  if (free_slots_.empty()) {
    Entry& victim = lru_.back();
    std::byte* p = arena_.mutable_span().data() + size_t{victim.slot} * crypto::kKeyBytes;
    OPENSSL_cleanse(p, crypto::kKeyBytes);
    free_slots_.push_back(victim.slot);
    index_.erase(victim.key_id);
    lru_.pop_back();
  }
  uint32_t slot = free_slots_.back();
  free_slots_.pop_back();
  std::memcpy(arena_.mutable_span().data() + size_t{slot} * crypto::kKeyBytes, key.data(),
              key.size());
  lru_.push_front(Entry{key_id, slot});
  index_[key_id] = lru_.begin();
}

Result<WrappedKey> KeyVault::CreateStudyKey() {
  ScratchKey key;
  PHI_RETURN_IF_ERROR(env_.RandomBytes(key.span()));
  PHI_ASSIGN_OR_RETURN(std::string key_id, NewKeyId());
  PHI_ASSIGN_OR_RETURN(WrappedKey wk, Wrap(key.span(), key_id, kStudyPurpose));
  std::lock_guard<std::mutex> lock(mu_);
  CacheInsert(wk.key_id, key.span());
  return wk;
}

Status KeyVault::LoadStudyKey(const WrappedKey& wk) {
  ScratchKey key;
  PHI_RETURN_IF_ERROR(UnwrapInto(wk, kStudyPurpose, key.span()));
  std::lock_guard<std::mutex> lock(mu_);
  CacheInsert(wk.key_id, key.span());
  return Status::Ok();
}

void KeyVault::ForgetStudyKey(std::string_view key_id) {
  if (!ValidKeyId(key_id)) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = index_.find(std::string(key_id));
  if (it == index_.end()) return;
  uint32_t slot = it->second->slot;
  OPENSSL_cleanse(arena_.mutable_span().data() + size_t{slot} * crypto::kKeyBytes,
                  crypto::kKeyBytes);
  free_slots_.push_back(slot);
  lru_.erase(it->second);
  index_.erase(it);
}

size_t KeyVault::cached_keys() const {
  std::lock_guard<std::mutex> lock(mu_);
  return index_.size();
}

size_t KeyVault::NonZeroSlotsForTest() const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = 0;
  for (size_t s = 0; s < capacity_; ++s) {
    auto slot = Slot(static_cast<uint32_t>(s));
    if (std::any_of(slot.begin(), slot.end(), [](std::byte b) { return b != std::byte{0}; })) {
      ++n;
    }
  }
  return n;
}

Result<WrappedKey> KeyVault::Rewrap(const WrappedKey& wk) {
  PHI_ASSIGN_OR_RETURN(crypto::SecretBytes key, Unwrap(wk, kStudyPurpose));
  if (wk.kek_id == active_) return wk;
  return Wrap(key.span(), wk.key_id, kStudyPurpose);
}

// ---------------------------------------------------------------- using study keys

Result<std::unique_ptr<crypto::AesGcm>> KeyVault::CipherFor(std::string_view key_id) {
  if (!ValidKeyId(key_id)) {
    return Status::InvalidArgument("key id is not 32 lowercase hex characters");
  }
  std::lock_guard<std::mutex> lock(mu_);
  auto it = index_.find(std::string(key_id));
  if (it == index_.end()) {
    return Status::NotFound("study key " + std::string(key_id) + " is not loaded");
  }
  lru_.splice(lru_.begin(), lru_, it->second);
  return crypto::AesGcm::Create(Slot(it->second->slot));
}

Result<std::unique_ptr<crypto::AesGcm>> KeyVault::NewCipher(std::string_view key_id) {
  return CipherFor(key_id);
}

Result<std::string> KeyVault::SealField(std::string_view key_id, std::string_view aad,
                                        std::string_view plaintext) {
  if (plaintext.size() > kMaxFieldBytes) {
    return Status::InvalidArgument("SealField: value larger than " +
                                   std::to_string(kMaxFieldBytes) + " bytes");
  }
  if (aad.size() > kMaxFieldBytes) return Status::InvalidArgument("SealField: aad too large");
  PHI_ASSIGN_OR_RETURN(auto gcm, CipherFor(key_id));
  std::string full_aad = FieldAad(key_id, aad);
  std::string box(crypto::kGcmNonceBytes + plaintext.size() + crypto::kGcmTagBytes, '\0');
  auto out = std::as_writable_bytes(std::span(box.data(), box.size()));
  auto nonce = out.first(crypto::kGcmNonceBytes);
  PHI_RETURN_IF_ERROR(crypto::RandomBytes(nonce));
  PHI_RETURN_IF_ERROR(gcm->Seal(nonce, crypto::AsBytes(full_aad), crypto::AsBytes(plaintext),
                                out.subspan(crypto::kGcmNonceBytes, plaintext.size()),
                                out.last<crypto::kGcmTagBytes>()));
  return box;
}

Result<std::string> KeyVault::OpenField(std::string_view key_id, std::string_view aad,
                                        std::string_view box) {
  if (box.size() < crypto::kGcmNonceBytes + crypto::kGcmTagBytes ||
      box.size() > kMaxFieldBytes + crypto::kGcmNonceBytes + crypto::kGcmTagBytes) {
    return Status::Corruption("OpenField: sealed value has an impossible size (" +
                              std::to_string(box.size()) + " bytes)");
  }
  if (aad.size() > kMaxFieldBytes) return Status::InvalidArgument("OpenField: aad too large");
  PHI_ASSIGN_OR_RETURN(auto gcm, CipherFor(key_id));
  std::string full_aad = FieldAad(key_id, aad);
  auto in = crypto::AsBytes(box);
  const size_t n = box.size() - crypto::kGcmNonceBytes - crypto::kGcmTagBytes;
  std::string out(n, '\0');
  Status s = gcm->Open(in.first(crypto::kGcmNonceBytes), crypto::AsBytes(full_aad),
                       in.subspan(crypto::kGcmNonceBytes, n), in.last<crypto::kGcmTagBytes>(),
                       std::as_writable_bytes(std::span(out.data(), out.size())));
  if (!s.ok()) return s.WithContext("OpenField with key " + std::string(key_id));
  return out;
}

// ---------------------------------------------------------------- derived keys

Status KeyVault::SetDerivation(crypto::SecretBytes secret) {
  std::lock_guard<std::mutex> lock(mu_);
  if (derived_ready_.load(std::memory_order_acquire)) {
    if (crypto::ConstantTimeEqual(secret.span(), derivation_secret_.span())) return Status::Ok();
    return Status::AlreadyExists("a different derivation secret is already loaded");
  }
  PHI_ASSIGN_OR_RETURN(crypto::SecretBytes index_key,
                       crypto::HkdfSha256Key(secret.span(), kIndexLabel));
  PHI_ASSIGN_OR_RETURN(crypto::SecretBytes audit_key,
                       crypto::HkdfSha256Key(secret.span(), kAuditLabel));
  derivation_secret_ = std::move(secret);
  index_key_ = std::move(index_key);
  audit_key_ = std::move(audit_key);
  derived_ready_.store(true, std::memory_order_release);
  return Status::Ok();
}

Result<WrappedKey> KeyVault::CreateDerivationSecret() {
  if (derivation_loaded()) {
    return Status::AlreadyExists("a derivation secret is already loaded");
  }
  crypto::SecretBytes secret(crypto::kKeyBytes);
  PHI_RETURN_IF_ERROR(env_.RandomBytes(secret.mutable_span()));
  PHI_ASSIGN_OR_RETURN(std::string key_id, NewKeyId());
  PHI_ASSIGN_OR_RETURN(WrappedKey wk, Wrap(secret.span(), key_id, kDerivationPurpose));
  PHI_RETURN_IF_ERROR(SetDerivation(std::move(secret)));
  return wk;
}

Status KeyVault::LoadDerivationSecret(const WrappedKey& wk) {
  PHI_ASSIGN_OR_RETURN(crypto::SecretBytes secret, Unwrap(wk, kDerivationPurpose));
  return SetDerivation(std::move(secret));
}

Result<WrappedKey> KeyVault::RewrapDerivationSecret(const WrappedKey& wk) {
  PHI_ASSIGN_OR_RETURN(crypto::SecretBytes secret, Unwrap(wk, kDerivationPurpose));
  if (wk.kek_id == active_) return wk;
  return Wrap(secret.span(), wk.key_id, kDerivationPurpose);
}

crypto::Digest KeyVault::IndexToken(std::string_view attribute, std::string_view value) const {
  PHI_CHECK(derivation_loaded());
  PHI_CHECK(attribute.find('\0') == std::string_view::npos);
  crypto::HmacSha256Stream mac(index_key_.span());
  mac.Update(crypto::AsBytes(attribute));
  const std::byte sep{0};
  mac.Update(crypto::ByteSpan(&sep, 1));
  mac.Update(crypto::AsBytes(value));
  return mac.Final();
}

crypto::Digest KeyVault::AuditMac(crypto::ByteSpan data) const {
  PHI_CHECK(derivation_loaded());
  return crypto::HmacSha256(audit_key_.span(), data);
}

std::string KeyVault::Fingerprint(const WrappedKey& wk) {
  return crypto::ToHex(crypto::Sha256(crypto::AsBytes(wk.wrapped)));
}

}  // namespace phi::vault
