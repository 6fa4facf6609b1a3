// phi::log: PHI-safe structured logging to journald or stderr.
//
// The API makes the right thing easy (DESIGN.md, Logs):
//  - the message is a compile-time string literal (log::Msg is consteval), so
//    no runtime text - a patient name, an HL7 field - can become a message;
//  - runtime data goes only into typed fields: integers, bools, Status (whose
//    text is PHI-free by contract), and strings the caller explicitly marks
//    as not PHI with log::Safe(...) (internal ids, UIDs, paths, AE titles,
//    peer addresses). Anything else does not compile.
//
//   PHI_LOG(kInfo, "object stored", {{"object_id", log::Safe(id)}, {"bytes", n}});
//
// Under systemd (JOURNAL_STREAM set) records go to journald with fields named
// PHI_<KEY>; otherwise one readable line each on stderr.
// Thread-safety: all functions are thread-safe.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <type_traits>

#include "libphi/util/status.h"

namespace phi::log {

enum class Level : uint8_t { kDebug = 0, kInfo, kNotice, kWarning, kError, kCritical };

// Parses "debug", "info", "notice", "warning", "error", "critical".
bool ParseLevel(std::string_view s, Level* out);
std::string_view LevelName(Level l);

enum class Sink : uint8_t { kAuto, kStderr, kJournal };
// kAuto picks journald when JOURNAL_STREAM is set (we run under systemd).
void Init(Sink sink, Level level);
void SetLevel(Level level);
Level GetLevel();
bool Enabled(Level level);

// A message: only string literals (compile-time constants) are accepted.
struct Msg {
  consteval Msg(const char* s) : text(s) {}  // NOLINT: implicit by design
  const char* text;
};

// A string the caller vouches contains no PHI.
struct SafeString {
  std::string value;
};
inline SafeString Safe(std::string_view s) { return SafeString{std::string(s)}; }

class Value {
 public:
  template <typename T>
  requires(std::is_integral_v<T> && !std::is_same_v<T, bool>) Value(T v)
      : text_(std::to_string(v)) {}                   // NOLINT
  Value(bool b) : text_(b ? "true" : "false") {}      // NOLINT
  Value(double d) : text_(std::to_string(d)) {}       // NOLINT
  Value(const Status& s) : text_(s.ToString()) {}     // NOLINT
  Value(SafeString s) : text_(std::move(s.value)) {}  // NOLINT
  Value(Msg literal) : text_(literal.text) {}         // NOLINT
  const std::string& text() const { return text_; }

 private:
  std::string text_;
};

struct Field {
  Msg key;  // lower_snake_case; journald field PHI_<KEY>
  Value value;
};

void Write(Level level, Msg msg, std::initializer_list<Field> fields, const char* file, int line);
inline void Write(Level level, Msg msg, const char* file, int line) {
  Write(level, msg, {}, file, line);
}

// For tests: capture what would be written (one formatted line per record).
void SetCaptureForTest(std::string* sink);

}  // namespace phi::log

#define PHI_LOG(level, msg, ...)                                                           \
  do {                                                                                     \
    if (::phi::log::Enabled(::phi::log::Level::level)) {                                   \
      ::phi::log::Write(::phi::log::Level::level, msg, ##__VA_ARGS__, __FILE__, __LINE__); \
    }                                                                                      \
  } while (0)
