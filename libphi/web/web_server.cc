#include "libphi/web/web_server.h"

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <cstdio>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "libphi/tls/drain.h"
#include "libphi/tls/record_batch.h"
#include "libphi/tls/tcp_listener.h"
#include "libphi/util/log.h"
#include "libphi/web/url.h"

namespace phi::web {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;

namespace {
constexpr uint32_t kRefusalSlack = 16;  // connections beyond max that still get a 503
constexpr auto kShutdownTimeout = std::chrono::seconds(2);
// Handlers block (catalog reads, the audit commit, decryption): they run on
// this pool, not on the io threads, so that TLS keeps flowing and concurrent
// requests share the catalog's group commit.
constexpr size_t kHandlerThreads = 16;

class SessionBase {
 public:
  virtual ~SessionBase() = default;
  virtual void CloseIfIdle() = 0;
  virtual void ForceClose() = 0;
};

bool IsDicomwebPrefix(std::string_view path) {
  for (std::string_view p : {"/studies", "/series", "/instances"}) {
    if (path == p ||
        (path.size() > p.size() && path.substr(0, p.size()) == p && path[p.size()] == '/')) {
      return true;
    }
  }
  return false;
}
}  // namespace

struct WebServer::Impl : std::enable_shared_from_this<WebServer::Impl> {
  config::WebConfig cfg;
  tls::TlsContextProvider* tls = nullptr;
  tls::AsioRunner* runner = nullptr;
  Env* env = nullptr;
  Router router;
  AccessHook audit;
  std::shared_ptr<WebMetrics> metrics;
  std::shared_ptr<tls::TcpListener> listener;
  std::unique_ptr<asio::thread_pool> handlers{new asio::thread_pool(kHandlerThreads)};
  std::atomic<bool> draining{false};
  std::atomic<uint64_t> open{0}, accepted{0}, refused{0}, next_id{1};

  mutable std::mutex mu;
  std::string state = "stopped";                                  // guarded by mu
  std::shared_ptr<const std::vector<config::RoleMapping>> roles;  // guarded by mu
  std::map<uint64_t, std::weak_ptr<SessionBase>> sessions;        // guarded by mu

  std::shared_ptr<const std::vector<config::RoleMapping>> Roles() const {
    std::lock_guard<std::mutex> l(mu);
    return roles;
  }
  void OnAccept(tcp::socket sock);
};

namespace {

class Session : public SessionBase, public std::enable_shared_from_this<Session> {
 public:
  Session(std::shared_ptr<WebServer::Impl> server, tcp::socket sock, tls::SslContextPtr ctx,
          uint64_t id, bool over_limit)
      : server_(std::move(server)),
        ctx_(std::move(ctx)),
        stream_(std::move(sock), *ctx_),
        id_(id),
        over_limit_(over_limit) {
    peer_ = tls::PeerAddress(beast::get_lowest_layer(stream_).socket());
    server_->open++;
  }
  ~Session() override {
    {
      std::lock_guard<std::mutex> l(server_->mu);
      server_->sessions.erase(id_);
    }
    server_->open--;
  }

  void Start() {
    beast::get_lowest_layer(stream_).expires_after(
        std::chrono::seconds(server_->cfg.header_timeout_seconds));
    stream_.async_handshake(
        asio::ssl::stream_base::server,
        [self = shared_from_this()](beast::error_code ec) { self->OnHandshake(ec); });
  }
  void CloseIfIdle() override {
    asio::post(stream_.get_executor(), [self = shared_from_this()] {
      if (self->idle_) self->Close();
    });
  }
  void ForceClose() override {
    asio::post(stream_.get_executor(), [self = shared_from_this()] { self->Close(); });
  }

 private:
  void OnHandshake(beast::error_code ec) {
    if (ec) {
      std::string reason(tls::HandshakeFailureReason(stream_.native_handle(), ec));
      if (server_->metrics) server_->metrics->CountHandshakeFailure(reason);
      PHI_LOG(kWarning, "https tls handshake failed",
              {{"conn", id_}, {"peer", log::Safe(peer_)}, {"reason", log::Safe(reason)}});
      Close();
      return;
    }
    auto id = tls::IdentityFromSsl(stream_.native_handle());
    if (id.ok()) {
      identity_ = std::move(id).value();
      role_ = tls::MapRole(identity_, *server_->Roles());
    }
    if (!role_) {
      PHI_LOG(
          kWarning, "https client has no role",
          {{"conn", id_}, {"peer", log::Safe(peer_)}, {"subject", log::Safe(identity_.subject)}});
    }
    ReadHeader();
  }

  void ReadHeader() {
    if (server_->draining) {
      Close();
      return;
    }
    parser_.emplace();
    parser_->header_limit(server_->cfg.max_header_bytes);
    parser_->body_limit(server_->cfg.max_body_bytes);
    auto t = first_ ? server_->cfg.header_timeout_seconds : server_->cfg.idle_timeout_seconds;
    first_ = false;
    beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(t));
    idle_ = buffer_.size() == 0;
    http::async_read_header(stream_, buffer_, *parser_,
                            [self = shared_from_this()](beast::error_code ec, size_t) {
                              self->idle_ = false;
                              self->OnHeader(ec);
                            });
  }

  bool ReadError(beast::error_code ec) {
    if (!ec) return false;
    if (ec == http::error::header_limit) {
      Reply(Response::Problem(431, "Request Header Fields Too Large"), "", true);
    } else if (ec == http::error::body_limit) {
      Reply(Response::Problem(413, "Content Too Large"), "", true);
    } else if (ec.category() == http::make_error_code(http::error::bad_target).category() &&
               ec != http::error::end_of_stream && ec != http::error::partial_message) {
      Reply(Response::Problem(400, "Bad Request"), "", true);
    } else {
      Close();  // timeout, EOF, reset: nothing to answer
    }
    return true;
  }

  void OnHeader(beast::error_code ec) {
    if (ReadError(ec)) return;
    if (parser_->is_done()) {
      Dispatch();
      return;
    }
    auto& req = parser_->get();
    if (req[http::field::expect] == "100-continue") {
      // We read the body anyway; a client waiting for 100 would stall until its timeout.
      cont_ = std::make_unique<http::response<http::empty_body>>(http::status::continue_, 11);
      http::async_write(stream_, *cont_,
                        [self = shared_from_this()](beast::error_code ec2, size_t) {
                          if (ec2) return self->Close();
                          self->ReadBody();
                        });
      return;
    }
    ReadBody();
  }

  void ReadBody() {
    beast::get_lowest_layer(stream_).expires_after(
        std::chrono::seconds(server_->cfg.body_timeout_seconds));
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       if (self->ReadError(ec)) return;
                       self->Dispatch();
                     });
  }

  void Dispatch() {
    started_ = std::chrono::steady_clock::now();
    auto& req = parser_->get();
    std::string method_name(req.method_string());
    if (over_limit_) {
      Response r = Response::Problem(503, "Service Unavailable");
      r.headers.emplace_back("retry-after", "5");
      return Reply(std::move(r), "", true);
    }
    if (!role_) return Reply(Response::Problem(403, "Forbidden"), "", true);
    auto method = ParseMethod(method_name);
    if (!method) return Reply(Response::Problem(501, "Not Implemented"), "", false);
    auto target = ParseTarget(std::string_view(req.target().data(), req.target().size()));
    if (!target.ok()) return Reply(Response::Problem(400, "Bad Request"), "", true);

    Router::Match m = server_->router.Find(*method, target->path);
    if (m.kind == Router::Match::Kind::kNotFound) {
      if (IsDicomwebPrefix(target->path)) {
        return Reply(Response::Problem(501, "Not Implemented"), "", false);
      }
      return Reply(Response::Problem(404, "Not Found"), "", false);
    }
    if (m.kind == Router::Match::Kind::kMethodNotAllowed) {
      Response r = Response::Problem(405, "Method Not Allowed");
      r.headers.emplace_back("allow", m.allow);
      return Reply(std::move(r), "", false);
    }
    if (!Router::RoleAllowed(*m.route, *role_)) {
      return Reply(Response::Problem(403, "Forbidden"), m.route->pattern, false);
    }
    RequestContext ctx;
    ctx.method = *method;
    ctx.path = std::move(target->path);
    ctx.query = std::move(target->query);
    ctx.route = m.route->pattern;
    ctx.params = std::move(m.params);
    for (auto& f : req) {
      std::string name(f.name_string());
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      ctx.headers.emplace_back(std::move(name), std::string(f.value()));
    }
    ctx.body = std::move(req.body());
    ctx.identity = &identity_;
    ctx.role = *role_;
    ctx.peer_address = peer_;
    ctx.connection_id = id_;
    const Router::Route* route = m.route;  // owned by the server's router, which outlives sessions
    asio::post(
        *server_->handlers, [self = shared_from_this(), route, ctx = std::move(ctx)]() mutable {
          Response r = route->handler(ctx);
          asio::post(self->stream_.get_executor(), [self, route, r = std::move(r)]() mutable {
            self->Reply(std::move(r), route->pattern, false);
          });
        });
  }

  void Reply(Response r, const std::string& route, bool close) {
    std::string method_name;
    bool keep_alive = false;
    unsigned version = 11;
    if (parser_) {
      auto& req = parser_->get();
      method_name = std::string(req.method_string());
      keep_alive = req.keep_alive();
      version = req.version();
    }
    keep_alive = keep_alive && !close && !server_->draining;
    double seconds = 0;
    if (started_) {
      seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - *started_).count();
      started_.reset();
    }
    if (server_->metrics) server_->metrics->ObserveRequest(route, r.status, seconds);
    const bool streamed = static_cast<bool>(r.chunks);
    res_.emplace(static_cast<http::status>(r.status), version);
    res_->set(http::field::content_type, r.content_type);
    res_->set(http::field::cache_control, "no-store");
    res_->set("x-content-type-options", "nosniff");
    res_->set(http::field::strict_transport_security, "max-age=31536000");
    for (auto& [k, v] : r.headers) res_->set(k, v);
    res_->keep_alive(keep_alive);
    if (streamed && r.content_length) {
      res_->content_length(*r.content_length);
    } else if (streamed) {
      res_->chunked(true);
    } else {
      res_->body() = std::move(r.body);
      res_->prepare_payload();
    }

    PHI_LOG(kInfo, "https request",
            {{"conn", id_},
             {"peer", log::Safe(peer_)},
             {"method", log::Safe(method_name)},
             {"route", log::Safe(route.empty() ? "-" : route)},
             {"status", r.status},
             {"role", log::Safe(role_ ? config::RoleName(*role_) : "none")}});
    if (server_->audit) {
      AccessEvent e;
      e.time = server_->env->Now();
      e.connection_id = id_;
      e.peer_address = peer_;
      e.subject = identity_.subject;
      e.role = role_;
      e.method = method_name;
      e.route = route;
      e.status = r.status;
      e.seconds = seconds;
      server_->audit(e);
    }
    if (streamed) {
      StartStream(std::move(r.chunks), r.content_length, keep_alive);
      return;
    }
    beast::get_lowest_layer(stream_).expires_after(
        std::chrono::seconds(server_->cfg.body_timeout_seconds));
    http::async_write(stream_, *res_,
                      [self = shared_from_this(), keep_alive](beast::error_code ec, size_t) {
                        if (ec || !keep_alive) return self->Close();
                        self->ReadHeader();
                      });
  }

  // Streamed body: the header (chunked, or with the Content-Length the
  // handler gave), then per source pull one chunk (or the bytes as they are),
  // then the last chunk. Each pull is encrypted into batch_ and sent with one
  // socket write; the source's buffer is free again once it is encrypted.
  void StartStream(ChunkSource chunks, std::optional<uint64_t> length, bool keep_alive) {
    chunks_ = std::move(chunks);
    stream_left_ = length;
    stream_keep_alive_ = keep_alive;
    sr_.emplace(*res_);
    beast::get_lowest_layer(stream_).expires_after(
        std::chrono::seconds(server_->cfg.body_timeout_seconds));
    http::async_write_header(stream_, *sr_,
                             [self = shared_from_this()](beast::error_code ec, size_t) {
                               if (ec) return self->EndStream(false);
                               Status a = self->batch_.Attach(self->stream_.native_handle());
                               if (!a.ok()) {
                                 PHI_LOG(kWarning, "https stream aborted",
                                         {{"conn", self->id_}, {"error", log::Safe(a.ToString())}});
                                 return self->EndStream(false);
                               }
                               self->NextChunk();
                             });
  }

  void NextChunk() {
    Result<std::span<const char>> pulled = chunks_();
    if (!pulled.ok()) {
      PHI_LOG(kWarning, "https stream aborted",
              {{"conn", id_}, {"error", log::Safe(pulled.status().ToString())}});
      return EndStream(false);  // the status line is sent: the only signal left is the abort
    }
    const std::span<const char> data = *pulled;
    const size_t n = data.size();
    if (server_->metrics && n > 0) server_->metrics->AddStreamedBytes(n);
    Status w = Status::Ok();
    if (stream_left_) {
      // Content-Length: the bytes as they are, exactly as many as announced.
      if (n > *stream_left_ || (n == 0 && *stream_left_ > 0)) {
        PHI_LOG(kWarning, "https stream aborted",
                {{"conn", id_}, {"error", log::Safe("body length differs from content-length")}});
        return EndStream(false);
      }
      if (n == 0) return EndStream(true);
      *stream_left_ -= n;
      w = batch_.Write(data);
    } else {
      // The chunk (size line, data, CRLF; or the last chunk).
      char size_line[24];
      const int sn = std::snprintf(size_line, sizeof size_line, "%zx\r\n", n);
      w = n == 0 ? batch_.Write(std::string_view("0\r\n\r\n"))
                 : batch_.Write(std::span<const char>(size_line, static_cast<size_t>(sn)));
      if (w.ok() && n > 0) w = batch_.Write(data);
      if (w.ok() && n > 0) w = batch_.Write(std::string_view("\r\n"));
    }
    // As TLS records in memory, then one socket write for all of them.
    if (!w.ok()) {
      PHI_LOG(kWarning, "https stream aborted",
              {{"conn", id_}, {"error", log::Safe(w.ToString())}});
      return EndStream(false);
    }
    beast::get_lowest_layer(stream_).expires_after(
        std::chrono::seconds(server_->cfg.body_timeout_seconds));
    // `data` is encrypted already; the next pull may reuse its buffer.
    asio::async_write(beast::get_lowest_layer(stream_),
                      asio::buffer(batch_.bytes().data(), batch_.bytes().size()),
                      [self = shared_from_this(), last = n == 0](beast::error_code ec, size_t) {
                        self->batch_.Clear();
                        if (ec) return self->EndStream(false);
                        if (last) return self->EndStream(true);
                        self->NextChunk();
                      });
  }

  void EndStream(bool ok) {
    batch_.Detach();
    chunks_ = nullptr;  // releases readers and keys held by the source
    sr_.reset();
    if (!ok || !stream_keep_alive_) return Close();
    ReadHeader();
  }

  void Close() {
    if (closed_) return;
    closed_ = true;
    // Mid-body (a drain's ForceClose): no close_notify, which would be
    // written into the batch a socket write may still be sending; cutting the
    // socket ends that write (its completion detaches the batch).
    if (SSL_is_init_finished(stream_.native_handle()) && !batch_.attached()) {
      beast::get_lowest_layer(stream_).expires_after(kShutdownTimeout);
      stream_.async_shutdown([self = shared_from_this()](beast::error_code) {
        beast::get_lowest_layer(self->stream_).close();
      });
      return;
    }
    beast::get_lowest_layer(stream_).close();
  }

  std::shared_ptr<WebServer::Impl> server_;
  tls::SslContextPtr ctx_;
  beast::ssl_stream<beast::tcp_stream> stream_;
  tls::RecordBatch batch_;  // attached while a streamed body is written; destroyed before stream_
  const uint64_t id_;
  const bool over_limit_;
  std::string peer_;
  tls::PeerIdentity identity_;
  std::optional<config::Role> role_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::optional<http::response<http::string_body>> res_;
  std::unique_ptr<http::response<http::empty_body>> cont_;
  std::optional<http::response_serializer<http::string_body>> sr_;
  ChunkSource chunks_;
  bool stream_keep_alive_ = false;
  std::optional<uint64_t> stream_left_;  // with a Content-Length: the bytes still to send
  std::optional<std::chrono::steady_clock::time_point> started_;
  bool first_ = true;
  bool idle_ = false;
  bool closed_ = false;
};

}  // namespace

void WebServer::Impl::OnAccept(tcp::socket sock) {
  uint64_t id = next_id++;
  bool over = open.load() >= cfg.max_connections;
  if (over) {
    refused++;
    PHI_LOG(kWarning, "https connection over max_connections",
            {{"peer", log::Safe(tls::PeerAddress(sock))}, {"max", cfg.max_connections}});
    if (open.load() >= cfg.max_connections + kRefusalSlack) {
      boost::system::error_code ec;
      sock.close(ec);
      return;
    }
  } else {
    accepted++;
  }
  auto s = std::make_shared<Session>(shared_from_this(), std::move(sock), tls->Current(), id, over);
  {
    std::lock_guard<std::mutex> l(mu);
    sessions.emplace(id, s);
  }
  s->Start();
}

Result<std::unique_ptr<WebServer>> WebServer::Create(const config::WebConfig& cfg,
                                                     tls::TlsContextProvider& tls,
                                                     tls::AsioRunner& runner, Router router,
                                                     Env& env, AccessHook audit,
                                                     std::shared_ptr<WebMetrics> metrics) {
  if (cfg.max_connections == 0 || cfg.max_header_bytes == 0) {
    return Status::InvalidArgument("web: max_connections and max_header_bytes must be > 0");
  }
  auto impl = std::make_shared<Impl>();
  impl->cfg = cfg;
  impl->tls = &tls;
  impl->runner = &runner;
  impl->env = &env;
  impl->audit = std::move(audit);
  impl->metrics = std::move(metrics);
  impl->roles = std::make_shared<const std::vector<config::RoleMapping>>(cfg.roles);
  impl->state = cfg.https.enabled ? "stopped" : "disabled";
  router.Add(Method::kGet, "/healthz", AllRoles(),
             [](const RequestContext&) { return Response::Json(200, R"({"status":"ok"})"); });
  impl->router = std::move(router);
  return std::unique_ptr<WebServer>(new WebServer(std::move(impl)));
}

WebServer::~WebServer() {
  StopAccepting();
  // Handlers still running finish here, on this thread's watch, so that the
  // pool is never destroyed from one of its own threads.
  impl_->handlers->join();
}

Status WebServer::Start() {
  auto& im = *impl_;
  if (!im.cfg.https.enabled) return Status::Ok();
  auto l = tls::TcpListener::Bind(im.runner->context(), im.cfg.https.bind, im.cfg.https.port);
  if (!l.ok()) {
    std::lock_guard<std::mutex> g(im.mu);
    im.state = "failed";
    return l.status().WithContext("https");
  }
  im.listener = std::move(l).value();
  std::weak_ptr<Impl> weak = impl_;
  im.listener->Start([weak](tcp::socket s) {
    if (auto self = weak.lock()) self->OnAccept(std::move(s));
  });
  {
    std::lock_guard<std::mutex> g(im.mu);
    im.state = "listening";
  }
  PHI_LOG(kInfo, "https listening", {{"address", log::Safe(im.listener->address())}});
  return Status::Ok();
}

Status WebServer::Reload(const config::Config& cfg) {
  auto& im = *impl_;
  PHI_RETURN_IF_ERROR(im.tls->Reload(cfg.tls).WithContext("https tls reload"));
  auto roles = std::make_shared<const std::vector<config::RoleMapping>>(cfg.web.roles);
  std::lock_guard<std::mutex> g(im.mu);
  im.roles = std::move(roles);
  return Status::Ok();
}

void WebServer::StopAccepting() {
  auto& im = *impl_;
  if (im.listener) im.listener->Stop();
  std::lock_guard<std::mutex> g(im.mu);
  if (im.listener) im.state = "stopped";
}

void WebServer::Drain(MonotonicTime deadline) {
  auto& im = *impl_;
  im.draining = true;
  const uint64_t open_before = im.open.load();
  if (!tls::DrainSessions(im.mu, im.sessions, im.open, deadline)) {
    PHI_LOG(kWarning, "https drain deadline reached; connections closed", {{"open", open_before}});
  }
}

std::vector<ListenerStatus> WebServer::Listeners() const {
  auto& im = *impl_;
  std::lock_guard<std::mutex> g(im.mu);
  ListenerStatus s;
  s.name = "https";
  s.tls = true;
  s.address = im.listener ? im.listener->address()
                          : im.cfg.https.bind + ":" + std::to_string(im.cfg.https.port);
  s.state = im.state;
  s.open_connections = im.open;
  s.accepted_total = im.accepted;
  s.refused_total = im.refused;
  return {s};
}

uint16_t WebServer::port() const { return impl_->listener ? impl_->listener->port() : 0; }

}  // namespace phi::web
