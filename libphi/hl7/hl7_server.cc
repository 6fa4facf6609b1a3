#include "libphi/hl7/hl7_server.h"

#include <openssl/crypto.h>

#include <array>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include "libphi/hl7/mllp_framer.h"
#include "libphi/tls/drain.h"
#include "libphi/tls/tcp_listener.h"
#include "libphi/util/log.h"

namespace phi::hl7 {

namespace asio = boost::asio;
namespace beast = boost::beast;
using asio::ip::tcp;

namespace {
constexpr size_t kReadChunk = 16 * 1024;
constexpr auto kShutdownTimeout = std::chrono::seconds(2);
// Messages of one connection with the handler at once (read ahead while
// earlier ones commit). Their bytes are bounded too: at most
// max_message_bytes in flight, or one message of any admitted size.
constexpr size_t kMaxInFlight = 16;

// What Drain() needs from a connection, whatever its stream type.
class SessionBase {
 public:
  virtual ~SessionBase() = default;
  virtual void CloseIfIdle() = 0;  // posted to the session's strand
  virtual void ForceClose() = 0;   // posted to the session's strand
};
}  // namespace

struct Hl7Server::Impl : std::enable_shared_from_this<Hl7Server::Impl> {
  config::Hl7Config cfg;
  tls::TlsContextProvider* tls_provider = nullptr;
  tls::AsioRunner* runner = nullptr;
  MessageHandler* handler = nullptr;
  // Messages handed to the handler whose ACK callback has not returned yet,
  // over all connections: the destructor waits for them (the callbacks post
  // onto the io_context and use the handler).
  std::mutex inflight_mu;
  std::condition_variable inflight_cv;  // guarded by inflight_mu: inflight == 0
  uint64_t inflight = 0;                // guarded by inflight_mu
  void BeginMessage() {
    std::lock_guard<std::mutex> l(inflight_mu);
    ++inflight;
  }
  void EndMessage() {
    std::lock_guard<std::mutex> l(inflight_mu);
    if (--inflight == 0) inflight_cv.notify_all();
  }

  std::shared_ptr<tls::TcpListener> tls_listener, plain_listener;
  std::atomic<bool> draining{false};
  std::atomic<uint64_t> open{0}, accepted_tls{0}, accepted_plain{0}, refused_tls{0},
      refused_plain{0}, next_id{1};
  std::string tls_state = "stopped", plain_state = "stopped";  // guarded by mu

  mutable std::mutex mu;
  std::shared_ptr<const std::vector<config::Network>> allowed;  // guarded by mu
  std::map<uint64_t, std::weak_ptr<SessionBase>> sessions;      // guarded by mu

  std::shared_ptr<const std::vector<config::Network>> Allowed() const {
    std::lock_guard<std::mutex> l(mu);
    return allowed;
  }
  void Register(uint64_t id, std::weak_ptr<SessionBase> s) {
    std::lock_guard<std::mutex> l(mu);
    sessions.emplace(id, std::move(s));
  }
  void Unregister(uint64_t id) {
    std::lock_guard<std::mutex> l(mu);
    sessions.erase(id);
  }
  void OnAccept(tcp::socket sock, bool use_tls);
};

namespace {

template <bool kTls>
class Session : public SessionBase, public std::enable_shared_from_this<Session<kTls>> {
 public:
  using Stream = std::conditional_t<kTls, beast::ssl_stream<beast::tcp_stream>, beast::tcp_stream>;

  // TLS: `ctx` is this connection's snapshot of the provider's context.
  Session(std::shared_ptr<Hl7Server::Impl> server, tcp::socket sock, tls::SslContextPtr ctx,
          ConnectionInfo info)
      : server_(std::move(server)),
        ctx_(std::move(ctx)),
        stream_(MakeStream(std::move(sock), ctx_)),
        framer_(server_->cfg.max_message_bytes),
        info_(std::move(info)) {
    server_->open++;
  }
  ~Session() override {
    server_->Unregister(info_.id);
    server_->open--;
  }

  void Start() {
    if constexpr (kTls) {
      beast::get_lowest_layer(stream_).expires_after(ReadTimeout());
      stream_.async_handshake(asio::ssl::stream_base::server,
                              [self = this->shared_from_this()](boost::system::error_code ec) {
                                self->OnHandshake(ec);
                              });
    } else {
      Pump();
    }
  }

  void CloseIfIdle() override {
    asio::post(stream_.get_executor(), [self = this->shared_from_this()] {
      if (self->reading_ && self->inflight_.empty() && !self->writing_ &&
          !self->framer_.in_frame() && self->pending_.empty()) {
        self->CloseNow();
      }
    });
  }
  void ForceClose() override {
    asio::post(stream_.get_executor(), [self = this->shared_from_this()] { self->CloseNow(); });
  }

 private:
  // One message with the handler, in arrival order; its ACK once known.
  struct Slot {
    std::string ack;
    size_t bytes = 0;
    bool ready = false;
  };

  static Stream MakeStream(tcp::socket sock, const tls::SslContextPtr& ctx) {
    if constexpr (kTls) {
      return Stream(std::move(sock), *ctx);
    } else {
      (void)ctx;
      return Stream(std::move(sock));
    }
  }
  std::chrono::seconds ReadTimeout() const {
    return std::chrono::seconds(server_->cfg.read_timeout_seconds);
  }
  std::chrono::seconds IdleTimeout() const {
    return std::chrono::seconds(server_->cfg.idle_timeout_seconds);
  }

  void OnHandshake(boost::system::error_code ec) {
    if constexpr (kTls) {
      if (ec) {
        std::string reason(tls::HandshakeFailureReason(stream_.native_handle(), ec));
        PHI_LOG(kWarning, "hl7 tls handshake failed",
                {{"conn", info_.id},
                 {"peer", log::Safe(info_.peer_address)},
                 {"reason", log::Safe(reason)}});
        CloseNow();
        return;
      }
      auto id = tls::IdentityFromSsl(stream_.native_handle());
      if (id.ok()) info_.identity = std::move(id).value();
      PHI_LOG(kInfo, "hl7 tls connection",
              {{"conn", info_.id},
               {"peer", log::Safe(info_.peer_address)},
               {"subject", log::Safe(info_.identity ? info_.identity->subject : "")}});
    }
    Pump();
  }

  bool CanAdmit(size_t bytes) const {
    if (inflight_.empty()) return true;
    return inflight_.size() < kMaxInFlight &&
           inflight_bytes_ + bytes <= server_->cfg.max_message_bytes;
  }

  // Moves the connection forward (on its strand): hands queued messages to
  // the handler, writes the ACKs that are next in order, reads ahead while
  // there is room, and closes once a finished peer or a drain has nothing
  // left in flight.
  void Pump() {
    if (closed_) return;
    while (!pending_.empty() && CanAdmit(pending_.front().size())) Dispatch();
    if (closed_) return;
    MaybeWrite();
    if (closed_) return;
    const bool stop_reading = peer_done_ || (server_->draining && !framer_.in_frame());
    if (stop_reading) {
      // (A read still pending only waits for a next message: not taken.)
      if (pending_.empty() && inflight_.empty() && !writing_) CloseNow();
      return;
    }
    if (!reading_ && pending_.empty() && inflight_.size() < kMaxInFlight) DoRead();
  }

  void Dispatch() {
    std::string msg = std::move(pending_.front());
    pending_.pop_front();
    const uint64_t seq = next_seq_++;
    inflight_.push_back(Slot{{}, msg.size(), false});
    inflight_bytes_ += msg.size();
    Hl7Server::Impl* impl = server_.get();
    impl->BeginMessage();
    // The callback may run on any thread (the catalog's writer) and after the
    // session closed: it only posts the ACK back onto this strand. It gives
    // its reference to the session away before EndMessage(), so that once
    // the server saw the last EndMessage() no callback holds a session.
    impl->handler->HandleAsync(
        std::move(msg), info_,
        [self = this->shared_from_this(), impl, seq](std::string ack) mutable {
          auto ex = self->stream_.get_executor();
          asio::post(ex, [self = std::move(self), seq, ack = std::move(ack)]() mutable {
            self->OnHandled(seq, std::move(ack));
          });
          impl->EndMessage();
        });
  }

  void OnHandled(uint64_t seq, std::string ack) {
    if (closed_) return;
    Slot& slot = inflight_.at(seq - first_seq_);
    slot.ack = std::move(ack);
    slot.ready = true;
    Pump();
  }

  // Writes every ACK that is ready and next in order, in one write.
  void MaybeWrite() {
    if (writing_) return;
    out_.clear();
    while (!inflight_.empty() && inflight_.front().ready) {
      Slot slot = std::move(inflight_.front());
      inflight_.pop_front();
      ++first_seq_;
      inflight_bytes_ -= slot.bytes;
      if (slot.ack.empty()) {
        PHI_LOG(
            kWarning, "hl7 message without readable MSH; closing",
            {{"conn", info_.id}, {"peer", log::Safe(info_.peer_address)}, {"bytes", slot.bytes}});
        if (out_.empty()) {
          CloseNow();
          return;
        }
        close_after_write_ = true;  // the earlier ACKs first
        break;
      }
      if (slot.ack == kNoReply) continue;
      out_ += MllpEncode(slot.ack);
    }
    if (out_.empty()) return;
    writing_ = true;
    beast::get_lowest_layer(stream_).expires_after(ReadTimeout());
    asio::async_write(stream_, asio::buffer(out_),
                      [self = this->shared_from_this()](boost::system::error_code ec, size_t) {
                        self->writing_ = false;
                        if (ec || self->close_after_write_) {
                          self->CloseNow();
                          return;
                        }
                        self->Pump();
                      });
  }

  void DoRead() {
    beast::get_lowest_layer(stream_).expires_after(framer_.in_frame() ? ReadTimeout()
                                                                      : IdleTimeout());
    reading_ = true;
    stream_.async_read_some(asio::buffer(buf_),
                            [self = this->shared_from_this()](boost::system::error_code ec,
                                                              size_t n) { self->OnRead(ec, n); });
  }

  void OnRead(boost::system::error_code ec, size_t n) {
    reading_ = false;
    if (closed_) return;
    if (ec) {
      if (ec == asio::error::eof && !framer_.in_frame()) {
        // The peer finished sending: answer what is in flight, then close.
        peer_done_ = true;
        Pump();
        return;
      }
      if (ec == beast::error::timeout) {
        PHI_LOG(kInfo, "hl7 connection timed out",
                {{"conn", info_.id}, {"in_frame", framer_.in_frame()}});
      }
      CloseNow();
      return;
    }
    Status s = framer_.Feed(std::string_view(buf_.data(), n), &pending_);
    if (!s.ok()) {
      PHI_LOG(kWarning, "hl7 framing error; closing",
              {{"conn", info_.id}, {"peer", log::Safe(info_.peer_address)}, {"error", s}});
      CloseNow();
      return;
    }
    Pump();
  }

  void CloseNow() {
    if (closed_) return;
    closed_ = true;
    boost::system::error_code ec;
    if constexpr (kTls) {
      if (SSL_is_init_finished(stream_.native_handle())) {
        beast::get_lowest_layer(stream_).expires_after(kShutdownTimeout);
        stream_.async_shutdown([self = this->shared_from_this()](boost::system::error_code) {
          boost::system::error_code ec2;
          beast::get_lowest_layer(self->stream_).socket().shutdown(tcp::socket::shutdown_both, ec2);
          beast::get_lowest_layer(self->stream_).close();
        });
        return;
      }
    }
    beast::get_lowest_layer(stream_).socket().shutdown(tcp::socket::shutdown_both, ec);
    beast::get_lowest_layer(stream_).close();
  }

  std::shared_ptr<Hl7Server::Impl> server_;
  tls::SslContextPtr ctx_;
  Stream stream_;
  MllpFramer framer_;
  ConnectionInfo info_;
  std::array<char, kReadChunk> buf_;
  std::deque<std::string> pending_;  // framed, not yet handed to the handler
  std::deque<Slot> inflight_;        // with the handler; front = next ACK to send
  uint64_t first_seq_ = 0;           // sequence number of inflight_.front()
  uint64_t next_seq_ = 0;            // sequence number of the next message
  size_t inflight_bytes_ = 0;
  std::string out_;  // the ACKs being written
  bool reading_ = false;
  bool writing_ = false;
  bool peer_done_ = false;          // EOF between frames: finish, then close
  bool close_after_write_ = false;  // an unreadable message follows the ACKs being written
  bool closed_ = false;
};

}  // namespace

void Hl7Server::Impl::OnAccept(tcp::socket sock, bool use_tls) {
  ConnectionInfo info;
  info.id = next_id++;
  info.listener = use_tls ? "hl7-tls" : "hl7";
  info.tls = use_tls;
  info.peer_address = tls::PeerAddress(sock);
  boost::system::error_code ec;
  auto ep = sock.remote_endpoint(ec);
  info.peer_port = ec ? 0 : ep.port();
  auto& refused = use_tls ? refused_tls : refused_plain;

  if (!use_tls) {
    auto nets = Allowed();
    bool ok = false;
    for (const auto& n : *nets) ok = ok || config::NetworkContains(n, info.peer_address);
    if (!ok) {
      refused++;
      PHI_LOG(kWarning, "hl7 plain connection refused: peer not in allowed_networks",
              {{"peer", log::Safe(info.peer_address)}});
      sock.close(ec);
      return;
    }
  }
  if (open.load() >= cfg.max_connections) {
    refused++;
    PHI_LOG(kWarning, "hl7 connection refused: max_connections reached",
            {{"peer", log::Safe(info.peer_address)}, {"max", cfg.max_connections}});
    sock.close(ec);
    return;
  }
  (use_tls ? accepted_tls : accepted_plain)++;
  uint64_t id = info.id;
  if (use_tls) {
    auto s = std::make_shared<Session<true>>(shared_from_this(), std::move(sock),
                                             tls_provider->Current(), std::move(info));
    Register(id, s);
    s->Start();
  } else {
    auto s = std::make_shared<Session<false>>(shared_from_this(), std::move(sock), nullptr,
                                              std::move(info));
    Register(id, s);
    s->Start();
  }
}

Result<std::unique_ptr<Hl7Server>> Hl7Server::Create(const config::Hl7Config& cfg,
                                                     tls::TlsContextProvider* tls_provider,
                                                     tls::AsioRunner& runner,
                                                     MessageHandler& handler) {
  if (cfg.tls.enabled && tls_provider == nullptr) {
    return Status::InvalidArgument("hl7.tls enabled but no TLS context provider");
  }
  if (cfg.max_message_bytes == 0 || cfg.max_connections == 0) {
    return Status::InvalidArgument("hl7: max_message_bytes and max_connections must be > 0");
  }
  auto impl = std::make_shared<Impl>();
  impl->cfg = cfg;
  impl->tls_provider = tls_provider;
  impl->runner = &runner;
  impl->handler = &handler;
  impl->allowed = std::make_shared<const std::vector<config::Network>>(cfg.allowed_networks);
  impl->tls_state = cfg.tls.enabled ? "stopped" : "disabled";
  impl->plain_state = cfg.plain.enabled ? "stopped" : "disabled";
  return std::unique_ptr<Hl7Server>(new Hl7Server(std::move(impl)));
}

Hl7Server::~Hl7Server() {
  StopAccepting();
  // Let messages in flight finish (their ACKs may no longer be sent): after
  // this no handler callback touches the handler or posts onto the runner.
  std::unique_lock<std::mutex> l(impl_->inflight_mu);
  impl_->inflight_cv.wait(l, [this] { return impl_->inflight == 0; });
}

Status Hl7Server::Start() {
  auto& im = *impl_;
  if (im.cfg.tls.enabled) {
    auto l = tls::TcpListener::Bind(im.runner->context(), im.cfg.tls.bind, im.cfg.tls.port);
    if (!l.ok()) {
      std::lock_guard<std::mutex> g(im.mu);
      im.tls_state = "failed";
      return l.status().WithContext("hl7-tls");
    }
    im.tls_listener = std::move(l).value();
  }
  if (im.cfg.plain.enabled) {
    auto l = tls::TcpListener::Bind(im.runner->context(), im.cfg.plain.bind, im.cfg.plain.port);
    if (!l.ok()) {
      if (im.tls_listener) im.tls_listener->Stop();
      std::lock_guard<std::mutex> g(im.mu);
      im.plain_state = "failed";
      return l.status().WithContext("hl7");
    }
    im.plain_listener = std::move(l).value();
  }
  std::weak_ptr<Impl> weak = impl_;
  if (im.tls_listener) {
    im.tls_listener->Start([weak](tcp::socket s) {
      if (auto self = weak.lock()) self->OnAccept(std::move(s), true);
    });
  }
  if (im.plain_listener) {
    im.plain_listener->Start([weak](tcp::socket s) {
      if (auto self = weak.lock()) self->OnAccept(std::move(s), false);
    });
  }
  std::lock_guard<std::mutex> g(im.mu);
  if (im.tls_listener) im.tls_state = "listening";
  if (im.plain_listener) im.plain_state = "listening";
  PHI_LOG(kInfo, "hl7 listening", {{"tls_port", tls_port()}, {"plain_port", plain_port()}});
  return Status::Ok();
}

Status Hl7Server::Reload(const config::Config& cfg) {
  auto& im = *impl_;
  if (im.cfg.tls.enabled && im.tls_provider != nullptr) {
    PHI_RETURN_IF_ERROR(im.tls_provider->Reload(cfg.tls).WithContext("hl7 tls reload"));
  }
  auto nets = std::make_shared<const std::vector<config::Network>>(cfg.hl7.allowed_networks);
  std::lock_guard<std::mutex> g(im.mu);
  im.allowed = std::move(nets);
  return Status::Ok();
}

void Hl7Server::StopAccepting() {
  auto& im = *impl_;
  if (im.tls_listener) im.tls_listener->Stop();
  if (im.plain_listener) im.plain_listener->Stop();
  std::lock_guard<std::mutex> g(im.mu);
  if (im.tls_listener) im.tls_state = "stopped";
  if (im.plain_listener) im.plain_state = "stopped";
}

void Hl7Server::Drain(MonotonicTime deadline) {
  auto& im = *impl_;
  im.draining = true;
  const uint64_t open_before = im.open.load();
  if (!tls::DrainSessions(im.mu, im.sessions, im.open, deadline)) {
    PHI_LOG(kWarning, "hl7 drain deadline reached; connections closed", {{"open", open_before}});
  }
}

std::vector<ListenerStatus> Hl7Server::Listeners() const {
  auto& im = *impl_;
  std::lock_guard<std::mutex> g(im.mu);
  std::vector<ListenerStatus> r;
  ListenerStatus t;
  t.name = "hl7-tls";
  t.tls = true;
  t.address = im.tls_listener ? im.tls_listener->address()
                              : im.cfg.tls.bind + ":" + std::to_string(im.cfg.tls.port);
  t.state = im.tls_state;
  t.accepted_total = im.accepted_tls;
  t.refused_total = im.refused_tls;
  t.open_connections = im.open;  // shared by both listeners
  r.push_back(t);
  ListenerStatus p;
  p.name = "hl7";
  p.address = im.plain_listener ? im.plain_listener->address()
                                : im.cfg.plain.bind + ":" + std::to_string(im.cfg.plain.port);
  p.state = im.plain_state;
  p.accepted_total = im.accepted_plain;
  p.refused_total = im.refused_plain;
  r.push_back(p);
  return r;
}

uint16_t Hl7Server::tls_port() const {
  return impl_->tls_listener ? impl_->tls_listener->port() : 0;
}
uint16_t Hl7Server::plain_port() const {
  return impl_->plain_listener ? impl_->plain_listener->port() : 0;
}

}  // namespace phi::hl7
