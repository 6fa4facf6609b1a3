#include "libphi/util/log.h"

#define SD_JOURNAL_SUPPRESS_LOCATION
#include <sys/uio.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>
#include <vector>

namespace phi::log {
namespace {

std::atomic<Level> g_level{Level::kInfo};
std::atomic<bool> g_journal{false};
std::mutex g_mu;
std::string* g_capture = nullptr;  // guarded by g_mu

int SyslogPriority(Level l) {
  switch (l) {
    case Level::kDebug:
      return 7;
    case Level::kInfo:
      return 6;
    case Level::kNotice:
      return 5;
    case Level::kWarning:
      return 4;
    case Level::kError:
      return 3;
    case Level::kCritical:
      return 2;
  }
  return 6;
}

// Values are quoted when they hold spaces, quotes or control characters, and
// control characters are escaped so that no field can forge a log line.
void AppendValue(std::string& out, const std::string& v) {
  bool quote = v.empty();
  for (unsigned char c : v) {
    if (c <= ' ' || c == '"' || c == '=' || c == 0x7f) quote = true;
  }
  if (quote) out += '"';
  for (unsigned char c : v) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (quote) out += '"';
}

std::string JournalKey(const char* key) {
  std::string k = "PHI_";
  for (const char* p = key; *p; ++p) {
    char c = *p;
    k += std::isalnum(static_cast<unsigned char>(c)) ? static_cast<char>(std::toupper(c)) : '_';
  }
  return k;
}

}  // namespace

bool ParseLevel(std::string_view s, Level* out) {
  static constexpr std::pair<std::string_view, Level> kNames[] = {
      {"debug", Level::kDebug},     {"info", Level::kInfo},   {"notice", Level::kNotice},
      {"warning", Level::kWarning}, {"error", Level::kError}, {"critical", Level::kCritical}};
  for (const auto& [name, lvl] : kNames) {
    if (s == name) {
      *out = lvl;
      return true;
    }
  }
  return false;
}

std::string_view LevelName(Level l) {
  switch (l) {
    case Level::kDebug:
      return "debug";
    case Level::kInfo:
      return "info";
    case Level::kNotice:
      return "notice";
    case Level::kWarning:
      return "warning";
    case Level::kError:
      return "error";
    case Level::kCritical:
      return "critical";
  }
  return "info";
}

void Init(Sink sink, Level level) {
  bool journal = sink == Sink::kJournal;
  if (sink == Sink::kAuto) journal = std::getenv("JOURNAL_STREAM") != nullptr;
  g_journal.store(journal);
  g_level.store(level);
}

void SetLevel(Level level) { g_level.store(level); }
Level GetLevel() { return g_level.load(); }
bool Enabled(Level level) { return level >= g_level.load(std::memory_order_relaxed); }

void SetCaptureForTest(std::string* sink) {
  std::lock_guard lock(g_mu);
  g_capture = sink;
}

void Write(Level level, Msg msg, std::initializer_list<Field> fields, const char* file, int line) {
  // The readable form: "<level> <message> key=value ...".
  std::string text(LevelName(level));
  text += ' ';
  text += msg.text;
  for (const Field& f : fields) {
    text += ' ';
    text += f.key.text;
    text += '=';
    AppendValue(text, f.value.text());
  }

  {
    std::lock_guard lock(g_mu);
    if (g_capture != nullptr) {
      *g_capture += text;
      *g_capture += '\n';
      return;
    }
  }

  if (g_journal.load()) {
    std::vector<std::string> parts;
    parts.reserve(fields.size() + 4);
    parts.push_back("MESSAGE=" + std::string(msg.text));
    parts.push_back("PRIORITY=" + std::to_string(SyslogPriority(level)));
    parts.push_back("CODE_FILE=" + std::string(file));
    parts.push_back("CODE_LINE=" + std::to_string(line));
    for (const Field& f : fields) parts.push_back(JournalKey(f.key.text) + "=" + f.value.text());
    std::vector<iovec> iov;
    iov.reserve(parts.size());
    for (auto& p : parts) iov.push_back({p.data(), p.size()});
    if (sd_journal_sendv(iov.data(), static_cast<int>(iov.size())) >= 0) return;
    // fall through to stderr if journald is unreachable
  }

  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()) % 1000;
  std::tm tm;
  gmtime_r(&t, &tm);
  char ts[96];
  std::snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms.count()));
  std::string out = std::string(ts) + " phigated " + text + "\n";
  std::lock_guard lock(g_mu);
  (void)!::write(STDERR_FILENO, out.data(), out.size());
}

}  // namespace phi::log
