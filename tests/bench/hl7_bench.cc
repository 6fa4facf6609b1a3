// hl7_bench: HL7 v2 ADT^A08 over MLLP, durable ACK vs a minimal echo ACK, on
// the same transport and the same server code (Hl7Server on one AsioRunner).
//
//   hl7_bench DEV_DIR [seconds_per_run [only]]
//
// `only` (e.g. "plain:8", "tls:1") runs one transport/connection count
// (profiling with perf record); "stream:N" runs only the durable streaming
// run, plain, N connections with 16 in flight each; "direct:N" only the
// storage, N threads, no network.
//
// DEV_DIR is a dev dir as scripts/dev-run.sh / the integration harness make it
// (pki/, kek, storage/, phigate.yaml from `phigated --print-dev-config`).
// Both servers run in this process on ephemeral ports; the clients are
// threads with blocking sockets (plain) or OpenSSL (TLS, dev client cert).
// Prints, for plain and TLS, 1, 8 and 32 connections: messages/s closed-loop
// (each connection sends the next message when it has the ACK), ACK latency
// p50/p99 at a fixed aggregate 1,000 msg/s, and closures per group commit of
// the durable throughput run; and "8x16": 8 connections streaming with 16
// messages in flight each (ACKs still in order). "WAL pg/msg" is the pages
// the catalog writer wrote to the WAL per message (4 KiB + 24 bytes each).
// Not a ctest test.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "libphi/config/config.h"
#include "libphi/hl7/ack.h"
#include "libphi/hl7/hl7_handler.h"
#include "libphi/hl7/hl7_server.h"
#include "libphi/hl7/mllp_framer.h"
#include "libphi/services/hl7_service.h"
#include "libphi/services/storage_stack.h"
#include "libphi/tls/asio_runner.h"
#include "libphi/tls/tls_context_provider.h"

namespace {

using Clock = std::chrono::steady_clock;
using namespace phi;

// WAL pages per closure between two stats snapshots.
double FramesPerMsg(const index::CatalogStats& b, const index::CatalogStats& a) {
  return double(a.wal_frames - b.wal_frames) /
         double(std::max<uint64_t>(1, a.transactions - b.transactions));
}

// Messages (transactions) per commit between two catalog snapshots.
double MsgsPerCommit(const index::CatalogStats& b, const index::CatalogStats& a) {
  return double(a.transactions - b.transactions) /
         double(std::max<uint64_t>(1, a.commits - b.commits));
}

// The protocol ceiling: ACK without storing.
class EchoHandler : public hl7::MessageHandler {
 public:
  explicit EchoHandler(Env& env) : env_(env) {}
  std::string Handle(std::string_view message, const hl7::ConnectionInfo&) override {
    auto msh = hl7::ParseMsh(message);
    if (!msh.ok()) return {};
    return hl7::BuildAck(*msh, "AA", "E" + std::to_string(n_++), env_.Now(), nullptr);
  }

 private:
  Env& env_;
  std::atomic<uint64_t> n_{0};
};

std::string Adt(int conn, uint64_t i) {
  return "MSH|^~\\&|EPIC|HOSP|PHIGATE|RAD|20240316090000||ADT^A08|C" + std::to_string(conn) + "-" +
         std::to_string(i) + "|P|2.5.1\rEVN|A08|20240316090000\rPID|1||BENCH-" +
         std::to_string(conn * 1000 + i % 1000) + "^^^HOSP^MR||DOE^JANE^" + std::to_string(i) +
         "||19700101|F\rPV1|1|O\r";
}

class Conn {
 public:
  Conn(uint16_t port, SSL_CTX* ctx) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) abort();
    if (ctx) {
      ssl_ = SSL_new(ctx);
      SSL_set_fd(ssl_, fd_);
      if (SSL_connect(ssl_) != 1) {
        ERR_print_errors_fp(stderr);
        abort();
      }
    }
  }
  ~Conn() {
    if (ssl_) {
      SSL_shutdown(ssl_);
      SSL_free(ssl_);
    }
    close(fd_);
  }
  // Sends one framed message.
  void Send(const std::string& msg) {
    std::string f = hl7::MllpEncode(msg);
    if (ssl_) {
      if (SSL_write(ssl_, f.data(), static_cast<int>(f.size())) <= 0) abort();
    } else if (send(fd_, f.data(), f.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(f.size())) {
      abort();
    }
  }
  // Waits for the next framed ACK; returns its MSA-1.
  std::string Receive() {
    char buf[8192];
    while (acks_.empty()) {
      int n = ssl_ ? SSL_read(ssl_, buf, sizeof(buf))
                   : static_cast<int>(recv(fd_, buf, sizeof(buf), 0));
      if (n <= 0) abort();
      if (!framer_.Feed(std::string_view(buf, n), &acks_).ok()) abort();
    }
    std::string ack = std::move(acks_.front());
    acks_.pop_front();
    size_t p = ack.find("MSA|");
    return p == std::string::npos ? "" : ack.substr(p + 4, 2);
  }
  std::string RoundTrip(const std::string& msg) {
    Send(msg);
    return Receive();
  }

 private:
  int fd_ = -1;
  SSL* ssl_ = nullptr;
  hl7::MllpFramer framer_{1 << 20};
  std::deque<std::string> acks_;
};

struct RunResult {
  double msgs_per_s = 0;
  double p50_ms = 0, p99_ms = 0;
  uint64_t not_aa = 0;
};

// Runs body(c, stop, done, bad) on `conns` threads for `seconds`, then sets
// `stop` and joins them; the rate is `done` over the elapsed time.
RunResult ClosedLoop(
    int conns, double seconds,
    const std::function<void(int c, const std::atomic<bool>& stop, std::atomic<uint64_t>& done,
                             std::atomic<uint64_t>& bad)>& body) {
  std::atomic<uint64_t> done{0}, bad{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> ts;
  auto t0 = Clock::now();
  for (int c = 0; c < conns; ++c) ts.emplace_back([&, c] { body(c, stop, done, bad); });
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& t : ts) t.join();
  double el = std::chrono::duration<double>(Clock::now() - t0).count();
  return {done / el, 0, 0, bad.load()};
}

// Closed loop: `window` messages in flight per connection (1 = send the next
// message when the ACK of the previous one is in, what most RIS do; more =
// a streaming sender, answered in order by the server's read-ahead).
RunResult Throughput(uint16_t port, SSL_CTX* ctx, int conns, double seconds, int window = 1) {
  return ClosedLoop(conns, seconds,
                    [&](int c, const std::atomic<bool>& stop, auto& done, auto& bad) {
                      Conn k(port, ctx);
                      uint64_t sent = 0;
                      for (; sent < static_cast<uint64_t>(window); ++sent) k.Send(Adt(c, sent));
                      for (uint64_t acked = 0; acked < sent; ++acked) {
                        if (k.Receive() != "AA") ++bad;
                        ++done;
                        if (!stop.load(std::memory_order_relaxed)) k.Send(Adt(c, sent++));
                      }
                    });
}

RunResult Latency(uint16_t port, SSL_CTX* ctx, int conns, double seconds, double rate) {
  std::vector<std::vector<double>> lat(conns);
  std::atomic<uint64_t> bad{0};
  std::vector<std::thread> ts;
  const double per_conn = rate / conns;
  auto start = Clock::now() + std::chrono::milliseconds(200);
  for (int c = 0; c < conns; ++c) {
    ts.emplace_back([&, c] {
      Conn k(port, ctx);
      const auto period = std::chrono::duration<double>(1.0 / per_conn);
      auto offset = std::chrono::duration<double>(period.count() * c / conns);
      const uint64_t n = static_cast<uint64_t>(seconds * per_conn);
      for (uint64_t i = 0; i < n; ++i) {
        auto due = start + std::chrono::duration_cast<Clock::duration>(offset + period * i);
        std::this_thread::sleep_until(due);
        // Latency from the scheduled send time (includes any queueing behind
        // a slow previous ACK on this connection: no coordinated omission).
        if (k.RoundTrip(Adt(c, i)) != "AA") ++bad;
        lat[c].push_back(std::chrono::duration<double, std::milli>(Clock::now() - due).count());
      }
    });
  }
  for (auto& t : ts) t.join();
  std::vector<double> all;
  for (auto& v : lat) all.insert(all.end(), v.begin(), v.end());
  std::sort(all.begin(), all.end());
  RunResult r;
  r.msgs_per_s = rate;
  r.p50_ms = all[all.size() / 2];
  r.p99_ms = all[std::min(all.size() - 1, all.size() * 99 / 100)];
  r.not_aa = bad;
  return r;
}

// The storage ceiling: Handle() called directly from `conns` threads, no
// network, each thread waiting for its ACK before the next message.
RunResult Direct(hl7::MessageHandler& h, int conns, double seconds) {
  return ClosedLoop(conns, seconds,
                    [&](int c, const std::atomic<bool>& stop, auto& done, auto& bad) {
                      hl7::ConnectionInfo info;
                      info.id = 1000 + c;
                      info.peer_address = "127.0.0.1";
                      for (uint64_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
                        std::string ack = h.Handle(Adt(c + 100, i), info);
                        if (ack.find("MSA|AA|") == std::string::npos) ++bad;
                        ++done;
                      }
                    });
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: hl7_bench DEV_DIR [seconds_per_run]\n");
    return 2;
  }
  const std::string dev = argv[1];
  const double secs = argc > 2 ? std::atof(argv[2]) : 5.0;
  const std::string only = argc > 3 ? argv[3] : "";
  Env& env = Env::Default();
  auto cfg = config::Load(dev + "/phigate.yaml", env);
  if (!cfg.ok()) {
    std::fprintf(stderr, "config: %s\n", cfg.status().ToString().c_str());
    return 1;
  }
  auto stack = services::StorageStack::Open(cfg->keys, cfg->storage, env);
  if (!stack.ok()) {
    std::fprintf(stderr, "storage: %s\n", stack.status().ToString().c_str());
    return 1;
  }
  services::Hl7Service service((*stack)->vault(), (*stack)->catalog(), (*stack)->keys(), env);
  hl7::Hl7MessageHandler durable(service, env);
  EchoHandler echo(env);
  auto tlsp = tls::TlsContextProvider::Create(cfg->tls, true, env);
  if (!tlsp.ok()) return 1;
  tls::AsioRunner runner;
  config::Hl7Config hc = cfg->hl7;
  hc.tls.enabled = hc.plain.enabled = true;
  hc.tls.bind = hc.plain.bind = "127.0.0.1";
  hc.tls.port = hc.plain.port = 0;
  hc.allowed_networks = {*config::ParseNetwork("127.0.0.0/8")};
  hc.max_connections = 64;
  auto s_durable = hl7::Hl7Server::Create(hc, tlsp->get(), runner, durable);
  auto s_echo = hl7::Hl7Server::Create(hc, tlsp->get(), runner, echo);
  if (!s_durable.ok() || !s_echo.ok() || !(*s_durable)->Start().ok() || !(*s_echo)->Start().ok() ||
      !runner.Start().ok()) {
    std::fprintf(stderr, "servers did not start\n");
    return 1;
  }
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_load_verify_locations(ctx, (dev + "/pki/ca.pem").c_str(), nullptr);
  SSL_CTX_use_certificate_chain_file(ctx, (dev + "/pki/clinician.pem").c_str());
  SSL_CTX_use_PrivateKey_file(ctx, (dev + "/pki/clinician.key").c_str(), SSL_FILETYPE_PEM);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);

  std::printf("hl7_bench: ADT^A08, %.0f s per run, %u io threads, %u cores\n", secs,
              runner.threads(), std::thread::hardware_concurrency());
  std::printf("%-6s %-5s %-8s %12s %10s %12s %12s %8s %9s %10s\n", "xport", "conns", "server",
              "msgs/s", "vs echo", "p50@1k ms", "p99@1k ms", "not-AA", "msg/commit", "WAL pg/msg");
  if (only.rfind("direct:", 0) == 0) {
    int n = std::atoi(only.c_str() + 7);
    auto before = (*stack)->catalog().stats();
    RunResult d = Direct(durable, n, secs);
    auto after = (*stack)->catalog().stats();
    std::printf("direct %-5d %-8s %12.0f %10s %12s %12s %8lu %9.1f %10.2f\n", n, "durable",
                d.msgs_per_s, "-", "-", "-", static_cast<unsigned long>(d.not_aa),
                MsgsPerCommit(before, after), FramesPerMsg(before, after));
  }
  if (only.rfind("stream:", 0) == 0) {
    int n = std::atoi(only.c_str() + 7);
    auto b = (*stack)->catalog().stats();
    RunResult wd = Throughput((*s_durable)->plain_port(), nullptr, n, secs, 16);
    auto a = (*stack)->catalog().stats();
    std::printf("plain  %dx16 %-8s %12.0f %10s %12s %12s %8lu %9.1f %10.2f\n", n, "durable",
                wd.msgs_per_s, "-", "-", "-", static_cast<unsigned long>(wd.not_aa),
                MsgsPerCommit(b, a), FramesPerMsg(b, a));
  }
  for (bool use_tls : {false, true}) {
    for (int conns : {1, 8, 32}) {
      if (!only.empty() &&
          only != std::string(use_tls ? "tls:" : "plain:") + std::to_string(conns)) {
        continue;
      }
      uint16_t pe = use_tls ? (*s_echo)->tls_port() : (*s_echo)->plain_port();
      uint16_t pd = use_tls ? (*s_durable)->tls_port() : (*s_durable)->plain_port();
      SSL_CTX* c = use_tls ? ctx : nullptr;
      RunResult te = Throughput(pe, c, conns, secs);
      RunResult le = Latency(pe, c, conns, secs, 1000);
      auto before = (*stack)->catalog().stats();
      RunResult td = Throughput(pd, c, conns, secs);
      auto after = (*stack)->catalog().stats();
      const double per_commit = MsgsPerCommit(before, after);
      RunResult ld = Latency(pd, c, conns, secs, 1000);
      const char* x = use_tls ? "tls" : "plain";
      std::printf("%-6s %-5d %-8s %12.0f %10s %12.2f %12.2f %8lu\n", x, conns, "echo",
                  te.msgs_per_s, "1.00", le.p50_ms, le.p99_ms,
                  static_cast<unsigned long>(te.not_aa + le.not_aa));
      std::printf("%-6s %-5d %-8s %12.0f %10.2f %12.2f %12.2f %8lu %9.1f %10.2f\n", x, conns,
                  "durable", td.msgs_per_s, td.msgs_per_s / te.msgs_per_s, ld.p50_ms, ld.p99_ms,
                  static_cast<unsigned long>(td.not_aa + ld.not_aa), per_commit,
                  FramesPerMsg(before, after));
      if (conns == 8) {
        // A streaming sender (16 in flight per connection), for comparison.
        RunResult we = Throughput(pe, c, conns, secs, 16);
        auto b = (*stack)->catalog().stats();
        RunResult wd = Throughput(pd, c, conns, secs, 16);
        auto a = (*stack)->catalog().stats();
        std::printf("%-6s %-5s %-8s %12.0f %10s %12s %12s %8lu\n", x, "8x16", "echo", we.msgs_per_s,
                    "1.00", "-", "-", static_cast<unsigned long>(we.not_aa));
        std::printf("%-6s %-5s %-8s %12.0f %10.2f %12s %12s %8lu %9.1f %10.2f\n", x, "8x16",
                    "durable", wd.msgs_per_s, wd.msgs_per_s / we.msgs_per_s, "-", "-",
                    static_cast<unsigned long>(wd.not_aa), MsgsPerCommit(b, a), FramesPerMsg(b, a));
      }
      std::fflush(stdout);
    }
  }
  auto st = (*stack)->catalog().stats();
  std::printf("catalog: %lu transactions in %lu commits (group commit), %lu checkpoints\n",
              static_cast<unsigned long>(st.transactions), static_cast<unsigned long>(st.commits),
              static_cast<unsigned long>(st.checkpoints));
  (*s_durable)->StopAccepting();
  (*s_echo)->StopAccepting();
  (*s_durable)->Drain(Clock::now() + std::chrono::seconds(2));
  (*s_echo)->Drain(Clock::now() + std::chrono::seconds(2));
  runner.Stop();
  SSL_CTX_free(ctx);
  return 0;
}
