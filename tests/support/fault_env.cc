#include "tests/support/fault_env.h"

#include <unistd.h>

#include <cerrno>
#include <utility>

namespace phi::testing {
namespace {

Path Norm(const Path& p) { return p.lexically_normal(); }

}  // namespace

// Tracks appends and syncs of one file created through a FaultEnv.
class FaultWritableFile final : public WritableFile {
 public:
  FaultWritableFile(FaultEnv& env, Path path, WritableFilePtr target)
      : env_(env), path_(std::move(path)), target_(std::move(target)) {}

  Status Append(std::span<const std::byte> data) override {
    if (int err = env_.Enter(FaultEnv::Op::kAppend, path_); err != 0) {
      return PosixError("write " + path_.string(), err);
    }
    bool short_append;
    {
      std::lock_guard<std::mutex> lock(env_.mu_);
      short_append = env_.short_appends_;
    }
    if (short_append) {
      auto part = data.first(data.size() / 2);
      Status s = target_->Append(part);
      if (s.ok()) env_.OnAppend(path_, part.size());
      return PosixError("write " + path_.string(), ENOSPC);
    }
    Status s = target_->Append(data);
    if (s.ok()) env_.OnAppend(path_, data.size());
    return s;
  }

  Status Sync() override {
    if (int err = env_.Enter(FaultEnv::Op::kSync, path_); err != 0) {
      return PosixError("fdatasync " + path_.string(), err);
    }
    Status s = target_->Sync();
    if (s.ok()) env_.OnSync(path_);
    return s;
  }

  Status Close() override {
    if (int err = env_.Enter(FaultEnv::Op::kClose, path_); err != 0) {
      (void)target_->Close();
      return PosixError("close " + path_.string(), err);
    }
    return target_->Close();
  }

 private:
  FaultEnv& env_;
  const Path path_;  // the path it was created at (renames are tracked by FaultEnv)
  WritableFilePtr target_;
};

void FaultEnv::FailNth(Op op, int n, int err) {
  std::lock_guard<std::mutex> lock(mu_);
  faults_[static_cast<int>(op)] = Fault{n, false, err};
}

void FaultEnv::FailAlways(Op op, int err) {
  std::lock_guard<std::mutex> lock(mu_);
  faults_[static_cast<int>(op)] = Fault{0, true, err};
}

void FaultEnv::SetShortAppends(bool on) {
  std::lock_guard<std::mutex> lock(mu_);
  short_appends_ = on;
}

void FaultEnv::ClearFaults() {
  std::lock_guard<std::mutex> lock(mu_);
  for (Fault& f : faults_) f = Fault{};
  short_appends_ = false;
}

void FaultEnv::SetHook(Op op, Hook hook) {
  std::lock_guard<std::mutex> lock(mu_);
  hooks_[static_cast<int>(op)] = std::move(hook);
}

int FaultEnv::Calls(Op op) {
  std::lock_guard<std::mutex> lock(mu_);
  return calls_[static_cast<int>(op)];
}

std::vector<Path> FaultEnv::SyncedDirs() {
  std::lock_guard<std::mutex> lock(mu_);
  return synced_dirs_;
}

int FaultEnv::Enter(Op op, const Path& p) {
  const int i = static_cast<int>(op);
  Hook hook;
  {
    std::lock_guard<std::mutex> lock(mu_);
    hook = hooks_[i];
  }
  if (hook) hook(p);  // before the fault decision: a hook may set faults
  std::lock_guard<std::mutex> lock(mu_);
  ++calls_[i];
  Fault& f = faults_[i];
  if (f.always) return f.err;
  if (f.countdown > 0 && --f.countdown == 0) return f.err;
  return 0;
}

void FaultEnv::OnAppend(const Path& p, uint64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  // The file may have been renamed since it was created: find it by origin.
  auto it = files_.find(Norm(p));
  if (it == files_.end()) {
    for (const PendingRename& r : renames_) {
      if (r.from == Norm(p)) it = files_.find(r.to);
    }
  }
  if (it != files_.end()) it->second.size += n;
}

void FaultEnv::OnSync(const Path& p) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = files_.find(Norm(p));
  if (it == files_.end()) {
    for (const PendingRename& r : renames_) {
      if (r.from == Norm(p)) it = files_.find(r.to);
    }
  }
  if (it != files_.end()) it->second.synced_size = it->second.size;
}

Result<WritableFilePtr> FaultEnv::NewWritableFile(const Path& p) {
  if (int err = Enter(Op::kNewWritableFile, p); err != 0) {
    return PosixError("create " + p.string(), err);
  }
  PHI_ASSIGN_OR_RETURN(WritableFilePtr f, target().NewWritableFile(p));
  {
    std::lock_guard<std::mutex> lock(mu_);
    files_[Norm(p)] = FileState{};
  }
  return WritableFilePtr(new FaultWritableFile(*this, p, std::move(f)));
}

Status FaultEnv::RenameFile(const Path& from, const Path& to) {
  if (int err = Enter(Op::kRename, from); err != 0) {
    return PosixError("rename " + from.string() + " -> " + to.string(), err);
  }
  PHI_RETURN_IF_ERROR(target().RenameFile(from, to));
  std::lock_guard<std::mutex> lock(mu_);
  bool from_durable = false;
  auto it = files_.find(Norm(from));
  if (it != files_.end()) {
    FileState st = it->second;
    from_durable = st.entry_durable;
    st.entry_durable = false;
    files_.erase(it);
    files_[Norm(to)] = st;
  }
  renames_.push_back(PendingRename{Norm(from), Norm(to), from_durable});
  return Status::Ok();
}

Status FaultEnv::SyncDir(const Path& dir) {
  if (int err = Enter(Op::kSyncDir, dir); err != 0) {
    return PosixError("fsync dir " + dir.string(), err);
  }
  PHI_RETURN_IF_ERROR(target().SyncDir(dir));
  std::lock_guard<std::mutex> lock(mu_);
  const Path d = Norm(dir);
  synced_dirs_.push_back(d);
  for (auto& [path, st] : files_) {
    if (path.parent_path() == d) st.entry_durable = true;
  }
  std::erase_if(renames_, [&](const PendingRename& r) { return r.to.parent_path() == d; });
  return Status::Ok();
}

Status FaultEnv::RemoveFile(const Path& p) {
  if (int err = Enter(Op::kRemove, p); err != 0) return PosixError("unlink " + p.string(), err);
  PHI_RETURN_IF_ERROR(target().RemoveFile(p));
  std::lock_guard<std::mutex> lock(mu_);
  files_.erase(Norm(p));
  return Status::Ok();
}

Status FaultEnv::CreateDirs(const Path& dir) {
  if (int err = Enter(Op::kCreateDirs, dir); err != 0) {
    return PosixError("mkdir " + dir.string(), err);
  }
  return target().CreateDirs(dir);
}

Status FaultEnv::SimulateCrash() {
  std::lock_guard<std::mutex> lock(mu_);
  Status result;
  for (auto r = renames_.rbegin(); r != renames_.rend(); ++r) {
    if (::rename(r->to.c_str(), r->from.c_str()) != 0) {
      if (result.ok()) result = PosixError("crash: undo rename " + r->to.string(), errno);
      continue;
    }
    auto it = files_.find(r->to);
    if (it != files_.end()) {
      FileState st = it->second;
      st.entry_durable = r->from_entry_durable;
      files_.erase(it);
      files_[r->from] = st;
    }
  }
  for (const auto& [path, st] : files_) {
    if (!st.entry_durable) {
      if (::unlink(path.c_str()) != 0 && errno != ENOENT && result.ok()) {
        result = PosixError("crash: unlink " + path.string(), errno);
      }
    } else if (st.size > st.synced_size) {
      if (::truncate(path.c_str(), static_cast<off_t>(st.synced_size)) != 0 && result.ok()) {
        result = PosixError("crash: truncate " + path.string(), errno);
      }
    }
  }
  files_.clear();
  renames_.clear();
  return result;
}

}  // namespace phi::testing
