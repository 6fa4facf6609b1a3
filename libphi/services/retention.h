// phi::services retention: what may be deleted, and when (DESIGN.md, Audit
// and Erasure contracts).
//
//  - Audit retention: PruneAudit deletes the oldest audit records, never one
//    younger than the configured retention (audit.retention_years, default 6),
//    and leaves a signed anchor (audit::EncodeAnchor) so the rest still
//    verifies. It refuses on a chain that does not verify (pruning must not
//    launder a tamper).
//  - Study retention: PlanRetention lists the studies due for erasure under a
//    RetentionConfig (N years after the StudyDate, decrypted, or after the
//    last access; rules per modality and/or per source AE, the calling AE
//    title that first stored the study); RunRetention erases them through the
//    ErasureService in bounded batches; RetentionScheduler runs it once a day
//    at a configured UTC time, on the injected clock (Env::Now).
//  - Legal hold: SetLegalHold flags a study so that no erasure (admin,
//    DICOMweb, retention) touches it; every change is audited.
//
// Thread-safety: free functions over thread-safe services; callable from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "libphi/audit/audit_log.h"
#include "libphi/config/config.h"
#include "libphi/index/catalog.h"
#include "libphi/services/erasure_service.h"
#include "libphi/services/study_keys.h"
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

// Which retention applies to a study, and why.
struct RetentionMatch {
  uint32_t keep_years = 0;  // 0 = forever
  // "default" when no rule matched; otherwise the rule that set keep_years,
  // e.g. "rules[1] source_ae=CT_SCANNER_1" or "rules[0] modality=MG".
  std::string rule;
};

// The retention of a study with these series modalities ("CT,MR") that was
// first stored by the calling AE `source_ae` ("" = unknown: before schema v4,
// or created by STOW-RS, so source_ae rules never match it). A rule matches
// when each key it sets matches (modality: the study has a series of that
// modality; source_ae: equal). Among matching rules the longest keep wins, a
// keep of 0 (forever) over everything; with no match, cfg.keep_years.
RetentionMatch MatchRetention(const config::RetentionConfig& cfg, std::string_view modalities,
                              std::string_view source_ae);

// MatchRetention(cfg, modalities, "").keep_years.
uint32_t KeepYearsFor(const config::RetentionConfig& cfg, std::string_view modalities);

// One study due for erasure. No PHI: the StudyInstanceUID (a UID), the year
// only, and the modalities.
struct DueStudy {
  int64_t study_pk = 0;
  std::string study_instance_uid;
  std::optional<int32_t> study_year;
  std::string modalities;
  uint32_t keep_years = 0;
  std::string source_ae;  // "" when unknown
  std::string rule;       // RetentionMatch::rule
};

struct RetentionPlan {
  std::vector<DueStudy> due;  // ascending study_pk
  bool truncated = false;     // more were due than `limit`
};

// Studies due at `now` (legal holds excluded), at most `limit`. Reads only.
Result<RetentionPlan> PlanRetention(index::Catalog& catalog, StudyKeys& keys,
                                    const config::RetentionConfig& cfg, SystemTime now,
                                    size_t limit);

struct RetentionRunReport {
  int64_t erased = 0;
  int64_t failed = 0;  // erasures that failed (logged; retried at the next run)
  int64_t batches = 0;
  std::vector<int64_t> audit_seqs;  // erasure certificates' seqs
};

// Erases what is due, batch_size studies per plan, at most max_per_run.
Result<RetentionRunReport> RunRetention(index::Catalog& catalog, StudyKeys& keys,
                                        ErasureService& erasure, const config::RetentionConfig& cfg,
                                        SystemTime now);

// Runs RunRetention once a day at cfg.run_at_minute (UTC) when cfg.enabled.
// Tick(now) does the check and the run (tests call it with a manual clock);
// Start() runs a thread calling Tick(env.Now()) every `period`.
class RetentionScheduler {
 public:
  RetentionScheduler(index::Catalog& catalog, StudyKeys& keys, ErasureService& erasure,
                     config::RetentionConfig cfg, Env& env)
      : catalog_(catalog), keys_(keys), erasure_(erasure), cfg_(std::move(cfg)), env_(env) {}
  ~RetentionScheduler() { Stop(); }
  RetentionScheduler(const RetentionScheduler&) = delete;
  RetentionScheduler& operator=(const RetentionScheduler&) = delete;

  // The report when a run happened at this tick, nullopt otherwise.
  std::optional<RetentionRunReport> Tick(SystemTime now);
  void Start(std::chrono::milliseconds period = std::chrono::seconds(30));
  void Stop();

 private:
  index::Catalog& catalog_;
  StudyKeys& keys_;
  ErasureService& erasure_;
  const config::RetentionConfig cfg_;
  Env& env_;
  std::mutex mu_;
  int64_t last_run_day_ = -1;  // GUARDED_BY(mu_): days since the epoch of the last run
  std::condition_variable cv_;
  bool stop_ = false;  // GUARDED_BY(mu_)
  std::thread thread_;
};

}  // namespace phi::services
