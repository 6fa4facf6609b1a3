#include "libphi/audit/cms_signer.h"

// pem.h first: cms.h declares PEM_{read,write}_bio_CMS only when pem.h is in.
#include <openssl/pem.h>
// (separate block so that include sorting keeps the order)
#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/x509.h>

#include <memory>

namespace phi::audit {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct CmsFree {
  void operator()(CMS_ContentInfo* c) const { CMS_ContentInfo_free(c); }
};
struct StackFree {
  void operator()(STACK_OF(X509) * s) const { sk_X509_pop_free(s, X509_free); }
};
struct StoreFree {
  void operator()(X509_STORE* s) const { X509_STORE_free(s); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;

BioPtr MemBio(std::string_view s) {
  return BioPtr(BIO_new_mem_buf(s.data(), static_cast<int>(s.size())));
}

// Every certificate in a PEM text.
std::unique_ptr<STACK_OF(X509), StackFree> ReadCerts(std::string_view pem) {
  std::unique_ptr<STACK_OF(X509), StackFree> out(sk_X509_new_null());
  BioPtr bio = MemBio(pem);
  if (!out || !bio) return nullptr;
  while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    if (sk_X509_push(out.get(), x) == 0) {
      X509_free(x);
      return nullptr;
    }
  }
  ERR_clear_error();  // the loop ends on "no start line"
  return out;
}

}  // namespace

Result<std::string> SignDetachedCmsPem(std::string_view content, std::string_view cert_pem,
                                       std::string_view key_pem) {
  if (content.size() > (1u << 24)) return Status::InvalidArgument("cms: content too large");
  auto certs = ReadCerts(cert_pem);
  if (!certs || sk_X509_num(certs.get()) == 0) {
    return Status::InvalidArgument("cms: no certificate in the signer PEM");
  }
  std::unique_ptr<X509, X509Free> signer(sk_X509_shift(certs.get()));
  BioPtr kbio = MemBio(key_pem);
  // A passphrase callback that refuses: an encrypted key is an error, never a prompt.
  std::unique_ptr<EVP_PKEY, PkeyFree> key(PEM_read_bio_PrivateKey(
      kbio.get(), nullptr, [](char*, int, int, void*) { return 0; }, nullptr));
  if (!key) {
    ERR_clear_error();
    return Status::InvalidArgument("cms: the private key does not parse (or is encrypted)");
  }
  if (X509_check_private_key(signer.get(), key.get()) != 1) {
    ERR_clear_error();
    return Status::InvalidArgument("cms: the private key does not match the certificate");
  }
  BioPtr in = MemBio(content);
  const unsigned flags = CMS_DETACHED | CMS_BINARY;
  std::unique_ptr<CMS_ContentInfo, CmsFree> cms(
      CMS_sign(signer.get(), key.get(), sk_X509_num(certs.get()) > 0 ? certs.get() : nullptr,
               in.get(), flags));
  if (!cms) {
    ERR_clear_error();
    return Status::Internal("cms: signing failed");
  }
  BioPtr out(BIO_new(BIO_s_mem()));
  if (!out || PEM_write_bio_CMS(out.get(), cms.get()) != 1) {
    ERR_clear_error();
    return Status::Internal("cms: PEM encoding failed");
  }
  char* data = nullptr;
  long n = BIO_get_mem_data(out.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

Status VerifyDetachedCmsPem(std::string_view content, std::string_view cms_pem,
                            std::string_view ca_pem) {
  BioPtr cbio = MemBio(cms_pem);
  std::unique_ptr<CMS_ContentInfo, CmsFree> cms(
      PEM_read_bio_CMS(cbio.get(), nullptr, nullptr, nullptr));
  if (!cms) {
    ERR_clear_error();
    return Status::Corruption("cms: signature does not parse");
  }
  auto cas = ReadCerts(ca_pem);
  std::unique_ptr<X509_STORE, StoreFree> store(X509_STORE_new());
  if (!cas || !store) return Status::Internal("cms: out of memory");
  for (int i = 0; i < sk_X509_num(cas.get()); ++i) {
    X509_STORE_add_cert(store.get(), sk_X509_value(cas.get(), i));
  }
  X509_STORE_set_purpose(store.get(), X509_PURPOSE_ANY);
  BioPtr data = MemBio(content);
  if (CMS_verify(cms.get(), nullptr, store.get(), data.get(), nullptr, CMS_BINARY) != 1) {
    ERR_clear_error();
    return Status::Corruption("cms: signature does not verify");
  }
  return Status::Ok();
}

}  // namespace phi::audit
