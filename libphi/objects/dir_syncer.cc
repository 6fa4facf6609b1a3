#include "libphi/objects/dir_syncer.h"

#include <utility>
#include <vector>

namespace phi::objects {

Status DirSyncer::Sync(const Path& dir) { return SyncAll({dir}); }

Status DirSyncer::SyncAll(const std::vector<Path>& dirs) {
  std::unique_lock<std::mutex> lock(mu_);
  std::vector<std::shared_ptr<Batch>> mine;
  mine.reserve(dirs.size());
  for (const Path& dir : dirs) {
    std::shared_ptr<Batch>& slot = pending_[dir];
    if (slot == nullptr) slot = std::make_shared<Batch>();
    mine.push_back(slot);
  }
  auto all_done = [&] {
    for (const auto& b : mine) {
      if (!b->done) return false;
    }
    return true;
  };
  ++queued_;
  cv_.wait(lock, [&] { return all_done() || !leader_active_; });
  --queued_;
  while (!all_done()) {
    // No leader: this caller syncs everything pending, its own dirs included.
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
    // Another caller may have become leader meanwhile with some of ours.
    if (!all_done()) cv_.wait(lock, [&] { return all_done() || !leader_active_; });
  }
  for (const auto& b : mine) {
    if (!b->status.ok()) return b->status;
  }
  return Status::Ok();
}

size_t DirSyncer::QueuedForTest() {
  std::lock_guard<std::mutex> lock(mu_);
  return queued_;
}

}  // namespace phi::objects
