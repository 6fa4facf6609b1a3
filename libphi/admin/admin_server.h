// phi::admin::AdminServer: the local admin socket behind `phigatectl`.
//
// Owns a UNIX stream socket (admin.socket, mode 0660, group admin.group when that
// group exists), an accept thread, one thread per open connection (bounded), and
// the command table (OpenSSH mon_table style): name -> {flags, handler}.
//
// Every connection is gated by SO_PEERCRED: allowed if the peer is root, runs as
// our own uid (the daemon user), or has the admin group as its gid or one of its
// supplementary groups. Anyone else gets one PermissionDenied response and is
// disconnected (on_refused is called: the audit hook).
//
// Wire protocol: one JSON object per line each way.
//   request:  {"command":"status","args":{...}}
//   response: {"ok":true,"result":{...}}
//             {"ok":false,"error":{"code":"PermissionDenied","message":"..."}}
// Request lines are capped (64 KiB by default) and must arrive within the read
// timeout; a violation closes that one connection.
//
// Thread-safety: Register() may be called from any thread at any time (the table
// is guarded by table_mu_); Start/Reload/StopAccepting/Drain from the daemon's main
// thread only (phi::Server contract); Listeners() from any thread. Handlers run on
// connection threads, concurrently: they must be thread-safe.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "libphi/config/config.h"
#include "libphi/config/server.h"
#include "libphi/util/env.h"
#include "libphi/util/status.h"

namespace phi::admin {

// Who is on the other end of a connection (from SO_PEERCRED).
struct PeerCred {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
};

// Per-command flags (a bit set).
enum Flags : uint32_t {
  kReadOnly = 1u << 0,     // reads state only
  kDestructive = 1u << 1,  // destroys data or keys (erase, rotate-kek): logged at notice first
};

using Handler = std::function<Result<nlohmann::json>(const nlohmann::json& args, const PeerCred&)>;

struct AdminServerOptions {
  size_t max_request_bytes = 64 * 1024;
  std::chrono::milliseconds read_timeout{10000};
  size_t max_connections = 16;
  // Audit hook: called (on the connection thread) for every refused peer.
  std::function<void(uid_t uid, pid_t pid)> on_refused;
};

// The JSON response for a handler outcome (exposed for tests and phigatectl's fakes).
nlohmann::json ErrorResponse(const Status& s);

class AdminServer final : public Server {
 public:
  // Resolves admin.group (absent group = only root and our uid may connect).
  // Nothing is bound until Start().
  static Result<std::unique_ptr<AdminServer>> Create(const config::AdminConfig& cfg, Env& env,
                                                     AdminServerOptions opts = {});
  ~AdminServer() override;
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // Adds or replaces a command. `help` is built in (lists commands and flags).
  void Register(std::string name, uint32_t flags, Handler handler);

  // Binds the socket (removing a stale socket file, never any other kind of file),
  // applies mode/group, starts the accept thread.
  Status Start() override;
  // The socket path and group cannot change without a restart; nothing to do.
  Status Reload(const config::Config& cfg) override;
  void StopAccepting() override;
  void Drain(MonotonicTime deadline) override;
  std::vector<ListenerStatus> Listeners() const override;

  // Runs one request line as if it came from `peer` (no socket); the JSON response.
  nlohmann::json HandleLineForTest(const std::string& line, const PeerCred& peer);
  // Whether `peer` would be allowed in.
  bool IsAllowed(const PeerCred& peer) const;

 private:
  struct Command {
    uint32_t flags = 0;
    Handler handler;
  };

  AdminServer(const config::AdminConfig& cfg, Env& env, AdminServerOptions opts,
              std::optional<gid_t> admin_gid);
  void AcceptLoop();
  void ServeConnection(int fd);
  nlohmann::json Dispatch(const nlohmann::json& request, const PeerCred& peer);
  bool PeerInGroup(const PeerCred& peer, gid_t gid) const;

  const config::AdminConfig cfg_;
  Env& env_;
  const AdminServerOptions opts_;
  const std::optional<gid_t> admin_gid_;
  const uid_t own_uid_;

  mutable std::mutex table_mu_;
  std::map<std::string, Command> table_;  // GUARDED_BY(table_mu_)

  int listen_fd_ = -1;
  int wake_pipe_[2] = {-1, -1};   // accept thread wakeup (StopAccepting)
  int drain_pipe_[2] = {-1, -1};  // connection threads wakeup (Drain)
  std::thread accept_thread_;
  std::atomic<bool> accepting_{false};
  std::atomic<bool> started_{false};
  std::atomic<uint64_t> accepted_total_{0};
  std::atomic<uint64_t> refused_total_{0};

  mutable std::mutex conn_mu_;
  std::condition_variable conn_cv_;
  std::map<int, std::thread> conns_;   // GUARDED_BY(conn_mu_): fd -> serving thread
  std::vector<std::thread> finished_;  // GUARDED_BY(conn_mu_): to join
  bool draining_ = false;              // GUARDED_BY(conn_mu_)
};

}  // namespace phi::admin
