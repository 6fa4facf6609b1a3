#include "libphi/tls/tls_context_provider.h"

#include <gtest/gtest.h>
#include <openssl/ssl.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <filesystem>
#include <future>
#include <thread>

#include "libphi/tls/asio_runner.h"
#include "libphi/tls/peer_identity.h"
#include "tests/unit/tls/net_test_util.h"

namespace phi::tls {
namespace {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using asio::ip::tcp;
using nettest::DevTlsConfig;
using nettest::Pki;

TEST(TlsContextProvider, BuildsFromDevPki) {
  auto p = TlsContextProvider::Create(DevTlsConfig(), true, Env::Default());
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  auto ctx = (*p)->Current();
  ASSERT_NE(ctx, nullptr);
  SSL_CTX* raw = ctx->native_handle();
  EXPECT_EQ(SSL_CTX_get_min_proto_version(raw), TLS1_2_VERSION);
  EXPECT_EQ(SSL_CTX_get_max_proto_version(raw), TLS1_3_VERSION);
  EXPECT_NE(SSL_CTX_get_options(raw) & SSL_OP_NO_COMPRESSION, 0u);
  EXPECT_NE(SSL_CTX_get_options(raw) & SSL_OP_NO_RENEGOTIATION, 0u);
  EXPECT_NE(SSL_CTX_get_options(raw) & SSL_OP_NO_TICKET, 0u);
  EXPECT_EQ(SSL_CTX_get_verify_mode(raw),
            SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE | SSL_VERIFY_FAIL_IF_NO_PEER_CERT);
  X509_STORE* store = SSL_CTX_get_cert_store(raw);
  unsigned long flags = X509_VERIFY_PARAM_get_flags(X509_STORE_get0_param(store));
  EXPECT_NE(flags & X509_V_FLAG_CRL_CHECK, 0u);
  EXPECT_NE(flags & X509_V_FLAG_CRL_CHECK_ALL, 0u);
  // Every enabled TLS 1.2 suite is ECDHE + AEAD.
  SSL* ssl = SSL_new(raw);
  STACK_OF(SSL_CIPHER)* ciphers = SSL_get_ciphers(ssl);
  for (int i = 0; i < sk_SSL_CIPHER_num(ciphers); ++i) {
    const SSL_CIPHER* c = sk_SSL_CIPHER_value(ciphers, i);
    if (SSL_CIPHER_get_protocol_id(c) >> 8 == 0x13) continue;  // TLS 1.3 suite
    std::string name = SSL_CIPHER_get_name(c);
    EXPECT_EQ(name.rfind("ECDHE-", 0), 0u) << name;
    EXPECT_TRUE(name.find("GCM") != std::string::npos ||
                name.find("CHACHA20-POLY1305") != std::string::npos)
        << name;
  }
  SSL_free(ssl);
}

TEST(TlsContextProvider, OptionalClientCertAndNoCrl) {
  auto p = TlsContextProvider::Create(DevTlsConfig(/*with_crl=*/false), false, Env::Default());
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  SSL_CTX* raw = (*p)->Current()->native_handle();
  EXPECT_EQ(SSL_CTX_get_verify_mode(raw) & SSL_VERIFY_FAIL_IF_NO_PEER_CERT, 0);
  unsigned long flags =
      X509_VERIFY_PARAM_get_flags(X509_STORE_get0_param(SSL_CTX_get_cert_store(raw)));
  EXPECT_EQ(flags & X509_V_FLAG_CRL_CHECK, 0u);
}

TEST(TlsContextProvider, RefusesBadMaterialNamingTheProblem) {
  auto cfg = DevTlsConfig();
  cfg.private_key = Pki("clinician.key");
  auto p = TlsContextProvider::Create(cfg, true, Env::Default());
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("does not match"), std::string::npos)
      << p.status().ToString();

  cfg = DevTlsConfig();
  cfg.ca_bundle = Pki("no-such-file.pem");
  p = TlsContextProvider::Create(cfg, true, Env::Default());
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().ToString().find("ca_bundle"), std::string::npos) << p.status().ToString();

  phi::testing::TempDir tmp;
  phi::testing::WriteFile(tmp / "junk.pem", "not a certificate\n");
  cfg = DevTlsConfig();
  cfg.certificate = tmp / "junk.pem";
  EXPECT_FALSE(TlsContextProvider::Create(cfg, true, Env::Default()).ok());
  cfg = DevTlsConfig();
  cfg.crls = {tmp / "junk.pem"};
  EXPECT_FALSE(TlsContextProvider::Create(cfg, true, Env::Default()).ok());
}

TEST(TlsContextProvider, ReloadKeepsOldOnErrorAndSwapsOnSuccess) {
  phi::testing::TempDir tmp;
  std::filesystem::copy_file(Pki("server.pem"), tmp / "server.pem");
  std::filesystem::copy_file(Pki("server.key"), tmp / "server.key");
  auto cfg = DevTlsConfig();
  cfg.certificate = tmp / "server.pem";
  cfg.private_key = tmp / "server.key";
  auto p = TlsContextProvider::Create(cfg, true, Env::Default());
  ASSERT_TRUE(p.ok());
  auto& provider = **p;
  SslContextPtr first = provider.Current();
  EXPECT_EQ(provider.generation(), 1u);

  // Half-rotated material on disk (new cert, old key): the reload fails, old stays.
  std::filesystem::copy_file(Pki("admin.pem"), tmp / "server.pem",
                             std::filesystem::copy_options::overwrite_existing);
  Status s = provider.Reload(cfg);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(provider.Current(), first);
  EXPECT_EQ(provider.generation(), 1u);

  std::filesystem::copy_file(Pki("server.pem"), tmp / "server.pem",
                             std::filesystem::copy_options::overwrite_existing);
  ASSERT_TRUE(provider.Reload(cfg).ok());
  EXPECT_NE(provider.Current(), first);
  EXPECT_EQ(provider.generation(), 2u);
  // The old snapshot is still usable by connections that hold it.
  EXPECT_NE(SSL_CTX_get0_certificate(first->native_handle()), nullptr);
}

struct HandshakeOutcome {
  bool server_ok = false;
  std::string reason;
  std::string subject;
};

// A real loopback handshake: the server side uses the provider's context, the
// client presents `cert`/`key` (empty: none). `tweak` adjusts the client context.
HandshakeOutcome Handshake(TlsContextProvider& provider, const std::string& cert,
                           const std::string& key,
                           const std::function<void(SSL_CTX*)>& tweak = nullptr) {
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  HandshakeOutcome out;
  auto server_ctx = provider.Current();
  std::thread server([&] {
    tcp::socket sock(io);
    boost::system::error_code ec;
    acceptor.accept(sock, ec);
    if (ec) return;
    ConfigureAcceptedSocket(sock);
    ssl::stream<tcp::socket> s(std::move(sock), *server_ctx);
    s.handshake(ssl::stream_base::server, ec);
    if (ec) {
      out.reason = std::string(HandshakeFailureReason(s.native_handle(), ec));
      return;
    }
    out.server_ok = true;
    auto id = IdentityFromSsl(s.native_handle());
    if (id.ok()) out.subject = id->subject;
    s.shutdown(ec);
  });
  ssl::context cctx(ssl::context::tls_client);
  if (!cert.empty()) {
    cctx.use_certificate_chain_file(cert);
    cctx.use_private_key_file(key, ssl::context::pem);
  }
  cctx.load_verify_file(Pki("ca.pem"));
  cctx.set_verify_mode(ssl::verify_peer);
  if (tweak) tweak(cctx.native_handle());
  ssl::stream<tcp::socket> c(io, cctx);
  boost::system::error_code ec;
  c.next_layer().connect(acceptor.local_endpoint(), ec);
  if (!ec) c.handshake(ssl::stream_base::client, ec);
  if (!ec) {
    // In TLS 1.3 the server judges the client certificate after the client is done:
    // read until the server closes or fails.
    char b[1];
    c.read_some(asio::buffer(b), ec);
  }
  c.next_layer().close(ec);
  server.join();
  return out;
}

class HandshakeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto p = TlsContextProvider::Create(DevTlsConfig(), true, Env::Default());
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    provider_ = std::move(p).value();
  }
  std::unique_ptr<TlsContextProvider> provider_;
};

TEST_F(HandshakeTest, ValidClientIsAcceptedWithItsIdentity) {
  auto o = Handshake(*provider_, Pki("clinician.pem"), Pki("clinician.key"));
  EXPECT_TRUE(o.server_ok) << o.reason;
  EXPECT_EQ(o.subject, "CN=clinician,O=phigate-dev");
}

TEST_F(HandshakeTest, RefusalReasons) {
  EXPECT_EQ(Handshake(*provider_, "", "").reason, "no certificate");
  EXPECT_EQ(Handshake(*provider_, Pki("expired.pem"), Pki("expired.key")).reason,
            "certificate expired");
  EXPECT_EQ(Handshake(*provider_, Pki("revoked.pem"), Pki("revoked.key")).reason,
            "certificate revoked");
  EXPECT_EQ(Handshake(*provider_, Pki("untrusted.pem"), Pki("untrusted.key")).reason, "unknown CA");
  auto tls11 = Handshake(*provider_, Pki("clinician.pem"), Pki("clinician.key"), [](SSL_CTX* c) {
    SSL_CTX_set_security_level(c, 0);
    SSL_CTX_set_min_proto_version(c, TLS1_1_VERSION);
    SSL_CTX_set_max_proto_version(c, TLS1_1_VERSION);
    SSL_CTX_set_cipher_list(c, "DEFAULT:@SECLEVEL=0");
  });
  EXPECT_FALSE(tls11.server_ok);
  EXPECT_EQ(tls11.reason, "protocol version");
}

TEST_F(HandshakeTest, ReloadedContextAppliesToNewConnections) {
  // Without the CRL, the revoked certificate is (by design) accepted after reload.
  ASSERT_TRUE(provider_->Reload(DevTlsConfig(/*with_crl=*/false)).ok());
  EXPECT_TRUE(Handshake(*provider_, Pki("revoked.pem"), Pki("revoked.key")).server_ok);
}

TEST(AsioRunner, RunsPostedWorkOnItsThreads) {
  AsioRunner runner(2);
  ASSERT_TRUE(runner.Start().ok());
  EXPECT_FALSE(runner.Start().ok());
  std::promise<std::thread::id> done;
  asio::post(runner.context(), [&] { done.set_value(std::this_thread::get_id()); });
  auto fut = done.get_future();
  ASSERT_EQ(fut.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_NE(fut.get(), std::this_thread::get_id());
  runner.Stop();
  EXPECT_EQ(runner.threads(), 2u);
}

}  // namespace
}  // namespace phi::tls
