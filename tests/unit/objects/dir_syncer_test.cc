#include "libphi/objects/dir_syncer.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <thread>

#include "tests/support/fault_env.h"
#include "tests/support/temp_dir.h"

namespace phi::objects {
namespace {

using testing::FaultEnv;

// Blocks the first SyncDir until released, so that the callers arriving
// meanwhile deterministically form one batch.
class Gate {
 public:
  void WaitIfFirst() {
    std::unique_lock<std::mutex> lock(mu_);
    if (passed_++ > 0) return;
    entered_ = true;
    cv_.notify_all();
    cv_.wait(lock, [&] { return open_; });
  }
  void WaitEntered() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return entered_; });
  }
  void Open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int passed_ = 0;
  bool entered_ = false;
  bool open_ = false;
};

void WaitQueued(DirSyncer& s, size_t n) {
  while (s.QueuedForTest() < n) std::this_thread::yield();
}

TEST(DirSyncer, CallersArrivingDuringASyncShareOneSyncPerDirectory) {
  testing::TempDir dir;
  std::filesystem::create_directories(dir.path() / "a");
  std::filesystem::create_directories(dir.path() / "b");
  PosixEnv posix;
  FaultEnv env(posix);
  Gate gate;
  env.SetHook(FaultEnv::Op::kSyncDir, [&](const Path&) { gate.WaitIfFirst(); });
  DirSyncer syncer(env);

  std::vector<Status> results(7);
  std::vector<std::thread> threads;
  threads.emplace_back([&] { results[0] = syncer.Sync(dir.path() / "a"); });
  gate.WaitEntered();  // thread 0 is the leader, inside SyncDir(a)
  for (int i = 1; i <= 6; ++i) {
    Path d = dir.path() / (i % 2 ? "a" : "b");
    threads.emplace_back([&, i, d] { results[i] = syncer.Sync(d); });
  }
  WaitQueued(syncer, 6);
  gate.Open();
  for (auto& t : threads) t.join();
  for (const Status& s : results) EXPECT_TRUE(s.ok()) << s.ToString();
  // One sync for the leader, then one per distinct dir for the batch of six.
  EXPECT_EQ(env.Calls(FaultEnv::Op::kSyncDir), 3);
  auto dirs = env.SyncedDirs();
  ASSERT_EQ(dirs.size(), 3u);
  EXPECT_EQ(dirs[0], dir.path() / "a");
}

TEST(DirSyncer, ErrorGoesToEveryCallerOfThatDirectoryOnly) {
  testing::TempDir dir;
  std::filesystem::create_directories(dir.path() / "a");
  std::filesystem::create_directories(dir.path() / "b");
  PosixEnv posix;
  FaultEnv env(posix);
  Gate gate;
  env.SetHook(FaultEnv::Op::kSyncDir, [&](const Path& p) {
    gate.WaitIfFirst();
    if (p.filename() == "b") env.FailNth(FaultEnv::Op::kSyncDir, 1, EIO);
  });
  DirSyncer syncer(env);
  std::vector<Status> results(5);
  std::vector<std::thread> threads;
  threads.emplace_back([&] { results[0] = syncer.Sync(dir.path() / "a"); });
  gate.WaitEntered();
  for (int i = 1; i <= 4; ++i) {
    Path d = dir.path() / (i <= 2 ? "a" : "b");
    threads.emplace_back([&, i, d] { results[i] = syncer.Sync(d); });
  }
  WaitQueued(syncer, 4);
  gate.Open();
  for (auto& t : threads) t.join();
  EXPECT_TRUE(results[0].ok());
  EXPECT_TRUE(results[1].ok());
  EXPECT_TRUE(results[2].ok());
  EXPECT_EQ(results[3].code(), Code::kIOError);
  EXPECT_EQ(results[4].code(), Code::kIOError);
  EXPECT_EQ(env.Calls(FaultEnv::Op::kSyncDir), 3);
}

TEST(DirSyncer, SequentialCallsEachSync) {
  testing::TempDir dir;
  PosixEnv posix;
  FaultEnv env(posix);
  DirSyncer syncer(env);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(syncer.Sync(dir.path()).ok());
  EXPECT_EQ(env.Calls(FaultEnv::Op::kSyncDir), 3);
  EXPECT_EQ(syncer.Sync(dir.path() / "missing").code(), Code::kNotFound);
}

}  // namespace
}  // namespace phi::objects
