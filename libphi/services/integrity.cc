#include "libphi/services/integrity.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_set>

#include "libphi/objects/phg_format.h"
#include "libphi/services/ingest_service.h"
#include "libphi/util/log.h"

namespace phi::services {
namespace {

void Add(IntegrityReport& r, std::string kind, int64_t study_pk, std::string object,
         std::string detail) {
  ++r.problem_count;
  if (r.problems.size() < kMaxListedProblems) {
    r.problems.push_back({std::move(kind), study_pk, std::move(object), std::move(detail)});
  }
}

Status VerifyStudy(index::Catalog& catalog, objects::ObjectStore& objects, StudyKeys& keys,
                   const index::StudyRow& study, IntegrityReport& rep,
                   std::set<std::string>* referenced, const VerifyOptions& opts,
                   VerifyProgress& prog) {
  ++rep.studies;
  const size_t listed_before = rep.problems.size();
  const int64_t count_before = rep.problem_count;
  const std::string sref = "study:" + std::to_string(study.study_pk);
  if (Result<std::string> p =
          keys.Open(study.key_id, PhiAad("study", study.study_uid_token), study.phi);
      !p.ok()) {
    Add(rep, "phi_unreadable", study.study_pk, sref, p.status().ToString());
  }
  PHI_ASSIGN_OR_RETURN(std::vector<index::SeriesRow> series, catalog.ListSeries(study.study_pk));
  for (const auto& s : series) {
    if (Result<std::string> p =
            keys.Open(study.key_id, PhiAad("series", s.series_uid_token), s.phi);
        !p.ok()) {
      Add(rep, "phi_unreadable", study.study_pk, "series:" + std::to_string(s.series_pk),
          p.status().ToString());
    }
  }
  PHI_ASSIGN_OR_RETURN(std::vector<index::InstanceRow> insts,
                       catalog.ListInstancesOfStudy(study.study_pk));
  int64_t total = 0;
  Result<objects::KeyId> key_bytes = objects::phg::ParseId(study.key_id);
  Result<std::unique_ptr<crypto::AesGcm>> cipher = keys.Cipher(study.key_id);
  for (const auto& i : insts) {
    ++rep.instances;
    total += i.size_bytes;
    if (referenced) referenced->insert(i.object_id);
    const std::string oref = "object:" + i.object_id;
    if (Result<std::string> p = keys.Open(study.key_id, PhiAad("instance", i.sop_uid_token), i.phi);
        !p.ok()) {
      Add(rep, "phi_unreadable", study.study_pk, "instance:" + std::to_string(i.instance_pk),
          p.status().ToString());
    }
    if (!key_bytes.ok() || !cipher.ok()) {
      Add(rep, "object_unreadable", study.study_pk, oref, "study key unavailable");
    } else {
      int64_t n = 0;
      Status s;
      Result<objects::ObjectReaderPtr> reader = objects.Open(i.object_id, *key_bytes, **cipher);
      if (!reader.ok()) {
        s = reader.status();
      } else {
        Status stopped;
        s = (*reader)->ReadAll([&](std::span<const std::byte> chunk) {
          if (opts.on_bytes) {
            stopped = opts.on_bytes(static_cast<int64_t>(chunk.size()));
            if (!stopped.ok()) return stopped;
          }
          n += static_cast<int64_t>(chunk.size());
          return Status::Ok();
        });
        // A stop request is not a finding about the object.
        if (!stopped.ok()) return stopped;
      }
      if (!s.ok() && s.code() == Code::kNotFound && objects.IsBeingWritten(i.object_id)) {
        // A store in flight: its rows commit in parallel with its object's
        // rename (IngestService), so the file may not be there yet.
      } else if (!s.ok()) {
        Add(rep, "object_unreadable", study.study_pk, oref, s.ToString());
      } else {
        rep.bytes += n;
        if (n != i.size_bytes) {
          Add(rep, "size_mismatch", study.study_pk, oref,
              "catalog says " + std::to_string(i.size_bytes) + " bytes, object has " +
                  std::to_string(n));
        }
      }
    }
    ++prog.instances_done;
    prog.bytes_done = rep.bytes;
    if (opts.progress && !opts.progress(prog)) return Status::Unavailable("verify stopped");
  }
  if (static_cast<int64_t>(insts.size()) != study.num_instances || total != study.total_bytes) {
    Add(rep, "counter_mismatch", study.study_pk, sref,
        "num_instances " + std::to_string(study.num_instances) + " vs " +
            std::to_string(insts.size()) + ", total_bytes " + std::to_string(study.total_bytes) +
            " vs " + std::to_string(total));
  }
  // Erased (or replaced) while we read it: what we found is about data that no
  // longer exists, not damage.
  if (rep.problem_count != count_before) {
    Result<index::StudyRow> again = catalog.GetStudy(study.study_pk);
    if (!again.ok() && again.status().code() == Code::kNotFound) {
      rep.problems.resize(std::min(rep.problems.size(), listed_before));
      rep.problem_count = count_before;
    }
  }
  return Status::Ok();
}

}  // namespace

Result<IntegrityReport> VerifyStorage(vault::KeyVault& vault, index::Catalog& catalog,
                                      objects::ObjectStore& objects, StudyKeys& keys,
                                      const VerifyOptions& opts) {
  IntegrityReport rep;
  VerifyProgress prog;
  if (opts.study_instance_uid) {
    crypto::Digest d = vault.IndexToken("StudyInstanceUID", *opts.study_instance_uid);
    PHI_ASSIGN_OR_RETURN(index::StudyRow study,
                         catalog.FindStudyByUidToken(
                             index::Token(reinterpret_cast<const char*>(d.data()), d.size())));
    prog.instances_total = study.num_instances;
    PHI_RETURN_IF_ERROR(VerifyStudy(catalog, objects, keys, study, rep, nullptr, opts, prog));
    return rep;
  }
  if (Result<index::ObjectCounts> c = catalog.CountObjects(); c.ok()) {
    prog.instances_total = c->instances;
  }
  // The files present before the walk: one the catalog does not name after
  // the walk is an orphan (a file written meanwhile is not in this list, and
  // one whose row committed meanwhile is in the second catalog listing).
  PHI_ASSIGN_OR_RETURN(std::vector<std::string> on_disk, objects.ListObjectIds());
  std::set<std::string> referenced;
  index::StudyFilter f;
  f.limit = 200;
  for (;;) {
    PHI_ASSIGN_OR_RETURN(index::StudyCandidates c, catalog.QueryStudies(f));
    for (const auto& study : c.rows) {
      PHI_RETURN_IF_ERROR(VerifyStudy(catalog, objects, keys, study, rep, &referenced, opts, prog));
    }
    if (!c.truncated || c.rows.empty()) break;
    f.after_study_pk = c.rows.back().study_pk;
  }
  PHI_ASSIGN_OR_RETURN(std::vector<std::string> now_referenced, catalog.ListAllObjectIds());
  std::unordered_set<std::string> now_ref(now_referenced.begin(), now_referenced.end());
  for (const auto& id : on_disk) {
    if (referenced.count(id) != 0 || now_ref.count(id) != 0) continue;
    if (opts.expected_unreferenced && opts.expected_unreferenced(id)) continue;
    // Recovery removes these at start-up; one found here appeared while
    // running (an erasure's unlink held back by a running backup, or a failed unlink).
    Add(rep, "orphan_object", 0, "object:" + id, "no catalog row");
  }
  return rep;
}

Result<IntegrityReport> VerifyStorage(vault::KeyVault& vault, index::Catalog& catalog,
                                      objects::ObjectStore& objects, StudyKeys& keys,
                                      const std::optional<std::string>& study_instance_uid,
                                      const std::function<void(int64_t)>& progress) {
  VerifyOptions opts;
  opts.study_instance_uid = study_instance_uid;
  if (progress) {
    opts.progress = [&progress](const VerifyProgress& p) {
      progress(p.instances_done);
      return true;
    };
  }
  return VerifyStorage(vault, catalog, objects, keys, opts);
}

RateLimiter::RateLimiter(double bytes_per_second, double burst_bytes)
    : rate_(bytes_per_second > 0 ? bytes_per_second : 1),
      burst_(burst_bytes > 0 ? burst_bytes : 1),
      tokens_(burst_) {}

std::chrono::nanoseconds RateLimiter::Reserve(int64_t bytes, MonotonicTime now) {
  if (last_ && now > *last_) {
    const double dt = std::chrono::duration<double>(now - *last_).count();
    tokens_ = std::min(burst_, tokens_ + dt * rate_);
  }
  if (!last_ || now > *last_) last_ = now;
  tokens_ -= static_cast<double>(std::max<int64_t>(bytes, 0));
  if (tokens_ >= 0) return std::chrono::nanoseconds(0);
  return std::chrono::nanoseconds(static_cast<int64_t>(-tokens_ / rate_ * 1e9));
}

Scrubber::Scrubber(vault::KeyVault& vault, index::Catalog& catalog, objects::ObjectStore& objects,
                   StudyKeys& keys, const config::ScrubConfig& cfg, Env& env,
                   std::function<bool(const std::string&)> expected_unreferenced)
    : vault_(vault),
      catalog_(catalog),
      objects_(objects),
      keys_(keys),
      cfg_(cfg),
      env_(env),
      expected_unreferenced_(std::move(expected_unreferenced)) {
  status_.enabled = cfg.enabled;
  status_.rate_mb_per_s = cfg.rate_mb_per_s;
  status_.interval_hours = cfg.interval_hours;
}

Scrubber::~Scrubber() { Stop(); }

void Scrubber::Start() {
  if (!cfg_.enabled || thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    status_.state = "waiting";
    status_.next_run = env_.Now() + std::chrono::seconds(cfg_.start_delay_seconds);
  }
  thread_ = std::thread([this] { Loop(); });
}

void Scrubber::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    if (status_.enabled) status_.state = "stopped";
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool Scrubber::WaitFor(std::chrono::nanoseconds d) {
  std::unique_lock<std::mutex> lock(mu_);
  if (d.count() > 0) cv_.wait_for(lock, d, [this] { return stop_; });
  return !stop_;
}

void Scrubber::Loop() {
  if (!WaitFor(std::chrono::seconds(cfg_.start_delay_seconds))) return;
  for (;;) {
    (void)RunPass();
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return;
      status_.state = "waiting";
      status_.next_run = env_.Now() + std::chrono::hours(cfg_.interval_hours);
    }
    if (!WaitFor(std::chrono::hours(cfg_.interval_hours))) return;
  }
}

Result<IntegrityReport> Scrubber::RunPass() {
  const auto started = env_.Now();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_ && thread_.joinable()) return Status::Unavailable("scrub stopped");
    status_.state = "running";
    status_.last_started = started;
    status_.next_run.reset();
    status_.current_instances_done = status_.current_instances_total = status_.current_bytes = 0;
  }
  PHI_LOG(kInfo, "scrub pass started",
          {{"rate_mb_per_s", static_cast<int64_t>(cfg_.rate_mb_per_s)}});
  const double rate = static_cast<double>(cfg_.rate_mb_per_s) * 1024.0 * 1024.0;
  RateLimiter limiter(rate, std::max(rate / 4, 4.0 * 1024 * 1024));
  VerifyOptions opts;
  opts.expected_unreferenced = expected_unreferenced_;
  opts.on_bytes = [&](int64_t n) -> Status {
    std::chrono::nanoseconds wait = limiter.Reserve(n, env_.Monotonic());
    if (!WaitFor(wait)) return Status::Unavailable("scrub stopped");
    return Status::Ok();
  };
  opts.progress = [&](const VerifyProgress& p) {
    std::lock_guard<std::mutex> lock(mu_);
    status_.current_instances_done = p.instances_done;
    status_.current_instances_total = p.instances_total;
    status_.current_bytes = p.bytes_done;
    return !stop_;
  };
  Result<IntegrityReport> r = VerifyStorage(vault_, catalog_, objects_, keys_, opts);
  const auto finished = env_.Now();
  const int64_t secs = std::chrono::duration_cast<std::chrono::seconds>(finished - started).count();
  if (!r.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) {
      PHI_LOG(kInfo, "scrub pass stopped");
    } else {
      PHI_LOG(kError, "scrub pass failed", {{"status", r.status()}});
      status_.last_error = r.status().ToString();
      status_.state = "waiting";
    }
    return r.status();
  }
  for (const auto& p : r->problems) {
    PHI_LOG(kError, "scrub found a problem",
            {{"kind", log::Safe(p.kind)},
             {"object", log::Safe(p.object)},
             {"study_pk", p.study_pk},
             {"detail", log::Safe(p.detail)}});
  }
  if (r->ok()) {
    PHI_LOG(kNotice, "scrub pass done: no problems",
            {{"studies", r->studies},
             {"instances", r->instances},
             {"bytes", r->bytes},
             {"seconds", secs}});
  } else {
    PHI_LOG(kError, "scrub pass done: problems found",
            {{"studies", r->studies},
             {"instances", r->instances},
             {"bytes", r->bytes},
             {"problems", r->problem_count},
             {"seconds", secs}});
  }
  AuditProblems(*r);
  std::lock_guard<std::mutex> lock(mu_);
  status_.state = stop_ ? "stopped" : "waiting";
  ++status_.passes;
  status_.last_finished = finished;
  status_.last_error.clear();
  IntegrityReport kept = *r;
  if (kept.problems.size() > 20) kept.problems.resize(20);
  status_.last_report = std::move(kept);
  return r;
}

void Scrubber::AuditProblems(const IntegrityReport& r) {
  if (r.ok()) return;
  Status s = catalog_.Write([&](index::WriteTxn& txn) -> Status {
    size_t n = 0;
    for (const auto& p : r.problems) {
      if (n++ >= kMaxAuditedProblems) break;
      audit::AuditEvent ev;
      ev.actor = "phigated:scrub";
      ev.action = "integrity_problem";
      ev.object = p.object;
      ev.outcome = "error:" + p.kind;
      nlohmann::ordered_json d;
      d["kind"] = p.kind;
      d["study_pk"] = p.study_pk;
      d["detail"] = p.detail;
      ev.detail = d.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      PHI_RETURN_IF_ERROR(txn.AppendAudit(ev).status());
    }
    audit::AuditEvent ev;
    ev.actor = "phigated:scrub";
    ev.action = "scrub";
    ev.object = "storage";
    ev.outcome = "error:problems";
    nlohmann::ordered_json d;
    d["studies"] = r.studies;
    d["instances"] = r.instances;
    d["bytes"] = r.bytes;
    d["problems"] = r.problem_count;
    ev.detail = d.dump();
    return txn.AppendAudit(ev).status();
  });
  if (!s.ok()) PHI_LOG(kError, "scrub: audit append failed", {{"status", s}});
}

ScrubStatus Scrubber::status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return status_;
}

}  // namespace phi::services
