// phi::crypto: the primitives phigate uses, all on OpenSSL 3 EVP (no
// hand-written cipher code): AES-256-GCM, HKDF-SHA256, HMAC-SHA256, SHA-256,
// CSPRNG, constant-time compare, and SecretBytes for key material.
// Knows nothing of files, SQL or DICOM.
// Thread-safety: free functions are thread-safe; an AesGcm object is not
// (one per thread/stream); SecretBytes is a value owned by one thread at a time.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "libphi/util/status.h"

namespace phi::crypto {

inline constexpr size_t kKeyBytes = 32;  // AES-256, HMAC-SHA256 keys
inline constexpr size_t kGcmNonceBytes = 12;
inline constexpr size_t kGcmTagBytes = 16;
inline constexpr size_t kSha256Bytes = 32;

using ByteSpan = std::span<const std::byte>;
using MutableByteSpan = std::span<std::byte>;
using Digest = std::array<std::byte, kSha256Bytes>;

// Key material: page-locked (mlock), excluded from core dumps
// (MADV_DONTDUMP), wiped with OPENSSL_cleanse when destroyed or moved from.
// Move-only. Never log or print it.
class SecretBytes {
 public:
  SecretBytes() = default;
  explicit SecretBytes(size_t size);  // zero-filled; aborts (PHI_CHECK) if mmap fails
  static SecretBytes CopyFrom(ByteSpan bytes);
  static Result<SecretBytes> Random(size_t size);  // OpenSSL RAND_bytes (CSPRNG)
  ~SecretBytes();
  SecretBytes(SecretBytes&& o) noexcept;
  SecretBytes& operator=(SecretBytes&& o) noexcept;
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  ByteSpan span() const { return {data_, size_}; }
  MutableByteSpan mutable_span() { return {data_, size_}; }

 private:
  void Release();
  std::byte* data_ = nullptr;  // own mmap'd pages, locked and marked no-dump
  size_t size_ = 0;
  size_t mapped_ = 0;
};

// How many SecretBytes allocations could not be mlock()ed (RLIMIT_MEMLOCK): they
// stay usable, unlocked but still no-dump and wiped. The first failure is logged
// at debug level; this counter is for status output and metrics.
uint64_t SecretBytesMlockFailures();

// AES-256-GCM with a key schedule set up once; Seal/Open per message.
// Not thread-safe: use one per thread or stream.
class AesGcm {
 public:
  // REQUIRES: key.size() == kKeyBytes.
  static Result<std::unique_ptr<AesGcm>> Create(ByteSpan key);
  ~AesGcm();
  AesGcm(const AesGcm&) = delete;
  AesGcm& operator=(const AesGcm&) = delete;

  // ciphertext.size() must equal plaintext.size() (may alias); nonce is 12 bytes.
  Status Seal(ByteSpan nonce, ByteSpan aad, ByteSpan plaintext, MutableByteSpan ciphertext,
              std::span<std::byte, kGcmTagBytes> tag);
  // Returns Corruption if the tag does not verify; then `plaintext` is wiped.
  Status Open(ByteSpan nonce, ByteSpan aad, ByteSpan ciphertext,
              std::span<const std::byte, kGcmTagBytes> tag, MutableByteSpan plaintext);

 private:
  AesGcm() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// One-shot sealing of a small message: returns nonce || ciphertext || tag with
// a fresh random nonce. Used for wrapped keys and encrypted index columns.
Result<std::string> SealBox(ByteSpan key, ByteSpan aad, ByteSpan plaintext);
// Opens SealBox output; Corruption on any tamper or wrong key/AAD.
Result<SecretBytes> OpenBoxSecret(ByteSpan key, ByteSpan aad, ByteSpan box);
Result<std::string> OpenBox(ByteSpan key, ByteSpan aad, ByteSpan box);
// Opens SealBox output into caller-owned memory (e.g. a reused locked buffer).
// InvalidArgument unless out.size() == box.size() - nonce - tag; on Corruption
// `out` is wiped.
Status OpenBoxInto(ByteSpan key, ByteSpan aad, ByteSpan box, MutableByteSpan out);

// RFC 5869 HKDF-SHA256: out.size() bytes derived from ikm, salt and info.
Status HkdfSha256(ByteSpan ikm, ByteSpan salt, ByteSpan info, MutableByteSpan out);
// 32-byte subkey: HKDF-SHA256 with an empty salt and info = label.
Result<SecretBytes> HkdfSha256Key(ByteSpan ikm, std::string_view label);

// HMAC-SHA256, one-shot and incremental.
Digest HmacSha256(ByteSpan key, ByteSpan data);
class HmacSha256Stream {
 public:
  explicit HmacSha256Stream(ByteSpan key);
  ~HmacSha256Stream();
  HmacSha256Stream(const HmacSha256Stream&) = delete;
  HmacSha256Stream& operator=(const HmacSha256Stream&) = delete;
  void Update(ByteSpan data);
  Digest Final();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

Digest Sha256(ByteSpan data);

Status RandomBytes(MutableByteSpan out);  // OpenSSL RAND_bytes

// Constant-time equality (CRYPTO_memcmp); false when sizes differ.
bool ConstantTimeEqual(ByteSpan a, ByteSpan b);

std::string ToHex(ByteSpan bytes);  // lowercase
// Decodes exactly out.size()*2 hex digits (either case) into out. InvalidArgument on a
// wrong length or a non-hex character (the input is never echoed; out is wiped).
Status FromHex(std::string_view hex, MutableByteSpan out);
inline ByteSpan AsBytes(std::string_view s) { return std::as_bytes(std::span(s.data(), s.size())); }

}  // namespace phi::crypto
