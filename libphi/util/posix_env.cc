#include <dirent.h>
#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "libphi/util/env.h"

namespace phi {
namespace {

class PosixWritableFile final : public WritableFile {
 public:
  PosixWritableFile(int fd, Path path) : fd_(fd), path_(std::move(path)) {}
  ~PosixWritableFile() override {
    if (fd_ >= 0) ::close(fd_);
  }
  PosixWritableFile(const PosixWritableFile&) = delete;
  PosixWritableFile& operator=(const PosixWritableFile&) = delete;

  Status Append(std::span<const std::byte> data) override {
    const std::byte* p = data.data();
    size_t left = data.size();
    while (left > 0) {
      ssize_t n = ::write(fd_, p, left);
      if (n < 0) {
        if (errno == EINTR) continue;
        return PosixError("write " + path_.string(), errno);
      }
      p += n;
      left -= static_cast<size_t>(n);
    }
    return Status::Ok();
  }
  Status Sync() override {
    if (::fdatasync(fd_) != 0) return PosixError("fdatasync " + path_.string(), errno);
    return Status::Ok();
  }
  Status Close() override {
    if (fd_ < 0) return Status::Ok();
    int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) return PosixError("close " + path_.string(), errno);
    return Status::Ok();
  }

 private:
  int fd_;
  Path path_;
};

class PosixRandomAccessFile final : public RandomAccessFile {
 public:
  PosixRandomAccessFile(int fd, Path path) : fd_(fd), path_(std::move(path)) {}
  ~PosixRandomAccessFile() override { ::close(fd_); }
  PosixRandomAccessFile(const PosixRandomAccessFile&) = delete;
  PosixRandomAccessFile& operator=(const PosixRandomAccessFile&) = delete;

  Result<size_t> Read(uint64_t offset, std::span<std::byte> out) const override {
    size_t done = 0;
    while (done < out.size()) {
      ssize_t n =
          ::pread(fd_, out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        return PosixError("pread " + path_.string(), errno);
      }
      if (n == 0) break;
      done += static_cast<size_t>(n);
    }
    return done;
  }
  Result<uint64_t> Size() const override {
    struct stat st;
    if (::fstat(fd_, &st) != 0) return PosixError("fstat " + path_.string(), errno);
    return static_cast<uint64_t>(st.st_size);
  }

 private:
  int fd_;
  Path path_;
};

}  // namespace

PosixEnv::PosixEnv(Path proc_root, Path sys_root)
    : proc_root_(std::move(proc_root)), sys_root_(std::move(sys_root)) {}

Env& Env::Default() {
  static PosixEnv* env = new PosixEnv();  // never destroyed: used until exit
  return *env;
}

Result<WritableFilePtr> PosixEnv::NewWritableFile(const Path& p) {
  int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return PosixError("create " + p.string(), errno);
  return WritableFilePtr(new PosixWritableFile(fd, p));
}

Result<RandomAccessFilePtr> PosixEnv::NewRandomAccessFile(const Path& p) {
  int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return PosixError("open " + p.string(), errno);
  return RandomAccessFilePtr(new PosixRandomAccessFile(fd, p));
}

Status PosixEnv::RenameFile(const Path& from, const Path& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) {
    return PosixError("rename " + from.string() + " -> " + to.string(), errno);
  }
  return Status::Ok();
}

Status PosixEnv::SyncDir(const Path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return PosixError("open dir " + dir.string(), errno);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return PosixError("fsync dir " + dir.string(), err);
  return Status::Ok();
}

Status PosixEnv::SyncFilesystem(const Path& any_path) {
  int fd = ::open(any_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return PosixError("open " + any_path.string(), errno);
  int rc = ::syncfs(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return PosixError("syncfs " + any_path.string(), err);
  return Status::Ok();
}

Status PosixEnv::RemoveFile(const Path& p) {
  if (::unlink(p.c_str()) != 0) return PosixError("unlink " + p.string(), errno);
  return Status::Ok();
}

Status PosixEnv::CreateDirs(const Path& dir) {
  // Common case first: one mkdir (the parent exists), not one per component.
  if (::mkdir(dir.c_str(), 0700) == 0) return Status::Ok();
  if (errno != EEXIST) {
    Path cur;
    for (const auto& part : dir) {
      cur /= part;
      if (cur.empty() || cur == "/") continue;
      if (::mkdir(cur.c_str(), 0700) != 0 && errno != EEXIST) {
        return PosixError("mkdir " + cur.string(), errno);
      }
    }
  }
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) return PosixError("stat " + dir.string(), errno);
  if (!S_ISDIR(st.st_mode)) return Status::IOError("not a directory: " + dir.string());
  return Status::Ok();
}

Result<std::vector<std::string>> PosixEnv::ListDir(const Path& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return PosixError("opendir " + dir.string(), errno);
  std::vector<std::string> out;
  errno = 0;
  while (struct dirent* e = ::readdir(d)) {
    std::string_view n(e->d_name);
    if (n == "." || n == "..") continue;
    out.emplace_back(n);
  }
  int err = errno;
  ::closedir(d);
  if (err != 0) return PosixError("readdir " + dir.string(), err);
  return out;
}

bool PosixEnv::FileExists(const Path& p) { return ::access(p.c_str(), F_OK) == 0; }

Result<uint64_t> PosixEnv::FileSize(const Path& p) {
  struct stat st;
  if (::stat(p.c_str(), &st) != 0) return PosixError("stat " + p.string(), errno);
  return static_cast<uint64_t>(st.st_size);
}

Result<std::string> PosixEnv::ReadSmallFile(const Path& p, size_t max_bytes) {
  int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return PosixError("open " + p.string(), errno);
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return PosixError("read " + p.string(), err);
    }
    if (n == 0) break;
    if (out.size() + static_cast<size_t>(n) > max_bytes) {
      ::close(fd);
      return Status::ResourceExhausted("file larger than expected: " + p.string());
    }
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

Result<DiskSpace> PosixEnv::GetDiskSpace(const Path& p) {
  struct statvfs vfs;
  if (::statvfs(p.c_str(), &vfs) != 0) return PosixError("statvfs " + p.string(), errno);
  return DiskSpace{static_cast<uint64_t>(vfs.f_blocks) * vfs.f_frsize,
                   static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize};
}

SystemTime PosixEnv::Now() { return std::chrono::system_clock::now(); }
MonotonicTime PosixEnv::Monotonic() { return std::chrono::steady_clock::now(); }

Status PosixEnv::RandomBytes(std::span<std::byte> out) {
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::getrandom(out.data() + done, out.size() - done, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return PosixError("getrandom", errno);
    }
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

}  // namespace phi
