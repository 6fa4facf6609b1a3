// phi::Env: the only way libphi reaches the operating system (files, time,
// randomness, procfs/sysfs). Components take `Env&` in their constructor; only
// daemon/ calls Env::Default(). Tests wrap the real PosixEnv (EnvWrapper) to
// inject faults while keeping real files and real fsync in play.
// Thread-safety: every Env method may be called from any thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "libphi/util/status.h"

namespace phi {

using Path = std::filesystem::path;
using SystemTime = std::chrono::system_clock::time_point;
using MonotonicTime = std::chrono::steady_clock::time_point;

// A file opened for appending. Not thread-safe: one owner at a time.
class WritableFile {
 public:
  virtual ~WritableFile() = default;
  virtual Status Append(std::span<const std::byte> data) = 0;
  virtual Status Sync() = 0;  // fdatasync/fsync: data is durable when this returns OK
  virtual Status Close() = 0;
};
using WritableFilePtr = std::unique_ptr<WritableFile>;

// A file opened for positional reads. Thread-safe (pread).
class RandomAccessFile {
 public:
  virtual ~RandomAccessFile() = default;
  // Reads up to out.size() bytes at offset; returns the count (0 at end of file).
  virtual Result<size_t> Read(uint64_t offset, std::span<std::byte> out) const = 0;
  virtual Result<uint64_t> Size() const = 0;
};
using RandomAccessFilePtr = std::unique_ptr<RandomAccessFile>;

struct DiskSpace {
  uint64_t total_bytes = 0;
  uint64_t available_bytes = 0;
};

class Env {
 public:
  virtual ~Env() = default;

  // Creates a new file (O_EXCL, mode 0600). Fails if it exists.
  virtual Result<WritableFilePtr> NewWritableFile(const Path& p) = 0;
  virtual Result<RandomAccessFilePtr> NewRandomAccessFile(const Path& p) = 0;
  virtual Status RenameFile(const Path& from, const Path& to) = 0;
  virtual Status SyncDir(const Path& dir) = 0;
  // Makes everything already written on the filesystem holding `any_path`
  // durable (Linux syncfs). Unavailable by default: an Env that models
  // durability per directory (tests' FaultEnv) must opt in, or callers keep
  // their per-directory syncs.
  virtual Status SyncFilesystem(const Path& any_path) {
    (void)any_path;
    return Status::Unavailable("SyncFilesystem: not supported by this Env");
  }
  virtual Status RemoveFile(const Path& p) = 0;
  // Creates dir and its missing parents with mode 0700.
  virtual Status CreateDirs(const Path& dir) = 0;
  // Names (not paths) of the entries of dir, without "." and "..".
  virtual Result<std::vector<std::string>> ListDir(const Path& dir) = 0;
  virtual bool FileExists(const Path& p) = 0;
  virtual Result<uint64_t> FileSize(const Path& p) = 0;
  virtual Result<std::string> ReadSmallFile(const Path& p, size_t max_bytes) = 0;
  virtual Result<DiskSpace> GetDiskSpace(const Path& p) = 0;

  virtual SystemTime Now() = 0;
  virtual MonotonicTime Monotonic() = 0;
  virtual Status RandomBytes(std::span<std::byte> out) = 0;

  // Roots of procfs and sysfs ("/proc", "/sys"); tests point these at fixtures.
  virtual const Path& ProcRoot() const = 0;
  virtual const Path& SysRoot() const = 0;

  // The process-wide PosixEnv over the real /proc and /sys.
  static Env& Default();
};

// The real operating system. Thread-safe.
class PosixEnv : public Env {
 public:
  PosixEnv(Path proc_root = "/proc", Path sys_root = "/sys");

  Result<WritableFilePtr> NewWritableFile(const Path& p) override;
  Result<RandomAccessFilePtr> NewRandomAccessFile(const Path& p) override;
  Status RenameFile(const Path& from, const Path& to) override;
  Status SyncDir(const Path& dir) override;
  Status SyncFilesystem(const Path& any_path) override;
  Status RemoveFile(const Path& p) override;
  Status CreateDirs(const Path& dir) override;
  Result<std::vector<std::string>> ListDir(const Path& dir) override;
  bool FileExists(const Path& p) override;
  Result<uint64_t> FileSize(const Path& p) override;
  Result<std::string> ReadSmallFile(const Path& p, size_t max_bytes) override;
  Result<DiskSpace> GetDiskSpace(const Path& p) override;
  SystemTime Now() override;
  MonotonicTime Monotonic() override;
  Status RandomBytes(std::span<std::byte> out) override;
  const Path& ProcRoot() const override { return proc_root_; }
  const Path& SysRoot() const override { return sys_root_; }

 private:
  const Path proc_root_;
  const Path sys_root_;
};

// Forwards every call to a target Env; tests override the calls they fault.
class EnvWrapper : public Env {
 public:
  explicit EnvWrapper(Env& target) : target_(target) {}
  Env& target() const { return target_; }

  Result<WritableFilePtr> NewWritableFile(const Path& p) override {
    return target_.NewWritableFile(p);
  }
  Result<RandomAccessFilePtr> NewRandomAccessFile(const Path& p) override {
    return target_.NewRandomAccessFile(p);
  }
  Status RenameFile(const Path& f, const Path& t) override { return target_.RenameFile(f, t); }
  Status SyncDir(const Path& d) override { return target_.SyncDir(d); }
  Status RemoveFile(const Path& p) override { return target_.RemoveFile(p); }
  Status CreateDirs(const Path& d) override { return target_.CreateDirs(d); }
  Result<std::vector<std::string>> ListDir(const Path& d) override { return target_.ListDir(d); }
  bool FileExists(const Path& p) override { return target_.FileExists(p); }
  Result<uint64_t> FileSize(const Path& p) override { return target_.FileSize(p); }
  Result<std::string> ReadSmallFile(const Path& p, size_t max) override {
    return target_.ReadSmallFile(p, max);
  }
  Result<DiskSpace> GetDiskSpace(const Path& p) override { return target_.GetDiskSpace(p); }
  SystemTime Now() override { return target_.Now(); }
  MonotonicTime Monotonic() override { return target_.Monotonic(); }
  Status RandomBytes(std::span<std::byte> out) override { return target_.RandomBytes(out); }
  const Path& ProcRoot() const override { return target_.ProcRoot(); }
  const Path& SysRoot() const override { return target_.SysRoot(); }

 private:
  Env& target_;
};

}  // namespace phi
