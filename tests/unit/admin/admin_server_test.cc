// AdminServer over a real UNIX socket in a temp dir.
#include "libphi/admin/admin_server.h"

#include <grp.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <string>

#include "tests/support/temp_dir.h"

namespace phi::admin {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using phi::testing::TempDir;
using phi::testing::WriteFile;

int Connect(const fs::path& p) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, p.c_str(), sizeof a.sun_path - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

void Send(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

// Reads one line (without '\n'); empty string on EOF/error before any newline.
std::string ReadLine(int fd) {
  std::string out;
  char c;
  while (true) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 10000) <= 0) return out;
    ssize_t n = ::read(fd, &c, 1);
    if (n <= 0) return out;
    if (c == '\n') return out;
    out.push_back(c);
  }
}

bool AtEof(int fd) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, 10000) <= 0) return false;
  char c;
  return ::read(fd, &c, 1) <= 0;
}

class AdminServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cfg_.socket = dir_ / "admin.sock";
    cfg_.group = "phigate-admin-test-nonexistent";
  }
  std::unique_ptr<AdminServer> Make(AdminServerOptions opts = {}) {
    auto s = AdminServer::Create(cfg_, env_, std::move(opts));
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    auto server = std::move(s).value();
    server->Register("echo", kReadOnly, [](const json& args, const PeerCred& peer) -> Result<json> {
      return json{{"args", args}, {"uid", peer.uid}, {"pid", peer.pid}};
    });
    server->Register("fail", kReadOnly, [](const json&, const PeerCred&) -> Result<json> {
      return Status::NotFound("no such study");
    });
    server->Register("throws", kReadOnly, [](const json& args, const PeerCred&) -> Result<json> {
      return json{{"n", args.at("missing").get<int>()}};
    });
    return server;
  }
  json Call(const std::string& line) {
    int fd = Connect(cfg_.socket);
    EXPECT_GE(fd, 0);
    Send(fd, line + "\n");
    std::string resp = ReadLine(fd);
    ::close(fd);
    return json::parse(resp, nullptr, false);
  }

  TempDir dir_;
  PosixEnv env_;
  config::AdminConfig cfg_;
};

TEST_F(AdminServerTest, RoundTripAndSocketMode) {
  auto s = Make();
  ASSERT_TRUE(s->Start().ok());
  struct stat st;
  ASSERT_EQ(::lstat(cfg_.socket.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0660u);

  json r = Call(R"({"command":"echo","args":{"x":1}})");
  ASSERT_TRUE(r.is_object()) << r;
  EXPECT_EQ(r["ok"], true);
  EXPECT_EQ(r["result"]["args"]["x"], 1);
  EXPECT_EQ(r["result"]["uid"], ::geteuid());
  EXPECT_EQ(r["result"]["pid"], ::getpid());

  auto l = s->Listeners();
  ASSERT_EQ(l.size(), 1u);
  EXPECT_EQ(l[0].name, "admin");
  EXPECT_EQ(l[0].state, "listening");
  EXPECT_EQ(l[0].address, cfg_.socket.string());
  EXPECT_GE(l[0].accepted_total, 1u);

  s->StopAccepting();
  s->Drain(std::chrono::steady_clock::now() + std::chrono::seconds(5));
  EXPECT_EQ(s->Listeners()[0].state, "stopped");
  EXPECT_FALSE(fs::exists(cfg_.socket));
  EXPECT_LT(Connect(cfg_.socket), 0);
}

TEST_F(AdminServerTest, SeveralRequestsOnOneConnection) {
  auto s = Make();
  ASSERT_TRUE(s->Start().ok());
  int fd = Connect(cfg_.socket);
  ASSERT_GE(fd, 0);
  Send(fd,
       "{\"command\":\"echo\",\"args\":{\"i\":1}}\n{\"command\":\"echo\",\"args\":{\"i\":2}}\n");
  json a = json::parse(ReadLine(fd));
  json b = json::parse(ReadLine(fd));
  EXPECT_EQ(a["result"]["args"]["i"], 1);
  EXPECT_EQ(b["result"]["args"]["i"], 2);
  ::close(fd);
}

TEST_F(AdminServerTest, Errors) {
  auto s = Make();
  ASSERT_TRUE(s->Start().ok());
  json r = Call("this is not json");
  EXPECT_EQ(r["ok"], false);
  EXPECT_EQ(r["error"]["code"], "InvalidArgument");

  r = Call(R"({"command":"nope"})");
  EXPECT_EQ(r["error"]["code"], "NotFound");
  EXPECT_EQ(r["error"]["message"].get<std::string>().find("nope"), std::string::npos)
      << "unknown command names are not echoed";

  r = Call(R"({"command":"fail"})");
  EXPECT_EQ(r["ok"], false);
  EXPECT_EQ(r["error"]["code"], "NotFound");
  EXPECT_EQ(r["error"]["message"], "no such study");

  r = Call(R"({"command":"throws","args":{}})");
  EXPECT_EQ(r["error"]["code"], "Internal");

  r = Call(R"({"command":"echo","args":[1]})");
  EXPECT_EQ(r["error"]["code"], "InvalidArgument");

  r = Call(R"(["command"])");
  EXPECT_EQ(r["error"]["code"], "InvalidArgument");

  r = Call(std::string(100, '[') + std::string(100, ']'));
  EXPECT_EQ(r["error"]["code"], "InvalidArgument");
}

TEST_F(AdminServerTest, HelpListsCommandsWithFlags) {
  auto s = Make();
  s->Register("erase", kDestructive,
              [](const json&, const PeerCred&) -> Result<json> { return json::object(); });
  json r = s->HandleLineForTest(R"({"command":"help"})", PeerCred{1, 0, 0});
  ASSERT_EQ(r["ok"], true) << r;
  bool found = false;
  for (const auto& c : r["result"]["commands"]) {
    if (c["name"] == "erase") {
      found = true;
      EXPECT_EQ(c["flags"], json::array({"destructive"}));
    }
  }
  EXPECT_TRUE(found) << r;
}

TEST_F(AdminServerTest, OversizedLineIsRefusedAndClosed) {
  AdminServerOptions o;
  o.max_request_bytes = 1024;
  auto s = Make(o);
  ASSERT_TRUE(s->Start().ok());
  int fd = Connect(cfg_.socket);
  ASSERT_GE(fd, 0);
  Send(fd, std::string(4096, 'a'));  // no newline, over the cap
  json r = json::parse(ReadLine(fd), nullptr, false);
  EXPECT_EQ(r["error"]["code"], "ResourceExhausted") << r;
  EXPECT_TRUE(AtEof(fd));
  ::close(fd);
}

TEST_F(AdminServerTest, SlowRequestTimesOut) {
  AdminServerOptions o;
  o.read_timeout = std::chrono::milliseconds(200);
  auto s = Make(o);
  ASSERT_TRUE(s->Start().ok());
  int fd = Connect(cfg_.socket);
  ASSERT_GE(fd, 0);
  Send(fd, "{\"command\":");  // never finished
  json r = json::parse(ReadLine(fd), nullptr, false);
  EXPECT_EQ(r["error"]["code"], "Unavailable") << r;
  EXPECT_TRUE(AtEof(fd));
  ::close(fd);
}

TEST_F(AdminServerTest, StaleSocketIsReplacedButOtherFilesAreNot) {
  {
    auto first = Make();
    ASSERT_TRUE(first->Start().ok());
  }
  // Leave a stale socket: bind one without listening.
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, cfg_.socket.c_str(), sizeof a.sun_path - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ::close(fd);
  ASSERT_TRUE(fs::exists(cfg_.socket));
  auto s = Make();
  ASSERT_TRUE(s->Start().ok());
  EXPECT_EQ(Call(R"({"command":"echo"})")["ok"], true);
  s.reset();

  WriteFile(cfg_.socket, "precious");
  auto t = Make();
  Status st = t->Start();
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("not a socket"), std::string::npos) << st.ToString();
  EXPECT_EQ(phi::testing::ReadFile(cfg_.socket), "precious");
}

TEST_F(AdminServerTest, AllowedPeers) {
  // Fixture /proc for the supplementary-group lookup.
  TempDir proc;
  PosixEnv fake_env(proc.path(), "/sys");
  fs::create_directories(proc / "4242");
  WriteFile(proc / "4242/status", "Name:\tx\nUid:\t5000\t5000\t5000\t5000\nGroups:\t100 0 7\n");
  fs::create_directories(proc / "4243");
  WriteFile(proc / "4243/status", "Name:\ty\nUid:\t5001\t5001\t5001\t5001\nGroups:\t100 7\n");
  config::AdminConfig cfg = cfg_;
  cfg.group = "root";  // gid 0 exists everywhere
  auto s = AdminServer::Create(cfg, fake_env);
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE((*s)->IsAllowed(PeerCred{1, 0, 0}));
  EXPECT_TRUE((*s)->IsAllowed(PeerCred{1, ::geteuid(), 12345}));
  EXPECT_TRUE((*s)->IsAllowed(PeerCred{1, 5002, 0}));        // primary gid
  EXPECT_TRUE((*s)->IsAllowed(PeerCred{4242, 5000, 100}));   // supplementary
  EXPECT_FALSE((*s)->IsAllowed(PeerCred{4243, 5001, 100}));  // not in the group
  // pid reused by another uid: the /proc entry is not trusted.
  EXPECT_FALSE((*s)->IsAllowed(PeerCred{4242, 5003, 100}));

  // Without an existing admin group only root and our uid get in.
  auto n = AdminServer::Create(cfg_, fake_env);
  ASSERT_TRUE(n.ok());
  EXPECT_FALSE((*n)->IsAllowed(PeerCred{4242, 5000, 100}));
  EXPECT_TRUE((*n)->IsAllowed(PeerCred{1, 0, 0}));
}

TEST_F(AdminServerTest, OtherUserIsRefusedOverTheSocket) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to connect as another uid";
  std::atomic<int> refused_uid{-1};
  AdminServerOptions o;
  o.on_refused = [&](uid_t uid, pid_t) { refused_uid = static_cast<int>(uid); };
  auto s = Make(o);
  ASSERT_TRUE(s->Start().ok());
  ASSERT_EQ(::chmod(dir_.path().c_str(), 0755), 0);
  ASSERT_EQ(::chmod(cfg_.socket.c_str(), 0666), 0);  // socket mode is not the only gate
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(pipefd[0]);
    if (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0) _exit(2);
    int fd = Connect(cfg_.socket);
    if (fd < 0) _exit(3);
    Send(fd, "{\"command\":\"echo\"}\n");
    std::string line = ReadLine(fd);
    if (::write(pipefd[1], line.data(), line.size()) < 0) _exit(4);
    _exit(0);
  }
  ::close(pipefd[1]);
  std::string got;
  char buf[512];
  ssize_t n;
  while ((n = ::read(pipefd[0], buf, sizeof buf)) > 0) got.append(buf, static_cast<size_t>(n));
  ::close(pipefd[0]);
  int wst = 0;
  ::waitpid(pid, &wst, 0);
  ASSERT_TRUE(WIFEXITED(wst));
  ASSERT_EQ(WEXITSTATUS(wst), 0);
  json r = json::parse(got, nullptr, false);
  EXPECT_EQ(r["ok"], false) << got;
  EXPECT_EQ(r["error"]["code"], "PermissionDenied") << got;
  EXPECT_EQ(refused_uid.load(), 65534);
  EXPECT_GE(s->Listeners()[0].refused_total, 1u);
}

TEST_F(AdminServerTest, DrainClosesIdleConnections) {
  auto s = Make();
  ASSERT_TRUE(s->Start().ok());
  int fd = Connect(cfg_.socket);
  ASSERT_GE(fd, 0);
  Send(fd, "{\"command\":\"echo\"}\n");
  ASSERT_FALSE(ReadLine(fd).empty());
  // The connection is now idle and open.
  for (int i = 0; i < 100 && s->Listeners()[0].open_connections == 0; ++i) ::usleep(1000);
  EXPECT_EQ(s->Listeners()[0].open_connections, 1u);
  s->StopAccepting();
  s->Drain(std::chrono::steady_clock::now() + std::chrono::seconds(10));
  EXPECT_EQ(s->Listeners()[0].open_connections, 0u);
  EXPECT_TRUE(AtEof(fd));
  ::close(fd);
}

TEST_F(AdminServerTest, CreateRejectsOverlongSocketPath) {
  config::AdminConfig c = cfg_;
  c.socket = "/tmp/" + std::string(200, 'x');
  auto s = AdminServer::Create(c, env_);
  EXPECT_FALSE(s.ok());
}

}  // namespace
}  // namespace phi::admin
