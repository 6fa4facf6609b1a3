// FaultEnv: an EnvWrapper for durability tests (LevelDB FaultInjectionTestEnv,
// SpecialEnv). It forwards to a real Env (normally PosixEnv over a TempDir, so
// real files and real fsync stay in play) and can:
//   - fail the Nth call (or every call) of an operation with an errno
//     (EIO, ENOSPC, ...), returned as PosixError like the real Env would;
//   - make appends short: write only a prefix, then fail with ENOSPC;
//   - run a hook before an operation (to block it, or to observe the order);
//   - count calls per operation;
//   - simulate a crash (power loss) with SimulateCrash(): every file created
//     through this Env loses the bytes appended since its last Sync; files
//     whose directory entry was not made durable by a SyncDir of their
//     directory are deleted; renames not followed by a SyncDir of the target
//     directory are undone (most recent first). Files created outside this
//     Env are untouched. Crash simulation edits the real files with POSIX
//     calls, so the target Env must be a PosixEnv.
//
// Counting starts at the call after FailNth(); n = 1 is the very next call.
// Thread-safety: thread-safe (one mutex). Files returned by NewWritableFile
// keep a reference to this FaultEnv: REQUIRES they do not outlive it.
#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "libphi/util/env.h"

namespace phi::testing {

class FaultEnv : public EnvWrapper {
 public:
  enum class Op {
    kNewWritableFile,
    kAppend,  // WritableFile::Append
    kSync,    // WritableFile::Sync
    kClose,   // WritableFile::Close
    kSyncDir,
    kRename,
    kRemove,
    kCreateDirs,
    kCount_,  // not an operation
  };
  using Hook = std::function<void(const Path& path)>;

  explicit FaultEnv(Env& target) : EnvWrapper(target) {}

  // The nth call of `op` from now fails with `err` (the call is not forwarded).
  void FailNth(Op op, int n, int err);
  // Every call of `op` fails with `err` until ClearFaults().
  void FailAlways(Op op, int err);
  // Appends write about half of their data, then fail with ENOSPC.
  void SetShortAppends(bool on);
  void ClearFaults();
  // Runs `hook` (outside the lock) before each call of `op`, before the fault
  // decision (so a hook may call FailNth for the current call); empty to remove.
  void SetHook(Op op, Hook hook);
  // Calls of `op` so far (including failed ones).
  int Calls(Op op);
  // Paths passed to SyncDir so far, in order.
  std::vector<Path> SyncedDirs();

  // Power loss: see the header comment. Forgets all tracked state afterwards.
  Status SimulateCrash();

  Result<WritableFilePtr> NewWritableFile(const Path& p) override;
  Status RenameFile(const Path& from, const Path& to) override;
  Status SyncDir(const Path& dir) override;
  Status RemoveFile(const Path& p) override;
  Status CreateDirs(const Path& dir) override;

 private:
  friend class FaultWritableFile;
  struct FileState {
    uint64_t size = 0;           // bytes appended
    uint64_t synced_size = 0;    // bytes durable (as of the last successful Sync)
    bool entry_durable = false;  // its directory was SyncDir'd since creation/rename
  };
  struct Fault {
    int countdown = 0;  // > 0: fail when it reaches 0
    bool always = false;
    int err = 0;
  };
  struct PendingRename {
    Path from;
    Path to;
    bool from_entry_durable;
  };

  // Counts the call, runs the hook, and returns the errno to fail with (0: proceed).
  int Enter(Op op, const Path& p);
  void OnAppend(const Path& p, uint64_t n);
  void OnSync(const Path& p);

  std::mutex mu_;
  Fault faults_[static_cast<int>(Op::kCount_)];
  Hook hooks_[static_cast<int>(Op::kCount_)];
  int calls_[static_cast<int>(Op::kCount_)] = {};
  bool short_appends_ = false;
  std::map<Path, FileState> files_;     // files created through this Env, by current path
  std::vector<PendingRename> renames_;  // not yet covered by a SyncDir of the target dir
  std::vector<Path> synced_dirs_;
};

}  // namespace phi::testing
