#include "libphi/objects/dir_syncer.h"

#include <utility>
#include <vector>

namespace phi::objects {

Status DirSyncer::Sync(const Path& dir) {
  std::unique_lock<std::mutex> lock(mu_);
  std::shared_ptr<Batch>& slot = pending_[dir];
  if (slot == nullptr) slot = std::make_shared<Batch>();
  std::shared_ptr<Batch> mine = slot;
  ++queued_;
  cv_.wait(lock, [&] { return mine->done || !leader_active_; });
  --queued_;
  while (!mine->done) {
    // No leader: this caller syncs everything pending, its own dir included.
    leader_active_ = true;
    std::map<Path, std::shared_ptr<Batch>> batch;
    batch.swap(pending_);
    lock.unlock();
    std::vector<std::pair<std::shared_ptr<Batch>, Status>> results;
    results.reserve(batch.size());
    for (auto& [d, b] : batch) results.emplace_back(b, env_.SyncDir(d));
    lock.lock();
    for (auto& [b, s] : results) {
      b->status = std::move(s);
      b->done = true;
    }
    leader_active_ = false;
    cv_.notify_all();
  }
  return mine->status;
}

size_t DirSyncer::QueuedForTest() {
  std::lock_guard<std::mutex> lock(mu_);
  return queued_;
}

}  // namespace phi::objects
