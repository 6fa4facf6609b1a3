#include "libphi/tls/record_batch.h"

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <memory>
#include <random>
#include <string>

#include "tests/unit/tls/net_test_util.h"

namespace phi::tls {
namespace {

// A server and a client SSL joined by two in-memory BIO pairs, as asio::ssl
// joins its SSL to the socket (17 KiB pairs), with the dev PKI.
class TlsPair {
 public:
  explicit TlsPair(int max_version = TLS1_3_VERSION) {
    sctx_ = SSL_CTX_new(TLS_server_method());
    cctx_ = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_max_proto_version(sctx_, max_version);
    EXPECT_EQ(SSL_CTX_use_certificate_chain_file(sctx_, nettest::Pki("server.pem").c_str()), 1);
    EXPECT_EQ(
        SSL_CTX_use_PrivateKey_file(sctx_, nettest::Pki("server.key").c_str(), SSL_FILETYPE_PEM),
        1);
    server_ = SSL_new(sctx_);
    client_ = SSL_new(cctx_);
    BIO *s_int = nullptr, *s_ext = nullptr, *c_int = nullptr, *c_ext = nullptr;
    BIO_new_bio_pair(&s_int, 0, &s_ext, 0);
    BIO_new_bio_pair(&c_int, 0, &c_ext, 0);
    SSL_set_bio(server_, s_int, s_int);
    SSL_set_bio(client_, c_int, c_int);
    s_ext_ = s_ext;
    c_ext_ = c_ext;
    SSL_set_accept_state(server_);
    SSL_set_connect_state(client_);
    SSL_set_mode(server_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_RELEASE_BUFFERS);
  }
  ~TlsPair() {
    SSL_free(server_);
    SSL_free(client_);
    BIO_free(s_ext_);
    BIO_free(c_ext_);
    SSL_CTX_free(sctx_);
    SSL_CTX_free(cctx_);
  }

  // Moves whatever each side has written to the other; true if anything moved.
  bool Pump() { return Move(s_ext_, c_ext_) | Move(c_ext_, s_ext_); }
  bool Handshake() {
    for (int i = 0; i < 100; ++i) {
      int c = SSL_do_handshake(client_);
      int s = SSL_do_handshake(server_);
      bool moved = Pump();
      if (c == 1 && s == 1 && !moved) return true;
    }
    return false;
  }
  // Hands `wire` (server records) to the client and reads all the plaintext it yields.
  std::string ClientReads(std::string_view wire) {
    std::string got;
    char buf[65536];
    while (true) {
      while (!wire.empty()) {
        int w = BIO_write(c_ext_, wire.data(), static_cast<int>(wire.size()));
        if (w <= 0) break;
        wire.remove_prefix(static_cast<size_t>(w));
      }
      int n;
      while ((n = SSL_read(client_, buf, sizeof buf)) > 0) got.append(buf, static_cast<size_t>(n));
      ERR_clear_error();
      if (wire.empty()) return got;
    }
  }
  // What the server wrote into its own BIO pair, as it would go to the socket.
  std::string ServerWire() {
    std::string out;
    char buf[65536];
    int n;
    while ((n = BIO_read(s_ext_, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
    return out;
  }

  SSL* server() { return server_; }
  SSL* client() { return client_; }

 private:
  static bool Move(BIO* from, BIO* to) {
    bool moved = false;
    char buf[65536];
    while (BIO_ctrl_pending(from) > 0 && BIO_ctrl_get_write_guarantee(to) > 0) {
      int want = static_cast<int>(std::min(BIO_ctrl_pending(from), sizeof buf));
      want = std::min(want, static_cast<int>(BIO_ctrl_get_write_guarantee(to)));
      int n = BIO_read(from, buf, want);
      if (n <= 0) break;
      BIO_write(to, buf, n);
      moved = true;
    }
    return moved;
  }

  SSL_CTX* sctx_ = nullptr;
  SSL_CTX* cctx_ = nullptr;
  SSL* server_ = nullptr;
  SSL* client_ = nullptr;
  BIO* s_ext_ = nullptr;
  BIO* c_ext_ = nullptr;
};

std::string RandomBytes(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

TEST(RecordBatchTest, RefusesBeforeTheHandshakeAndWithOutputPending) {
  TlsPair p;
  RecordBatch batch;
  EXPECT_FALSE(batch.Attach(p.server()).ok());  // handshake not done
  EXPECT_FALSE(batch.Write(std::string_view("x")).ok());
  ASSERT_TRUE(p.Handshake());
  ASSERT_EQ(SSL_write(p.server(), "abc", 3), 3);  // sits in the pair, unsent
  EXPECT_FALSE(batch.Attach(p.server()).ok());
  EXPECT_FALSE(batch.attached());
  EXPECT_EQ(p.ClientReads(p.ServerWire()), "abc");
  EXPECT_TRUE(batch.Attach(p.server()).ok());
  EXPECT_FALSE(batch.Attach(p.server()).ok());  // twice
}

// TLS 1.3 and 1.2 (both allowed on the HTTPS listener).
class RecordBatchVersionTest : public ::testing::TestWithParam<int> {};
INSTANTIATE_TEST_SUITE_P(Versions, RecordBatchVersionTest,
                         ::testing::Values(TLS1_3_VERSION, TLS1_2_VERSION));

TEST_P(RecordBatchVersionTest, BatchedRecordsDecryptInOrderAndTheConnectionGoesOn) {
  TlsPair p(GetParam());
  ASSERT_TRUE(p.Handshake());
  EXPECT_EQ(SSL_version(p.server()), GetParam());
  // Before: a normal write through the pair (also flushes the session tickets).
  ASSERT_EQ(SSL_write(p.server(), "hello ", 6), 6);
  std::string before = p.ClientReads(p.ServerWire());
  EXPECT_EQ(before, "hello ");

  const std::string big = RandomBytes(3 * 1024 * 1024 + 123, 7);
  RecordBatch batch;
  ASSERT_TRUE(batch.Attach(p.server()).ok());
  EXPECT_EQ(SSL_get_mode(p.server()) & SSL_MODE_RELEASE_BUFFERS, 0u);
  ASSERT_TRUE(batch.Write(std::string_view("1\r\n")).ok());
  ASSERT_TRUE(batch.Write(big).ok());
  // 17 KiB would hold one record: the batch holds them all, nothing went to the pair.
  EXPECT_GT(batch.bytes().size(), big.size());
  EXPECT_EQ(p.ServerWire(), "");
  std::string wire(batch.bytes().data(), batch.bytes().size());
  batch.Clear();
  EXPECT_TRUE(batch.bytes().empty());
  ASSERT_TRUE(batch.Write(std::string_view("tail")).ok());
  wire.append(batch.bytes().data(), batch.bytes().size());
  batch.Detach();
  EXPECT_FALSE(batch.attached());
  EXPECT_NE(SSL_get_mode(p.server()) & SSL_MODE_RELEASE_BUFFERS, 0u);

  std::string got = p.ClientReads(wire);
  ASSERT_EQ(got.size(), 3 + big.size() + 4);
  EXPECT_EQ(got.substr(0, 3), "1\r\n");
  EXPECT_TRUE(got.compare(3, big.size(), big) == 0);
  EXPECT_EQ(got.substr(3 + big.size()), "tail");

  // After Detach the SSL writes through its pair again, in sequence.
  ASSERT_EQ(SSL_write(p.server(), "after", 5), 5);
  EXPECT_EQ(p.ClientReads(p.ServerWire()), "after");
}

TEST(RecordBatchTest, DestructionRestoresTheOriginalBio) {
  TlsPair p;
  ASSERT_TRUE(p.Handshake());
  BIO* original = SSL_get_wbio(p.server());
  {
    RecordBatch batch;
    ASSERT_TRUE(batch.Attach(p.server()).ok());
    EXPECT_NE(SSL_get_wbio(p.server()), original);
  }
  EXPECT_EQ(SSL_get_wbio(p.server()), original);
  ASSERT_EQ(SSL_write(p.server(), "ok", 2), 2);
  EXPECT_EQ(p.ClientReads(p.ServerWire()), "ok");
}

}  // namespace
}  // namespace phi::tls
