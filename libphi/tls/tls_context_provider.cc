#include "libphi/tls/tls_context_provider.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>

namespace phi::tls {
namespace {

constexpr size_t kMaxPemBytes = 4 * 1024 * 1024;
constexpr int kVerifyDepth = 6;

// TLS 1.2 suites of RFC 9325 section 4.2 (ECDHE + AEAD), strongest first.
constexpr const char* kBcp195Ciphers =
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256";
// DICOM PS3.15 BCP195 non-downgrading: AES-GCM with ECDHE only.
constexpr const char* kBcp195NdCiphers =
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256";
// Extended: adds finite-field DHE with AES-GCM for older peers.
constexpr const char* kBcp195ExtendedCiphers =
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "DHE-RSA-AES256-GCM-SHA384:DHE-RSA-AES128-GCM-SHA256";
constexpr const char* kTls13Suites =
    "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256";
constexpr const char* kGroups = "X25519:P-256:P-384";

using BioPtr = std::unique_ptr<BIO, decltype(&BIO_free)>;

std::string OpensslError() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  return buf;
}

Result<std::string> ReadPem(Env& env, const Path& p, std::string_view what) {
  if (p.empty()) return Status::InvalidArgument(std::string(what) + ": no file configured");
  auto r = env.ReadSmallFile(p, kMaxPemBytes);
  if (!r.ok()) return r.status().WithContext(std::string(what));
  return std::move(r).value();
}

BioPtr MemBio(const std::string& s) {
  return BioPtr(BIO_new_mem_buf(s.data(), static_cast<int>(s.size())), &BIO_free);
}

Status LoadChainAndKey(SSL_CTX* ctx, const config::TlsConfig& cfg, Env& env) {
  PHI_ASSIGN_OR_RETURN(std::string chain_pem, ReadPem(env, cfg.certificate, "certificate"));
  BioPtr bio = MemBio(chain_pem);
  X509* leaf = PEM_read_bio_X509_AUX(bio.get(), nullptr, nullptr, nullptr);
  if (leaf == nullptr) {
    return Status::InvalidArgument("certificate " + cfg.certificate.string() +
                                   ": no PEM certificate: " + OpensslError());
  }
  int ok = SSL_CTX_use_certificate(ctx, leaf);
  X509_free(leaf);
  if (ok != 1) return Status::InvalidArgument("certificate: " + OpensslError());
  SSL_CTX_clear_chain_certs(ctx);
  for (;;) {
    X509* extra = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr);
    if (extra == nullptr) break;
    if (SSL_CTX_add0_chain_cert(ctx, extra) != 1) {
      X509_free(extra);
      return Status::InvalidArgument("certificate chain: " + OpensslError());
    }
  }
  ERR_clear_error();  // the loop ends on "no start line"

  std::string key_pem;
  { PHI_ASSIGN_OR_RETURN(key_pem, ReadPem(env, cfg.private_key, "private key")); }
  BioPtr kbio = MemBio(key_pem);
  EVP_PKEY* key = PEM_read_bio_PrivateKey(kbio.get(), nullptr, nullptr, nullptr);
  OPENSSL_cleanse(key_pem.data(), key_pem.size());
  if (key == nullptr) {
    return Status::InvalidArgument(
        "private key " + cfg.private_key.string() +
        ": unreadable (encrypted keys are not supported): " + OpensslError());
  }
  ok = SSL_CTX_use_PrivateKey(ctx, key);
  EVP_PKEY_free(key);
  if (ok != 1) {
    return Status::InvalidArgument("private key " + cfg.private_key.string() +
                                   " does not match certificate " + cfg.certificate.string() +
                                   " or is unusable: " + OpensslError());
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    return Status::InvalidArgument("private key " + cfg.private_key.string() +
                                   " does not match certificate " + cfg.certificate.string());
  }
  return Status::Ok();
}

Status LoadCaAndCrls(SSL_CTX* ctx, const config::TlsConfig& cfg, Env& env) {
  PHI_ASSIGN_OR_RETURN(std::string ca_pem, ReadPem(env, cfg.ca_bundle, "ca_bundle"));
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  STACK_OF(X509_NAME)* names = sk_X509_NAME_new_null();
  if (names == nullptr) return Status::Internal("out of memory");
  BioPtr bio = MemBio(ca_pem);
  int count = 0;
  for (;;) {
    X509* ca = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr);
    if (ca == nullptr) break;
    if (X509_STORE_add_cert(store, ca) != 1) {
      X509_free(ca);
      sk_X509_NAME_pop_free(names, X509_NAME_free);
      return Status::InvalidArgument("ca_bundle: " + OpensslError());
    }
    X509_NAME* dup = X509_NAME_dup(X509_get_subject_name(ca));
    if (dup != nullptr) sk_X509_NAME_push(names, dup);
    X509_free(ca);
    ++count;
  }
  ERR_clear_error();
  if (count == 0) {
    sk_X509_NAME_pop_free(names, X509_NAME_free);
    return Status::InvalidArgument("ca_bundle " + cfg.ca_bundle.string() + ": no PEM certificate");
  }
  SSL_CTX_set_client_CA_list(ctx, names);  // takes ownership

  for (const auto& path : cfg.crls) {
    PHI_ASSIGN_OR_RETURN(std::string crl_pem, ReadPem(env, path, "crl"));
    BioPtr cbio = MemBio(crl_pem);
    int n = 0;
    for (;;) {
      X509_CRL* crl = PEM_read_bio_X509_CRL(cbio.get(), nullptr, nullptr, nullptr);
      if (crl == nullptr) break;
      int ok = X509_STORE_add_crl(store, crl);
      X509_CRL_free(crl);
      if (ok != 1) return Status::InvalidArgument("crl " + path.string() + ": " + OpensslError());
      ++n;
    }
    ERR_clear_error();
    if (n == 0) return Status::InvalidArgument("crl " + path.string() + ": no PEM CRL");
  }
  if (!cfg.crls.empty()) {
    X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
  }
  return Status::Ok();
}

}  // namespace

Result<SslContextPtr> BuildServerContext(const config::TlsConfig& cfg, bool require_client_cert,
                                         Env& env) {
  namespace ssl = boost::asio::ssl;
  ERR_clear_error();
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  SSL_CTX* raw = ctx->native_handle();
  if (SSL_CTX_set_min_proto_version(raw, TLS1_2_VERSION) != 1 ||
      SSL_CTX_set_max_proto_version(raw, TLS1_3_VERSION) != 1) {
    return Status::Internal("TLS versions: " + OpensslError());
  }
  SSL_CTX_set_options(raw, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET |
                               SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_SINGLE_DH_USE |
                               SSL_OP_NO_SSLv2 | SSL_OP_NO_SSLv3 | SSL_OP_NO_TLSv1 |
                               SSL_OP_NO_TLSv1_1);
  SSL_CTX_clear_options(raw,
                        SSL_OP_LEGACY_SERVER_CONNECT | SSL_OP_ALLOW_UNSAFE_LEGACY_RENEGOTIATION);
  // No stateful session cache either: every connection does a full handshake,
  // so a reload (new CA/CRL) applies to every new connection.
  SSL_CTX_set_session_cache_mode(raw, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(raw, 0);

  const char* ciphers = kBcp195Ciphers;
  switch (cfg.profile) {
    case config::TlsProfile::kBcp195:
      break;
    case config::TlsProfile::kBcp195Nd:
      ciphers = kBcp195NdCiphers;
      break;
    case config::TlsProfile::kBcp195Extended:
      ciphers = kBcp195ExtendedCiphers;
      SSL_CTX_set_dh_auto(raw, 1);
      break;
  }
  if (SSL_CTX_set_cipher_list(raw, ciphers) != 1 ||
      SSL_CTX_set_ciphersuites(raw, kTls13Suites) != 1) {
    return Status::Internal("cipher suites: " + OpensslError());
  }
  if (SSL_CTX_set1_groups_list(raw, kGroups) != 1) {
    return Status::Internal("groups: " + OpensslError());
  }

  PHI_RETURN_IF_ERROR(LoadChainAndKey(raw, cfg, env));
  PHI_RETURN_IF_ERROR(LoadCaAndCrls(raw, cfg, env));

  int mode = SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE;
  if (require_client_cert) mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
  SSL_CTX_set_verify(raw, mode, nullptr);
  SSL_CTX_set_verify_depth(raw, kVerifyDepth);
  // Needed by OpenSSL when client certificates are requested and sessions could resume.
  static const unsigned char kSidCtx[] = "phigate";
  SSL_CTX_set_session_id_context(raw, kSidCtx, sizeof(kSidCtx) - 1);
  return ctx;
}

Result<std::unique_ptr<TlsContextProvider>> TlsContextProvider::Create(const config::TlsConfig& cfg,
                                                                       bool require_client_cert,
                                                                       Env& env) {
  std::unique_ptr<TlsContextProvider> p(new TlsContextProvider(env, require_client_cert));
  PHI_RETURN_IF_ERROR(p->Reload(cfg));
  return p;
}

SslContextPtr TlsContextProvider::Current() const {
  std::lock_guard<std::mutex> l(mu_);
  return current_;
}

uint64_t TlsContextProvider::generation() const {
  std::lock_guard<std::mutex> l(mu_);
  return generation_;
}

Status TlsContextProvider::Reload(const config::TlsConfig& cfg) {
  auto built = BuildServerContext(cfg, require_client_cert_, env_);
  if (!built.ok()) return built.status();
  std::lock_guard<std::mutex> l(mu_);
  current_ = std::move(built).value();
  ++generation_;
  return Status::Ok();
}

std::string_view HandshakeFailureReason(SSL* ssl, const boost::system::error_code& ec) {
  if (ec == boost::asio::error::operation_aborted || ec == boost::asio::error::timed_out) {
    return "timeout";
  }
  if (ssl != nullptr) {
    long v = SSL_get_verify_result(ssl);
    switch (v) {
      case X509_V_OK:
        break;
      case X509_V_ERR_CERT_HAS_EXPIRED:
      case X509_V_ERR_CRL_HAS_EXPIRED:
        return v == X509_V_ERR_CERT_HAS_EXPIRED ? "certificate expired" : "crl expired";
      case X509_V_ERR_CERT_NOT_YET_VALID:
        return "certificate not yet valid";
      case X509_V_ERR_CERT_REVOKED:
        return "certificate revoked";
      case X509_V_ERR_UNABLE_TO_GET_CRL:
        return "crl unavailable";
      case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
      case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
      case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
      case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
      case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
        return "unknown CA";
      default:
        return "bad certificate";
    }
  }
  if (ec.category() == boost::asio::error::get_ssl_category()) {
    switch (ERR_GET_REASON(static_cast<unsigned long>(ec.value()))) {
      case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
        return "no certificate";
      case SSL_R_UNSUPPORTED_PROTOCOL:
      case SSL_R_WRONG_VERSION_NUMBER:
      case SSL_R_VERSION_TOO_LOW:
      case SSL_R_VERSION_TOO_HIGH:
      case SSL_R_UNKNOWN_PROTOCOL:
        return "protocol version";
      case SSL_R_NO_SHARED_CIPHER:
      case SSL_R_NO_SHARED_GROUPS:
        return "no shared cipher";
      case SSL_R_HTTP_REQUEST:
        return "plain text on TLS port";
      case SSL_R_CERTIFICATE_VERIFY_FAILED:
        return "bad certificate";
      default:
        return "handshake error";
    }
  }
  if (ec == boost::asio::ssl::error::stream_truncated || ec == boost::asio::error::eof ||
      ec == boost::asio::error::connection_reset) {
    return "peer closed";
  }
  return "handshake error";
}

}  // namespace phi::tls
