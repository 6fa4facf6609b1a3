// phi::services retention: what may be deleted, and when (DESIGN.md, Audit
// and Erasure contracts).
//
//  - Audit retention: PruneAudit deletes the oldest audit records, never one
//    younger than the configured retention (audit.retention_years, default 6),
//    and leaves a signed anchor (audit::EncodeAnchor) so the rest still
//    verifies. It refuses on a chain that does not verify (pruning must not
//    launder a tamper).
//  - Legal hold: SetLegalHold flags a study so that no erasure (admin,
//    DICOMweb, retention) touches it; every change is audited.
//
// Thread-safety: free functions over thread-safe services; callable from any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "libphi/audit/audit_log.h"
#include "libphi/index/catalog.h"
#include "libphi/util/env.h"
#include "libphi/vault/key_vault.h"

namespace phi::services {

// `now` minus `years` calendar years (UTC; Feb 29 becomes Feb 28), in
// microseconds since the epoch.
int64_t YearsBeforeUs(SystemTime now, uint32_t years);

struct AuditPruneReport {
  int64_t pruned = 0;       // records deleted
  int64_t through_seq = 0;  // the anchor: records <= this are gone (0: none ever)
  int64_t cutoff_us = 0;    // only records older than this were eligible
  int64_t audit_seq = 0;    // seq of the "audit_prune" record describing this run
};

// Deletes the longest prefix of the chain whose records are all older than
// the cutoff = min(before_us, now - retention_years). PermissionDenied if the
// chain does not verify or retention_years is 0 (keep forever); a run with
// nothing eligible deletes nothing (and is still audited).
Result<AuditPruneReport> PruneAudit(index::Catalog& catalog, const audit::MacFn& mac,
                                    SystemTime now, uint32_t retention_years,
                                    std::optional<int64_t> before_us, const std::string& actor);

// Sets or clears the legal hold of the study with that StudyInstanceUID.
// NotFound if unknown. Audited ("legal_hold", object study:<pk>, detail
// "hold"/"release" and the reason). Returns the study_pk.
Result<int64_t> SetLegalHold(vault::KeyVault& vault, index::Catalog& catalog,
                             const std::string& study_instance_uid, bool hold,
                             const std::string& actor, const std::string& reason);

}  // namespace phi::services
