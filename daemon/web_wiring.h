// The HTTPS viewer API's composition: DICOMweb routes on the storage stack's
// services, shared metrics, and the access hook that audits refused requests
// (unmapped certificate subjects, role denials). Owned by daemon/.
#pragma once

#include <memory>

#include "libphi/config/config.h"
#include "libphi/services/storage_stack.h"
#include "libphi/tls/asio_runner.h"
#include "libphi/tls/tls_context_provider.h"
#include "libphi/web/web_server.h"

namespace phi::daemon {

// REQUIRES: tls, runner, stack and env outlive the server.
Result<std::unique_ptr<web::WebServer>> BuildWebServer(const config::Config& cfg,
                                                       tls::TlsContextProvider& tls,
                                                       tls::AsioRunner& runner,
                                                       services::StorageStack& stack, Env& env);

}  // namespace phi::daemon
