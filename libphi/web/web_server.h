// phi::web::WebServer: the HTTPS viewer API front (phi::Server) on Boost.Beast
// over TLS, on the shared AsioRunner. Client certificate -> identity -> role
// (web.roles); no role -> 403 for every request. Requests go through a Router
// (routes added by the caller; /healthz built in); unknown paths get 404/405,
// known-but-not-yet DICOMweb prefixes 501; every error body is RFC 9457
// problem+json without request data. Limits: max_connections (beyond it: 503
// and close), header/body/idle timeouts, max_header_bytes (431),
// max_body_bytes (413). Responses with a ChunkSource are streamed
// from its bounded buffers (chunked, or with the handler's Content-Length). Request logs carry the
// route pattern, never the raw path or query string (they can hold PHI). Thread-safety: the
// phi::Server contract; the audit hook is called concurrently from the io threads.
#pragma once

#include <functional>
#include <memory>

#include "libphi/config/config.h"
#include "libphi/config/server.h"
#include "libphi/tls/asio_runner.h"
#include "libphi/tls/tls_context_provider.h"
#include "libphi/web/router.h"
#include "libphi/web/web_metrics.h"

namespace phi::web {

// One handled request, for the audit trail.
struct AccessEvent {
  SystemTime time;
  uint64_t connection_id = 0;
  std::string peer_address;
  std::string subject;               // client certificate subject (RFC 2253)
  std::optional<config::Role> role;  // none: unmapped subject
  std::string method;
  std::string route;  // matched pattern, or "" when none matched
  int status = 0;
  double seconds = 0;  // from the complete request to the response header
};
using AccessHook = std::function<void(const AccessEvent&)>;

class WebServer : public Server {
 public:
  // Adds GET /healthz to `router`. tls, runner and env must outlive the server.
  static Result<std::unique_ptr<WebServer>> Create(const config::WebConfig& cfg,
                                                   tls::TlsContextProvider& tls,
                                                   tls::AsioRunner& runner, Router router, Env& env,
                                                   AccessHook audit = nullptr,
                                                   std::shared_ptr<WebMetrics> metrics = nullptr);
  ~WebServer() override;

  Status Start() override;
  // Reloads cfg.tls into the provider and swaps the role map.
  Status Reload(const config::Config& cfg) override;
  void StopAccepting() override;
  void Drain(MonotonicTime deadline) override;
  std::vector<ListenerStatus> Listeners() const override;

  uint16_t port() const;  // bound port after Start(), 0 before

  struct Impl;

 private:
  explicit WebServer(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

}  // namespace phi::web
