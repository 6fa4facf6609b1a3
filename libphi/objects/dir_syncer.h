// DirSyncer: group commit of directory fsyncs. Callers that need a directory
// entry made durable (after a rename into it) call Sync(dir) and block; the
// calls that arrive while a sync is in flight are batched, and one caller
// (the leader) then runs Env::SyncDir once per distinct directory for the
// whole batch. Every caller returns only after a SyncDir of its directory
// that *started after its call* completed, so a rename done before Sync() is
// always covered.
//
// Thread-safety: thread-safe. Guarded by mu_: pending_, leader_active_, waiters_.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "libphi/util/env.h"
#include "libphi/util/status.h"

namespace phi::objects {

class DirSyncer {
 public:
  explicit DirSyncer(Env& env) : env_(env) {}
  DirSyncer(const DirSyncer&) = delete;
  DirSyncer& operator=(const DirSyncer&) = delete;

  Status Sync(const Path& dir);
  // The same for several directories at once (one batch when no sync is in
  // flight); returns the first failure.
  Status SyncAll(const std::vector<Path>& dirs);

  // Callers currently blocked in Sync() waiting for a batch that has not
  // started yet (tests use this to build a deterministic batch).
  size_t QueuedForTest();

 private:
  struct Batch {
    bool done = false;
    Status status;
  };

  Env& env_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<Path, std::shared_ptr<Batch>> pending_;  // not started yet, one per dir
  bool leader_active_ = false;
  size_t queued_ = 0;
};

}  // namespace phi::objects
