#include "daemon/web_wiring.h"

#include "libphi/web/dicomweb.h"

namespace phi::daemon {

Result<std::unique_ptr<web::WebServer>> BuildWebServer(const config::Config& cfg,
                                                       tls::TlsContextProvider& tls,
                                                       tls::AsioRunner& runner,
                                                       services::StorageStack& stack, Env& env) {
  auto metrics = std::make_shared<web::WebMetrics>();
  web::Router router;
  web::DicomwebDeps deps{
      stack.query(), stack.ingest(), stack.erasure(), stack.catalog(), stack.vault(), env, metrics};
  web::Dicomweb::AddRoutes(router, deps, web::DicomwebOptions{});
  // Refusals are audited here (the handlers audit what they serve).
  index::Catalog* catalog = &stack.catalog();
  web::AccessHook hook = [catalog](const web::AccessEvent& e) {
    if (e.status != 401 && e.status != 403) return;
    audit::AuditEvent a;
    a.actor = "web:" + e.subject;
    a.action = e.role ? "access" : "login_failure";
    a.object = "route:" + (e.route.empty() ? std::string("-") : e.route);
    a.outcome = "denied";
    a.peer = e.peer_address;
    (void)catalog->Write([&](index::WriteTxn& t) { return t.AppendAudit(a).status(); });
  };
  return web::WebServer::Create(cfg.web, tls, runner, std::move(router), env, std::move(hook),
                                std::move(metrics));
}

}  // namespace phi::daemon
