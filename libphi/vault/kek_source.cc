// Reading KEKs. See kek_source.h for the rules.
//
// Why not Env::ReadSmallFile: it returns the bytes in a std::string (heap
// copies that are never wiped) through an unwiped stack buffer, and a
// separate stat() before it would race with a rename. Here the file is opened
// once with O_NOFOLLOW, checked with fstat() on that same descriptor, and read
// straight into locked, wiped SecretBytes.
#include "libphi/vault/kek_source.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <system_error>

namespace phi::vault {
namespace {

constexpr size_t kHexBytes = crypto::kKeyBytes * 2;  // 64 hex digits
constexpr size_t kMaxFileBytes = kHexBytes + 1;      // optional trailing newline

Status KekError(std::string_view what, const Path& path, std::string_view reason) {
  return Status::InvalidArgument("KEK " + std::string(what) + " (" + path.string() +
                                 "): " + std::string(reason));
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// True when `p` is `root` or lies below it, comparing canonical paths
// (symlinks in parent directories resolved).
bool IsUnder(const Path& p, const Path& root) {
  std::error_code ec1, ec2;
  Path cp = std::filesystem::weakly_canonical(p, ec1);
  Path cr = std::filesystem::weakly_canonical(root, ec2);
  if (ec1) cp = p.lexically_normal();
  if (ec2) cr = root.lexically_normal();
  auto rel = cp.lexically_relative(cr);
  if (rel.empty()) return false;
  auto first = *rel.begin();
  return first != ".." && rel.is_relative();
}

}  // namespace

Result<crypto::SecretBytes> ReadKekFile(const Path& path, const Path& storage_root,
                                        std::string_view what, bool check_same_fs) {
  if (path.empty() || !path.is_absolute()) {
    return KekError(what, path, "key file path must be absolute");
  }
  struct stat root_st;
  if (::stat(storage_root.c_str(), &root_st) != 0) {
    return PosixError("KEK " + std::string(what) + ": stat storage root " + storage_root.string(),
                      errno);
  }
  if (IsUnder(path, storage_root)) {
    return KekError(what, path, "key file is under the storage root " + storage_root.string());
  }
  struct stat lst;
  if (::lstat(path.c_str(), &lst) != 0) {
    return PosixError("KEK " + std::string(what) + ": stat " + path.string(), errno);
  }
  if (S_ISLNK(lst.st_mode)) return KekError(what, path, "key file is a symlink");

  Fd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (fd.get() < 0) {
    int err = errno;
    if (err == ELOOP) return KekError(what, path, "key file is a symlink");
    return PosixError("KEK " + std::string(what) + ": open " + path.string(), err);
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) {
    return PosixError("KEK " + std::string(what) + ": fstat " + path.string(), errno);
  }
  if (!S_ISREG(st.st_mode)) return KekError(what, path, "key file is not a regular file");
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return KekError(
        what, path,
        std::string("key file mode is ") + mode + ", group/other must have no access (chmod 0400)");
  }
  if (check_same_fs && st.st_dev == root_st.st_dev) {
    return KekError(what, path,
                    "key file is on the same filesystem as the storage root " +
                        storage_root.string() + "; keep KEKs off the data volume");
  }
  if (st.st_size != static_cast<off_t>(crypto::kKeyBytes) &&
      st.st_size != static_cast<off_t>(kHexBytes) &&
      st.st_size != static_cast<off_t>(kMaxFileBytes)) {
    return KekError(what, path,
                    "key file has " + std::to_string(st.st_size) +
                        " bytes; expected 32 raw bytes or 64 hex digits");
  }

  // Read at most kMaxFileBytes + 1 so that a file grown after fstat is noticed.
  crypto::SecretBytes buf(kMaxFileBytes + 1);
  auto out = buf.mutable_span();
  size_t got = 0;
  while (got < out.size()) {
    ssize_t n = ::read(fd.get(), out.data() + got, out.size() - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      return PosixError("KEK " + std::string(what) + ": read " + path.string(), errno);
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  auto content = buf.span().first(got);

  if (got == crypto::kKeyBytes) {
    return crypto::SecretBytes::CopyFrom(content);
  }
  if (got == kMaxFileBytes && content[kHexBytes] == std::byte{'\n'}) {
    content = content.first(kHexBytes);
  }
  if (content.size() == kHexBytes) {
    crypto::SecretBytes key(crypto::kKeyBytes);
    std::string_view hex(reinterpret_cast<const char*>(content.data()), content.size());
    if (!crypto::FromHex(hex, key.mutable_span()).ok()) {
      return KekError(what, path, "key file has 64 bytes but they are not hex digits");
    }
    return key;
  }
  return KekError(
      what, path,
      "key file has " + std::to_string(got) + " bytes; expected 32 raw bytes or 64 hex digits");
}

Result<Kek> LoadKek(const config::KekConfig& cfg, const Path& storage_root, bool check_same_fs) {
  const bool has_cred = !cfg.credential.empty();
  const bool has_file = !cfg.file.empty();
  if (has_cred == has_file) {
    return Status::InvalidArgument("KEK " + cfg.id + ": set exactly one of credential and file");
  }
  Path path;
  std::string what = cfg.id;
  if (has_cred) {
    const std::string& name = cfg.credential;
    if (name == "." || name == ".." || name.find('/') != std::string::npos ||
        name.find('\0') != std::string::npos) {
      return Status::InvalidArgument("KEK " + cfg.id + ": credential name \"" + name +
                                     "\" is not a plain file name");
    }
    const char* dir = std::getenv("CREDENTIALS_DIRECTORY");
    if (dir == nullptr || *dir == '\0') {
      return Status::InvalidArgument(
          "KEK " + cfg.id + ": credential \"" + name +
          "\" configured but CREDENTIALS_DIRECTORY is not set (run under systemd with "
          "LoadCredentialEncrypted=" +
          name + ":..., or configure a key file)");
    }
    path = Path(dir) / name;
    what += " (credential " + name + ")";
  } else {
    path = cfg.file;
  }
  PHI_ASSIGN_OR_RETURN(crypto::SecretBytes key,
                       ReadKekFile(path, storage_root, what, check_same_fs));
  return Kek{cfg.id, std::move(key)};
}

}  // namespace phi::vault
