// phi::backup restore: puts a backup made by RunBackup onto an EMPTY storage
// root. Offline: `phigated --config FILE --restore DIR` runs it (phigatectl
// restore DIR execs that), with the service stopped.
//
//  1. Takes an exclusive flock on the storage root directory - the lock
//     phigated holds while it runs - so neither a running daemon nor a second
//     restore can share the root; refuses a root with anything in it other
//     than lost+found (an empty objects/ or tmp/ is tolerated).
//  2. Reads DIR/MANIFEST (absent: the backup is incomplete), checks its own
//     SHA-256, its format, and that every KEK id it needs is configured.
//  3. Checks the size and SHA-256 of EVERY file before writing anything:
//     one changed byte anywhere refuses the restore, naming the file.
//  4. Copies the objects (hashing again while copying, so a file changed
//     between check and copy is caught too), fsyncs them and their
//     directories, then catalog.db last (tmp, fsync, rename, fsync root):
//     catalog.db present = restore complete.
// On failure, what was written is removed. The caller then opens the storage
// normally (recovery, verify) with the same KEKs.
// Thread-safety: free functions; the flock makes concurrent restores safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "libphi/backup/manifest.h"
#include "libphi/util/env.h"

namespace phi::backup {

struct RestoreReport {
  std::string storage_id;
  std::string created;
  std::vector<std::string> kek_ids;
  int64_t studies = 0;
  int64_t objects = 0;
  int64_t object_bytes = 0;
};

// An exclusive, non-blocking flock on a storage root directory, released
// when destroyed. phigated holds one for its lifetime.
class StorageLock {
 public:
  static Result<std::unique_ptr<StorageLock>> Acquire(const Path& root);
  ~StorageLock();
  StorageLock(const StorageLock&) = delete;
  StorageLock& operator=(const StorageLock&) = delete;

 private:
  explicit StorageLock(int fd) : fd_(fd) {}
  int fd_;
};

// Reads and checks DIR/MANIFEST and every file it lists (sizes, SHA-256).
// Corruption naming the first damaged file.
Result<Manifest> CheckBackup(Env& env, const Path& backup_dir);

// REQUIRES: the caller holds the StorageLock of storage_root.
Result<RestoreReport> RestoreBackup(Env& env, const Path& backup_dir, const Path& storage_root,
                                    const std::vector<std::string>& configured_kek_ids);

}  // namespace phi::backup
