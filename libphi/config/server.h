// phi::Server: what the daemon needs from every network front (DICOM, HL7,
// HTTPS, admin socket): start (bind), reload, stop accepting, drain, report.
// Implementations live in the edge modules; only daemon/ drives them.
// Thread-safety: Start/Reload/Stop/Drain are called from the daemon's main
// thread only; Listeners() may be called from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "libphi/config/config.h"
#include "libphi/util/env.h"
#include "libphi/util/status.h"

namespace phi {

struct ListenerStatus {
  std::string name;     // "dicom-tls", "dicom", "hl7-tls", "hl7", "https", "admin"
  std::string address;  // "0.0.0.0:2762" or a socket path
  bool tls = false;
  std::string state;  // "listening", "disabled", "stopped", "failed"
  uint64_t open_connections = 0;
  uint64_t accepted_total = 0;
  uint64_t refused_total = 0;
};

class Server {
 public:
  virtual ~Server() = default;
  // Binds every enabled listener; returns when bound, or a Status naming the
  // address and the reason (e.g. "bind 0.0.0.0:2762: Address already in use").
  virtual Status Start() = 0;
  // Applies the reloadable parts of `cfg` (certificates, CRLs, allow-lists,
  // role maps) to new connections; on error keeps the old ones and returns why.
  virtual Status Reload(const config::Config& cfg) = 0;
  // Stops accepting new connections; open ones continue.
  virtual void StopAccepting() = 0;
  // Waits until open connections finish or `deadline`, then closes the rest.
  virtual void Drain(MonotonicTime deadline) = 0;
  virtual std::vector<ListenerStatus> Listeners() const = 0;
};

}  // namespace phi
