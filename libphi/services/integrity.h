// phi::services integrity: `phigatectl verify [--study UID]` and the
// background scrub. Reads every object of the storage (or of one study)
// through its study key - every AES-GCM segment tag is checked - and checks
// the catalog against it: the study/series/instance PHI decrypts, sizes and
// counters agree, no object is missing, and (whole-storage mode) no object
// file is unreferenced. Reports problems; never changes anything. Problems
// carry internal ids only (no PHI).
//
// A study erased while it is being checked is not a problem: its findings
// are dropped when the study is gone from the catalog afterwards.
//
// Scrubber: a daemon thread that runs VerifyStorage over the whole storage
// every `interval_hours`, reading at most `rate_mb_per_s` (RateLimiter, per
// decrypted chunk), logging and auditing what it finds. Stop() returns
// promptly (the wait and the read loop both watch the stop flag).
//
// Thread-safety: VerifyStorage is a free function over thread-safe services.
// RateLimiter is not thread-safe (one owner). Scrubber is thread-safe; mu_
// guards status_.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "libphi/config/config.h"
#include "libphi/index/catalog.h"
#include "libphi/objects/object_store.h"
#include "libphi/services/study_keys.h"
#include "libphi/vault/key_vault.h"

namespace phi::services {

struct IntegrityProblem {
  std::string kind;  // "object_unreadable", "size_mismatch", "phi_unreadable",
                     // "counter_mismatch", "orphan_object"
  int64_t study_pk = 0;
  std::string object;  // "object:<id>", "series:<pk>", "instance:<pk>", "study:<pk>"
  std::string detail;  // status text (no PHI)
};

struct IntegrityReport {
  int64_t studies = 0;
  int64_t instances = 0;
  int64_t bytes = 0;  // plaintext bytes read and authenticated
  int64_t problem_count = 0;
  std::vector<IntegrityProblem> problems;  // the first kMaxListedProblems
  bool ok() const { return problem_count == 0; }
};

inline constexpr size_t kMaxListedProblems = 1000;

struct VerifyProgress {
  int64_t instances_done = 0;
  int64_t instances_total = 0;  // catalog count at the start (a study: its instances)
  int64_t bytes_done = 0;       // plaintext bytes authenticated so far
};

struct VerifyOptions {
  std::optional<std::string> study_instance_uid;  // one study, else everything
  // After each instance; returning false stops the run (Unavailable).
  std::function<bool(const VerifyProgress&)> progress;
  // Before each decrypted chunk is accepted, with its size (the scrub's rate
  // limit); a non-OK status stops the run with that status.
  std::function<Status(int64_t bytes)> on_bytes;
  // Files for which this returns true are not reported as orphans (erased
  // objects whose unlink a running backup holds back: RemovalGate::IsDeferred).
  std::function<bool(const std::string& object_id)> expected_unreferenced;
};

Result<IntegrityReport> VerifyStorage(vault::KeyVault& vault, index::Catalog& catalog,
                                      objects::ObjectStore& objects, StudyKeys& keys,
                                      const VerifyOptions& options);

// The earlier form: progress(done_instances) after each instance (may be empty).
Result<IntegrityReport> VerifyStorage(vault::KeyVault& vault, index::Catalog& catalog,
                                      objects::ObjectStore& objects, StudyKeys& keys,
                                      const std::optional<std::string>& study_instance_uid,
                                      const std::function<void(int64_t)>& progress);

// A token bucket over bytes: Reserve(n, now) takes n bytes and returns how
// long the caller must wait before using them so that, over any window, the
// rate stays at bytes_per_second (plus one burst). Pure arithmetic over the
// times it is given, so it is testable without a clock.
class RateLimiter {
 public:
  RateLimiter(double bytes_per_second, double burst_bytes);
  std::chrono::nanoseconds Reserve(int64_t bytes, MonotonicTime now);

 private:
  const double rate_;   // bytes per second
  const double burst_;  // bucket size in bytes
  double tokens_;       // may go negative: debt paid by waiting
  std::optional<MonotonicTime> last_;
};

struct ScrubStatus {
  bool enabled = false;
  std::string state = "disabled";  // disabled | waiting | running | stopped
  uint32_t rate_mb_per_s = 0;
  uint32_t interval_hours = 0;
  int64_t passes = 0;                  // completed passes
  int64_t current_instances_done = 0;  // while running
  int64_t current_instances_total = 0;
  int64_t current_bytes = 0;
  std::optional<SystemTime> last_started;
  std::optional<SystemTime> last_finished;
  std::optional<IntegrityReport> last_report;  // problems trimmed to the first 20
  std::string last_error;                      // a pass that could not run to the end
  std::optional<SystemTime> next_run;
};

class Scrubber {
 public:
  // expected_unreferenced: see VerifyOptions (may be empty).
  Scrubber(vault::KeyVault& vault, index::Catalog& catalog, objects::ObjectStore& objects,
           StudyKeys& keys, const config::ScrubConfig& cfg, Env& env,
           std::function<bool(const std::string&)> expected_unreferenced = nullptr);
  ~Scrubber();  // Stop()
  Scrubber(const Scrubber&) = delete;
  Scrubber& operator=(const Scrubber&) = delete;

  // Starts the thread when cfg.enabled; no-op otherwise.
  void Start();
  // Stops the thread promptly (an ongoing pass is abandoned); idempotent.
  void Stop();
  // One whole pass, now, on the calling thread, at the configured rate:
  // logs each problem and appends one audit record per problem (the first
  // kMaxAuditedProblems) plus one for the pass when it found any.
  Result<IntegrityReport> RunPass();
  ScrubStatus status() const;

  static constexpr size_t kMaxAuditedProblems = 100;

 private:
  void Loop();
  bool WaitFor(std::chrono::nanoseconds d);  // false when stopping
  void AuditProblems(const IntegrityReport& r);

  vault::KeyVault& vault_;
  index::Catalog& catalog_;
  objects::ObjectStore& objects_;
  StudyKeys& keys_;
  const config::ScrubConfig cfg_;
  Env& env_;
  const std::function<bool(const std::string&)> expected_unreferenced_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;   // guarded by mu_
  ScrubStatus status_;  // guarded by mu_
  std::thread thread_;
};

}  // namespace phi::services
