#include "libphi/backup/restore.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <set>

#include "libphi/backup/file_copy.h"
#include "libphi/util/log.h"

namespace phi::backup {

Result<std::unique_ptr<StorageLock>> StorageLock::Acquire(const Path& root) {
  int fd = ::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return PosixError("open storage root " + root.string(), errno);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK) {
      return Status::Unavailable("storage root " + root.string() +
                                 " is in use (phigated is running on it, or a restore is)");
    }
    return PosixError("flock storage root " + root.string(), err);
  }
  return std::unique_ptr<StorageLock>(new StorageLock(fd));
}

StorageLock::~StorageLock() {
  if (fd_ >= 0) ::close(fd_);
}

Result<Manifest> CheckBackup(Env& env, const Path& dir) {
  if (!env.FileExists(dir / kManifestName)) {
    return Status::NotFound("no " + (dir / kManifestName).string() +
                            ": not a phigate backup, or an incomplete one (the backup did not "
                            "finish); nothing restored");
  }
  PHI_ASSIGN_OR_RETURN(std::string text, env.ReadSmallFile(dir / kManifestName, kMaxManifestBytes));
  PHI_ASSIGN_OR_RETURN(Manifest m, ParseManifest(text));
  for (const auto& f : m.files) {
    Result<CopiedFile> h = HashFile(env, dir / f.path);
    if (!h.ok()) {
      return Status::Corruption("backup file " + f.path + " cannot be read (" +
                                h.status().ToString() + "); nothing restored");
    }
    if (h->size != f.size || h->sha256 != f.sha256) {
      return Status::Corruption("backup file " + f.path +
                                " does not match the MANIFEST (SHA-256 or size differs: damaged "
                                "or altered); nothing restored");
    }
  }
  return m;
}

namespace {

Status CheckEmptyRoot(Env& env, const Path& root) {
  PHI_ASSIGN_OR_RETURN(std::vector<std::string> names, env.ListDir(root));
  for (const auto& n : names) {
    if (n == "lost+found") continue;
    if (n == "objects" || n == "tmp") {
      Result<std::vector<std::string>> sub = env.ListDir(root / n);
      if (sub.ok() && sub->empty()) continue;
    }
    return Status::AlreadyExists("storage root " + root.string() + " is not empty (it has '" + n +
                                 "'): restore only onto an empty storage root; nothing restored");
  }
  return Status::Ok();
}

}  // namespace

Result<RestoreReport> RestoreBackup(Env& env, const Path& dir, const Path& root,
                                    const std::vector<std::string>& configured) {
  PHI_RETURN_IF_ERROR(CheckEmptyRoot(env, root));
  PHI_ASSIGN_OR_RETURN(Manifest m, CheckBackup(env, dir));
  for (const auto& k : m.kek_ids) {
    if (std::find(configured.begin(), configured.end(), k) == configured.end()) {
      return Status::InvalidArgument("the backup needs KEK '" + k +
                                     "', which is not in keys.keks: configure it (the same "
                                     "key as when the backup was taken); nothing restored");
    }
  }

  std::vector<Path> written;
  std::set<Path> dirs;
  auto undo = [&](const Status& s) {
    for (auto it = written.rbegin(); it != written.rend(); ++it) (void)env.RemoveFile(*it);
    return s.WithContext("restore failed; what it had written was removed");
  };
  // Objects first; catalog.db (the commit point) last.
  for (size_t i = 1; i < m.files.size(); ++i) {
    const auto& f = m.files[i];
    const Path dst = root / f.path;
    if (dirs.insert(dst.parent_path()).second) {
      if (Status s = env.CreateDirs(dst.parent_path()); !s.ok()) return undo(s);
    }
    Result<CopiedFile> c = CopyFile(env, dir / f.path, dst);
    if (!c.ok()) return undo(c.status().WithContext(f.path));
    written.push_back(dst);
    if (c->sha256 != f.sha256 || c->size != f.size) {
      return undo(Status::Corruption("backup file " + f.path + " changed while being restored"));
    }
  }
  std::set<Path> all;
  for (const Path& d : dirs) {
    for (Path p = d; p != root && p.has_parent_path() && p.string().size() > root.string().size();
         p = p.parent_path()) {
      all.insert(p);
    }
  }
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    if (Status s = env.SyncDir(*it); !s.ok()) return undo(s);
  }
  const Path tmp = root / (std::string(kCatalogName) + ".restoring");
  Result<CopiedFile> c = CopyFile(env, dir / kCatalogName, tmp);
  if (!c.ok()) return undo(c.status().WithContext(kCatalogName));
  written.push_back(tmp);
  if (c->sha256 != m.files[0].sha256 || c->size != m.files[0].size) {
    return undo(Status::Corruption("backup file catalog.db changed while being restored"));
  }
  if (Status s = env.RenameFile(tmp, root / kCatalogName); !s.ok()) return undo(s);
  written.back() = root / kCatalogName;
  if (Status s = env.SyncDir(root); !s.ok()) return undo(s);

  RestoreReport r;
  r.storage_id = m.storage_id;
  r.created = m.created;
  r.kek_ids = m.kek_ids;
  r.studies = m.studies;
  r.objects = m.objects;
  r.object_bytes = m.object_bytes;
  PHI_LOG(kNotice, "backup restored",
          {{"dir", log::Safe(dir.string())},
           {"root", log::Safe(root.string())},
           {"objects", r.objects},
           {"object_bytes", r.object_bytes}});
  return r;
}

}  // namespace phi::backup
