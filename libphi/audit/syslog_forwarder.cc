#include "libphi/audit/syslog_forwarder.h"

#include <linux/sockios.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/ioctl.h>

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <optional>
#include <vector>

#include "libphi/util/log.h"

namespace phi::audit {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using asio::ip::tcp;
using boost::system::error_code;

namespace {

constexpr size_t kMaxPemBytes = 4 * 1024 * 1024;
constexpr size_t kMaxWriteBytes = 1 << 20;  // one write: a batch of frames, bounded
constexpr const char* kStateMagic = "phigate-audit-forward 1";

// RFC 9325 (BCP195) suites, as the server side uses (libphi/tls).
constexpr const char* kBcp195Ciphers =
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256";
constexpr const char* kTls13Suites =
    "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256";
constexpr const char* kGroups = "X25519:P-256:P-384";

std::string OpensslError() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

bool IsIpLiteral(const std::string& host) {
  error_code ec;
  (void)asio::ip::make_address(host, ec);
  return !ec;
}

// The client context: TLS 1.2-1.3, BCP195, peer verification against `ca`.
Result<std::unique_ptr<ssl::context>> BuildClientContext(const config::AuditForwardConfig& cfg,
                                                         Env& env) {
  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
  SSL_CTX* c = ctx->native_handle();
  if (SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION) != 1 ||
      SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION) != 1 ||
      SSL_CTX_set_cipher_list(c, kBcp195Ciphers) != 1 ||
      SSL_CTX_set_ciphersuites(c, kTls13Suites) != 1 || SSL_CTX_set1_groups_list(c, kGroups) != 1) {
    return Status::Internal("audit.forward: TLS setup: " + OpensslError());
  }
  SSL_CTX_set_options(c, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  auto ca = env.ReadSmallFile(cfg.ca, kMaxPemBytes);
  if (!ca.ok()) return ca.status().WithContext("audit.forward.ca");
  error_code ec;
  ctx->add_certificate_authority(asio::buffer(*ca), ec);
  if (ec) {
    return Status::InvalidArgument("audit.forward.ca " + cfg.ca.string() +
                                   ": no usable PEM certificate: " + ec.message());
  }
  ctx->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
  if (!cfg.cert.empty()) {
    auto chain = env.ReadSmallFile(cfg.cert, kMaxPemBytes);
    if (!chain.ok()) return chain.status().WithContext("audit.forward.cert");
    ctx->use_certificate_chain(asio::buffer(*chain), ec);
    if (ec) {
      return Status::InvalidArgument("audit.forward.cert " + cfg.cert.string() + ": " +
                                     ec.message());
    }
    auto key = env.ReadSmallFile(cfg.key, kMaxPemBytes);
    if (!key.ok()) return key.status().WithContext("audit.forward.key");
    ctx->use_private_key(asio::buffer(*key), ssl::context::pem, ec);
    OPENSSL_cleanse(key->data(), key->size());
    if (ec || SSL_CTX_check_private_key(c) != 1) {
      return Status::InvalidArgument("audit.forward.key " + cfg.key.string() +
                                     ": unreadable or does not match audit.forward.cert");
    }
  }
  return ctx;
}

std::string Collector(const config::AuditForwardConfig& cfg) {
  return (cfg.host.find(':') != std::string::npos ? "[" + cfg.host + "]" : cfg.host) + ":" +
         std::to_string(cfg.port);
}

}  // namespace

std::string FrameOctetCounted(std::string_view syslog_msg) {
  std::string out = std::to_string(syslog_msg.size());
  out += ' ';
  out += syslog_msg;
  return out;
}

// One connection on its own io_context, driven by the forwarder thread:
// each step runs the io_context until the step completes, the deadline
// fires (the socket is closed), or Interrupt() (any thread) closes it.
class SyslogForwarder::Session {
 public:
  Session(ssl::context& ctx, std::chrono::milliseconds timeout)
      : stream_(io_, ctx), deadline_(io_), poll_(io_), timeout_(timeout) {}

  ~Session() {
    Close();
    // Let every handler that references the stream run before it goes.
    if (io_.stopped()) io_.restart();
    while (pending_ > 0 && io_.run_one() > 0) {
    }
  }

  // Thread-safe.
  void Interrupt() {
    asio::post(io_, [this] {
      interrupted_ = true;
      Close();
      poll_.cancel();
    });
  }

  Status Connect(const config::AuditForwardConfig& cfg) {
    tcp::resolver resolver(io_);
    tcp::resolver::results_type endpoints;
    error_code ec;
    bool done = false;
    ++pending_;
    resolver.async_resolve(cfg.host, std::to_string(cfg.port),
                           [&](const error_code& e, tcp::resolver::results_type r) {
                             --pending_;
                             ec = e;
                             endpoints = std::move(r);
                             done = true;
                           });
    if (!RunStep(done, [&] { resolver.cancel(); })) return Fail("resolve", ec);
    if (ec) return Fail("resolve " + cfg.host, ec);

    done = false;
    ++pending_;
    asio::async_connect(stream_.lowest_layer(), endpoints,
                        [&](const error_code& e, const tcp::endpoint&) {
                          --pending_;
                          ec = e;
                          done = true;
                        });
    if (!RunStep(done) || ec) return Fail("connect", ec);
    stream_.lowest_layer().set_option(tcp::no_delay(true), ec);
    if (ec) return Fail("TCP_NODELAY", ec);

    SSL* ssl = stream_.native_handle();
    if (IsIpLiteral(cfg.host)) {
      X509_VERIFY_PARAM* p = SSL_get0_param(ssl);
      if (X509_VERIFY_PARAM_set1_ip_asc(p, cfg.host.c_str()) != 1) {
        return Status::InvalidArgument("audit.forward.host: bad IP address");
      }
    } else {
      if (SSL_set_tlsext_host_name(ssl, cfg.host.c_str()) != 1 ||
          SSL_set1_host(ssl, cfg.host.c_str()) != 1) {
        return Status::Internal("audit.forward: TLS host name setup: " + OpensslError());
      }
      SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    }
    done = false;
    ++pending_;
    stream_.async_handshake(ssl::stream_base::client, [&](const error_code& e) {
      --pending_;
      ec = e;
      done = true;
    });
    if (!RunStep(done) || ec) {
      const long vr = SSL_get_verify_result(ssl);
      if (vr != X509_V_OK) {
        return Status::Unauthenticated(
            std::string("TLS handshake with the collector: ") +
            "certificate verify failed: " + X509_verify_cert_error_string(vr));
      }
      return Fail("TLS handshake", ec);
    }
    StartRead();
    return Status::Ok();
  }

  // Writes `bytes` entirely (or fails).
  Status Write(const std::string& bytes) {
    if (peer_closed_) return Status::Unavailable("the collector closed the connection");
    error_code ec;
    bool done = false;
    ++pending_;
    asio::async_write(stream_, asio::buffer(bytes), [&](const error_code& e, size_t) {
      --pending_;
      ec = e;
      done = true;
    });
    if (!RunStep(done) || ec) return Fail("write", ec);
    return Status::Ok();
  }

  // Waits `d`, or less when interrupted or the collector goes away. Runs
  // pending handlers (the read) meanwhile.
  void Sleep(std::chrono::milliseconds d) {
    if (interrupted_ || peer_closed_) return;
    bool done = false;
    poll_.expires_after(d);
    ++pending_;
    poll_.async_wait([&](const error_code&) {
      --pending_;
      done = true;
    });
    if (io_.stopped()) io_.restart();
    while (!done && io_.run_one() > 0) {
    }
  }

  // Bytes written but not yet acknowledged by the peer's TCP; -1 if unknown.
  int64_t Unacked() {
    int n = 0;
    if (!stream_.lowest_layer().is_open()) return -1;
    if (::ioctl(stream_.lowest_layer().native_handle(), SIOCOUTQ, &n) != 0) return -1;
    return n;
  }

  bool alive() const { return !interrupted_ && !peer_closed_ && stream_.lowest_layer().is_open(); }
  bool interrupted() const { return interrupted_; }

 private:
  // Runs the io_context until `done`; closes the socket at the deadline (the
  // step then completes with an error). False when it timed out or was
  // interrupted.
  template <typename OnTimeout = void (*)()>
  bool RunStep(
      bool& done, OnTimeout on_timeout = [] {}) {
    const uint64_t gen = ++step_gen_;
    timed_out_ = false;
    deadline_.expires_after(timeout_);
    ++pending_;
    deadline_.async_wait([this, gen, on_timeout](const error_code& e) {
      --pending_;
      if (e || gen != step_gen_) return;
      timed_out_ = true;
      on_timeout();
      Close();
    });
    if (io_.stopped()) io_.restart();
    while (!done && io_.run_one() > 0) {
    }
    ++step_gen_;
    deadline_.cancel();
    return done && !timed_out_ && !interrupted_;
  }

  void StartRead() {
    ++pending_;
    stream_.async_read_some(asio::buffer(rbuf_), [this](const error_code& e, size_t) {
      --pending_;
      if (!e) {  // RFC 5425 is one-way; anything the collector sends is ignored
        StartRead();
        return;
      }
      peer_closed_ = true;
      Close();
      poll_.cancel();
    });
  }

  void Close() {
    error_code ignored;
    stream_.lowest_layer().close(ignored);
  }

  Status Fail(const std::string& what, const error_code& ec) {
    if (interrupted_) return Status::Unavailable("interrupted (reload or stop)");
    if (timed_out_) return Status::Unavailable(what + ": timed out");
    if (peer_closed_) return Status::Unavailable(what + ": the collector closed the connection");
    return Status::Unavailable(what + ": " + (ec ? ec.message() : std::string("failed")));
  }

  asio::io_context io_;
  ssl::stream<tcp::socket> stream_;
  asio::steady_timer deadline_;
  asio::steady_timer poll_;
  const std::chrono::milliseconds timeout_;
  std::array<char, 512> rbuf_{};
  int pending_ = 0;
  uint64_t step_gen_ = 0;
  bool timed_out_ = false;
  bool interrupted_ = false;
  bool peer_closed_ = false;
};

Result<std::unique_ptr<SyslogForwarder>> SyslogForwarder::Create(AuditReader& reader,
                                                                 ForwarderOptions options,
                                                                 Env& env) {
  std::unique_ptr<SyslogForwarder> f(new SyslogForwarder(reader, std::move(options), env));
  int64_t acked = -1;
  if (!f->options_.state_file.empty() && env.FileExists(f->options_.state_file)) {
    PHI_ASSIGN_OR_RETURN(std::string text, env.ReadSmallFile(f->options_.state_file, 4096));
    const std::string prefix = std::string(kStateMagic) + "\nacked_seq ";
    bool ok = text.rfind(prefix, 0) == 0;
    int64_t v = 0;
    size_t i = prefix.size();
    size_t digits = 0;
    for (; ok && i < text.size() && text[i] >= '0' && text[i] <= '9' && digits < 18;
         ++i, ++digits) {
      v = v * 10 + (text[i] - '0');
    }
    ok = ok && digits > 0 && i + 1 == text.size() && text[i] == '\n';
    if (!ok) {
      return Status::Corruption("audit forward state file " + f->options_.state_file.string() +
                                " is malformed; remove it to restart forwarding at the end of the "
                                "audit trail");
    }
    acked = v;
  }
  PHI_ASSIGN_OR_RETURN(int64_t head, f->HeadSeq());
  if (acked < 0 || acked > head) {
    // First start (or a catalog older than the state): start at the end.
    if (acked > head) {
      PHI_LOG(kWarning, "audit forward state is ahead of the audit trail; restarting at its end",
              {{"state_seq", acked}, {"head_seq", head}});
    }
    acked = head;
  }
  f->acked_ = f->sent_ = acked;
  {
    std::lock_guard<std::mutex> lock(f->mu_);
    f->status_.acked_seq = f->status_.sent_seq = acked;
    f->status_.head_seq = head;
  }
  return f;
}

SyslogForwarder::SyslogForwarder(AuditReader& reader, ForwarderOptions options, Env& env)
    : reader_(reader), options_(std::move(options)), env_(env), cfg_(options_.cfg) {}

SyslogForwarder::~SyslogForwarder() { Stop(); }

void SyslogForwarder::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (thread_.joinable() || stop_) return;
  thread_ = std::thread([this] { Run(); });
}

void SyslogForwarder::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    interrupt_ = true;
    if (session_ != nullptr) session_->Interrupt();
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void SyslogForwarder::Reload(const config::AuditForwardConfig& cfg) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    cfg_ = cfg;
    reload_ = true;
    interrupt_ = true;
    if (session_ != nullptr) session_->Interrupt();
  }
  cv_.notify_all();
}

ForwarderStatus SyslogForwarder::GetStatus() {
  Result<int64_t> head = HeadSeq();
  std::lock_guard<std::mutex> lock(mu_);
  ForwarderStatus s = status_;
  s.enabled = cfg_.enabled;
  s.collector = cfg_.enabled ? Collector(cfg_) : "";
  s.format = std::string(config::AuditForwardFormatName(cfg_.format));
  if (head.ok()) s.head_seq = std::max(*head, s.acked_seq);
  s.backlog = s.head_seq - s.acked_seq;
  return s;
}

Result<int64_t> SyslogForwarder::HeadSeq() {
  PHI_ASSIGN_OR_RETURN(std::optional<std::string> blob, reader_.ReadAuditHead());
  if (!blob) return int64_t{0};
  PHI_ASSIGN_OR_RETURN(ChainHead head, ParseSignedHeadUnverified(*blob));
  return head.seq;
}

void SyslogForwarder::SetError(const Status& s) {
  std::lock_guard<std::mutex> lock(mu_);
  status_.last_error = s.ToString();
  status_.last_error_unix =
      std::chrono::duration_cast<std::chrono::seconds>(env_.Now().time_since_epoch()).count();
}

void SyslogForwarder::TrimBacklog(uint32_t queue_max) {
  Result<int64_t> head = HeadSeq();
  if (!head.ok()) return;
  const int64_t keep_from = *head - static_cast<int64_t>(queue_max);
  if (keep_from <= acked_) return;
  const int64_t dropped = keep_from - std::max(acked_, std::min(sent_, keep_from));
  PHI_LOG(kWarning,
          "audit forward: more records waiting than audit.forward.queue_max; the oldest are "
          "skipped (export them with phigatectl audit export --after)",
          {{"first_skipped_seq", sent_ + 1},
           {"last_skipped_seq", keep_from},
           {"queue_max", queue_max}});
  sent_ = std::max(sent_, keep_from);
  acked_ = keep_from;
  std::lock_guard<std::mutex> lock(mu_);
  status_.drops += static_cast<uint64_t>(std::max<int64_t>(dropped, 0));
  status_.sent_seq = sent_;
  status_.acked_seq = acked_;
}

void SyslogForwarder::PersistAcked(bool force) {
  // Never enabled in this run: leave any state file as it is.
  if (!active_ || options_.state_file.empty() || acked_ == persisted_) return;
  const MonotonicTime now = env_.Monotonic();
  if (!force && now - last_persist_ < std::chrono::seconds(1)) return;
  last_persist_ = now;
  const Path tmp = options_.state_file.string() + ".tmp";
  const std::string text =
      std::string(kStateMagic) + "\nacked_seq " + std::to_string(acked_) + "\n";
  Status s = [&]() -> Status {
    if (env_.FileExists(tmp)) PHI_RETURN_IF_ERROR(env_.RemoveFile(tmp));
    PHI_ASSIGN_OR_RETURN(WritableFilePtr f, env_.NewWritableFile(tmp));
    PHI_RETURN_IF_ERROR(f->Append(std::as_bytes(std::span(text.data(), text.size()))));
    PHI_RETURN_IF_ERROR(f->Sync());
    PHI_RETURN_IF_ERROR(f->Close());
    PHI_RETURN_IF_ERROR(env_.RenameFile(tmp, options_.state_file));
    return env_.SyncDir(options_.state_file.parent_path());
  }();
  if (s.ok()) {
    persisted_ = acked_;
  } else {
    PHI_LOG(kError, "audit forward: cannot persist the acknowledged seq", {{"status", s}});
  }
}

void SyslogForwarder::Run() {
  std::chrono::milliseconds backoff = options_.backoff_min;
  for (;;) {
    config::AuditForwardConfig cfg;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || cfg_.enabled; });
      if (stop_) break;
      cfg = cfg_;
      reload_ = false;
      interrupt_ = false;
    }
    active_ = true;
    TrimBacklog(cfg.queue_max);
    bool connected = false;
    Status st = RunSession(cfg, &connected);
    sent_ = acked_;  // resume at the first record the collector's TCP did not acknowledge
    PersistAcked(true);
    if (connected) {
      backoff = options_.backoff_min;
      outage_logged_ = false;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      status_.connected = false;
      status_.sent_seq = sent_;
      status_.acked_seq = acked_;
      if (stop_) break;
      if (reload_) {
        backoff = options_.backoff_min;
        continue;
      }
      ++status_.failures;
    }
    SetError(st);
    if (!outage_logged_) {  // once per outage, to keep the journal readable
      PHI_LOG(kWarning, "audit forward: collector unavailable; retrying with backoff",
              {{"collector", log::Safe(Collector(cfg))}, {"status", st}});
      outage_logged_ = true;
    }
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, backoff, [&] { return stop_ || reload_; });
      if (stop_) break;
      if (reload_) {
        backoff = options_.backoff_min;
        continue;
      }
    }
    backoff = std::min(backoff * 2, options_.backoff_max);
  }
  PersistAcked(true);
}

Status SyslogForwarder::RunSession(const config::AuditForwardConfig& cfg, bool* connected) {
  ERR_clear_error();
  PHI_ASSIGN_OR_RETURN(std::unique_ptr<ssl::context> ctx, BuildClientContext(cfg, env_));
  Session session(*ctx, options_.io_timeout);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (interrupt_) return Status::Unavailable("interrupted");
    session_ = &session;
  }
  struct Unregister {
    SyslogForwarder* f;
    ~Unregister() {
      std::lock_guard<std::mutex> lock(f->mu_);
      f->session_ = nullptr;
    }
  } unregister{this};

  PHI_RETURN_IF_ERROR(session.Connect(cfg));
  *connected = true;
  {
    std::lock_guard<std::mutex> lock(mu_);
    status_.connected = true;
    ++status_.connects;
    status_.last_error.clear();
    status_.last_error_unix = 0;
  }
  PHI_LOG(kNotice, "audit forward: connected to the collector",
          {{"collector", log::Safe(Collector(cfg))}, {"resume_after_seq", acked_}});

  const AtnaOptions& atna = options_.atna;
  std::string buf;
  while (session.alive()) {
    // What the collector's TCP has acknowledged is safe: nothing before it is resent.
    if (sent_ > acked_ && session.Unacked() == 0) {
      acked_ = sent_;
      std::lock_guard<std::mutex> lock(mu_);
      status_.acked_seq = acked_;
    }
    PersistAcked(false);
    TrimBacklog(cfg.queue_max);
    Result<std::vector<AuditRecord>> rows = reader_.ReadAudit(sent_, options_.batch_records);
    if (!rows.ok()) {
      SetError(rows.status().WithContext("reading the audit trail"));
      session.Sleep(options_.poll_interval * 5);
      continue;
    }
    if (rows->empty()) {
      session.Sleep(options_.poll_interval);
      continue;
    }
    buf.clear();
    int64_t last = sent_;
    size_t n = 0;
    for (const AuditRecord& r : *rows) {
      std::string msg = cfg.format == config::AuditForwardFormat::kJsonl ? ToJsonSyslog(r, atna)
                                                                         : ToAtnaSyslog(r, atna);
      buf += FrameOctetCounted(msg);
      last = r.seq;
      ++n;
      if (buf.size() >= kMaxWriteBytes) break;
    }
    PHI_RETURN_IF_ERROR(session.Write(buf));
    sent_ = last;
    std::lock_guard<std::mutex> lock(mu_);
    status_.sent_seq = sent_;
    status_.sent_total += n;
  }
  if (session.interrupted()) return Status::Unavailable("interrupted (reload or stop)");
  return Status::Unavailable("the collector closed the connection");
}

}  // namespace phi::audit
