// phigatectl: the admin CLI. Talks to phigated's admin socket (libphi/admin):
// one JSON request line, one JSON response line.
//
//   phigatectl [--socket PATH] [--json] <command> [--key value | --flag]...
//
// Every command is passed through as {"command": <command>, "args": {key: value}},
// so commands the daemon adds later need nothing here; `status` (and `help`) also
// have a human-readable rendering. `verify` and `backup DIR` run as daemon jobs:
// started, then polled with "<command> status --job N" (a progress bar on a
// terminal, never on a pipe or with --json). `restore DIR` is offline: it execs
// `phigated --config FILE --restore DIR`. Exit codes: 0 ok, 1 command failed, 2 usage,
// 3 cannot connect, 4 permission denied, 5 a verification found a problem.
#include <limits.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#ifndef PHI_VERSION
#define PHI_VERSION "0.0.0"
#endif

namespace {

using nlohmann::json;

constexpr int kOk = 0;
constexpr int kFailed = 1;
constexpr int kUsage = 2;
constexpr int kNoConnect = 3;
constexpr int kDenied = 4;
constexpr int kProblemsFound = 5;  // a verification ran and found a problem
constexpr size_t kMaxResponseBytes = 64 * 1024 * 1024;
constexpr int kTimeoutMs = 120 * 1000;

void Usage(FILE* out) {
  std::fprintf(out,
               "usage: phigatectl [--socket PATH] [--json] <command> [--key value | --flag]...\n"
               "\n"
               "  --socket PATH  admin socket (default $PHIGATE_ADMIN_SOCKET or "
               "/run/phigate/admin.sock)\n"
               "  --json         print the raw JSON result\n"
               "\n"
               "commands: status, help (lists what the daemon supports), verify, backup DIR,\n"
               "          restore DIR [--config FILE] (offline: runs phigated --restore), ...\n"
               "exit: 0 ok, 1 command failed, 2 usage, 3 cannot connect, 4 permission denied,\n"
               "      5 a verification (audit verify, verify) found a problem\n");
}

// "--key value": integers and true/false become JSON numbers/booleans.
json ArgValue(const std::string& v) {
  if (v == "true") return true;
  if (v == "false") return false;
  if (!v.empty() && v.size() < 19 &&
      v.find_first_not_of("0123456789", v[0] == '-' ? 1 : 0) == std::string::npos && v != "-") {
    return std::stoll(v);
  }
  return v;
}

std::string Human(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 5) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

std::string Duration(int64_t s) {
  char buf[64];
  if (s >= 86400) {
    std::snprintf(buf, sizeof buf, "%lldd%02lldh%02lldm", static_cast<long long>(s / 86400),
                  static_cast<long long>(s % 86400 / 3600), static_cast<long long>(s % 3600 / 60));
  } else {
    std::snprintf(buf, sizeof buf, "%lldh%02lldm%02llds", static_cast<long long>(s / 3600),
                  static_cast<long long>(s % 3600 / 60), static_cast<long long>(s % 60));
  }
  return buf;
}

std::string Str(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return "-";
  if (it->is_string()) return it->get<std::string>();
  return it->dump();
}

void PrintStatus(const json& r) {
  std::printf(
      "phigated %s  pid %s  up %s\n", Str(r, "version").c_str(), Str(r, "pid").c_str(),
      r.value("uptime_seconds", 0) >= 0 ? Duration(r.value("uptime_seconds", 0)).c_str() : "-");
  std::printf("%-10s %s\n", "config", Str(r, "config_file").c_str());
  std::printf("%-10s %s\n", "log level", Str(r, "log_level").c_str());
  if (r.contains("storage") && r["storage"].is_object()) {
    const json& st = r["storage"];
    std::printf("%-10s %s\n", "storage", Str(st, "root").c_str());
    if (st.contains("volume") && st["volume"].is_object()) {
      const json& v = st["volume"];
      bool enc = v.value("encrypted", false);
      std::printf("%-10s %s, required %s; device %s on %s (%s)%s%s\n", "volume",
                  enc ? "encrypted (LUKS)" : "NOT ENCRYPTED",
                  v.value("required", true) ? "yes" : "no", Str(v, "device").c_str(),
                  Str(v, "mount_point").c_str(), Str(v, "fs_type").c_str(),
                  v.value("dm_uuid_prefix", std::string()).empty() ? "" : ", dm uuid ",
                  v.value("dm_uuid_prefix", std::string()).c_str());
    }
    if (st.contains("disk") && st["disk"].is_object()) {
      const json& d = st["disk"];
      std::printf("%-10s %s free of %s\n", "disk", Human(d.value("available_bytes", 0ull)).c_str(),
                  Human(d.value("total_bytes", 0ull)).c_str());
    }
  }
  if (r.contains("counts") && r["counts"].is_object()) {
    std::printf("%-10s studies %s, instances %s\n", "counts", Str(r["counts"], "studies").c_str(),
                Str(r["counts"], "instances").c_str());
  }
  if (r.contains("integrity") && r["integrity"].is_object() && r["integrity"].contains("scrub")) {
    const json& sc = r["integrity"]["scrub"];
    std::string line = Str(sc, "state");
    if (sc.value("enabled", false)) {
      line += ", " + Str(sc, "rate_mb_per_s") + " MiB/s every " + Str(sc, "interval_hours") +
              " h, " + Str(sc, "passes") + " passes";
      if (sc.contains("current") && sc["current"].is_object()) {
        line += ", now " + Str(sc["current"], "instances_done") + "/" +
                Str(sc["current"], "instances_total") + " objects";
      }
      if (sc.contains("last_result") && sc["last_result"].is_object()) {
        const json& lr = sc["last_result"];
        line += "; last pass " + Str(sc, "last_finished") + ": " + Str(lr, "instances") +
                " objects, " + Str(lr, "problem_count") + " problems";
      }
      if (!sc.value("last_error", std::string()).empty()) {
        line += "; last error: " + sc.value("last_error", std::string());
      }
      if (!sc.value("next_run", std::string()).empty()) {
        line += "; next " + sc.value("next_run", std::string());
      }
    }
    std::printf("%-10s %s\n", "scrub", line.c_str());
  }
  if (r.contains("audit_forward") && r["audit_forward"].is_object()) {
    const json& f = r["audit_forward"];
    if (!f.value("enabled", false)) {
      std::printf("%-10s off\n", "audit fwd");
    } else {
      std::printf("%-10s %s %s (%s); last forwarded seq %s, acked %s, backlog %s, drops %s\n",
                  "audit fwd", f.value("connected", false) ? "connected to" : "NOT CONNECTED to",
                  Str(f, "collector").c_str(), Str(f, "format").c_str(),
                  Str(f, "last_forwarded_seq").c_str(), Str(f, "acked_seq").c_str(),
                  Str(f, "backlog").c_str(), Str(f, "drops").c_str());
      if (f.contains("last_error") && f["last_error"].is_string()) {
        std::printf("%-10s last error: %s\n", "", f["last_error"].get<std::string>().c_str());
      }
    }
  }
  std::printf("\n%-10s %-28s %-4s %-10s %6s %9s %8s\n", "LISTENER", "ADDRESS", "TLS", "STATE",
              "OPEN", "ACCEPTED", "REFUSED");
  if (r.contains("listeners") && r["listeners"].is_array()) {
    for (const auto& l : r["listeners"]) {
      std::printf("%-10s %-28s %-4s %-10s %6s %9s %8s\n", Str(l, "name").c_str(),
                  Str(l, "address").c_str(), l.value("tls", false) ? "yes" : "no",
                  Str(l, "state").c_str(), Str(l, "open_connections").c_str(),
                  Str(l, "accepted_total").c_str(), Str(l, "refused_total").c_str());
    }
  }
  if (r.contains("warnings") && r["warnings"].is_array() && !r["warnings"].empty()) {
    std::printf("\nWARNINGS\n");
    for (const auto& w : r["warnings"]) {
      std::printf("  ! %s\n", w.is_string() ? w.get<std::string>().c_str() : w.dump().c_str());
    }
  }
}

// One request/response on the admin socket. On success (kOk) *result is the
// "result" member; otherwise the error was printed and the exit code returned.
int Call(const std::string& socket_path, const std::string& command, const json& args,
         bool raw_json, json* result) {
  sockaddr_un addr{};
  if (socket_path.size() >= sizeof addr.sun_path) {
    std::fprintf(stderr, "phigatectl: socket path too long: %s\n", socket_path.c_str());
    return kUsage;
  }
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    std::fprintf(stderr, "phigatectl: socket: %s\n", std::strerror(errno));
    return kNoConnect;
  }
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int err = errno;
    if (err == EACCES || err == EPERM) {
      std::fprintf(stderr,
                   "phigatectl: permission denied connecting to %s: %s (root or the admin group "
                   "only)\n",
                   socket_path.c_str(), std::strerror(err));
      return kDenied;
    }
    std::fprintf(stderr, "phigatectl: cannot connect to %s: %s (is phigated running?)\n",
                 socket_path.c_str(), std::strerror(err));
    return kNoConnect;
  }

  std::string req = json{{"command", command}, {"args", args}}.dump() + "\n";
  size_t off = 0;
  while (off < req.size()) {
    ssize_t n = ::send(fd, req.data() + off, req.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the daemon may have answered and closed (e.g. refused): read it
    off += static_cast<size_t>(n);
  }
  std::string resp;
  char buf[65536];
  while (resp.find('\n') == std::string::npos) {
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, kTimeoutMs);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      std::fprintf(stderr, "phigatectl: no answer from %s\n", socket_path.c_str());
      ::close(fd);
      return kFailed;
    }
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    resp.append(buf, static_cast<size_t>(n));
    if (resp.size() > kMaxResponseBytes) break;
  }
  ::close(fd);
  size_t nl = resp.find('\n');
  if (nl == std::string::npos) {
    std::fprintf(stderr, "phigatectl: %s closed the connection without an answer\n",
                 socket_path.c_str());
    return kFailed;
  }
  json r = json::parse(resp.substr(0, nl), nullptr, false);
  if (r.is_discarded() || !r.is_object()) {
    std::fprintf(stderr, "phigatectl: unreadable answer from %s\n", socket_path.c_str());
    return kFailed;
  }
  if (!r.value("ok", false)) {
    json err = r.value("error", json::object());
    std::string code = err.is_object() ? err.value("code", std::string("Unknown")) : "Unknown";
    std::string msg = err.is_object() ? err.value("message", std::string()) : std::string();
    if (raw_json) {
      std::cout << r.dump(2) << "\n";
    }
    std::fprintf(stderr, "phigatectl: %s: %s: %s\n", command.c_str(), code.c_str(), msg.c_str());
    return code == "PermissionDenied" ? kDenied : kFailed;
  }
  *result = r.contains("result") ? r["result"] : json(nullptr);
  return kOk;
}

// Polls "<kind> status --job N" until the job is done; on a terminal (and not
// --json) draws a progress line on stderr. *result is the job's result.
int WaitForJob(const std::string& socket_path, const std::string& kind, int64_t job, bool raw_json,
               json* result) {
  const bool bar = !raw_json && ::isatty(STDERR_FILENO);
  for (;;) {
    json st;
    int rc = Call(socket_path, kind + " status", json{{"job", job}}, raw_json, &st);
    if (rc != kOk) {
      if (bar) std::fputs("\n", stderr);
      return rc;
    }
    if (!st.is_object()) return kFailed;
    if (!st.value("running", true)) {
      if (bar) std::fputs("\r\033[K", stderr);
      *result = st.contains("result") ? st["result"] : json(nullptr);
      return kOk;
    }
    if (bar) {
      const json p = st.value("progress", json::object());
      const bool is_backup = kind == "backup";
      int64_t done = p.value(is_backup ? "objects_done" : "checked", int64_t{0});
      int64_t total = p.value(is_backup ? "objects_total" : "total", int64_t{0});
      int64_t bytes = p.value(is_backup ? "bytes_done" : "bytes", int64_t{0});
      // Average since the job started (the daemon's clock).
      const int64_t ms = st.value("elapsed_ms", int64_t{0});
      const double rate =
          ms > 0 ? static_cast<double>(bytes) / (static_cast<double>(ms) / 1e3) / 1e6 : 0;
      constexpr int kWidth = 30;
      int filled =
          total > 0 ? static_cast<int>(kWidth * std::min<int64_t>(done, total) / total) : 0;
      std::string barstr(static_cast<size_t>(filled), '#');
      barstr.resize(kWidth, '.');
      std::fprintf(stderr, "\r\033[K%s [%s] %lld/%lld objects %3d%%  %.1f MB/s%s%s",
                   is_backup ? "backup" : "verify", barstr.c_str(), static_cast<long long>(done),
                   static_cast<long long>(total),
                   total > 0 ? static_cast<int>(100 * std::min<int64_t>(done, total) / total) : 0,
                   rate, is_backup && p.contains("phase") ? "  " : "",
                   is_backup && p.contains("phase") ? p.value("phase", std::string()).c_str() : "");
      std::fflush(stderr);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
}

// phigatectl restore DIR: restore is offline (the daemon must not run on the
// storage root), so it is phigated's job: exec `phigated --config FILE
// --restore DIR`, phigated found beside this binary, in /usr/sbin, or on PATH.
int ExecRestore(const std::string& dir, const json& args) {
  std::string config = "/etc/phigate/phigate.yaml";
  if (args.contains("config") && args["config"].is_string()) config = args["config"];
  std::vector<std::string> candidates;
  char self[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0) {
    std::string s(self, static_cast<size_t>(n));
    candidates.push_back(s.substr(0, s.rfind('/') + 1) + "phigated");
  }
  candidates.push_back("/usr/sbin/phigated");
  std::vector<const char*> argv = {"phigated",  "--config",  config.c_str(),
                                   "--restore", dir.c_str(), nullptr};
  for (const auto& c : candidates) {
    if (::access(c.c_str(), X_OK) == 0) ::execv(c.c_str(), const_cast<char* const*>(argv.data()));
  }
  ::execvp("phigated", const_cast<char* const*>(argv.data()));
  std::fprintf(stderr, "phigatectl: restore: cannot run phigated: %s\n", std::strerror(errno));
  return kFailed;
}

}  // namespace

int main(int argc, char** argv) {
  std::string socket_path = "/run/phigate/admin.sock";
  if (const char* e = std::getenv("PHIGATE_ADMIN_SOCKET"); e != nullptr && *e != '\0') {
    socket_path = e;
  }
  bool raw_json = false;
  std::string command;
  json args = json::object();

  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (command.empty()) {
      if (a == "--socket") {
        if (i + 1 >= argc) {
          std::fprintf(stderr, "phigatectl: --socket needs a path\n");
          return kUsage;
        }
        socket_path = argv[++i];
      } else if (a.rfind("--socket=", 0) == 0) {
        socket_path = a.substr(9);
      } else if (a == "--json") {
        raw_json = true;
      } else if (a == "-h" || a == "--help") {
        Usage(stdout);
        return kOk;
      } else if (a == "--version") {
        std::printf("phigatectl %s\n", PHI_VERSION);
        return kOk;
      } else if (a.rfind("-", 0) == 0) {
        std::fprintf(stderr, "phigatectl: unknown option %s\n", a.c_str());
        Usage(stderr);
        return kUsage;
      } else {
        command = a;
      }
      continue;
    }
    // After the command: --key value / --key=value / --flag; --json still allowed.
    if (a == "--json") {
      raw_json = true;
      continue;
    }
    // Bare words right after the command name a subcommand: "audit verify".
    if (a.rfind("-", 0) != 0 && args.empty()) {
      command += " " + a;
      continue;
    }
    if (a.rfind("--", 0) != 0 || a.size() == 2) {
      std::fprintf(stderr, "phigatectl: unexpected argument '%s' (arguments are --key value)\n",
                   a.c_str());
      return kUsage;
    }
    std::string key = a.substr(2);
    size_t eq = key.find('=');
    if (eq != std::string::npos) {
      args[key.substr(0, eq)] = ArgValue(key.substr(eq + 1));
    } else if (i + 1 < argc && std::strncmp(argv[i + 1], "--", 2) != 0) {
      args[key] = ArgValue(argv[++i]);
    } else {
      args[key] = true;
    }
  }
  if (command.empty()) {
    Usage(stderr);
    return kUsage;
  }
  // Destructive commands ask for a typed confirmation unless --yes.
  if (command == "erase" && !args.contains("yes")) {
    if (!args.contains("study") || !args["study"].is_string()) {
      std::fprintf(stderr, "phigatectl: erase needs --study UID --reason TEXT\n");
      return kUsage;
    }
    if (!::isatty(STDIN_FILENO)) {
      std::fprintf(stderr, "phigatectl: erase: no terminal to confirm on; pass --yes\n");
      return kUsage;
    }
    const std::string uid = args["study"].get<std::string>();
    std::fprintf(stderr,
                 "This destroys the study's key: it cannot be undone.\n"
                 "Type the StudyInstanceUID to confirm: ");
    char line[256];
    if (std::fgets(line, sizeof line, stdin) == nullptr ||
        std::string(line).substr(0, std::strcspn(line, "\r\n")) != uid) {
      std::fprintf(stderr, "phigatectl: not confirmed; nothing erased\n");
      return kFailed;
    }
  }
  args.erase("yes");

  // Bare "erasure-certificate SEQ": the number is the seq argument.
  if (command.rfind("erasure-certificate ", 0) == 0) {
    args["seq"] = ArgValue(command.substr(20));
    command = "erasure-certificate";
  }
  std::string out_prefix;
  if (command == "erasure-certificate" && args.contains("out")) {
    if (!args["out"].is_string()) {
      std::fprintf(stderr, "phigatectl: --out needs a path prefix\n");
      return kUsage;
    }
    out_prefix = args["out"].get<std::string>();
    args.erase("out");
  }

  // "backup DIR" / "restore DIR": the bare word is the directory.
  for (const char* verb : {"backup", "restore"}) {
    const std::string prefix = std::string(verb) + " ";
    if (command.rfind(prefix, 0) == 0 && command != "backup status") {
      args["dir"] = command.substr(prefix.size());
      command = verb;
    }
  }
  if (command == "restore") {
    if (!args.contains("dir") || !args["dir"].is_string()) {
      std::fprintf(stderr, "phigatectl: restore needs a backup directory: restore DIR\n");
      return kUsage;
    }
    return ExecRestore(args["dir"].get<std::string>(), args);
  }

  json result;
  if (command == "backup" || command == "verify") {
    if (command == "backup" && (!args.contains("dir") || !args["dir"].is_string())) {
      std::fprintf(stderr, "phigatectl: backup needs a directory: backup DIR\n");
      return kUsage;
    }
    // Both run as daemon jobs: started, then polled (progress on a terminal).
    json a = args;
    a["progress"] = true;
    json started;
    if (int rc = Call(socket_path, command, a, raw_json, &started); rc != kOk) return rc;
    if (!started.is_object() || !started.contains("job")) {
      std::fprintf(stderr, "phigatectl: unexpected answer to %s\n", command.c_str());
      return kFailed;
    }
    if (int rc =
            WaitForJob(socket_path, command, started.value("job", int64_t{0}), raw_json, &result);
        rc != kOk) {
      return rc;
    }
  } else if (command == "audit export") {
    // Pages until the daemon says there is no more; prints one record per line.
    int64_t total = 0;
    for (;;) {
      int rc = Call(socket_path, command, args, raw_json, &result);
      if (rc != kOk) return rc;
      if (!result.is_object() || !result.contains("lines")) {
        std::fprintf(stderr, "phigatectl: unexpected answer to audit export\n");
        return kFailed;
      }
      for (const auto& l : result["lines"]) {
        std::string line = l.is_string() ? l.get<std::string>() : l.dump();
        std::fwrite(line.data(), 1, line.size(), stdout);
        std::fputc('\n', stdout);
      }
      total += result.value("count", int64_t{0});
      if (!result.value("more", false)) break;
      args["after"] = result.value("last_seq", int64_t{0});
    }
    if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
      std::fprintf(stderr, "phigatectl: audit export: write error\n");
      return kFailed;
    }
    std::fprintf(stderr, "phigatectl: exported %lld audit records\n",
                 static_cast<long long>(total));
    return kOk;
  }
  if (command != "backup" && command != "verify") {
    if (int rc = Call(socket_path, command, args, raw_json, &result); rc != kOk) return rc;
  }
  if (command == "erasure-certificate" && result.is_object() && !out_prefix.empty()) {
    // The exact signed bytes (no newline added), the signature and the signer.
    struct {
      const char* suffix;
      const char* key;
    } files[] = {
        {".json", "certificate"}, {".p7s", "signature"}, {".signer.pem", "signer_certificate"}};
    for (const auto& f : files) {
      std::string path = out_prefix + f.suffix;
      FILE* fp = std::fopen(path.c_str(), "wx");
      if (fp == nullptr) {
        std::fprintf(stderr, "phigatectl: cannot create %s: %s\n", path.c_str(),
                     std::strerror(errno));
        return kFailed;
      }
      std::string v = result.value(f.key, std::string());
      bool ok = std::fwrite(v.data(), 1, v.size(), fp) == v.size();
      ok = (std::fclose(fp) == 0) && ok;
      if (!ok) {
        std::fprintf(stderr, "phigatectl: write error on %s\n", path.c_str());
        return kFailed;
      }
      if (!raw_json) std::printf("wrote %s\n", path.c_str());
    }
    if (raw_json) std::cout << result.dump(2) << "\n";
    return kOk;
  }
  if (raw_json) {
    std::cout << result.dump(2, ' ', false, json::error_handler_t::replace) << "\n";
  } else if (command == "audit verify" && result.is_object()) {
    if (result.value("ok", false)) {
      std::printf("audit chain OK: %lld records",
                  static_cast<long long>(result.value("records", int64_t{0})));
      if (result.value("anchor_seq", int64_t{0}) > 0) {
        std::printf(" (records 1-%lld pruned; chain verified from the signed anchor)",
                    static_cast<long long>(result.value("anchor_seq", int64_t{0})));
      }
      std::printf(", last seq %lld\n",
                  static_cast<long long>(result.value("last_seq", int64_t{0})));
    } else {
      std::printf("audit chain BROKEN at seq %lld: %s (last good seq %lld)\n",
                  static_cast<long long>(result.value("broken_seq", int64_t{0})),
                  result.value("reason", std::string("?")).c_str(),
                  static_cast<long long>(result.value("last_seq", int64_t{0})));
    }
  } else if (command == "verify" && result.is_object()) {
    std::printf("%s: %lld studies, %lld instances, %s authenticated, %lld problems\n",
                result.value("ok", false) ? "storage OK" : "storage PROBLEMS",
                static_cast<long long>(result.value("studies", int64_t{0})),
                static_cast<long long>(result.value("instances", int64_t{0})),
                Human(result.value("bytes", uint64_t{0})).c_str(),
                static_cast<long long>(result.value("problem_count", int64_t{0})));
    for (const auto& p : result.value("problems", json::array())) {
      std::printf("  %s %s (study_pk %s): %s\n", Str(p, "kind").c_str(), Str(p, "object").c_str(),
                  Str(p, "study_pk").c_str(), Str(p, "detail").c_str());
    }
  } else if (command == "backup" && result.is_object()) {
    std::string kek_list;
    for (const auto& k : result.value("kek_ids", json::array())) {
      kek_list += (kek_list.empty() ? "" : " ") + (k.is_string() ? k.get<std::string>() : k.dump());
    }
    std::printf(
        "backup OK: %s\n  %lld studies, %lld objects (%s), catalog %s\n"
        "  storage %s, needs KEK %s\n  MANIFEST sha256 %s\n",
        Str(result, "dir").c_str(), static_cast<long long>(result.value("studies", int64_t{0})),
        static_cast<long long>(result.value("objects", int64_t{0})),
        Human(result.value("object_bytes", uint64_t{0})).c_str(),
        Human(result.value("catalog_bytes", uint64_t{0})).c_str(),
        Str(result, "storage_id").c_str(), Str(result, "kek_ids").c_str(),
        Str(result, "manifest_sha256").c_str());
  } else if (command == "erasure-certificate" && result.is_object()) {
    std::printf("%s\n%s", result.value("certificate", std::string()).c_str(),
                result.value("signature", std::string()).c_str());
  } else if (command == "status" && result.is_object()) {
    PrintStatus(result);
  } else if (command == "help" && result.contains("commands")) {
    for (const auto& c : result["commands"]) {
      std::string flags;
      for (const auto& f : c.value("flags", json::array())) {
        flags += (flags.empty() ? "" : ",") + f.get<std::string>();
      }
      std::printf("%-20s %s\n", c.value("name", std::string()).c_str(), flags.c_str());
    }
  } else {
    std::cout << result.dump(2, ' ', false, json::error_handler_t::replace) << "\n";
  }
  if ((command == "audit verify" || command == "verify") && result.is_object() &&
      !result.value("ok", false)) {
    return kProblemsFound;
  }
  return kOk;
}
