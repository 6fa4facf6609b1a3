// phi::backup: online backup of a running storage, and offline restore.
//
// Backup (phigatectl backup DIR; run inside phigated, which holds the storage):
//  1. takes a RemovalGate hold: from now on no object file is unlinked (an
//     erasure or a duplicate replace queues its unlinks until the end);
//  2. copies catalog.db to DIR/catalog.db with SQLite's online backup API in
//     one step, i.e. one read transaction: a consistent snapshot of committed
//     state. Ingest is not blocked (WAL: readers never block the writer);
//  3. reads the snapshot: the object ids and sizes it names, the KEK ids that
//     wrap its keys, and checks that every instance has its study and key row;
//  4. copies exactly those object files (immutable after their rename) to
//     DIR/objects/ab/cd/<id>.phg, hashing them; objects written after the
//     snapshot are not in it and are not copied;
//  5. fsyncs every file and directory, then writes DIR/MANIFEST atomically
//     (MANIFEST.tmp, fsync, rename, fsync DIR). No MANIFEST = incomplete;
//  6. releases the hold (queued unlinks run) and appends an audit record
//     (actor, counts, manifest hash), also when the backup failed.
// Erasure racing a backup: a study erased after the snapshot is in the backup
// whole (key row + objects); one erased before it is absent whole. Never one
// without the other. DIR must be absolute, outside the storage root, and empty
// or absent (it is created 0700); files are 0600.
//
// Restore (phigated --restore DIR; offline): see restore.h.
// Thread-safety: RunBackup may run concurrently with everything else; the
// caller runs at most one at a time (BackupGuard in the daemon).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "libphi/backup/manifest.h"
#include "libphi/index/sqlite_catalog.h"
#include "libphi/objects/fs_object_store.h"
#include "libphi/services/removal_gate.h"
#include "libphi/util/env.h"

namespace phi::backup {

struct BackupProgress {
  std::string phase;  // "catalog", "objects", "manifest"
  int64_t objects_done = 0;
  int64_t objects_total = 0;
  int64_t bytes_done = 0;  // object bytes copied
  int64_t bytes_total = 0;
};

struct BackupReport {
  Path dir;
  std::string storage_id;
  std::vector<std::string> kek_ids;
  int64_t studies = 0;
  int64_t objects = 0;
  int64_t object_bytes = 0;
  int64_t catalog_bytes = 0;
  std::string manifest_sha256;
  int64_t audit_seq = 0;
  int64_t unlinks_held_back = 0;  // unlinks queued by the gate during this backup
};

struct BackupRequest {
  Path dir;
  std::string actor;  // "admin:uid=N"
  // After each object; returning false stops the backup (Unavailable).
  std::function<bool(const BackupProgress&)> progress;
};

// The meta key holding the storage id (created by the first backup).
inline constexpr const char* kStorageIdMeta = "storage_id";

Result<BackupReport> RunBackup(index::SqliteCatalog& catalog, objects::FsObjectStore& store,
                               services::RemovalGate& gate, Env& env, const BackupRequest& req);

// Checks DIR for a backup: absolute, normalised, not inside `storage_root`
// (nor containing it). Exposed for tests.
Status CheckBackupDir(const Path& dir, const Path& storage_root);

}  // namespace phi::backup
