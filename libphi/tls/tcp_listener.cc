#include "libphi/tls/tcp_listener.h"

#include <boost/asio/post.hpp>

#include "libphi/tls/asio_runner.h"
#include "libphi/util/log.h"

namespace phi::tls {

namespace asio = boost::asio;
using asio::ip::tcp;

Result<std::shared_ptr<TcpListener>> TcpListener::Bind(asio::io_context& io,
                                                       const std::string& address, uint16_t port) {
  std::shared_ptr<TcpListener> l(new TcpListener(io));
  std::string where = address + ":" + std::to_string(port);
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(address, ec);
  if (ec) return Status::InvalidArgument("bind " + where + ": bad address");
  tcp::endpoint ep(addr, port);
  l->acceptor_.open(ep.protocol(), ec);
  if (!ec) l->acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) l->acceptor_.bind(ep, ec);
  if (!ec) l->acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Status::IOError("bind " + where + ": " + ec.message());
  auto local = l->acceptor_.local_endpoint(ec);
  l->port_ = ec ? port : local.port();
  l->address_ = (addr.is_v6() ? "[" + address + "]" : address) + ":" + std::to_string(l->port_);
  return l;
}

void TcpListener::Start(OnAccept cb) {
  cb_ = std::move(cb);
  asio::post(acceptor_.get_executor(), [self = shared_from_this()] { self->DoAccept(); });
}

void TcpListener::DoAccept() {
  if (stopped_) return;
  acceptor_.async_accept(
      asio::make_strand(io_),
      [self = shared_from_this()](boost::system::error_code ec, tcp::socket sock) {
        if (self->stopped_) {
          sock.close(ec);
          return;
        }
        if (ec) {
          if (ec == asio::error::operation_aborted) return;
          PHI_LOG(kWarning, "accept failed; retrying",
                  {{"listener", log::Safe(self->address_)}, {"error", log::Safe(ec.message())}});
          self->retry_.expires_after(std::chrono::milliseconds(100));
          self->retry_.async_wait([self](boost::system::error_code) { self->DoAccept(); });
          return;
        }
        ConfigureAcceptedSocket(sock);
        self->cb_(std::move(sock));
        self->DoAccept();
      });
}

void TcpListener::Stop() {
  if (stopped_.exchange(true)) return;
  asio::post(acceptor_.get_executor(), [self = shared_from_this()] {
    boost::system::error_code ec;
    self->retry_.cancel();
    self->acceptor_.close(ec);
  });
}

}  // namespace phi::tls
