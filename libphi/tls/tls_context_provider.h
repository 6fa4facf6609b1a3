// phi::tls::TlsContextProvider: owns the server-side TLS configuration of one
// front (DICOM, HL7 or HTTPS): TLS 1.2-1.3, BCP195 (RFC 9325) cipher suites,
// server chain + key, client CA bundle, CRLs for the whole chain, client
// certificate policy. No renegotiation, no compression, no session tickets.
//
// Current() hands out a shared snapshot; each new connection takes one and
// keeps it for its lifetime, so Reload() (SIGHUP) never disturbs established
// connections. Reload builds a complete new context first and swaps only on
// success; on any error the old context stays and the error is returned.
//
// Also HandshakeFailureReason(): a short, PHI-free reason for metrics and logs.
// Thread-safety: Current() and Reload() may be called from any thread; the
// snapshot pointer is guarded by mu_.
#pragma once

#include <boost/asio/ssl/context.hpp>
#include <boost/system/error_code.hpp>
#include <memory>
#include <mutex>
#include <string_view>

#include "libphi/config/config.h"
#include "libphi/util/env.h"
#include "libphi/util/status.h"

namespace phi::tls {

using SslContextPtr = std::shared_ptr<boost::asio::ssl::context>;

class TlsContextProvider {
 public:
  // Reads every file through `env` (which must outlive the provider). Fails with
  // a Status naming the file and the reason (missing, unparsable, key mismatch).
  // require_client_cert: SSL_VERIFY_FAIL_IF_NO_PEER_CERT; otherwise a client
  // certificate is requested and verified when presented.
  static Result<std::unique_ptr<TlsContextProvider>> Create(const config::TlsConfig& cfg,
                                                            bool require_client_cert, Env& env);

  TlsContextProvider(const TlsContextProvider&) = delete;
  TlsContextProvider& operator=(const TlsContextProvider&) = delete;

  SslContextPtr Current() const;
  Status Reload(const config::TlsConfig& cfg);
  bool require_client_cert() const { return require_client_cert_; }
  uint64_t generation() const;  // 1 after Create, +1 per successful Reload

 private:
  TlsContextProvider(Env& env, bool require_client_cert)
      : env_(env), require_client_cert_(require_client_cert) {}

  Env& env_;
  const bool require_client_cert_;
  mutable std::mutex mu_;
  SslContextPtr current_;    // guarded by mu_
  uint64_t generation_ = 0;  // guarded by mu_
};

// Builds one context (what Create/Reload use); exposed for --check-config.
Result<SslContextPtr> BuildServerContext(const config::TlsConfig& cfg, bool require_client_cert,
                                         Env& env);

// A short reason for a failed server handshake: "no certificate",
// "certificate expired", "certificate revoked", "unknown CA", "protocol version",
// "no shared cipher", "bad certificate", "plain text on TLS port", "timeout",
// "peer closed", "handshake error". `ssl` may be null.
std::string_view HandshakeFailureReason(SSL* ssl, const boost::system::error_code& ec);

}  // namespace phi::tls
