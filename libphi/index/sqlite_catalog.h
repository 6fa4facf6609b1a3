// phi::index::SqliteCatalog: the embedded Catalog on one SQLite file,
// <storage_root>/catalog.db (mode 0600; WAL, synchronous=FULL,
// secure_delete=ON, foreign_keys=ON, trusted_schema=OFF, defensive mode, on
// every connection).
//
// Writes go through ONE writer thread that owns the write connection (group
// commit): callers enqueue closures and block; the writer takes everything
// queued (up to Options::max_batch), BEGIN IMMEDIATE, runs each closure in
// its own SAVEPOINT (RELEASE on OK, ROLLBACK TO on error: only that caller
// sees the error), COMMITs once - one WAL fsync for the batch - and then
// completes every caller. A COMMIT (or other I/O) failure fails every caller
// of the batch and makes the catalog sticky-failed: health() and every later
// Write() return the original error until the catalog is reopened.
//
// Reads use a pool of Options::readers read-only (query_only=ON) connections.
// The schema is versioned with PRAGMA user_version and migrated at Open in
// one transaction; a database newer than this build is refused.
//
// The audit chain head (last seq and hash) lives in the writer's memory,
// loaded at Open; AppendAudit computes seq/prev_hash/mac inside the writer's
// transaction, and a rolled-back closure rolls the head back too.
//
// Thread-safety: all public methods are thread-safe. The statistics are
// atomics; the sticky status is guarded by mu_.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "libphi/audit/audit_log.h"
#include "libphi/index/catalog.h"
#include "libphi/util/env.h"

struct sqlite3;

namespace phi::index {

class Db;
class SqliteWriteTxn;

// Counters (X-macro, one list per module).
#define PHI_INDEX_STATS(X)                                                               \
  X(transactions)        /* closures run by the writer */                                \
  X(transactions_failed) /* closures that returned an error or were in a failed batch */ \
  X(commits)             /* successful COMMITs (one fsync each) */                       \
  X(commit_failures)     /* failed batches (BEGIN/COMMIT/auto-rollback) */               \
  X(checkpoints)         /* successful checkpoints (PASSIVE or TRUNCATE) */              \
  X(wal_frames)          /* pages the writer's transactions wrote to the WAL */

struct CatalogStats {
#define PHI_INDEX_STAT_FIELD(n) uint64_t n = 0;
  PHI_INDEX_STATS(PHI_INDEX_STAT_FIELD)
#undef PHI_INDEX_STAT_FIELD
};

class SqliteCatalog final : public Catalog {
 public:
  struct Options {
    size_t readers = 4;      // read-only connections in the pool (>= 1)
    size_t max_batch = 256;  // closures per group commit (>= 1)
    // When fewer closures are queued than the largest of the last 32 batches
    // held, wait up to this long for the others before committing
    // (PostgreSQL's commit_delay with commit_siblings, adaptive): N
    // closed-loop clients then share one commit instead of alternating
    // between small ones. Never waits for a lone writer. 0 disables.
    std::chrono::microseconds commit_delay{500};
    // WAL checkpoints (PASSIVE) run on a background thread with their own
    // connection once the WAL holds this many pages, instead of SQLite's
    // auto-checkpoint inside the COMMIT of whichever batch crosses the
    // threshold (a latency spike for every caller of that batch). 0 keeps
    // SQLite's auto-checkpoint.
    int checkpoint_pages = 1000;
    int busy_timeout_ms = 10000;  // PRAGMA busy_timeout on every connection
    // MAC of the audit chain (the vault's HMAC under its derived audit key).
    // Called only by AppendAudit, on the writer thread - never at Open or by
    // other writes - so it may forward to a vault that loads its derivation
    // secret from meta after the catalog is open. Without it, AppendAudit
    // fails with Internal.
    audit::MacFn audit_mac;
    // Migrate only up to this version (0 = latest). Tests of migrations only.
    int schema_version_for_test = 0;
    // A registered SQLite VFS to open the file with (fault injection in
    // tests; empty = SQLite's default unix VFS).
    std::string vfs_for_test;
  };

  static constexpr const char* kFileName = "catalog.db";
  static constexpr size_t kMaxStudyFilterTokens = 1000;
  static constexpr size_t kMaxCandidates = 100000;

  // Creates the storage root (0700) and catalog.db (0600) when missing.
  static Result<std::unique_ptr<SqliteCatalog>> Open(const Path& storage_root, Env& env,
                                                     Options options);
  static Result<std::unique_ptr<SqliteCatalog>> Open(const Path& storage_root, Env& env) {
    return Open(storage_root, env, Options{});
  }
  // Drains the queue (queued writes still commit), stops the writer, closes.
  ~SqliteCatalog() override;
  SqliteCatalog(const SqliteCatalog&) = delete;
  SqliteCatalog& operator=(const SqliteCatalog&) = delete;

  Status Write(std::function<Status(WriteTxn&)> fn) override;
  std::future<Status> WriteAsync(std::function<Status(WriteTxn&)> fn) override;
  void WriteThen(std::function<Status(WriteTxn&)> fn, std::function<void(Status)> done) override;
  void ClearPendingLater(std::string object_id) override;
  Status health() const override;
  Status Checkpoint() override;

  Result<StudyKeyRow> GetStudyKey(const std::string& key_id) override;
  Result<std::vector<StudyKeyRow>> ListStudyKeys(const std::string& after, size_t limit) override;
  Result<Blob> GetMeta(const std::string& key) override;
  Result<StudyRow> FindStudyByUidToken(const Token& study_uid_token) override;
  Result<StudyRow> GetStudy(int64_t study_pk) override;
  Result<StudyCandidates> QueryStudies(const StudyFilter& f) override;
  Result<std::vector<SeriesRow>> ListSeries(int64_t study_pk) override;
  Result<std::vector<InstanceRow>> ListInstancesOfSeries(int64_t series_pk) override;
  Result<std::vector<InstanceRow>> ListInstancesOfStudy(int64_t study_pk) override;
  Result<InstanceRow> GetInstanceBySopToken(const Token& sop_uid_token) override;
  Result<ObjectCounts> CountObjects() override;
  Result<std::vector<std::string>> ListAllObjectIds() override;
  Result<std::vector<std::string>> ListPendingObjectIds() override;
  Result<int64_t> StudyTotalBytes(int64_t study_pk) override;
  Result<std::string> GetStudySourceAe(int64_t study_pk) override;
  Result<std::vector<WorklistRow>> QueryWorklist(const WorklistFilter& f) override;
  Result<std::vector<ReportRow>> ListReports(const Token& accession_token) override;
  Result<std::vector<Hl7MessageRow>> ListHl7Messages(const Token& patient_id_token,
                                                     size_t limit) override;
  Result<std::vector<audit::AuditRecord>> ReadAudit(int64_t after_seq, size_t limit) override;
  Result<std::optional<std::string>> ReadAuditHead() override;
  Result<std::optional<std::string>> ReadAuditAnchor() override;

  CatalogStats stats() const;
  int schema_version() const { return schema_version_; }
  const Path& path() const { return path_; }

  // Closures waiting in the queue (not yet taken by the writer).
  size_t QueueDepthForTest() const;
  // Value of `PRAGMA <name>` on the writer connection followed by each reader.
  Result<std::vector<std::string>> PragmaOnAllConnectionsForTest(const std::string& name);

 private:
  friend class SqliteWriteTxn;
  struct Job;
  class ReaderLease;

  SqliteCatalog(Path path, Env& env, Options options);
  Status Init();
  Status LoadAuditHead();
  // Checks the signed chain head against the rows, once, on the writer thread
  // before the first batch: the MAC key (derived from a secret stored in this
  // catalog) is only available after Open, so the check cannot run in Open.
  void WriterLoop();
  void RunBatch(std::vector<Job*>& batch);
  void CheckpointerLoop();
  static int WalHook(void* self, sqlite3* db, const char* name, int pages);
  bool PassiveCheckpoint(Db& db);
  void RunRaw(Job* job);
  void SetSticky(const Status& s);
  // Queues job (or completes it at once with the refusal); the future is its result.
  std::future<Status> Submit(Job* job);
  Status Enqueue(Job* job) { return Submit(job).get(); }
  // Sets the job's result and frees it when owned; `job` is dead afterwards.
  static void Complete(Job* job, Status s);
  Result<ReaderLease> AcquireReader();
  void ReleaseReader(Db* db);
  int64_t NowSeconds();
  const char* Vfs() const;

  const Path path_;
  Env& env_;
  const Options options_;
  int schema_version_ = 0;

  // Writer thread state (touched only by the writer thread once started).
  std::unique_ptr<Db> writer_db_;
  audit::ChainHead audit_head_;
  std::thread writer_;
  std::thread::id writer_id_;

  // Queue and sticky failure.
  mutable std::mutex mu_;
  std::condition_variable cv_;  // guarded by mu_: queue_ non-empty or stop_
  std::deque<Job*> queue_;      // guarded by mu_
  bool stop_ = false;           // guarded by mu_
  Status sticky_;               // guarded by mu_
  // Sizes of the last kBatchWindow batches (writer thread only): the largest
  // is how many closures to wait for (commit_delay).
  static constexpr size_t kBatchWindow = 32;
  std::array<size_t, kBatchWindow> recent_batches_{};
  size_t batch_seq_ = 0;
  // Object ids whose kInstancePending flag the next batch clears.
  std::vector<std::string> to_clear_;  // guarded by mu_

  // Background checkpointer.
  std::unique_ptr<Db> checkpoint_db_;
  std::thread checkpointer_;
  std::mutex ckpt_mu_;
  std::condition_variable ckpt_cv_;  // guarded by ckpt_mu_: ckpt_wanted_ or ckpt_stop_
  bool ckpt_wanted_ = false;         // guarded by ckpt_mu_
  bool ckpt_stop_ = false;           // guarded by ckpt_mu_
  int ckpt_asked_at_ = 0;            // writer thread only: WAL frames at the last wake-up
  // Set by the checkpointer after a checkpoint that copied every frame it saw:
  // the writer copies the frames committed meanwhile (see CheckpointerLoop).
  std::atomic<bool> ckpt_finish_{false};

  // Reader pool.
  std::mutex readers_mu_;
  std::condition_variable readers_cv_;
  std::vector<std::unique_ptr<Db>> readers_;  // all, owned
  std::vector<Db*> free_readers_;             // guarded by readers_mu_

#define PHI_INDEX_STAT_ATOMIC(n) std::atomic<uint64_t> stat_##n##_{0};
  PHI_INDEX_STATS(PHI_INDEX_STAT_ATOMIC)
#undef PHI_INDEX_STAT_ATOMIC
};

}  // namespace phi::index
