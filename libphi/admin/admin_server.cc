#include "libphi/admin/admin_server.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <sstream>

#include "libphi/util/log.h"

namespace phi::admin {
namespace {

using nlohmann::json;

constexpr int kMaxJsonDepth = 32;
constexpr size_t kMaxProcStatusBytes = 64 * 1024;

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// Rejects lines nested deeper than kMaxJsonDepth before handing them to the parser.
bool DepthOk(const std::string& s) {
  int depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : s) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth) return false;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return true;
}

// Writes all of `data` (or fails) within `timeout`.
bool WriteAll(int fd, const std::string& data, std::chrono::milliseconds timeout) {
  size_t off = 0;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (off < data.size()) {
    ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd p{fd, POLLOUT, 0};
      int r = ::poll(&p, 1, static_cast<int>(left.count()));
      if (r < 0 && errno != EINTR) return false;
      continue;
    }
    return false;
  }
  return true;
}

void CloseFd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

std::optional<gid_t> LookupGroup(const std::string& name) {
  if (name.empty()) return std::nullopt;
  struct group gr;
  struct group* res = nullptr;
  std::vector<char> buf(16384);
  while (true) {
    int rc = ::getgrnam_r(name.c_str(), &gr, buf.data(), buf.size(), &res);
    if (rc == ERANGE && buf.size() < (1u << 20)) {
      buf.resize(buf.size() * 2);
      continue;
    }
    if (rc != 0 || res == nullptr) return std::nullopt;
    return gr.gr_gid;
  }
}

}  // namespace

json ErrorResponse(const Status& s) {
  return json{{"ok", false},
              {"error", {{"code", std::string(CodeName(s.code()))}, {"message", s.message()}}}};
}

Result<std::unique_ptr<AdminServer>> AdminServer::Create(const config::AdminConfig& cfg, Env& env,
                                                         AdminServerOptions opts) {
  if (cfg.socket.empty()) return Status::InvalidArgument("admin.socket is empty");
  if (cfg.socket.string().size() >= sizeof(sockaddr_un::sun_path)) {
    return Status::InvalidArgument("admin.socket path is too long for a UNIX socket: " +
                                   cfg.socket.string());
  }
  if (opts.max_request_bytes == 0 || opts.max_connections == 0) {
    return Status::InvalidArgument("admin server limits must be positive");
  }
  std::optional<gid_t> gid = LookupGroup(cfg.group);
  if (!gid && !cfg.group.empty()) {
    PHI_LOG(kNotice,
            "admin group does not exist; only root and the daemon user may use the "
            "admin socket",
            {{"group", log::Safe(cfg.group)}});
  }
  auto s = std::unique_ptr<AdminServer>(new AdminServer(cfg, env, std::move(opts), gid));
  if (::pipe2(s->wake_pipe_, O_CLOEXEC | O_NONBLOCK) != 0 ||
      ::pipe2(s->drain_pipe_, O_CLOEXEC | O_NONBLOCK) != 0) {
    return PosixError("pipe2", errno);
  }
  return s;
}

AdminServer::AdminServer(const config::AdminConfig& cfg, Env& env, AdminServerOptions opts,
                         std::optional<gid_t> admin_gid)
    : cfg_(cfg), env_(env), opts_(std::move(opts)), admin_gid_(admin_gid), own_uid_(::geteuid()) {
  Register("help", kReadOnly, [this](const json&, const PeerCred&) -> Result<json> {
    json cmds = json::array();
    std::lock_guard<std::mutex> lock(table_mu_);
    for (const auto& [name, cmd] : table_) {
      json flags = json::array();
      if (cmd.flags & kReadOnly) flags.push_back("read-only");
      if (cmd.flags & kDestructive) flags.push_back("destructive");
      cmds.push_back({{"name", name}, {"flags", flags}});
    }
    return json{{"commands", cmds}};
  });
}

AdminServer::~AdminServer() {
  StopAccepting();
  Drain(std::chrono::steady_clock::now());
  for (int* p : {wake_pipe_, drain_pipe_}) {
    CloseFd(p[0]);
    CloseFd(p[1]);
  }
}

void AdminServer::Register(std::string name, uint32_t flags, Handler handler) {
  std::lock_guard<std::mutex> lock(table_mu_);
  table_[std::move(name)] = Command{flags, std::move(handler)};
}

Status AdminServer::Start() {
  if (started_.exchange(true)) return Status::Internal("admin server started twice");
  const std::string path = cfg_.socket.string();
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return Status::AlreadyExists("admin socket " + path +
                                   " exists and is not a socket; refusing to remove it");
    }
    if (::unlink(path.c_str()) != 0) return PosixError("remove stale admin socket " + path, errno);
  } else if (errno != ENOENT) {
    return PosixError("stat admin socket " + path, errno);
  }

  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return PosixError("socket", errno);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int err = errno;
    ::close(fd);
    return PosixError("bind admin socket " + path, err);
  }
  // Not yet listening: nobody can connect before mode and group are right.
  if (::chmod(path.c_str(), 0660) != 0) {
    int err = errno;
    ::close(fd);
    ::unlink(path.c_str());
    return PosixError("chmod 0660 admin socket " + path, err);
  }
  if (admin_gid_) {
    if (::chown(path.c_str(), static_cast<uid_t>(-1), *admin_gid_) != 0) {
      PHI_LOG(kNotice, "cannot give the admin socket to the admin group; keeping our own group",
              {{"socket", log::Safe(path)},
               {"group", log::Safe(cfg_.group)},
               {"status", PosixError("chown", errno)}});
    }
  }
  if (::listen(fd, 16) != 0) {
    int err = errno;
    ::close(fd);
    ::unlink(path.c_str());
    return PosixError("listen admin socket " + path, err);
  }
  listen_fd_ = fd;
  accepting_ = true;
  accept_thread_ = std::thread([this] { AcceptLoop(); });
  PHI_LOG(kInfo, "admin socket listening", {{"socket", log::Safe(path)}});
  return Status::Ok();
}

Status AdminServer::Reload(const config::Config& cfg) {
  if (cfg.admin.socket != cfg_.socket || cfg.admin.group != cfg_.group) {
    PHI_LOG(kNotice, "admin.socket and admin.group changes take effect at the next restart");
  }
  return Status::Ok();
}

void AdminServer::StopAccepting() {
  if (!accepting_.exchange(false)) return;
  char b = 1;
  (void)!::write(wake_pipe_[1], &b, 1);
  if (accept_thread_.joinable()) accept_thread_.join();
  CloseFd(listen_fd_);
  struct stat st;
  if (::lstat(cfg_.socket.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
    ::unlink(cfg_.socket.c_str());
  }
}

void AdminServer::Drain(MonotonicTime deadline) {
  std::unique_lock<std::mutex> lock(conn_mu_);
  if (!draining_) {
    draining_ = true;
    char b = 1;
    (void)!::write(drain_pipe_[1], &b, 1);  // never read: stays readable, wakes every poll
  }
  conn_cv_.wait_until(lock, deadline, [this] { return conns_.empty(); });
  if (!conns_.empty()) {
    // Past the deadline: cut the remaining connections; their threads exit promptly.
    for (auto& [fd, t] : conns_) ::shutdown(fd, SHUT_RDWR);
    conn_cv_.wait(lock, [this] { return conns_.empty(); });
  }
  std::vector<std::thread> done;
  done.swap(finished_);
  lock.unlock();
  for (auto& t : done) t.join();
}

std::vector<ListenerStatus> AdminServer::Listeners() const {
  ListenerStatus l;
  l.name = "admin";
  l.address = cfg_.socket.string();
  l.tls = false;
  l.state = accepting_ ? "listening" : (started_ ? "stopped" : "disabled");
  {
    std::lock_guard<std::mutex> lock(conn_mu_);
    l.open_connections = conns_.size();
  }
  l.accepted_total = accepted_total_;
  l.refused_total = refused_total_;
  return {l};
}

void AdminServer::AcceptLoop() {
  while (accepting_) {
    pollfd p[2] = {{listen_fd_, POLLIN, 0}, {wake_pipe_[0], POLLIN, 0}};
    int r = ::poll(p, 2, 1000);
    if (r < 0) {
      if (errno == EINTR) continue;
      PHI_LOG(kError, "admin socket poll failed", {{"status", PosixError("poll", errno)}});
      return;
    }
    {
      // Reap finished connection threads.
      std::vector<std::thread> done;
      {
        std::lock_guard<std::mutex> lock(conn_mu_);
        done.swap(finished_);
      }
      for (auto& t : done) t.join();
    }
    if (p[1].revents != 0 || !accepting_) return;
    if ((p[0].revents & POLLIN) == 0) continue;
    int c = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) {
      if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED) {
        PHI_LOG(kWarning, "admin socket accept failed", {{"status", PosixError("accept", errno)}});
      }
      continue;
    }
    std::lock_guard<std::mutex> lock(conn_mu_);
    if (draining_ || conns_.size() >= opts_.max_connections) {
      ++refused_total_;
      WriteAll(c,
               Dump(ErrorResponse(Status::ResourceExhausted("too many admin connections"))) + "\n",
               std::chrono::milliseconds(100));
      ::close(c);
      continue;
    }
    conns_.emplace(c, std::thread([this, c] { ServeConnection(c); }));
  }
}

bool AdminServer::PeerInGroup(const PeerCred& peer, gid_t gid) const {
  if (peer.gid == gid) return true;
  // The peer process's supplementary groups, as the kernel has them now.
  auto status = env_.ReadSmallFile(env_.ProcRoot() / std::to_string(peer.pid) / "status",
                                   kMaxProcStatusBytes);
  if (status.ok()) {
    std::istringstream in(*status);
    std::string line;
    bool uid_matches = false;
    std::vector<gid_t> groups;
    while (std::getline(in, line)) {
      if (line.rfind("Uid:", 0) == 0) {
        std::istringstream f(line.substr(4));
        unsigned long real = 0, eff = 0;
        f >> real >> eff;
        // Guard against pid reuse: the process must still be the peer's uid.
        uid_matches = (eff == peer.uid || real == peer.uid);
      } else if (line.rfind("Groups:", 0) == 0) {
        std::istringstream f(line.substr(7));
        unsigned long g;
        while (f >> g) groups.push_back(static_cast<gid_t>(g));
      }
    }
    if (uid_matches) {
      for (gid_t g : groups) {
        if (g == gid) return true;
      }
      return false;
    }
  }
  // Fall back to the account database.
  struct passwd pw;
  struct passwd* res = nullptr;
  std::vector<char> buf(16384);
  if (::getpwuid_r(peer.uid, &pw, buf.data(), buf.size(), &res) != 0 || res == nullptr) {
    return false;
  }
  int n = 64;
  std::vector<gid_t> groups(static_cast<size_t>(n));
  if (::getgrouplist(pw.pw_name, peer.gid, groups.data(), &n) < 0) {
    if (n <= 0 || n > 65536) return false;
    groups.resize(static_cast<size_t>(n));
    if (::getgrouplist(pw.pw_name, peer.gid, groups.data(), &n) < 0) return false;
  }
  for (int i = 0; i < n; ++i) {
    if (groups[static_cast<size_t>(i)] == gid) return true;
  }
  return false;
}

bool AdminServer::IsAllowed(const PeerCred& peer) const {
  if (peer.uid == 0 || peer.uid == own_uid_) return true;
  return admin_gid_ && PeerInGroup(peer, *admin_gid_);
}

void AdminServer::ServeConnection(int fd) {
  ++accepted_total_;
  PeerCred peer;
  ucred uc{};
  socklen_t len = sizeof uc;
  bool have_cred = ::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) == 0;
  if (have_cred) peer = PeerCred{uc.pid, uc.uid, uc.gid};

  auto finish = [this, fd] {
    std::lock_guard<std::mutex> lock(conn_mu_);
    auto node = conns_.extract(fd);
    ::close(fd);
    if (!node.empty()) finished_.push_back(std::move(node.mapped()));
    conn_cv_.notify_all();
  };

  if (!have_cred || !IsAllowed(peer)) {
    ++refused_total_;
    PHI_LOG(kNotice, "admin connection refused",
            {{"uid", static_cast<int64_t>(peer.uid)}, {"pid", static_cast<int64_t>(peer.pid)}});
    if (opts_.on_refused) opts_.on_refused(peer.uid, peer.pid);
    WriteAll(fd,
             Dump(ErrorResponse(Status::PermissionDenied(
                 "uid " + std::to_string(peer.uid) +
                 " may not use the admin socket (root, the daemon user or group " + cfg_.group +
                 " only)"))) +
                 "\n",
             opts_.read_timeout);
    finish();
    return;
  }

  std::string buf;
  char chunk[4096];
  auto deadline = std::chrono::steady_clock::now() + opts_.read_timeout;
  bool open = true;
  while (open) {
    // Serve every complete line already buffered.
    size_t nl;
    while ((nl = buf.find('\n')) != std::string::npos) {
      std::string line = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty()) continue;
      json resp = HandleLineForTest(line, peer);
      if (!WriteAll(fd, Dump(resp) + "\n", opts_.read_timeout)) {
        open = false;
        break;
      }
      deadline = std::chrono::steady_clock::now() + opts_.read_timeout;
    }
    if (!open) break;
    if (buf.size() > opts_.max_request_bytes) {
      WriteAll(
          fd,
          Dump(ErrorResponse(Status::ResourceExhausted(
              "request line longer than " + std::to_string(opts_.max_request_bytes) + " bytes"))) +
              "\n",
          std::chrono::milliseconds(500));
      break;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      if (!buf.empty()) {
        WriteAll(fd, Dump(ErrorResponse(Status::Unavailable("admin request read timeout"))) + "\n",
                 std::chrono::milliseconds(500));
      }
      break;
    }
    pollfd p[2] = {{fd, POLLIN, 0}, {drain_pipe_[0], POLLIN, 0}};
    int r = ::poll(p, 2, static_cast<int>(left.count()));
    if (r < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (p[1].revents != 0) break;  // draining: idle connections close now
    if (r == 0) continue;          // timeout handled above
    ssize_t n = ::recv(fd, chunk, sizeof chunk, MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) break;
    buf.append(chunk, static_cast<size_t>(n));
  }
  finish();
}

json AdminServer::HandleLineForTest(const std::string& line, const PeerCred& peer) {
  if (line.size() > opts_.max_request_bytes) {
    return ErrorResponse(Status::ResourceExhausted("request line too long"));
  }
  if (!DepthOk(line)) return ErrorResponse(Status::InvalidArgument("request nested too deeply"));
  json req = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (req.is_discarded()) return ErrorResponse(Status::InvalidArgument("request is not JSON"));
  return Dispatch(req, peer);
}

json AdminServer::Dispatch(const json& req, const PeerCred& peer) {
  if (!req.is_object()) return ErrorResponse(Status::InvalidArgument("request must be an object"));
  auto c = req.find("command");
  if (c == req.end() || !c->is_string()) {
    return ErrorResponse(Status::InvalidArgument("request.command must be a string"));
  }
  json args = json::object();
  auto a = req.find("args");
  if (a != req.end() && !a->is_null()) {
    if (!a->is_object())
      return ErrorResponse(Status::InvalidArgument("request.args must be an object"));
    args = *a;
  }
  const std::string name = c->get<std::string>();
  Command cmd;
  {
    std::lock_guard<std::mutex> lock(table_mu_);
    auto it = table_.find(name);
    if (it == table_.end()) {
      return ErrorResponse(Status::NotFound("unknown command (try \"help\")"));
    }
    cmd = it->second;
  }
  if (cmd.flags & kDestructive) {
    PHI_LOG(kNotice, "admin destructive command",
            {{"command", log::Safe(name)},
             {"uid", static_cast<int64_t>(peer.uid)},
             {"pid", static_cast<int64_t>(peer.pid)}});
  }
  try {
    Result<json> r = cmd.handler(args, peer);
    if (!r.ok()) return ErrorResponse(r.status());
    return json{{"ok", true}, {"result", std::move(r).value()}};
  } catch (const std::exception&) {
    // A handler bug (e.g. a JSON type error on args); the exception text may echo input.
    PHI_LOG(kError, "admin command handler threw", {{"command", log::Safe(name)}});
    return ErrorResponse(Status::Internal("command failed unexpectedly"));
  }
}

}  // namespace phi::admin
