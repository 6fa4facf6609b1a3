#include "libphi/services/retention.h"

#include <algorithm>
#include <chrono>
#include <ctime>

#include "libphi/services/ingest_service.h"
#include "libphi/services/phi_fields.h"
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

namespace {

bool HasModality(std::string_view list, std::string_view m) {
  size_t pos = 0;
  while (pos <= list.size()) {
    size_t c = list.find(',', pos);
    if (c == std::string_view::npos) c = list.size();
    if (list.substr(pos, c - pos) == m) return true;
    pos = c + 1;
  }
  return false;
}

int64_t UnixSeconds(SystemTime t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

// YYYYMMDD of a unix time (UTC).
int64_t Ymd(int64_t unix_secs) {
  std::time_t t = static_cast<std::time_t>(unix_secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  return (tm.tm_year + 1900) * 10000LL + (tm.tm_mon + 1) * 100 + tm.tm_mday;
}

// "YYYYMMDD" (DICOM DA) -> number, or -1.
int64_t ParseDa(std::string_view da) {
  if (da.size() != 8) return -1;
  int64_t v = 0;
  for (char c : da) {
    if (c < '0' || c > '9') return -1;
    v = v * 10 + (c - '0');
  }
  return v;
}

}  // namespace

RetentionMatch MatchRetention(const config::RetentionConfig& cfg, std::string_view modalities,
                              std::string_view source_ae) {
  RetentionMatch best;
  bool matched = false;
  for (size_t i = 0; i < cfg.rules.size(); ++i) {
    const config::RetentionRule& r = cfg.rules[i];
    if (r.modality.empty() && r.source_ae.empty()) continue;  // refused by the config loader
    if (!r.modality.empty() && !HasModality(modalities, r.modality)) continue;
    if (!r.source_ae.empty() && (source_ae.empty() || r.source_ae != source_ae)) continue;
    const bool longer =
        r.keep_years == 0 || (best.keep_years != 0 && r.keep_years > best.keep_years);
    if (!matched || longer) {
      best.keep_years = r.keep_years;
      best.rule = "rules[" + std::to_string(i) + "]";
      if (!r.modality.empty()) best.rule += " modality=" + r.modality;
      if (!r.source_ae.empty()) best.rule += " source_ae=" + r.source_ae;
      matched = true;
    }
    if (r.keep_years == 0) return best;  // forever wins
  }
  if (!matched) {
    best.keep_years = cfg.keep_years;
    best.rule = "default";
  }
  return best;
}

uint32_t KeepYearsFor(const config::RetentionConfig& cfg, std::string_view modalities) {
  return MatchRetention(cfg, modalities, "").keep_years;
}

Result<RetentionPlan> PlanRetention(index::Catalog& catalog, StudyKeys& keys,
                                    const config::RetentionConfig& cfg, SystemTime now,
                                    size_t limit) {
  RetentionPlan plan;
  // The shortest finite keep bounds the candidates; each is then checked exactly.
  uint32_t kmin = 0;
  auto consider = [&](uint32_t k) {
    if (k != 0 && (kmin == 0 || k < kmin)) kmin = k;
  };
  consider(cfg.keep_years);
  for (const auto& r : cfg.rules) consider(r.keep_years);
  if (kmin == 0 || limit == 0) return plan;
  const bool by_ae =
      std::any_of(cfg.rules.begin(), cfg.rules.end(),
                  [](const config::RetentionRule& r) { return !r.source_ae.empty(); });
  const int64_t now_s = UnixSeconds(now);
  const int64_t today = Ymd(now_s);
  index::StudyFilter f;
  f.exclude_legal_hold = true;
  f.limit = 500;
  if (cfg.basis == config::RetentionBasis::kStudyDate) {
    f.year_max = static_cast<int32_t>(today / 10000 - kmin);
    f.include_unknown_year = true;
  } else {
    const int64_t cutoff = YearsBeforeUs(now, kmin) / 1000000;
    f.created_max = cutoff;
    f.last_access_max = cutoff;
  }
  for (;;) {
    PHI_ASSIGN_OR_RETURN(index::StudyCandidates c, catalog.QueryStudies(f));
    for (index::StudyRow& row : c.rows) {
      std::string source_ae;
      if (by_ae) {
        PHI_ASSIGN_OR_RETURN(source_ae, catalog.GetStudySourceAe(row.study_pk));
      }
      RetentionMatch match = MatchRetention(cfg, row.modalities, source_ae);
      const uint32_t keep = match.keep_years;
      if (keep == 0 || row.legal_hold) continue;
      PHI_ASSIGN_OR_RETURN(std::string plain,
                           keys.Open(row.key_id, PhiAad("study", row.study_uid_token), row.phi));
      PHI_ASSIGN_OR_RETURN(PhiFields phi, PhiFields::Decode(plain));
      bool due;
      if (cfg.basis == config::RetentionBasis::kStudyDate) {
        int64_t d = ParseDa(phi.Get("StudyDate"));
        if (d < 0) d = Ymd(row.created_at);  // no usable StudyDate: when we received it
        due = d + static_cast<int64_t>(keep) * 10000 <= today;
      } else {
        const int64_t last = std::max(row.last_access_at, row.created_at);
        due = last <= YearsBeforeUs(now, keep) / 1000000;
      }
      if (!due) continue;
      if (plan.due.size() >= limit) {
        plan.truncated = true;
        return plan;
      }
      plan.due.push_back(DueStudy{row.study_pk, phi.Get("StudyInstanceUID"), row.study_year,
                                  row.modalities, keep, std::move(source_ae),
                                  std::move(match.rule)});
    }
    if (!c.truncated || c.rows.empty()) break;
    f.after_study_pk = c.rows.back().study_pk;
  }
  return plan;
}

Result<RetentionRunReport> RunRetention(index::Catalog& catalog, StudyKeys& keys,
                                        ErasureService& erasure, const config::RetentionConfig& cfg,
                                        SystemTime now) {
  RetentionRunReport rep;
  std::vector<int64_t> failed_pks;
  while (rep.erased + rep.failed < static_cast<int64_t>(cfg.max_per_run)) {
    const size_t room = static_cast<size_t>(cfg.max_per_run - (rep.erased + rep.failed));
    PHI_ASSIGN_OR_RETURN(RetentionPlan plan,
                         PlanRetention(catalog, keys, cfg, now,
                                       std::min<size_t>(cfg.batch_size + failed_pks.size(),
                                                        room + failed_pks.size())));
    size_t done_now = 0;
    for (const DueStudy& s : plan.due) {
      if (std::find(failed_pks.begin(), failed_pks.end(), s.study_pk) != failed_pks.end()) continue;
      if (done_now >= cfg.batch_size ||
          rep.erased + rep.failed >= static_cast<int64_t>(cfg.max_per_run))
        break;
      ++done_now;
      Result<ErasureCertificate> cert = erasure.EraseStudy(
          s.study_instance_uid, "system:retention",
          "retention: kept " + std::to_string(s.keep_years) + " years (" + s.rule + ")");
      if (cert.ok()) {
        ++rep.erased;
        rep.audit_seqs.push_back(cert->audit_seq);
      } else {
        ++rep.failed;
        failed_pks.push_back(s.study_pk);
        PHI_LOG(kError, "retention: erasure failed; retried at the next run",
                {{"study_pk", s.study_pk}, {"status", cert.status()}});
      }
    }
    ++rep.batches;
    if (done_now == 0) break;
  }
  if (rep.erased > 0 || rep.failed > 0) {
    PHI_LOG(kNotice, "retention run",
            {{"erased", rep.erased}, {"failed", rep.failed}, {"batches", rep.batches}});
  }
  return rep;
}

std::optional<RetentionRunReport> RetentionScheduler::Tick(SystemTime now) {
  if (!cfg_.enabled) return std::nullopt;
  const int64_t s = UnixSeconds(now);
  const int64_t day = s >= 0 ? s / 86400 : (s - 86399) / 86400;
  const int64_t minute = (s - day * 86400) / 60;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (minute < static_cast<int64_t>(cfg_.run_at_minute) || day == last_run_day_) {
      return std::nullopt;
    }
    last_run_day_ = day;
  }
  Result<RetentionRunReport> r = RunRetention(catalog_, keys_, erasure_, cfg_, now);
  if (!r.ok()) {
    PHI_LOG(kError, "retention run failed", {{"status", r.status()}});
    return RetentionRunReport{};
  }
  return *r;
}

void RetentionScheduler::Start(std::chrono::milliseconds period) {
  if (!cfg_.enabled || thread_.joinable()) return;
  thread_ = std::thread([this, period] {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      lock.unlock();
      Tick(env_.Now());
      lock.lock();
      cv_.wait_for(lock, period, [this] { return stop_; });
    }
  });
}

void RetentionScheduler::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

}  // namespace phi::services
