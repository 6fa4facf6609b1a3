#include "libphi/util/status.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace phi {

std::string_view CodeName(Code c) {
  switch (c) {
    case Code::kOk:
      return "OK";
    case Code::kInvalidArgument:
      return "InvalidArgument";
    case Code::kNotFound:
      return "NotFound";
    case Code::kAlreadyExists:
      return "AlreadyExists";
    case Code::kUnauthenticated:
      return "Unauthenticated";
    case Code::kPermissionDenied:
      return "PermissionDenied";
    case Code::kCorruption:
      return "Corruption";
    case Code::kIOError:
      return "IOError";
    case Code::kResourceExhausted:
      return "ResourceExhausted";
    case Code::kUnavailable:
      return "Unavailable";
    case Code::kInternal:
      return "Internal";
  }
  return "Unknown";
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  std::string s(CodeName(code_));
  if (!msg_.empty()) {
    s += ": ";
    s += msg_;
  }
  return s;
}

Status Status::WithContext(std::string_view ctx) const {
  if (ok()) return *this;
  std::string m(ctx);
  if (!msg_.empty()) {
    m += ": ";
    m += msg_;
  }
  return Status(code_, std::move(m));
}

Status PosixError(std::string_view what, int err) {
  char buf[256];
  // GNU strerror_r returns the message pointer.
  const char* msg = strerror_r(err, buf, sizeof buf);
  std::string m(what);
  m += ": ";
  m += msg;
  if (err == ENOSPC || err == EDQUOT) return Status::ResourceExhausted(std::move(m));
  if (err == ENOENT) return Status::NotFound(std::move(m));
  if (err == EACCES || err == EPERM) return Status::PermissionDenied(std::move(m));
  if (err == EEXIST) return Status::AlreadyExists(std::move(m));
  return Status::IOError(std::move(m));
}

namespace internal {
void CheckFailed(const char* cond, const char* file, int line) {
  std::fprintf(stderr, "phigate: internal check failed: %s at %s:%d\n", cond, file, line);
  std::abort();
}
}  // namespace internal

}  // namespace phi
