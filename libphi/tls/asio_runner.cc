#include "libphi/tls/asio_runner.h"

#include <exception>

#include "libphi/util/log.h"

namespace phi::tls {

AsioRunner::AsioRunner(unsigned threads)
    : threads_(threads != 0 ? threads : std::max(1u, std::thread::hardware_concurrency())),
      io_(static_cast<int>(threads_)) {}

AsioRunner::~AsioRunner() { Stop(); }

Status AsioRunner::Start() {
  if (!pool_.empty()) return Status::Internal("AsioRunner already started");
  io_.restart();
  work_.emplace(io_.get_executor());
  for (unsigned i = 0; i < threads_; ++i) {
    pool_.emplace_back([this] {
      for (;;) {
        try {
          io_.run();
          return;
        } catch (const std::exception& e) {
          // Handlers must not throw; if one does, log and keep serving.
          PHI_LOG(kError, "asio handler threw", {{"what", log::Safe(e.what())}});
        }
      }
    });
  }
  return Status::Ok();
}

void AsioRunner::Stop() {
  work_.reset();
  io_.stop();
  for (auto& t : pool_) {
    if (t.joinable()) t.join();
  }
  pool_.clear();
}

void ConfigureAcceptedSocket(boost::asio::ip::tcp::socket& s) {
  boost::system::error_code ec;
  s.set_option(boost::asio::ip::tcp::no_delay(true), ec);
}

std::string PeerAddress(const boost::asio::ip::tcp::socket& s) {
  boost::system::error_code ec;
  auto ep = s.remote_endpoint(ec);
  if (ec) return "unknown";
  auto a = ep.address();
  if (a.is_v6() && a.to_v6().is_v4_mapped()) {
    return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, a.to_v6()).to_string(ec);
  }
  return a.to_string(ec);
}

}  // namespace phi::tls
