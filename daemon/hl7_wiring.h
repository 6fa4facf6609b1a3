// daemon/hl7_wiring: the HL7 side of the composition root. Builds the HL7
// service and worklist service over the storage stack and the message
// handler the Hl7Server calls (replacing the NotImplementedHandler).
// Thread-safety: the handler and services are thread-safe; Hl7Wiring must
// outlive the Hl7Server that uses handler().
#pragma once

#include <memory>

#include "libphi/hl7/hl7_handler.h"
#include "libphi/services/hl7_service.h"
#include "libphi/services/storage_stack.h"
#include "libphi/services/worklist_service.h"

namespace phi::daemon {

class Hl7Wiring {
 public:
  Hl7Wiring(services::StorageStack& stack, Env& env)
      : service_(stack.vault(), stack.catalog(), stack.keys(), env),
        worklist_(stack.vault(), stack.catalog(), stack.keys()),
        handler_(service_, env) {}
  hl7::MessageHandler& handler() { return handler_; }
  services::Hl7Service& service() { return service_; }
  services::WorklistService& worklist() { return worklist_; }

 private:
  services::Hl7Service service_;
  services::WorklistService worklist_;
  hl7::Hl7MessageHandler handler_;
};

std::unique_ptr<Hl7Wiring> WireHl7(services::StorageStack& stack, Env& env);

}  // namespace phi::daemon
