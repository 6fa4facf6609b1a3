#include "libphi/hl7/hl7_server.h"

#include <gtest/gtest.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "libphi/hl7/ack.h"
#include "libphi/hl7/mllp_framer.h"
#include "tests/unit/tls/net_test_util.h"

namespace phi::hl7 {
namespace {

using nettest::Pki;

config::Network Net(std::string text, std::initializer_list<uint8_t> addr, uint8_t prefix) {
  config::Network n;
  n.text = std::move(text);
  std::copy(addr.begin(), addr.end(), n.addr);
  n.prefix_len = prefix;
  return n;
}

std::string Msg(const std::string& control_id, const std::string& trigger = "A01") {
  return "MSH|^~\\&|RIS|HOSP|PHIGATE|RAD|20240101120000||ADT^" + trigger + "^ADT_A01|" +
         control_id + "|P|2.5.1\rPID|1||MRN-" + control_id + "||DOE^JANE\r";
}

// MSA-2 of every ACK in `wire` (MLLP framed), in order.
std::vector<std::string> AckedIds(const std::string& wire) {
  MllpFramer f(1 << 20);
  std::deque<std::string> acks;
  EXPECT_TRUE(f.Feed(wire, &acks).ok());
  std::vector<std::string> ids;
  for (auto& a : acks) {
    size_t p = a.find("\rMSA|AR|");
    EXPECT_NE(p, std::string::npos) << a;
    if (p == std::string::npos) continue;
    size_t b = p + 8;
    ids.push_back(a.substr(b, a.find_first_of("|\r", b) - b));
    EXPECT_NE(a.find("|ACK^A01^ACK|"), std::string::npos);
    EXPECT_NE(a.find("\rERR|"), std::string::npos);
  }
  return ids;
}

class Hl7ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cfg_.tls = {true, "127.0.0.1", 0, true};
    cfg_.plain = {true, "127.0.0.1", 0, false};
    cfg_.allowed_networks = {Net("127.0.0.0/8", {127, 0, 0, 0}, 8)};
    cfg_.idle_timeout_seconds = 1;
    cfg_.read_timeout_seconds = 2;
    cfg_.max_message_bytes = 64 * 1024;
    auto p = tls::TlsContextProvider::Create(nettest::DevTlsConfig(), true, Env::Default());
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    provider_ = std::move(p).value();
    ASSERT_TRUE(runner_.Start().ok());
  }
  // REQUIRES: `handler` outlives the server (StopServer, or TearDown).
  void StartServer(MessageHandler* handler = nullptr) {
    auto s =
        Hl7Server::Create(cfg_, provider_.get(), runner_, handler != nullptr ? *handler : handler_);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    server_ = std::move(s).value();
    ASSERT_TRUE(server_->Start().ok());
    ASSERT_NE(server_->tls_port(), 0);
    ASSERT_NE(server_->plain_port(), 0);
  }
  void StopServer() {
    if (server_) {
      server_->StopAccepting();
      server_->Drain(std::chrono::steady_clock::now() + std::chrono::seconds(5));
      server_.reset();
    }
  }
  void TearDown() override {
    StopServer();
    runner_.Stop();
  }
  const ListenerStatus& Listener(const std::string& name) {
    statuses_ = server_->Listeners();
    for (auto& s : statuses_) {
      if (s.name == name) return s;
    }
    ADD_FAILURE() << name;
    return statuses_.front();
  }

  config::Hl7Config cfg_;
  std::unique_ptr<tls::TlsContextProvider> provider_;
  tls::AsioRunner runner_{2};
  NotImplementedHandler handler_{Env::Default()};
  std::unique_ptr<Hl7Server> server_;
  std::vector<ListenerStatus> statuses_;
  phi::testing::TempDir tmp_;
};

TEST_F(Hl7ServerTest, PlainMllpSendGetsOrderedArAcks) {
  StartServer();
  // mllp_send: one connection, one message after the other, each ended by FS.
  std::string file;
  for (int i = 1; i <= 5; ++i) file += Msg("C" + std::to_string(i)) + "\x1c\r";
  phi::testing::WriteFile(tmp_ / "msgs.hl7", file);
  auto r = nettest::Run("mllp_send -p " + std::to_string(server_->plain_port()) + " -f " +
                        (tmp_ / "msgs.hl7").string() + " 127.0.0.1 2>&1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::string out = r.output;
  std::vector<std::string> ids;
  size_t p = 0;
  while ((p = out.find("MSA|AR|", p)) != std::string::npos) {
    p += 7;
    ids.push_back(out.substr(p, out.find_first_of("|\r\n", p) - p));
  }
  EXPECT_EQ(ids, (std::vector<std::string>{"C1", "C2", "C3", "C4", "C5"})) << out;
  EXPECT_EQ(Listener("hl7").accepted_total, 1u);
}

TEST_F(Hl7ServerTest, PipelinedMessagesOnOneRawConnectionStayInOrder) {
  StartServer();
  namespace asio = boost::asio;
  asio::io_context io;
  asio::ip::tcp::socket s(io);
  s.connect({asio::ip::make_address("127.0.0.1"), server_->plain_port()});
  std::string wire = "\r\n";  // garbage before the first frame is skipped
  for (int i = 0; i < 20; ++i) wire += MllpEncode(Msg("P" + std::to_string(i)));
  asio::write(s, asio::buffer(wire));
  s.shutdown(asio::ip::tcp::socket::shutdown_send);
  std::string got;
  boost::system::error_code ec;
  asio::read(s, asio::dynamic_buffer(got), ec);  // until the server closes
  auto ids = AckedIds(got);
  ASSERT_EQ(ids.size(), 20u);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(ids[i], "P" + std::to_string(i));
}

// Holds every message's callback until the test completes it: shows how many
// messages of one connection are with the handler at once, and lets the test
// complete them in any order.
class DeferredHandler : public MessageHandler {
 public:
  std::string Handle(std::string_view, const ConnectionInfo&) override { return {}; }
  void HandleAsync(std::string message, const ConnectionInfo&, AckCallback done) override {
    auto msh = ParseMsh(message);
    std::lock_guard<std::mutex> l(mu_);
    pending_.push_back(
        {msh.ok() ? msh->control_id : "", msh.ok() ? *msh : MshHeader{}, std::move(done)});
    cv_.notify_all();
  }
  // Waits until n messages are held (false after 10 s).
  bool WaitFor(size_t n) {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, std::chrono::seconds(10), [&] { return pending_.size() >= n; });
  }
  size_t held() {
    std::lock_guard<std::mutex> l(mu_);
    return pending_.size();
  }
  // Completes held message i with AA (`code`), from a thread of its own.
  void Complete(size_t i, const std::string& code = "AA") {
    std::lock_guard<std::mutex> l(mu_);
    Held& h = pending_.at(i);
    std::string ack = BuildAck(h.msh, code, "D" + h.id, std::chrono::system_clock::now(), nullptr);
    // Moved out: a kept copy would keep the session alive (as a real handler must not).
    std::thread([done = std::move(h.done), ack]() mutable { done(ack); }).join();
  }

 private:
  struct Held {
    std::string id;
    MshHeader msh;
    AckCallback done;
  };
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Held> pending_;
};

// MSA-1|MSA-2 of every ACK in `wire`, in order.
std::vector<std::string> AckCodes(const std::string& wire) {
  MllpFramer f(1 << 20);
  std::deque<std::string> acks;
  EXPECT_TRUE(f.Feed(wire, &acks).ok());
  std::vector<std::string> out;
  for (auto& a : acks) {
    size_t p = a.find("\rMSA|");
    if (p == std::string::npos) continue;
    p += 5;
    size_t e = a.find_first_of("|\r", p + 3);
    out.push_back(a.substr(p, e - p));
  }
  return out;
}

// Connects `s` to the plain listener and sends `n` messages at once, with
// control ids prefix0 .. prefix<n-1>, without waiting for any ACK.
void SendBurst(boost::asio::ip::tcp::socket& s, uint16_t port, const std::string& prefix, int n) {
  namespace asio = boost::asio;
  s.connect({asio::ip::make_address("127.0.0.1"), port});
  std::string wire;
  for (int i = 0; i < n; ++i) wire += MllpEncode(Msg(prefix + std::to_string(i)));
  asio::write(s, asio::buffer(wire));
}

// Half-closes `s` (no more messages) and reads until the server closes.
std::string HalfCloseAndReadAll(boost::asio::ip::tcp::socket& s) {
  s.shutdown(boost::asio::ip::tcp::socket::shutdown_send);
  std::string got;
  boost::system::error_code ec;
  boost::asio::read(s, boost::asio::dynamic_buffer(got), ec);
  return got;
}

// A server whose handler holds every message until the test completes it,
// and one plain connection to it.
class Hl7ServerDeferredTest : public Hl7ServerTest {
 protected:
  void SetUp() override {
    Hl7ServerTest::SetUp();
    StartServer(&deferred_);  // the base TearDown stops it before deferred_ goes
  }
  // Sends messages <prefix>0..<prefix>n-1 on sock_ without reading.
  void Burst(const std::string& prefix, int n) {
    SendBurst(sock_, server_->plain_port(), prefix, n);
  }
  DeferredHandler deferred_;
  boost::asio::io_context io_;
  boost::asio::ip::tcp::socket sock_{io_};
};

TEST_F(Hl7ServerDeferredTest, ReadsAheadAndAcksInArrivalOrderWhateverTheCompletionOrder) {
  Burst("Q", 5);
  // All five are with the handler at once (none has been answered yet).
  ASSERT_TRUE(deferred_.WaitFor(5));
  // Completed last to first, with an error in the middle: nothing may go out
  // before Q0's ACK, and then everything in arrival order.
  for (int i = 4; i >= 1; --i) deferred_.Complete(i, i == 2 ? "AE" : "AA");
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  sock_.non_blocking(true);
  char probe[64];
  boost::system::error_code ec;
  EXPECT_EQ(sock_.read_some(boost::asio::buffer(probe), ec), 0u);
  EXPECT_EQ(ec, boost::asio::error::would_block) << "an ACK overtook Q0's";
  sock_.non_blocking(false);
  deferred_.Complete(0);
  const std::string got = HalfCloseAndReadAll(sock_);  // the ACKs still come
  EXPECT_EQ(AckCodes(got), (std::vector<std::string>{"AA|Q0", "AA|Q1", "AE|Q2", "AA|Q3", "AA|Q4"}));
  EXPECT_EQ(deferred_.held(), 5u);
}

TEST_F(Hl7ServerDeferredTest, InFlightMessagesPerConnectionAreBounded) {
  Burst("B", 40);
  ASSERT_TRUE(deferred_.WaitFor(16));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(deferred_.held(), 16u);  // the rest waits in the socket / framer
  for (int i = 0; i < 16; ++i) deferred_.Complete(i);
  ASSERT_TRUE(deferred_.WaitFor(32));  // room again: the next 16 are handed over
  for (int i = 16; i < 32; ++i) deferred_.Complete(i);
  ASSERT_TRUE(deferred_.WaitFor(40));
  for (int i = 32; i < 40; ++i) deferred_.Complete(i);
  const std::string got = HalfCloseAndReadAll(sock_);
  auto codes = AckCodes(got);
  ASSERT_EQ(codes.size(), 40u);
  for (int i = 0; i < 40; ++i) EXPECT_EQ(codes[i], "AA|B" + std::to_string(i));
}

TEST_F(Hl7ServerTest, TlsClientWithCertificateGetsAcks) {
  StartServer();
  std::string wire = MllpEncode(Msg("T1")) + MllpEncode(Msg("T2"));
  phi::testing::WriteFile(tmp_ / "framed", wire);
  // The server closes the connection after idle_timeout (1 s), which ends s_client.
  auto r = nettest::Run("openssl s_client -quiet -no_ign_eof -connect 127.0.0.1:" +
                        std::to_string(server_->tls_port()) + " -cert " + Pki("clinician.pem") +
                        " -key " + Pki("clinician.key") + " -CAfile " + Pki("ca.pem") +
                        " -verify_return_error < " + (tmp_ / "framed").string() +
                        " 2>/dev/null; sleep 0");
  // s_client may exit before reading everything when stdin ends: use socat instead if needed.
  auto ids = AckedIds(r.output);
  uint64_t connections = 1;
  if (ids.size() != 2) {
    ++connections;
    r = nettest::Run("(cat " + (tmp_ / "framed").string() +
                     "; sleep 2) | socat -t 3 - OPENSSL:127.0.0.1:" +
                     std::to_string(server_->tls_port()) + ",cert=" + Pki("clinician.pem") +
                     ",key=" + Pki("clinician.key") + ",cafile=" + Pki("ca.pem"));
    ids = AckedIds(r.output);
  }
  EXPECT_EQ(ids, (std::vector<std::string>{"T1", "T2"}));
  EXPECT_EQ(Listener("hl7-tls").accepted_total, connections);
}

TEST_F(Hl7ServerTest, TlsWithoutClientCertificateGetsNothing) {
  StartServer();
  phi::testing::WriteFile(tmp_ / "framed", MllpEncode(Msg("N1")));
  auto r = nettest::Run(
      "openssl s_client -quiet -connect 127.0.0.1:" + std::to_string(server_->tls_port()) +
      " -CAfile " + Pki("ca.pem") + " < " + (tmp_ / "framed").string() + " 2>/dev/null");
  EXPECT_EQ(r.output.find("MSA|"), std::string::npos);
}

TEST_F(Hl7ServerTest, PeerOutsideAllowedNetworksIsDropped) {
  cfg_.allowed_networks = {Net("10.0.0.0/8", {10, 0, 0, 0}, 8)};
  StartServer();
  phi::testing::WriteFile(tmp_ / "msgs.hl7", Msg("X1") + "\x1c\r");
  auto r = nettest::Run("mllp_send -p " + std::to_string(server_->plain_port()) + " -f " +
                        (tmp_ / "msgs.hl7").string() + " 127.0.0.1 2>&1");
  EXPECT_EQ(r.output.find("MSA|"), std::string::npos) << r.output;
  EXPECT_EQ(Listener("hl7").refused_total, 1u);
  EXPECT_EQ(Listener("hl7").accepted_total, 0u);

  // A reload that allows loopback lets the same peer in.
  config::Config full;
  full.tls = nettest::DevTlsConfig();
  full.hl7 = cfg_;
  full.hl7.allowed_networks = {Net("127.0.0.1/32", {127, 0, 0, 1}, 32)};
  ASSERT_TRUE(server_->Reload(full).ok());
  r = nettest::Run("mllp_send -p " + std::to_string(server_->plain_port()) + " -f " +
                   (tmp_ / "msgs.hl7").string() + " 127.0.0.1 2>&1");
  EXPECT_NE(r.output.find("MSA|AR|X1"), std::string::npos) << r.output;
}

TEST_F(Hl7ServerTest, OversizeAndUnreadableMessagesCloseTheConnection) {
  cfg_.max_message_bytes = 1024;
  StartServer();
  namespace asio = boost::asio;
  asio::io_context io;
  for (const std::string& wire :
       {"\x0b" + std::string(4096, 'A'), MllpEncode("not hl7 at all") + MllpEncode(Msg("Z"))}) {
    asio::ip::tcp::socket s(io);
    s.connect({asio::ip::make_address("127.0.0.1"), server_->plain_port()});
    boost::system::error_code ec;
    asio::write(s, asio::buffer(wire), ec);
    std::string got;
    asio::read(s, asio::dynamic_buffer(got), ec);  // returns at the server's close
    EXPECT_TRUE(ec == asio::error::eof || ec == asio::error::connection_reset) << ec.message();
    EXPECT_EQ(got.find("MSA|"), std::string::npos);
  }
}

TEST_F(Hl7ServerTest, BindFailureNamesTheAddress) {
  StartServer();
  auto cfg2 = cfg_;
  cfg2.tls.port = server_->tls_port();
  auto s = Hl7Server::Create(cfg2, provider_.get(), runner_, handler_);
  ASSERT_TRUE(s.ok());
  Status st = (*s)->Start();
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("127.0.0.1:" + std::to_string(server_->tls_port())),
            std::string::npos)
      << st.ToString();
}

}  // namespace
}  // namespace phi::hl7
