#include "libphi/services/retention.h"

#include <chrono>
#include <ctime>

#include "libphi/util/log.h"

namespace phi::services {

int64_t YearsBeforeUs(SystemTime now, uint32_t years) {
  const int64_t now_us =
      std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count();
  int64_t secs = now_us / 1000000;
  const int64_t frac = now_us % 1000000;
  std::time_t t = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  tm.tm_year -= static_cast<int>(years);
  if (tm.tm_mon == 1 && tm.tm_mday == 29) {
    const int y = tm.tm_year + 1900;
    const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (!leap) tm.tm_mday = 28;
  }
  return static_cast<int64_t>(timegm(&tm)) * 1000000 + frac;
}

Result<AuditPruneReport> PruneAudit(index::Catalog& catalog, const audit::MacFn& mac,
                                    SystemTime now, uint32_t retention_years,
                                    std::optional<int64_t> before_us, const std::string& actor) {
  if (retention_years == 0) {
    return Status::PermissionDenied("audit.retention_years is 0: audit records are kept forever");
  }
  PHI_ASSIGN_OR_RETURN(audit::VerifyReport v, audit::Verify(catalog, mac));
  if (!v.ok) {
    return Status::PermissionDenied(
        "the audit chain does not verify (broken at seq " + std::to_string(v.broken_seq) + ", " +
        std::string(audit::BreakReasonName(v.reason)) + "); nothing pruned");
  }
  AuditPruneReport rep;
  rep.cutoff_us = YearsBeforeUs(now, retention_years);
  if (before_us && *before_us < rep.cutoff_us) rep.cutoff_us = *before_us;
  rep.through_seq = v.anchor_seq;

  // The longest prefix (after the current anchor) older than the cutoff.
  audit::ChainHead last{v.anchor_seq, {}};
  bool found = false;
  int64_t after = v.anchor_seq;
  for (bool done = false; !done;) {
    constexpr size_t kPage = 512;
    PHI_ASSIGN_OR_RETURN(std::vector<audit::AuditRecord> rows, catalog.ReadAudit(after, kPage));
    for (const audit::AuditRecord& r : rows) {
      if (r.time_us >= rep.cutoff_us) {
        done = true;
        break;
      }
      last.seq = r.seq;
      last.hash = audit::RecordHash(r);
      found = true;
    }
    if (rows.size() < kPage) break;
    after = rows.back().seq;
  }
  const std::string anchor = found ? audit::EncodeAnchor(last, mac) : std::string();
  Status st = catalog.Write([&](index::WriteTxn& txn) -> Status {
    if (found) {
      PHI_ASSIGN_OR_RETURN(rep.pruned, txn.PruneAudit(last.seq, rep.cutoff_us, anchor));
      rep.through_seq = last.seq;
    }
    audit::AuditEvent ev;
    ev.actor = actor;
    ev.action = "audit_prune";
    ev.object = "audit:" + std::to_string(v.anchor_seq + 1) + "-" + std::to_string(rep.through_seq);
    ev.outcome = "ok";
    ev.detail = "pruned " + std::to_string(rep.pruned) + " records older than " +
                std::to_string(rep.cutoff_us / 1000000) + " (unix seconds)";
    PHI_ASSIGN_OR_RETURN(rep.audit_seq, txn.AppendAudit(ev));
    return Status::Ok();
  });
  PHI_RETURN_IF_ERROR(st);
  PHI_LOG(kNotice, "audit records pruned",
          {{"pruned", rep.pruned}, {"through_seq", rep.through_seq}});
  return rep;
}

Result<int64_t> SetLegalHold(vault::KeyVault& vault, index::Catalog& catalog,
                             const std::string& study_instance_uid, bool hold,
                             const std::string& actor, const std::string& reason) {
  if (reason.size() > 512) return Status::InvalidArgument("reason longer than 512 bytes");
  for (unsigned char c : reason) {
    if (c < 0x20 || c == 0x7f) return Status::InvalidArgument("reason has control bytes");
  }
  crypto::Digest d = vault.IndexToken("StudyInstanceUID", study_instance_uid);
  const index::Token token(reinterpret_cast<const char*>(d.data()), d.size());
  int64_t pk = 0;
  PHI_RETURN_IF_ERROR(catalog.Write([&](index::WriteTxn& txn) -> Status {
    PHI_ASSIGN_OR_RETURN(index::StudyRow study, txn.FindStudyByUidToken(token));
    pk = study.study_pk;
    PHI_RETURN_IF_ERROR(txn.SetLegalHold(pk, hold));
    audit::AuditEvent ev;
    ev.actor = actor;
    ev.action = "legal_hold";
    ev.object = "study:" + std::to_string(pk);
    ev.outcome = "ok";
    ev.detail = std::string(hold ? "hold" : "release") + (reason.empty() ? "" : ": " + reason);
    return txn.AppendAudit(ev).status();
  }));
  return pk;
}

}  // namespace phi::services
