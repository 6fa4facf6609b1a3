// phi::Status and phi::Result<T>: how every libphi API reports failure.
//
// A Status is a code plus a message. Messages carry internal ids, paths and
// errno text, never PHI, so Status::ToString() is always safe to log.
// libphi never throws across a module boundary: it returns these.
// Thread-safety: value types, no shared state.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace phi {

enum class Code : uint8_t {
  kOk = 0,
  kInvalidArgument,
  kNotFound,
  kAlreadyExists,
  kUnauthenticated,
  kPermissionDenied,
  kCorruption,
  kIOError,
  kResourceExhausted,
  kUnavailable,
  kInternal,
};

std::string_view CodeName(Code c);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(Code code, std::string msg) : code_(code), msg_(std::move(msg)) {}

  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }
  static Status NotFound(std::string m) { return {Code::kNotFound, std::move(m)}; }
  static Status AlreadyExists(std::string m) { return {Code::kAlreadyExists, std::move(m)}; }
  static Status Unauthenticated(std::string m) { return {Code::kUnauthenticated, std::move(m)}; }
  static Status PermissionDenied(std::string m) { return {Code::kPermissionDenied, std::move(m)}; }
  static Status Corruption(std::string m) { return {Code::kCorruption, std::move(m)}; }
  static Status IOError(std::string m) { return {Code::kIOError, std::move(m)}; }
  static Status ResourceExhausted(std::string m) {
    return {Code::kResourceExhausted, std::move(m)};
  }
  static Status Unavailable(std::string m) { return {Code::kUnavailable, std::move(m)}; }
  static Status Internal(std::string m) { return {Code::kInternal, std::move(m)}; }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return msg_; }
  std::string ToString() const;

  // Prefixes context: Status::IOError("x").WithContext("open y") -> "open y: x".
  Status WithContext(std::string_view ctx) const;

  bool operator==(const Status& o) const { return code_ == o.code_ && msg_ == o.msg_; }

 private:
  Code code_ = Code::kOk;
  std::string msg_;
};

// IOError from an errno value, with the operation and path: "open /x/y: No such file".
Status PosixError(std::string_view what, int err);

// Result<T>: a T or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status s) : v_(std::move(s)) {      // NOLINT: implicit by design
    if (std::get<Status>(v_).ok()) {
      v_ = Status::Internal("Result constructed from OK status");
    }
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace phi

#define PHI_CONCAT_INNER(a, b) a##b
#define PHI_CONCAT(a, b) PHI_CONCAT_INNER(a, b)

// Returns the Status from the enclosing function if it is not OK.
#define PHI_RETURN_IF_ERROR(expr)    \
  do {                               \
    ::phi::Status phi_s_ = (expr);   \
    if (!phi_s_.ok()) return phi_s_; \
  } while (0)

// PHI_ASSIGN_OR_RETURN(auto x, F()); declares x from a Result or returns its Status.
#define PHI_ASSIGN_OR_RETURN(lhs, expr) \
  PHI_ASSIGN_OR_RETURN_IMPL(PHI_CONCAT(phi_r_, __LINE__), lhs, expr)
#define PHI_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp.ok()) return tmp.status();             \
  lhs = std::move(tmp).value()

// A bug, not a runtime condition: log and abort (Envoy RELEASE_ASSERT).
#define PHI_CHECK(cond)                                                   \
  do {                                                                    \
    if (!(cond)) ::phi::internal::CheckFailed(#cond, __FILE__, __LINE__); \
  } while (0)

namespace phi::internal {
[[noreturn]] void CheckFailed(const char* cond, const char* file, int line);
}
