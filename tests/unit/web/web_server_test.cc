#include "libphi/web/web_server.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <mutex>
#include <optional>
#include <thread>

#include "libphi/web/read_ahead.h"
#include "tests/support/temp_dir.h"
#include "tests/unit/tls/net_test_util.h"

namespace phi::web {
namespace {

using nettest::Pki;

class WebServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cfg_.https = {true, "127.0.0.1", 0, true};
    cfg_.max_body_bytes = 1024;
    cfg_.max_header_bytes = 2048;
    cfg_.roles = {{"CN=clinician,O=phigate-dev", "", "", config::Role::kClinician},
                  {"CN=admin,O=phigate-dev", "", "", config::Role::kAdmin}};
    auto p = tls::TlsContextProvider::Create(nettest::DevTlsConfig(), true, Env::Default());
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    provider_ = std::move(p).value();
    ASSERT_TRUE(runner_.Start().ok());
    Router router;
    router.Add(Method::kPost, "/echo-size", {config::Role::kClinician},
               [](const RequestContext& c) {
                 return Response::Json(200, "{\"size\":" + std::to_string(c.body.size()) + "}");
               });
    router.Add(Method::kGet, "/admin-only", {config::Role::kAdmin},
               [](const RequestContext&) { return Response::Json(200, "{}"); });
    // Bodies made on the fly, in pulls: nothing holds them whole. A 64 MiB
    // one in the read-ahead pipe's default 1 MiB buffers (the largest pull
    // is recorded), the same in odd-sized ones (crossing TLS records and
    // chunk boundaries anywhere), one that fails after three pulls, and ones
    // with a Content-Length whose source gives as many bytes, fewer or more.
    auto pattern = [&router](const char* path, uint64_t delivered, size_t chunk_bytes,
                             std::atomic<size_t>* max_pull,
                             std::optional<uint64_t> announced = std::nullopt) {
      router.Add(Method::kGet, path, {config::Role::kClinician}, [=](const RequestContext&) {
        Response r;
        r.content_type = "application/octet-stream";
        r.content_length = announced;
        r.chunks = ReadAheadChunks(
            [=, off = uint64_t{0}](std::span<char> buf) mutable -> Result<size_t> {
              if (max_pull != nullptr) {
                *max_pull = std::max<size_t>(*max_pull, buf.size());
              }
              size_t n = std::min<uint64_t>(buf.size(), delivered - off);
              for (size_t i = 0; i < n; ++i) {
                buf[i] = static_cast<char>(((off + i) * 31) & 0xFF);
              }
              off += n;
              return n;
            },
            chunk_bytes, 2);
        return r;
      });
    };
    pattern("/stream", kStreamBytes, size_t{1} << 20, &max_pull_);
    pattern("/chunks", kStreamBytes, 100'003, nullptr);
    pattern("/sized", kSizedBytes, 100'003, nullptr, kSizedBytes);
    pattern("/sized-short", kSizedBytes - 1, 100'003, nullptr, kSizedBytes);
    pattern("/sized-long", kSizedBytes + 1, 100'003, nullptr, kSizedBytes);
    router.Add(Method::kGet, "/stream-fails", {config::Role::kClinician},
               [](const RequestContext&) {
                 Response r;
                 auto calls = std::make_shared<int>(0);
                 r.chunks = ReadAheadChunks([calls](std::span<char> buf) -> Result<size_t> {
                   if ((*calls)++ > 2) return Status::Corruption("segment tag mismatch");
                   std::fill(buf.begin(), buf.end(), 'x');
                   return buf.size();
                 });
                 return r;
               });
    auto s = WebServer::Create(cfg_, *provider_, runner_, std::move(router), Env::Default(),
                               [this](const AccessEvent& e) {
                                 std::lock_guard<std::mutex> l(mu_);
                                 events_.push_back(e);
                               });
    ASSERT_TRUE(s.ok());
    server_ = std::move(s).value();
    ASSERT_TRUE(server_->Start().ok());
    ASSERT_NE(server_->port(), 0);
  }
  void TearDown() override {
    server_->StopAccepting();
    server_->Drain(std::chrono::steady_clock::now() + std::chrono::seconds(5));
    runner_.Stop();
  }
  std::string Url(const std::string& path) {
    return "https://localhost:" + std::to_string(server_->port()) + path;
  }
  // curl as `who`; prints the body then "\n<status>".
  nettest::CommandResult Curl(const std::string& who, const std::string& args) {
    std::string cert =
        who.empty() ? "" : " --cert " + Pki(who + ".pem") + " --key " + Pki(who + ".key");
    return nettest::Run("curl -sS --max-time 10 --cacert " + Pki("ca.pem") + cert +
                        " -w '\\n%{http_code}' " + args + " 2>&1");
  }

  config::WebConfig cfg_;
  std::unique_ptr<tls::TlsContextProvider> provider_;
  tls::AsioRunner runner_{2};
  std::unique_ptr<WebServer> server_;
  std::mutex mu_;
  std::vector<AccessEvent> events_;
  static constexpr uint64_t kStreamBytes = 64ull << 20;
  static constexpr uint64_t kSizedBytes = (3ull << 20) + 7;
  std::atomic<size_t> max_pull_{0};
};

TEST_F(WebServerTest, HealthzForAMappedClient) {
  auto r = Curl("clinician", Url("/healthz"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, "{\"status\":\"ok\"}\n200");
  std::lock_guard<std::mutex> l(mu_);
  ASSERT_EQ(events_.size(), 1u);
  EXPECT_EQ(events_[0].route, "/healthz");
  EXPECT_EQ(events_[0].subject, "CN=clinician,O=phigate-dev");
  EXPECT_EQ(events_[0].status, 200);
}

TEST_F(WebServerTest, HandshakeRefusals) {
  EXPECT_NE(Curl("", Url("/healthz")).exit_code, 0);  // no client certificate
  for (const char* who : {"untrusted", "expired", "revoked"}) {
    auto r = Curl(who, Url("/healthz"));
    EXPECT_NE(r.exit_code, 0) << who << ": " << r.output;
    EXPECT_EQ(r.output.find("200"), std::string::npos) << who;
  }
  auto tls11 = nettest::Run(
      "echo | openssl s_client -tls1_1 -cipher DEFAULT@SECLEVEL=0 -connect 127.0.0.1:" +
      std::to_string(server_->port()) + " -cert " + Pki("clinician.pem") + " -key " +
      Pki("clinician.key") + " 2>&1");
  EXPECT_NE(tls11.exit_code, 0) << tls11.output;
}

TEST_F(WebServerTest, UnmappedSubjectGets403Problem) {
  auto r = Curl("share", "-i " + Url("/healthz"));
  EXPECT_NE(r.output.find("application/problem+json"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(R"({"status":403,"title":"Forbidden","type":"about:blank"})"),
            std::string::npos)
      << r.output;
  // A mapped role that the route does not allow.
  EXPECT_TRUE(Curl("clinician", Url("/admin-only")).output.ends_with("\n403"));
}

TEST_F(WebServerTest, ErrorsAreProblemJson) {
  auto nf = Curl("clinician", Url("/nope"));
  EXPECT_EQ(nf.output, R"({"status":404,"title":"Not Found","type":"about:blank"})"
                       "\n404");
  EXPECT_TRUE(Curl("clinician", Url("/studies/1.2.3?PatientID=X")).output.ends_with("\n501"));
  auto m = Curl("clinician", "-i -X DELETE " + Url("/healthz"));
  EXPECT_TRUE(m.output.ends_with("\n405")) << m.output;
  EXPECT_NE(m.output.find("llow: GET"), std::string::npos) << m.output;
  for (const char* p : {"/a/../healthz", "/a/%2e%2e/healthz", "/x%00y"}) {
    auto t = Curl("clinician", std::string("--path-as-is ") + Url(p));
    EXPECT_TRUE(t.output.ends_with("\n400")) << p << ": " << t.output;
  }
}

TEST_F(WebServerTest, HeaderAndBodyCaps) {
  auto h = Curl("clinician", "-H 'X-Big: " + std::string(4000, 'a') + "' " + Url("/healthz"));
  EXPECT_TRUE(h.output.ends_with("\n431")) << h.output;
  auto ok = Curl("clinician", "--data-binary @- " + Url("/echo-size") + " < /dev/null");
  EXPECT_TRUE(ok.output.ends_with("\n200")) << ok.output;
  phi::testing::TempDir tmp;
  phi::testing::WriteFile(tmp / "big", std::string(2000, 'b'));
  auto b = Curl("clinician", "--data-binary @" + (tmp / "big").string() + " " + Url("/echo-size"));
  EXPECT_TRUE(b.output.ends_with("\n413")) << b.output;
  phi::testing::WriteFile(tmp / "small", std::string(1000, 'b'));
  auto s =
      Curl("clinician", "--data-binary @" + (tmp / "small").string() + " " + Url("/echo-size"));
  EXPECT_EQ(s.output, "{\"size\":1000}\n200");
}

TEST_F(WebServerTest, KeepAliveReusesTheConnection) {
  auto r = Curl("clinician", "-v " + Url("/healthz") + " " + Url("/healthz"));
  EXPECT_NE(r.output.find("Re-using existing connection"), std::string::npos) << r.output;
  EXPECT_EQ(server_->Listeners()[0].accepted_total, 1u);
}

TEST_F(WebServerTest, ReloadSwapsRoles) {
  config::Config c;
  c.tls = nettest::DevTlsConfig();
  c.web = cfg_;
  c.web.roles.push_back({"", "phigate-dev", "", config::Role::kShare});
  ASSERT_TRUE(server_->Reload(c).ok());
  EXPECT_TRUE(Curl("share", Url("/healthz")).output.ends_with("\n200"));
  c.tls.ca_bundle = Pki("missing.pem");
  EXPECT_FALSE(server_->Reload(c).ok());
  EXPECT_TRUE(Curl("clinician", Url("/healthz")).output.ends_with("\n200"));
}

TEST_F(WebServerTest, StreamedBodiesAreChunkedAndBounded) {
  phi::testing::TempDir tmp;
  std::string out = (tmp.path() / "body").string();
  auto r =
      Curl("clinician", "-o " + out + " " + Url("/stream") + " -o /dev/null " + Url("/healthz"));
  ASSERT_TRUE(r.output.ends_with("200\n200")) << r.output;
  std::string body = phi::testing::ReadFile(tmp.path() / "body");
  ASSERT_EQ(body.size(), kStreamBytes);
  for (size_t i = 0; i < body.size(); i += 4093) {
    ASSERT_EQ(static_cast<unsigned char>(body[i]), (i * 31) & 0xFF) << i;
  }
  EXPECT_GT(max_pull_.load(), 0u);
  EXPECT_LE(max_pull_.load(), 1u << 20);  // one bounded buffer, never the body
  // An error after the header aborts the connection: the client sees a broken transfer.
  auto f = Curl("clinician", Url("/stream-fails") + " -o /dev/null");
  EXPECT_NE(f.exit_code, 0) << f.output;
}

TEST_F(WebServerTest, LentChunksStreamEveryByteInOrder) {
  phi::testing::TempDir tmp;
  std::string out = (tmp.path() / "body").string();
  auto r =
      Curl("clinician", "-o " + out + " " + Url("/chunks") + " -o /dev/null " + Url("/healthz"));
  ASSERT_TRUE(r.output.ends_with("200\n200")) << r.output;  // keep-alive after the stream
  std::string body = phi::testing::ReadFile(tmp.path() / "body");
  ASSERT_EQ(body.size(), kStreamBytes);
  for (size_t i = 0; i < body.size(); ++i) {
    ASSERT_EQ(static_cast<unsigned char>(body[i]), (i * 31) & 0xFF) << i;
  }
  auto f = Curl("clinician", Url("/stream-fails") + " -o /dev/null");
  EXPECT_NE(f.exit_code, 0) << f.output;
}

TEST_F(WebServerTest, StreamedBodyWithALengthIsSentAsIsAndChecked) {
  phi::testing::TempDir tmp;
  std::string out = (tmp.path() / "body").string(), hdr = (tmp.path() / "headers").string();
  auto r = Curl("clinician", "-D " + hdr + " -o " + out + " " + Url("/sized") + " -o /dev/null " +
                                 Url("/healthz"));
  ASSERT_TRUE(r.output.ends_with("200\n200")) << r.output;  // keep-alive after the body
  std::string headers = phi::testing::ReadFile(tmp.path() / "headers");
  for (char& c : headers) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  EXPECT_NE(headers.find("content-length: " + std::to_string(kSizedBytes) + "\r\n"),
            std::string::npos)
      << headers;
  EXPECT_EQ(headers.find("transfer-encoding"), std::string::npos) << headers;
  std::string body = phi::testing::ReadFile(tmp.path() / "body");
  ASSERT_EQ(body.size(), kSizedBytes);
  for (size_t i = 0; i < body.size(); ++i) {
    ASSERT_EQ(static_cast<unsigned char>(body[i]), (i * 31) & 0xFF) << i;
  }
  // Fewer or more bytes than announced: the connection is cut, the client
  // sees a short body (never a wrong one).
  for (const char* path : {"/sized-short", "/sized-long"}) {
    SCOPED_TRACE(path);
    auto f = Curl("clinician", Url(path) + " -o " + out);
    EXPECT_NE(f.exit_code, 0) << f.output;
    EXPECT_LT(phi::testing::ReadFile(tmp.path() / "body").size(), kSizedBytes);
  }
}

// A drain whose deadline passes mid-body cuts the connection (no
// close_notify into a batch being sent); the client sees a broken transfer,
// the drain returns with nothing left open.
TEST_F(WebServerTest, DrainCutsAStreamMidBody) {
  nettest::CommandResult slow;
  std::thread client(
      [&] { slow = Curl("clinician", "--limit-rate 2M " + Url("/chunks") + " -o /dev/null"); });
  auto streaming = [&] {
    std::lock_guard<std::mutex> l(mu_);
    return std::any_of(events_.begin(), events_.end(),
                       [](const AccessEvent& e) { return e.route == "/chunks"; });
  };
  for (int i = 0; i < 500 && !streaming(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(streaming());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // well into the 64 MiB
  server_->StopAccepting();
  server_->Drain(std::chrono::steady_clock::now() + std::chrono::milliseconds(100));
  client.join();
  EXPECT_NE(slow.exit_code, 0) << slow.output;
  EXPECT_NE(slow.exit_code, 28) << "cut by curl's own --max-time, not by the drain";
  EXPECT_EQ(server_->Listeners()[0].open_connections, 0u);
}

}  // namespace
}  // namespace phi::web
