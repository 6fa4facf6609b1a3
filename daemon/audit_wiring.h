// daemon/audit_wiring: the admin commands for auditors and disposal.
//   audit export [--since T] [--until T] [--format jsonl|atna] [--after SEQ] [--limit N]
//                                 read-only; a page of lines (phigatectl pages on)
//   audit prune [--before DATE]   destructive; deletes audit records older than
//                                 audit.retention_years (and DATE), leaving a signed anchor
//   erasure-certificate --seq SEQ read-only; the erasure certificate JSON of audit
//                                 record SEQ and a detached CMS signature (PEM) made
//                                 with the server's TLS key
//   hold --study UID [--reason T] / release --study UID [--reason T]
//                                 legal hold on / off (blocks every erasure)
//   retention plan [--limit N]    read-only dry run: the studies due for erasure now
//                                 (study_pk, StudyInstanceUID, year, modalities, keep)
//   verify [--study UID]          read-only: decrypt every object (GCM tags) and check
//                                 the catalog against it; problems listed, nothing changed
//   retention run                 destructive: erase what is due now (as the scheduler)
//   verify --progress             the same as a background job: returns {"job": N};
//   verify status --job N         its progress (checked/total/bytes) and, once done,
//                                 its result (phigatectl polls this for its progress bar)
//   backup --dir DIR              starts an online backup job (libphi/backup): {"job": N}
//   backup status --job N         its progress and, once done, its report or its error
// Returns the AuditWiring: the retention scheduler (started when
// retention.enabled), the background scrub (integrity.scrub) and the jobs.
// Keep it alive while the stack is, destroy it before; Stop() at SIGTERM
// (jobs and the scrub stop promptly).
// Every command is itself audited by what it changes (prune, hold) or is
// read-only. No output carries PHI: audit records never do, certificates hold
// internal ids and counts.
// Thread-safety: handlers are thread-safe (the catalog, vault and files are).
#pragma once

#include <memory>
#include <nlohmann/json.hpp>

#include "libphi/admin/admin_server.h"
#include "libphi/audit/syslog_forwarder.h"
#include "libphi/config/config.h"
#include "libphi/services/retention.h"
#include "libphi/services/storage_stack.h"
#include "libphi/util/env.h"

namespace phi::daemon {

class AuditWiring {
 public:
  virtual ~AuditWiring() = default;
  // Stops the scrub and cancels running jobs; returns when they have stopped.
  virtual void Stop() = 0;
  // {"scrub": {...}, "jobs": [...]} for `phigatectl status`.
  virtual nlohmann::json IntegrityStatus() const = 0;
};

[[nodiscard]] std::unique_ptr<AuditWiring> RegisterAuditCommands(admin::AdminServer& admin,
                                                                 services::StorageStack& stack,
                                                                 const config::Config& cfg,
                                                                 Env& env);

// Live audit forwarding (audit.forward, libphi/audit/syslog_forwarder.h): the
// forwarder over the catalog, its state file <storage.root>/audit-forward.state,
// started (idle while disabled, so that SIGHUP can enable it). Destroy it
// before the stack. Fails on a malformed state file.
[[nodiscard]] Result<std::unique_ptr<audit::SyslogForwarder>> StartAuditForwarding(
    services::StorageStack& stack, const config::Config& cfg, Env& env);

// The "audit_forward" object of `phigatectl status`.
nlohmann::json AuditForwardStatusJson(audit::SyslogForwarder& forwarder);

}  // namespace phi::daemon
