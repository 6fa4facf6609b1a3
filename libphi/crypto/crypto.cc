// phi::crypto on OpenSSL 3 EVP. See crypto.h.
#include "libphi/crypto/crypto.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <algorithm>
#include <climits>
#include <cstring>

namespace phi::crypto {
namespace {

// EVP calls take int lengths; larger inputs are fed in chunks of this size.
constexpr size_t kMaxChunk = size_t{1} << 30;

// The OpenSSL error queue text (no key material ever ends up there), then cleared.
std::string OpenSslError(std::string_view what) {
  std::string msg(what);
  unsigned long e = ERR_get_error();
  if (e != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    msg += ": ";
    msg += buf;
  }
  ERR_clear_error();
  return msg;
}

const unsigned char* U8(ByteSpan s) { return reinterpret_cast<const unsigned char*>(s.data()); }
unsigned char* U8(MutableByteSpan s) { return reinterpret_cast<unsigned char*>(s.data()); }

// A non-null pointer for zero-length inputs (some EVP paths treat NULL as "unset").
const unsigned char kEmpty[1] = {0};
const unsigned char* U8OrEmpty(ByteSpan s) { return s.empty() ? kEmpty : U8(s); }

struct CipherCtxDeleter {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using CipherCtxPtr = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxDeleter>;
struct MacCtxDeleter {
  void operator()(EVP_MAC_CTX* c) const { EVP_MAC_CTX_free(c); }
};
using MacCtxPtr = std::unique_ptr<EVP_MAC_CTX, MacCtxDeleter>;
struct KdfCtxDeleter {
  void operator()(EVP_KDF_CTX* c) const { EVP_KDF_CTX_free(c); }
};
using KdfCtxPtr = std::unique_ptr<EVP_KDF_CTX, KdfCtxDeleter>;

// Fetched once; EVP_MAC / EVP_KDF objects are immutable and thread-safe to share.
EVP_MAC* HmacAlgorithm() {
  static EVP_MAC* const kMac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  PHI_CHECK(kMac != nullptr);
  return kMac;
}
EVP_KDF* HkdfAlgorithm() {
  static EVP_KDF* const kKdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
  PHI_CHECK(kKdf != nullptr);
  return kKdf;
}

MacCtxPtr NewHmacCtx(ByteSpan key) {
  MacCtxPtr ctx(EVP_MAC_CTX_new(HmacAlgorithm()));
  PHI_CHECK(ctx != nullptr);
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_end(),
  };
  PHI_CHECK(EVP_MAC_init(ctx.get(), U8OrEmpty(key), key.size(), params) == 1);
  return ctx;
}

void MacUpdate(EVP_MAC_CTX* ctx, ByteSpan data) {
  while (!data.empty()) {
    size_t n = std::min(data.size(), kMaxChunk);
    PHI_CHECK(EVP_MAC_update(ctx, U8(data.first(n)), n) == 1);
    data = data.subspan(n);
  }
}

Digest MacFinal(EVP_MAC_CTX* ctx) {
  Digest d{};
  size_t len = 0;
  PHI_CHECK(EVP_MAC_final(ctx, reinterpret_cast<unsigned char*>(d.data()), &len, d.size()) == 1);
  PHI_CHECK(len == d.size());
  return d;
}

}  // namespace

// ---------------------------------------------------------------- AesGcm

struct AesGcm::Impl {
  CipherCtxPtr enc;  // keyed once for encryption
  CipherCtxPtr dec;  // keyed once for decryption
};

AesGcm::~AesGcm() = default;  // EVP_CIPHER_CTX_free cleanses the key schedule

Result<std::unique_ptr<AesGcm>> AesGcm::Create(ByteSpan key) {
  if (key.size() != kKeyBytes) {
    return Status::InvalidArgument("AES-256-GCM key must be 32 bytes, got " +
                                   std::to_string(key.size()));
  }
  auto impl = std::make_unique<Impl>();
  impl->enc.reset(EVP_CIPHER_CTX_new());
  impl->dec.reset(EVP_CIPHER_CTX_new());
  if (!impl->enc || !impl->dec) return Status::Internal(OpenSslError("EVP_CIPHER_CTX_new"));
  if (EVP_EncryptInit_ex(impl->enc.get(), EVP_aes_256_gcm(), nullptr, U8(key), nullptr) != 1 ||
      EVP_DecryptInit_ex(impl->dec.get(), EVP_aes_256_gcm(), nullptr, U8(key), nullptr) != 1) {
    return Status::Internal(OpenSslError("AES-256-GCM key setup"));
  }
  std::unique_ptr<AesGcm> g(new AesGcm());
  g->impl_ = std::move(impl);
  return g;
}

Status AesGcm::Seal(ByteSpan nonce, ByteSpan aad, ByteSpan plaintext, MutableByteSpan ciphertext,
                    std::span<std::byte, kGcmTagBytes> tag) {
  if (nonce.size() != kGcmNonceBytes) return Status::InvalidArgument("GCM nonce must be 12 bytes");
  if (ciphertext.size() != plaintext.size()) {
    return Status::InvalidArgument("GCM ciphertext buffer size differs from plaintext size");
  }
  EVP_CIPHER_CTX* c = impl_->enc.get();
  if (EVP_EncryptInit_ex(c, nullptr, nullptr, nullptr, U8(nonce)) != 1) {
    return Status::Internal(OpenSslError("GCM seal: set nonce"));
  }
  int out_len = 0;
  for (ByteSpan a = aad; !a.empty();) {
    size_t n = std::min(a.size(), kMaxChunk);
    if (EVP_EncryptUpdate(c, nullptr, &out_len, U8(a), static_cast<int>(n)) != 1) {
      return Status::Internal(OpenSslError("GCM seal: aad"));
    }
    a = a.subspan(n);
  }
  size_t done = 0;
  while (done < plaintext.size()) {
    size_t n = std::min(plaintext.size() - done, kMaxChunk);
    if (EVP_EncryptUpdate(c, U8(ciphertext.subspan(done)), &out_len, U8(plaintext.subspan(done, n)),
                          static_cast<int>(n)) != 1 ||
        static_cast<size_t>(out_len) != n) {
      return Status::Internal(OpenSslError("GCM seal: update"));
    }
    done += n;
  }
  unsigned char final_block[16];
  if (EVP_EncryptFinal_ex(c, final_block, &out_len) != 1 || out_len != 0) {
    return Status::Internal(OpenSslError("GCM seal: final"));
  }
  if (EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, static_cast<int>(kGcmTagBytes), tag.data()) !=
      1) {
    return Status::Internal(OpenSslError("GCM seal: get tag"));
  }
  return Status::Ok();
}

Status AesGcm::Open(ByteSpan nonce, ByteSpan aad, ByteSpan ciphertext,
                    std::span<const std::byte, kGcmTagBytes> tag, MutableByteSpan plaintext) {
  if (nonce.size() != kGcmNonceBytes) return Status::InvalidArgument("GCM nonce must be 12 bytes");
  if (ciphertext.size() != plaintext.size()) {
    return Status::InvalidArgument("GCM plaintext buffer size differs from ciphertext size");
  }
  auto fail = [&](Status s) {
    OPENSSL_cleanse(plaintext.data(), plaintext.size());
    return s;
  };
  EVP_CIPHER_CTX* c = impl_->dec.get();
  if (EVP_DecryptInit_ex(c, nullptr, nullptr, nullptr, U8(nonce)) != 1) {
    return fail(Status::Internal(OpenSslError("GCM open: set nonce")));
  }
  int out_len = 0;
  for (ByteSpan a = aad; !a.empty();) {
    size_t n = std::min(a.size(), kMaxChunk);
    if (EVP_DecryptUpdate(c, nullptr, &out_len, U8(a), static_cast<int>(n)) != 1) {
      return fail(Status::Internal(OpenSslError("GCM open: aad")));
    }
    a = a.subspan(n);
  }
  size_t done = 0;
  while (done < ciphertext.size()) {
    size_t n = std::min(ciphertext.size() - done, kMaxChunk);
    if (EVP_DecryptUpdate(c, U8(plaintext.subspan(done)), &out_len, U8(ciphertext.subspan(done, n)),
                          static_cast<int>(n)) != 1 ||
        static_cast<size_t>(out_len) != n) {
      return fail(Status::Internal(OpenSslError("GCM open: update")));
    }
    done += n;
  }
  // The ctrl takes a non-const pointer but only copies the tag in.
  unsigned char tag_copy[kGcmTagBytes];
  std::memcpy(tag_copy, tag.data(), kGcmTagBytes);
  if (EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, static_cast<int>(kGcmTagBytes), tag_copy) != 1) {
    return fail(Status::Internal(OpenSslError("GCM open: set tag")));
  }
  unsigned char final_block[16];
  if (EVP_DecryptFinal_ex(c, final_block, &out_len) != 1) {
    ERR_clear_error();
    return fail(Status::Corruption("AES-GCM authentication failed"));
  }
  return Status::Ok();
}

// ---------------------------------------------------------------- boxes

Result<std::string> SealBox(ByteSpan key, ByteSpan aad, ByteSpan plaintext) {
  PHI_ASSIGN_OR_RETURN(auto gcm, AesGcm::Create(key));
  if (plaintext.size() > SIZE_MAX - kGcmNonceBytes - kGcmTagBytes) {
    return Status::InvalidArgument("SealBox: plaintext too large");
  }
  std::string box(kGcmNonceBytes + plaintext.size() + kGcmTagBytes, '\0');
  auto out = std::as_writable_bytes(std::span(box.data(), box.size()));
  auto nonce = out.first(kGcmNonceBytes);
  PHI_RETURN_IF_ERROR(RandomBytes(nonce));
  PHI_RETURN_IF_ERROR(gcm->Seal(nonce, aad, plaintext,
                                out.subspan(kGcmNonceBytes, plaintext.size()),
                                out.last<kGcmTagBytes>()));
  return box;
}

namespace {
Status OpenBoxUnchecked(ByteSpan key, ByteSpan aad, ByteSpan box, MutableByteSpan out) {
  PHI_ASSIGN_OR_RETURN(auto gcm, AesGcm::Create(key));
  return gcm->Open(box.first(kGcmNonceBytes), aad,
                   box.subspan(kGcmNonceBytes, box.size() - kGcmNonceBytes - kGcmTagBytes),
                   box.last<kGcmTagBytes>(), out);
}
Status CheckBoxSize(ByteSpan box) {
  if (box.size() < kGcmNonceBytes + kGcmTagBytes) {
    return Status::Corruption("sealed box too short: " + std::to_string(box.size()) + " bytes");
  }
  return Status::Ok();
}
}  // namespace

Status OpenBoxInto(ByteSpan key, ByteSpan aad, ByteSpan box, MutableByteSpan out) {
  PHI_RETURN_IF_ERROR(CheckBoxSize(box));
  if (out.size() != box.size() - kGcmNonceBytes - kGcmTagBytes) {
    return Status::InvalidArgument("OpenBoxInto: output size does not match the box");
  }
  return OpenBoxUnchecked(key, aad, box, out);
}

Result<SecretBytes> OpenBoxSecret(ByteSpan key, ByteSpan aad, ByteSpan box) {
  PHI_RETURN_IF_ERROR(CheckBoxSize(box));
  SecretBytes out(box.size() - kGcmNonceBytes - kGcmTagBytes);
  PHI_RETURN_IF_ERROR(OpenBoxUnchecked(key, aad, box, out.mutable_span()));
  return out;
}

Result<std::string> OpenBox(ByteSpan key, ByteSpan aad, ByteSpan box) {
  PHI_RETURN_IF_ERROR(CheckBoxSize(box));
  std::string out(box.size() - kGcmNonceBytes - kGcmTagBytes, '\0');
  PHI_RETURN_IF_ERROR(
      OpenBoxUnchecked(key, aad, box, std::as_writable_bytes(std::span(out.data(), out.size()))));
  return out;
}

// ---------------------------------------------------------------- HKDF

Status HkdfSha256(ByteSpan ikm, ByteSpan salt, ByteSpan info, MutableByteSpan out) {
  if (out.empty() || out.size() > 255 * kSha256Bytes) {
    return Status::InvalidArgument("HKDF-SHA256 output must be 1..8160 bytes");
  }
  KdfCtxPtr ctx(EVP_KDF_CTX_new(HkdfAlgorithm()));
  if (!ctx) return Status::Internal(OpenSslError("EVP_KDF_CTX_new"));
  char digest[] = "SHA256";
  OSSL_PARAM params[5];
  size_t n = 0;
  params[n++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
  params[n++] = OSSL_PARAM_construct_octet_string(
      OSSL_KDF_PARAM_KEY, const_cast<unsigned char*>(U8OrEmpty(ikm)), ikm.size());
  // An absent salt is, per RFC 5869, HashLen zero bytes: OpenSSL's default.
  if (!salt.empty()) {
    params[n++] = OSSL_PARAM_construct_octet_string(
        OSSL_KDF_PARAM_SALT, const_cast<unsigned char*>(U8(salt)), salt.size());
  }
  if (!info.empty()) {
    params[n++] = OSSL_PARAM_construct_octet_string(
        OSSL_KDF_PARAM_INFO, const_cast<unsigned char*>(U8(info)), info.size());
  }
  params[n] = OSSL_PARAM_construct_end();
  if (EVP_KDF_derive(ctx.get(), U8(out), out.size(), params) != 1) {
    OPENSSL_cleanse(out.data(), out.size());
    return Status::Internal(OpenSslError("HKDF-SHA256 derive"));
  }
  return Status::Ok();
}

Result<SecretBytes> HkdfSha256Key(ByteSpan ikm, std::string_view label) {
  SecretBytes key(kKeyBytes);
  PHI_RETURN_IF_ERROR(HkdfSha256(ikm, {}, AsBytes(label), key.mutable_span()));
  return key;
}

// ---------------------------------------------------------------- HMAC, SHA-256

Digest HmacSha256(ByteSpan key, ByteSpan data) {
  MacCtxPtr ctx = NewHmacCtx(key);
  MacUpdate(ctx.get(), data);
  return MacFinal(ctx.get());
}

struct HmacSha256Stream::Impl {
  MacCtxPtr ctx;
};

HmacSha256Stream::HmacSha256Stream(ByteSpan key) : impl_(std::make_unique<Impl>()) {
  impl_->ctx = NewHmacCtx(key);
}
HmacSha256Stream::~HmacSha256Stream() = default;
void HmacSha256Stream::Update(ByteSpan data) { MacUpdate(impl_->ctx.get(), data); }
Digest HmacSha256Stream::Final() { return MacFinal(impl_->ctx.get()); }

Digest Sha256(ByteSpan data) {
  Digest d{};
  unsigned int len = 0;
  PHI_CHECK(EVP_Digest(U8OrEmpty(data), data.size(), reinterpret_cast<unsigned char*>(d.data()),
                       &len, EVP_sha256(), nullptr) == 1);
  PHI_CHECK(len == d.size());
  return d;
}

// ---------------------------------------------------------------- misc

Status RandomBytes(MutableByteSpan out) {
  while (!out.empty()) {
    size_t n = std::min(out.size(), kMaxChunk);
    if (RAND_bytes(U8(out), static_cast<int>(n)) != 1) {
      return Status::Internal(OpenSslError("RAND_bytes"));
    }
    out = out.subspan(n);
  }
  return Status::Ok();
}

bool ConstantTimeEqual(ByteSpan a, ByteSpan b) {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string ToHex(ByteSpan bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(bytes.size() * 2, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) {
    auto b = static_cast<unsigned char>(bytes[i]);
    out[2 * i] = kDigits[b >> 4];
    out[2 * i + 1] = kDigits[b & 0x0f];
  }
  return out;
}

Status FromHex(std::string_view hex, MutableByteSpan out) {
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  if (hex.size() != out.size() * 2) {
    return Status::InvalidArgument("hex string has " + std::to_string(hex.size()) +
                                   " characters, expected " + std::to_string(out.size() * 2));
  }
  for (size_t i = 0; i < out.size(); ++i) {
    int hi = nibble(hex[2 * i]);
    int lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      OPENSSL_cleanse(out.data(), out.size());
      return Status::InvalidArgument("invalid hex character");  // never echo the input
    }
    out[i] = static_cast<std::byte>((hi << 4) | lo);
  }
  return Status::Ok();
}

}  // namespace phi::crypto
