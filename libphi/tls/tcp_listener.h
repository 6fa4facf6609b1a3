// phi::tls::TcpListener: one bound TCP listening socket with an accept loop on
// an io_context, shared by the HL7 and HTTPS fronts. Each accepted socket gets
// its own strand and TCP_NODELAY, then goes to the callback. Transient accept
// errors (EMFILE...) are logged and retried after a pause, never busy-looped.
// Thread-safety: all methods may be called from any thread; the acceptor lives
// on its own strand.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <functional>
#include <memory>
#include <string>

#include "libphi/util/status.h"

namespace phi::tls {

class TcpListener : public std::enable_shared_from_this<TcpListener> {
 public:
  using OnAccept = std::function<void(boost::asio::ip::tcp::socket)>;

  // Binds and listens (SO_REUSEADDR). The Status names the address:
  // "bind 0.0.0.0:2576: Address already in use".
  static Result<std::shared_ptr<TcpListener>> Bind(boost::asio::io_context& io,
                                                   const std::string& address, uint16_t port);

  // Starts the accept loop; `cb` runs on the listener's strand and gets a socket
  // whose executor is a fresh strand: run the connection's handlers there.
  void Start(OnAccept cb);
  // Stops accepting and closes the socket (asynchronously, on the strand);
  // after it returns no further callback starts.
  void Stop();

  uint16_t port() const { return port_; }
  const std::string& address() const { return address_; }  // "127.0.0.1:34567"
  bool stopped() const { return stopped_; }

 private:
  TcpListener(boost::asio::io_context& io)
      : io_(io), acceptor_(boost::asio::make_strand(io)), retry_(acceptor_.get_executor()) {}
  void DoAccept();

  boost::asio::io_context& io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  boost::asio::steady_timer retry_;
  OnAccept cb_;
  std::atomic<bool> stopped_{false};
  uint16_t port_ = 0;
  std::string address_;
};

}  // namespace phi::tls
