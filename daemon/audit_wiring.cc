#include "daemon/audit_wiring.h"

#include <openssl/crypto.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "libphi/audit/audit_atna.h"
#include "libphi/audit/audit_export.h"
#include "libphi/audit/cms_signer.h"
#include "libphi/backup/backup.h"
#include "libphi/services/integrity.h"
#include "libphi/services/retention.h"
#include "libphi/util/log.h"

namespace phi::daemon {
namespace {

using nlohmann::json;

constexpr size_t kMaxPemBytes = 1 << 20;
constexpr int64_t kDefaultExportPage = 20000;

std::string Actor(const admin::PeerCred& peer) { return "admin:uid=" + std::to_string(peer.uid); }

Result<std::string> Str(const json& args, const char* name, bool required) {
  auto it = args.find(name);
  if (it == args.end()) {
    if (required) return Status::InvalidArgument(std::string("--") + name + " is required");
    return std::string();
  }
  if (!it->is_string() || (required && it->get<std::string>().empty())) {
    return Status::InvalidArgument(std::string("--") + name + " must be text");
  }
  return it->get<std::string>();
}

Result<int64_t> Int(const json& args, const char* name, int64_t dflt) {
  auto it = args.find(name);
  if (it == args.end()) return dflt;
  if (!it->is_number_integer()) {
    return Status::InvalidArgument(std::string("--") + name + " must be an integer");
  }
  return it->get<int64_t>();
}

std::string Hostname() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "-";
  return buf;
}

// The signed erasure certificate: the audit record's JSON detail with its
// own seq filled in and the record's chain hash, so the document points at
// exactly one link of the (independently verifiable) audit chain.
Result<std::string> CertificateDocument(const audit::AuditRecord& r) {
  if (r.action != "erase" || r.outcome != "ok") {
    return Status::NotFound("audit record " + std::to_string(r.seq) + " is not an erasure");
  }
  nlohmann::ordered_json j = nlohmann::ordered_json::parse(r.detail, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return Status::Corruption("erasure record " + std::to_string(r.seq) + " has no certificate");
  }
  j["audit_seq"] = r.seq;
  j["audit_time"] = audit::FormatTimeUs(r.time_us);
  const crypto::Digest h = audit::RecordHash(r);
  j["audit_record_sha256"] = crypto::ToHex(h);
  return j.dump();
}

// Long admin operations (verify with progress, backup) run as background
// jobs: the command returns a job id at once and the client polls
// "<kind> status --job N" for progress and the result, so no admin
// connection is held for hours and a progress bar needs no streaming.
// At most one job of each kind runs at a time; the last kKeptJobs are kept
// for polling. Stop() (SIGTERM) makes the progress callbacks return false.
class Jobs {
 public:
  using Report = std::function<bool(json progress)>;
  using Fn = std::function<Result<json>(const Report&)>;

  explicit Jobs(Env& env) : env_(env) {}
  ~Jobs() { Stop(); }

  Result<int64_t> Start(const std::string& kind, Fn fn) {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return Status::Unavailable("phigated is stopping");
    for (const auto& j : jobs_) {
      if (j->kind == kind && !j->done) {
        return Status::Unavailable("a " + kind + " is already running (job " +
                                   std::to_string(j->id) + ")");
      }
    }
    auto job = std::make_shared<Job>();
    job->id = ++last_id_;
    job->kind = kind;
    job->started = env_.Monotonic();
    job->progress = json::object();
    jobs_.push_back(job);
    while (jobs_.size() > kKeptJobs && jobs_.front()->done) {
      if (jobs_.front()->thread.joinable()) jobs_.front()->thread.join();
      jobs_.pop_front();
    }
    job->thread = std::thread([this, job, fn = std::move(fn)] {
      Result<json> r = fn([this, job](json p) {
        std::lock_guard<std::mutex> l(mu_);
        job->progress = std::move(p);
        return !stopping_;
      });
      std::lock_guard<std::mutex> l(mu_);
      job->result = std::move(r);
      job->finished = env_.Monotonic();
      job->done = true;
    });
    return job->id;
  }

  // The job's state; a finished job that failed returns its error.
  Result<json> Poll(const std::string& kind, int64_t id) {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& j : jobs_) {
      if (j->id != id || j->kind != kind) continue;
      auto end = j->done ? j->finished : env_.Monotonic();
      json out{{"job", j->id},
               {"running", !j->done},
               {"elapsed_ms",
                std::chrono::duration_cast<std::chrono::milliseconds>(end - j->started).count()},
               {"progress", j->progress}};
      if (j->done) {
        if (!j->result.ok()) return j->result.status();
        out["result"] = *j->result;
      }
      return out;
    }
    return Status::NotFound("no " + kind + " job " + std::to_string(id));
  }

  json Running() const {
    std::lock_guard<std::mutex> lock(mu_);
    json out = json::array();
    for (const auto& j : jobs_) {
      if (!j->done) out.push_back({{"job", j->id}, {"kind", j->kind}, {"progress", j->progress}});
    }
    return out;
  }

  void Stop() {
    std::deque<std::shared_ptr<Job>> all;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
      all = jobs_;
    }
    for (auto& j : all) {
      if (j->thread.joinable()) j->thread.join();
    }
  }

 private:
  static constexpr size_t kKeptJobs = 16;
  struct Job {
    int64_t id = 0;
    std::string kind;
    MonotonicTime started, finished;
    bool done = false;  // GUARDED_BY(mu_)
    json progress;      // GUARDED_BY(mu_)
    Result<json> result = Status::Internal("not finished");
    std::thread thread;
  };
  Env& env_;
  mutable std::mutex mu_;
  std::deque<std::shared_ptr<Job>> jobs_;  // GUARDED_BY(mu_)
  int64_t last_id_ = 0;                    // GUARDED_BY(mu_)
  bool stopping_ = false;                  // GUARDED_BY(mu_)
};

json ReportJson(const services::IntegrityReport& r) {
  json problems = json::array();
  for (const auto& p : r.problems) {
    problems.push_back(
        {{"kind", p.kind}, {"study_pk", p.study_pk}, {"object", p.object}, {"detail", p.detail}});
  }
  return json{{"ok", r.ok()},
              {"studies", r.studies},
              {"instances", r.instances},
              {"bytes", r.bytes},
              {"problem_count", r.problem_count},
              {"problems", std::move(problems)}};
}

std::string TimeText(const std::optional<SystemTime>& t) {
  if (!t) return "";
  return audit::FormatTimeUs(
      std::chrono::duration_cast<std::chrono::microseconds>(t->time_since_epoch()).count());
}

class AuditWiringImpl final : public AuditWiring {
 public:
  AuditWiringImpl(services::StorageStack& stack, const config::Config& cfg, Env& env)
      : jobs(env),
        scheduler(stack.catalog(), stack.keys(), stack.erasure(), cfg.retention, env),
        scrubber(stack.vault(), stack.catalog(), stack.objects(), stack.keys(), cfg.integrity.scrub,
                 env) {}
  ~AuditWiringImpl() override { Stop(); }

  void Stop() override {
    scrubber.Stop();
    jobs.Stop();
  }

  json IntegrityStatus() const override {
    services::ScrubStatus s = scrubber.status();
    json scrub{{"enabled", s.enabled},
               {"state", s.state},
               {"rate_mb_per_s", s.rate_mb_per_s},
               {"interval_hours", s.interval_hours},
               {"passes", s.passes},
               {"last_started", TimeText(s.last_started)},
               {"last_finished", TimeText(s.last_finished)},
               {"next_run", TimeText(s.next_run)},
               {"last_error", s.last_error}};
    if (s.state == "running") {
      scrub["current"] = {{"instances_done", s.current_instances_done},
                          {"instances_total", s.current_instances_total},
                          {"bytes", s.current_bytes}};
    }
    scrub["last_result"] = s.last_report ? ReportJson(*s.last_report) : json(nullptr);
    return json{{"scrub", std::move(scrub)}, {"jobs", jobs.Running()}};
  }

  Jobs jobs;
  services::RetentionScheduler scheduler;
  services::Scrubber scrubber;
};

}  // namespace

std::unique_ptr<AuditWiring> RegisterAuditCommands(admin::AdminServer& admin,
                                                   services::StorageStack& stack,
                                                   const config::Config& cfg, Env& env) {
  auto wiring = std::make_unique<AuditWiringImpl>(stack, cfg, env);
  Jobs& jobs = wiring->jobs;
  const config::RetentionConfig retention = cfg.retention;
  const Path cert_file = cfg.tls.certificate;
  const Path key_file = cfg.tls.private_key;
  const uint32_t retention_years = cfg.audit.retention_years;

  // Replaces main.cc's version: also reports the pruning anchor.
  admin.Register("audit verify", admin::kReadOnly,
                 [&stack](const json&, const admin::PeerCred&) -> Result<json> {
                   PHI_ASSIGN_OR_RETURN(audit::VerifyReport r,
                                        audit::Verify(stack.catalog(), stack.AuditMac()));
                   return json{{"ok", r.ok},
                               {"records", r.count},
                               {"last_seq", r.last_seq},
                               {"broken_seq", r.broken_seq},
                               {"anchor_seq", r.anchor_seq},
                               {"reason", std::string(audit::BreakReasonName(r.reason))}};
                 });

  admin.Register(
      "audit export", admin::kReadOnly,
      [&stack](const json& args, const admin::PeerCred&) -> Result<json> {
        PHI_ASSIGN_OR_RETURN(std::string format, Str(args, "format", false));
        if (format.empty()) format = "jsonl";
        if (format != "jsonl" && format != "atna") {
          return Status::InvalidArgument("--format must be jsonl or atna");
        }
        audit::ExportRange range;
        PHI_ASSIGN_OR_RETURN(std::string since, Str(args, "since", false));
        PHI_ASSIGN_OR_RETURN(std::string until, Str(args, "until", false));
        if (!since.empty()) {
          PHI_ASSIGN_OR_RETURN(range.since_us, audit::ParseTimeUs(since));
        }
        if (!until.empty()) {
          PHI_ASSIGN_OR_RETURN(range.until_us, audit::ParseTimeUs(until));
        }
        PHI_ASSIGN_OR_RETURN(range.after_seq, Int(args, "after", 0));
        PHI_ASSIGN_OR_RETURN(int64_t limit, Int(args, "limit", kDefaultExportPage));
        if (range.after_seq < 0 || limit < 1 || limit > kDefaultExportPage) {
          return Status::InvalidArgument("--after must be >= 0 and --limit 1.." +
                                         std::to_string(kDefaultExportPage));
        }
        range.max_records = static_cast<size_t>(limit);
        audit::AtnaOptions atna;
        atna.hostname = Hostname();
        json lines = json::array();
        PHI_ASSIGN_OR_RETURN(
            audit::ExportResult res,
            audit::ExportRecords(stack.catalog(), range, [&](const audit::AuditRecord& r) {
              lines.push_back(format == "atna" ? audit::ToAtnaSyslog(r, atna)
                                               : audit::ToJsonLine(r));
              return Status::Ok();
            }));
        return json{{"format", format},
                    {"count", res.count},
                    {"last_seq", res.last_seq},
                    {"more", res.more},
                    {"lines", std::move(lines)}};
      });

  admin.Register("audit prune", admin::kDestructive,
                 [&stack, &env, retention_years](const json& args,
                                                 const admin::PeerCred& peer) -> Result<json> {
                   PHI_ASSIGN_OR_RETURN(std::string before, Str(args, "before", false));
                   std::optional<int64_t> before_us;
                   if (!before.empty()) {
                     PHI_ASSIGN_OR_RETURN(before_us, audit::ParseTimeUs(before));
                   }
                   PHI_ASSIGN_OR_RETURN(
                       services::AuditPruneReport r,
                       services::PruneAudit(stack.catalog(), stack.AuditMac(), env.Now(),
                                            retention_years, before_us, Actor(peer)));
                   return json{{"pruned", r.pruned},
                               {"anchor_seq", r.through_seq},
                               {"cutoff", audit::FormatTimeUs(r.cutoff_us)},
                               {"retention_years", retention_years},
                               {"audit_seq", r.audit_seq}};
                 });

  admin.Register("erasure-certificate", admin::kReadOnly,
                 [&stack, &env, cert_file, key_file](const json& args,
                                                     const admin::PeerCred&) -> Result<json> {
                   PHI_ASSIGN_OR_RETURN(int64_t seq, Int(args, "seq", 0));
                   if (seq < 1)
                     return Status::InvalidArgument("--seq SEQ (an audit sequence number) needed");
                   PHI_ASSIGN_OR_RETURN(std::vector<audit::AuditRecord> rows,
                                        stack.catalog().ReadAudit(seq - 1, 1));
                   if (rows.empty() || rows[0].seq != seq) {
                     return Status::NotFound("no audit record " + std::to_string(seq));
                   }
                   PHI_ASSIGN_OR_RETURN(std::string doc, CertificateDocument(rows[0]));
                   PHI_ASSIGN_OR_RETURN(std::string cert_pem,
                                        env.ReadSmallFile(cert_file, kMaxPemBytes));
                   auto key_pem = env.ReadSmallFile(key_file, kMaxPemBytes);
                   if (!key_pem.ok()) return key_pem.status();
                   Result<std::string> sig = audit::SignDetachedCmsPem(doc, cert_pem, *key_pem);
                   // Wipe our copy of the private key's PEM.
                   OPENSSL_cleanse(key_pem->data(), key_pem->size());
                   PHI_RETURN_IF_ERROR(sig.status());
                   return json{{"seq", seq},
                               {"certificate", doc},
                               {"signature", *sig},
                               {"signer_certificate", cert_pem}};
                 });

  for (bool hold : {true, false}) {
    admin.Register(hold ? "hold" : "release", admin::kDestructive,
                   [&stack, hold](const json& args, const admin::PeerCred& peer) -> Result<json> {
                     PHI_ASSIGN_OR_RETURN(std::string uid, Str(args, "study", true));
                     PHI_ASSIGN_OR_RETURN(std::string reason, Str(args, "reason", false));
                     PHI_ASSIGN_OR_RETURN(
                         int64_t pk, services::SetLegalHold(stack.vault(), stack.catalog(), uid,
                                                            hold, Actor(peer), reason));
                     return json{{"study_pk", pk}, {"legal_hold", hold}};
                   });
  }

  admin.Register(
      "retention plan", admin::kReadOnly,
      [&stack, &env, retention](const json& args, const admin::PeerCred&) -> Result<json> {
        PHI_ASSIGN_OR_RETURN(int64_t limit, Int(args, "limit", 1000));
        if (limit < 1 || limit > 100000) return Status::InvalidArgument("--limit 1..100000");
        PHI_ASSIGN_OR_RETURN(services::RetentionPlan plan,
                             services::PlanRetention(stack.catalog(), stack.keys(), retention,
                                                     env.Now(), static_cast<size_t>(limit)));
        json due = json::array();
        for (const auto& d : plan.due) {
          due.push_back({{"study_pk", d.study_pk},
                         {"study_instance_uid", d.study_instance_uid},
                         {"year", d.study_year ? json(*d.study_year) : json(nullptr)},
                         {"modalities", d.modalities},
                         {"source_ae", d.source_ae.empty() ? json(nullptr) : json(d.source_ae)},
                         {"keep_years", d.keep_years},
                         {"rule", d.rule}});
        }
        return json{
            {"enabled", retention.enabled},
            {"basis",
             retention.basis == config::RetentionBasis::kStudyDate ? "study_date" : "last_access"},
            {"count", plan.due.size()},
            {"truncated", plan.truncated},
            {"due", std::move(due)}};
      });
  admin.Register("retention run", admin::kDestructive,
                 [&stack, &env, retention](const json&, const admin::PeerCred&) -> Result<json> {
                   PHI_ASSIGN_OR_RETURN(
                       services::RetentionRunReport r,
                       services::RunRetention(stack.catalog(), stack.keys(), stack.erasure(),
                                              retention, env.Now()));
                   return json{{"erased", r.erased},
                               {"failed", r.failed},
                               {"batches", r.batches},
                               {"audit_seqs", r.audit_seqs}};
                 });

  admin.Register(
      "verify", admin::kReadOnly,
      [&stack, &jobs](const json& args, const admin::PeerCred&) -> Result<json> {
        PHI_ASSIGN_OR_RETURN(std::string uid, Str(args, "study", false));
        services::VerifyOptions opts;
        if (!uid.empty()) opts.study_instance_uid = uid;
        opts.expected_unreferenced = [g = &stack.removal_gate()](const std::string& id) {
          return g->IsDeferred(id);
        };
        auto it = args.find("progress");
        if (it == args.end() || !it->is_boolean() || !it->get<bool>()) {
          PHI_ASSIGN_OR_RETURN(services::IntegrityReport r,
                               services::VerifyStorage(stack.vault(), stack.catalog(),
                                                       stack.objects(), stack.keys(), opts));
          return ReportJson(r);
        }
        PHI_ASSIGN_OR_RETURN(
            int64_t id,
            jobs.Start("verify",
                       [&stack, opts](const Jobs::Report& report) mutable -> Result<json> {
                         opts.progress = [&report](const services::VerifyProgress& p) {
                           return report(json{{"checked", p.instances_done},
                                              {"total", p.instances_total},
                                              {"bytes", p.bytes_done}});
                         };
                         PHI_ASSIGN_OR_RETURN(
                             services::IntegrityReport r,
                             services::VerifyStorage(stack.vault(), stack.catalog(),
                                                     stack.objects(), stack.keys(), opts));
                         return ReportJson(r);
                       }));
        return json{{"job", id}};
      });

  for (const char* kind : {"verify", "backup"}) {
    admin.Register(std::string(kind) + " status", admin::kReadOnly,
                   [&jobs, kind](const json& args, const admin::PeerCred&) -> Result<json> {
                     PHI_ASSIGN_OR_RETURN(int64_t id, Int(args, "job", 0));
                     if (id < 1) return Status::InvalidArgument("--job N is required");
                     return jobs.Poll(kind, id);
                   });
  }

  admin.Register(
      "backup", 0,
      [&stack, &jobs, &env](const json& args, const admin::PeerCred& peer) -> Result<json> {
        PHI_ASSIGN_OR_RETURN(std::string dir, Str(args, "dir", true));
        if (dir.size() > 4096) return Status::InvalidArgument("--dir is too long");
        // Checked now too, so that an obviously wrong DIR fails the command itself.
        PHI_RETURN_IF_ERROR(backup::CheckBackupDir(dir, stack.objects().root()));
        backup::BackupRequest req;
        req.dir = dir;
        req.actor = Actor(peer);
        PHI_ASSIGN_OR_RETURN(
            int64_t id,
            jobs.Start("backup",
                       [&stack, &env, req](const Jobs::Report& report) mutable -> Result<json> {
                         req.progress = [&report](const backup::BackupProgress& p) {
                           return report(json{{"phase", p.phase},
                                              {"objects_done", p.objects_done},
                                              {"objects_total", p.objects_total},
                                              {"bytes_done", p.bytes_done}});
                         };
                         PHI_ASSIGN_OR_RETURN(backup::BackupReport r,
                                              backup::RunBackup(stack.catalog(), stack.objects(),
                                                                stack.removal_gate(), env, req));
                         return json{{"dir", r.dir.string()},
                                     {"storage_id", r.storage_id},
                                     {"kek_ids", r.kek_ids},
                                     {"studies", r.studies},
                                     {"objects", r.objects},
                                     {"object_bytes", r.object_bytes},
                                     {"catalog_bytes", r.catalog_bytes},
                                     {"manifest_sha256", r.manifest_sha256},
                                     {"unlinks_held_back", r.unlinks_held_back},
                                     {"audit_seq", r.audit_seq}};
                       }));
        return json{{"job", id}};
      });

  wiring->scheduler.Start();
  wiring->scrubber.Start();
  return wiring;
}

Result<std::unique_ptr<audit::SyslogForwarder>> StartAuditForwarding(services::StorageStack& stack,
                                                                     const config::Config& cfg,
                                                                     Env& env) {
  audit::ForwarderOptions opts;
  opts.cfg = cfg.audit.forward;
  opts.state_file = cfg.storage.root / "audit-forward.state";
  opts.atna.hostname = Hostname();
  PHI_ASSIGN_OR_RETURN(std::unique_ptr<audit::SyslogForwarder> f,
                       audit::SyslogForwarder::Create(stack.catalog(), std::move(opts), env));
  f->Start();
  return f;
}

json AuditForwardStatusJson(audit::SyslogForwarder& forwarder) {
  const audit::ForwarderStatus s = forwarder.GetStatus();
  return json{{"enabled", s.enabled},
              {"connected", s.connected},
              {"collector", s.collector},
              {"format", s.format},
              {"head_seq", s.head_seq},
              {"last_forwarded_seq", s.sent_seq},
              {"acked_seq", s.acked_seq},
              {"backlog", s.backlog},
              {"sent_total", s.sent_total},
              {"drops", s.drops},
              {"connects", s.connects},
              {"failures", s.failures},
              {"last_error", s.last_error.empty() ? json(nullptr) : json(s.last_error)},
              {"last_error_time", s.last_error_unix == 0
                                      ? json(nullptr)
                                      : json(audit::FormatTimeUs(s.last_error_unix * 1000000))}};
}

}  // namespace phi::daemon
