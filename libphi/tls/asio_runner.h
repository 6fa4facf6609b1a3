// phi::tls::AsioRunner: the io_context shared by the HL7 and HTTPS fronts, run
// by N threads (default: one per core). The daemon owns one and passes it to
// both servers; servers put their handlers on strands.
// Also: ConfigureAcceptedSocket(), applied to every accepted TCP socket.
// Thread-safety: Start/Stop from one owner thread; context() from any thread.
#pragma once

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <optional>
#include <thread>
#include <vector>

#include "libphi/util/status.h"

namespace phi::tls {

class AsioRunner {
 public:
  // threads == 0: std::thread::hardware_concurrency() (at least 1).
  explicit AsioRunner(unsigned threads = 0);
  ~AsioRunner();  // Stop()s
  AsioRunner(const AsioRunner&) = delete;
  AsioRunner& operator=(const AsioRunner&) = delete;

  boost::asio::io_context& context() { return io_; }
  unsigned threads() const { return threads_; }

  // Starts the threads. Calling it twice is an error.
  Status Start();
  // Stops the io_context (pending handlers are abandoned) and joins the threads.
  void Stop();

 private:
  unsigned threads_;
  boost::asio::io_context io_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_;
  std::vector<std::thread> pool_;
};

// TCP_NODELAY on an accepted socket (errors are ignored: best effort).
void ConfigureAcceptedSocket(boost::asio::ip::tcp::socket& s);

// "1.2.3.4" / "::1" of the peer, or "unknown".
std::string PeerAddress(const boost::asio::ip::tcp::socket& s);

}  // namespace phi::tls
