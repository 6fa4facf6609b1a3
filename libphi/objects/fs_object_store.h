// FsObjectStore: the ObjectStore on a local filesystem (the LUKS2 volume).
//
//   <root>/objects/ab/cd/<id>.phg   ab, cd = first four hex chars of <id>
//   <root>/tmp/<id>.tmp             in-flight writes (same filesystem)
//
// Durable write path (DESIGN "Durability"): segments go to tmp/<id>.tmp,
// which is fsync'd and closed, renamed into objects/ab/cd/, and that
// directory is fsync'd. Object ids are random, except that consecutive
// objects share the first four hex digits (the leaf directory) for
// kObjectsPerLeafVisit objects before a new random leaf is drawn: concurrent
// writers then publish into the same directory and share its fsync
// (DirSyncer), and a new store creates a leaf per that many objects, not per
// object. Over time the leaves still fill uniformly. The 256 first-level fan-out directories are
// made at Open; a leaf is created on demand when its object is started (so the object's own
// fdatasync already commits the mkdir on a journaling filesystem) and its parent is synced in the
// same DirSyncer batch as the leaf after the rename. Directory fsyncs of concurrent Finish() calls
// are shared (DirSyncer). Every OS access goes through Env.
//
// Spare files (options.spare_files > 0): a background thread keeps that many
// tmp/<id>.tmp files created and open, and NewObject takes one instead of
// creating its file on the caller's thread. Creating a file is the costly
// step of a new object on some filesystems (ext4 without a journal scans past
// recently deleted inodes: ~0.4 ms per create measured after a few hundred
// deletions), and it then happens while the caller receives its next object.
// Spares are ordinary in-flight tmp files: CleanTmp skips them while the
// store is open, the destructor removes them, and after a crash start-up
// removes them like any orphan in tmp/. The thread starts with the first
// NewObject, so a store that never writes (recovery, tools) leaves tmp/ as it
// found it.
//
// Sticky failure (LevelDB RecordBackgroundError): after any failed fsync,
// rename or directory fsync, the store refuses new writes and Finish(),
// returning that first error, until it is reopened: a failed fsync cannot be
// safely retried. Reads, Remove and listing keep working.
//
// Thread-safety: thread-safe. mu_ guards bg_error_ and in_flight_; dirs_mu_
// guards the fan-out state; spare_mu_ the spare files.
#pragma once

#include <array>
#include <bitset>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "libphi/objects/dir_syncer.h"
#include "libphi/objects/object_store.h"
#include "libphi/util/env.h"

namespace phi::objects {

// Consecutive new objects placed in one leaf directory (see above).
inline constexpr uint32_t kObjectsPerLeafVisit = 128;

struct FsObjectStoreOptions {
  uint32_t segment_size = phg::kDefaultSegmentSize;  // validated by Open
  uint32_t spare_files = 0;  // see "Spare files" above; at most kMaxSpareFiles
};

inline constexpr uint32_t kMaxSpareFiles = 64;

class FsObjectStore final : public ObjectStore {
 public:
  // Creates root/objects and root/tmp if missing. Does not clean tmp/
  // (call CleanTmp() during recovery).
  static Result<std::unique_ptr<FsObjectStore>> Open(const Path& root, Env& env,
                                                     FsObjectStoreOptions options = {});
  ~FsObjectStore() override;
  FsObjectStore(const FsObjectStore&) = delete;
  FsObjectStore& operator=(const FsObjectStore&) = delete;

  Result<ObjectWriterPtr> NewObject(const KeyId& study_key_id, crypto::AesGcm& aead) override;
  Result<ObjectReaderPtr> Open(std::string_view object_id, const KeyId& expected_key_id,
                               crypto::AesGcm& aead) override;
  Status Remove(std::string_view object_id) override;
  Result<std::vector<std::string>> ListObjectIds() override;
  Result<size_t> CleanTmp() override;
  Status BackgroundError() override;
  bool IsBeingWritten(std::string_view object_id) override;

  const Path& root() const { return root_; }
  // root/objects/ab/cd/<id>.phg; REQUIRES: a valid id.
  Path ObjectPath(std::string_view object_id) const;
  Path TmpPath(std::string_view object_id) const;
  // Spare files created and open now (tests).
  size_t SpareFilesForTest();

 private:
  friend class FsObjectWriter;
  FsObjectStore(const Path& root, Env& env, FsObjectStoreOptions options);

  // Records the first durability failure; returns `s`.
  Status RecordBackgroundError(const Status& s);
  // Creates objects/ab/cd if missing. Unless it is known durable, appends the
  // directory whose entry must be synced with the leaf (objects/ab: every ab
  // and its entry in objects/ were made durable by Open) to parents_to_sync.
  Status EnsureFanoutDir(std::string_view object_id, std::vector<Path>* parents_to_sync);
  // Gives a fresh random id the current leaf prefix (or makes its own prefix
  // the current one when the leaf's visit is over).
  void SharePrefix(ObjectId& id);
  // Records objects/ab/cd of object_id as durable (its parents were synced).
  void MarkFanoutDurable(std::string_view object_id);
  void EndWrite(const std::string& object_id);

  // A new object's id and its open tmp/<id>.tmp file.
  struct NewFile {
    ObjectId id;
    WritableFilePtr file;
  };
  // Draws a random id (SharePrefix) and creates its tmp file, registered in
  // in_flight_.
  Result<NewFile> CreateTmpFile();
  // A spare file when one is ready (starting the spare thread on first use);
  // nullopt when there is none.
  std::optional<NewFile> TakeSpare();
  void SpareLoop();

  const Path root_;
  const Path objects_dir_;
  const Path tmp_dir_;
  Env& env_;
  const FsObjectStoreOptions options_;
  DirSyncer dir_syncer_;

  // Fan-out state, indexed by the id's first 2 (level 1) or 4 (leaf) hex
  // digits. Guarded by dirs_mu_.
  std::mutex dirs_mu_;
  std::bitset<65536> leaf_durable_;       // objects/ab/cd: its entry in ab is durable
  std::bitset<65536> leaf_created_here_;  // objects/ab/cd: made (or checked) by this process
  bool existing_dirs_durable_ = false;    // set by Open: syncfs succeeded
  std::array<std::byte, 2> prefix_{};     // the current leaf (SharePrefix)
  uint32_t prefix_uses_left_ = 0;

  std::mutex mu_;
  Status bg_error_;                  // guarded by mu_
  std::set<std::string> in_flight_;  // guarded by mu_: ids with a live writer or spare file

  // Spare files. Guarded by spare_mu_: spares_, spare_stop_, spare_thread_.
  std::mutex spare_mu_;
  std::condition_variable spare_cv_;
  std::deque<NewFile> spares_;
  bool spare_stop_ = false;
  std::thread spare_thread_;  // started by the first TakeSpare
};

}  // namespace phi::objects
