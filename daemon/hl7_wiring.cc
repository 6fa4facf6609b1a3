#include "daemon/hl7_wiring.h"

namespace phi::daemon {

std::unique_ptr<Hl7Wiring> WireHl7(services::StorageStack& stack, Env& env) {
  return std::make_unique<Hl7Wiring>(stack, env);
}

}  // namespace phi::daemon
