#include "libphi/tls/peer_identity.h"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include <memory>

namespace phi::tls {
namespace {

std::string NameToRfc2253(const X509_NAME* name) {
  if (name == nullptr) return {};
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), &BIO_free);
  if (!bio) return {};
  if (X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253) < 0) return {};
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return n > 0 ? std::string(data, static_cast<size_t>(n)) : std::string();
}

std::string Asn1ToUtf8(const ASN1_STRING* s) {
  if (s == nullptr) return {};
  unsigned char* out = nullptr;
  int n = ASN1_STRING_to_UTF8(&out, s);
  if (n < 0) return {};
  std::string r(reinterpret_cast<char*>(out), static_cast<size_t>(n));
  OPENSSL_free(out);
  return r;
}

std::vector<std::string> Entries(const X509_NAME* name, int nid) {
  std::vector<std::string> r;
  for (int i = X509_NAME_get_index_by_NID(name, nid, -1); i >= 0;
       i = X509_NAME_get_index_by_NID(name, nid, i)) {
    r.push_back(Asn1ToUtf8(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i))));
  }
  return r;
}

std::string Hex(const unsigned char* p, size_t n, bool upper) {
  static const char* kLower = "0123456789abcdef";
  static const char* kUpper = "0123456789ABCDEF";
  const char* digits = upper ? kUpper : kLower;
  std::string r;
  r.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    r.push_back(digits[p[i] >> 4]);
    r.push_back(digits[p[i] & 0xf]);
  }
  return r;
}

}  // namespace

Result<PeerIdentity> IdentityFromCertificate(X509* cert) {
  if (cert == nullptr) return Status::InvalidArgument("no certificate");
  PeerIdentity id;
  const X509_NAME* subject = X509_get_subject_name(cert);
  id.subject = NameToRfc2253(subject);
  id.issuer = NameToRfc2253(X509_get_issuer_name(cert));
  auto cn = Entries(subject, NID_commonName);
  if (!cn.empty()) id.common_name = cn.front();
  auto o = Entries(subject, NID_organizationName);
  if (!o.empty()) id.organization = o.front();
  id.org_units = Entries(subject, NID_organizationalUnitName);

  auto* sans =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (sans != nullptr) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      const GENERAL_NAME* gn = sk_GENERAL_NAME_value(sans, i);
      switch (gn->type) {
        case GEN_DNS:
          id.san_dns.push_back(Asn1ToUtf8(gn->d.dNSName));
          break;
        case GEN_EMAIL:
          id.san_email.push_back(Asn1ToUtf8(gn->d.rfc822Name));
          break;
        case GEN_URI:
          id.san_uri.push_back(Asn1ToUtf8(gn->d.uniformResourceIdentifier));
          break;
        default:
          break;
      }
    }
    GENERAL_NAMES_free(sans);
  }

  const ASN1_INTEGER* serial = X509_get0_serialNumber(cert);
  if (serial != nullptr) {
    id.serial = Hex(ASN1_STRING_get0_data(serial), static_cast<size_t>(ASN1_STRING_length(serial)),
                    /*upper=*/true);
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  if (X509_digest(cert, EVP_sha256(), md, &md_len) != 1) {
    return Status::Internal("X509_digest failed");
  }
  id.sha256_fingerprint = Hex(md, md_len, /*upper=*/false);
  return id;
}

Result<PeerIdentity> IdentityFromSsl(SSL* ssl) {
  if (ssl == nullptr) return Status::InvalidArgument("no TLS session");
  X509* cert = SSL_get0_peer_certificate(ssl);
  if (cert == nullptr) return Status::Unauthenticated("peer sent no certificate");
  if (SSL_get_verify_result(ssl) != X509_V_OK) {
    return Status::Unauthenticated("peer certificate did not verify");
  }
  return IdentityFromCertificate(cert);
}

std::optional<config::Role> MapRole(const PeerIdentity& id,
                                    const std::vector<config::RoleMapping>& roles) {
  for (const auto& m : roles) {
    if (!m.subject.empty()) {
      if (m.subject == id.subject) return m.role;
      continue;
    }
    if (m.organization.empty()) continue;
    if (m.organization != id.organization) continue;
    if (!m.org_unit.empty()) {
      bool found = false;
      for (const auto& ou : id.org_units) found = found || ou == m.org_unit;
      if (!found) continue;
    }
    return m.role;
  }
  return std::nullopt;
}

}  // namespace phi::tls
