// Detached CMS signatures: signed here, verified here AND by the openssl CLI
// (what a third party runs), tamper and wrong-key cases.
#include "libphi/audit/cms_signer.h"

#include <gtest/gtest.h>

#include <cstdlib>

#include "tests/support/temp_dir.h"

namespace phi::audit {
namespace {

class CmsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string d = dir_.path().string();
    // A CA and a server certificate it issued, like the dev PKI.
    std::string cmd =
        "cd " + d +
        " && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key "
        "-out ca.pem -subj /CN=test-ca -days 2 2>/dev/null"
        " && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key "
        "-out server.csr "
        "-subj /CN=server 2>/dev/null"
        " && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
        "-out server.pem -days 2 2>/dev/null"
        " && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "
        "other.key -out other.pem -subj /CN=other -days 2 2>/dev/null";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
  }
  std::string Read(const char* name) { return phi::testing::ReadFile(dir_.path() / name); }
  int OpensslVerify(const std::string& extra) {
    std::string d = dir_.path().string();
    std::string cmd = "cd " + d +
                      " && openssl cms -verify -binary -inform PEM -in cert.p7s -content "
                      "cert.json -CAfile ca.pem -purpose any -out /dev/null " +
                      extra + " 2>/dev/null";
    return std::system(cmd.c_str());
  }
  phi::testing::TempDir dir_;
};

TEST_F(CmsTest, SignedCertificateVerifiesWithPlainOpenssl) {
  const std::string content = R"({"type":"phigate-erasure-certificate","audit_seq":12})";
  auto sig = SignDetachedCmsPem(content, Read("server.pem"), Read("server.key"));
  ASSERT_TRUE(sig.ok()) << sig.status().ToString();
  EXPECT_EQ(sig->rfind("-----BEGIN CMS-----", 0), 0u);
  EXPECT_TRUE(VerifyDetachedCmsPem(content, *sig, Read("ca.pem")).ok());
  phi::testing::WriteFile(dir_.path() / "cert.json", content);
  phi::testing::WriteFile(dir_.path() / "cert.p7s", *sig);
  EXPECT_EQ(OpensslVerify(""), 0);
  // Without -binary too (the JSON has no line ends to canonicalise).
  std::string d = dir_.path().string();
  EXPECT_EQ(std::system(("cd " + d +
                         " && openssl cms -verify -inform PEM -in cert.p7s -content cert.json "
                         "-CAfile ca.pem -purpose any -out /dev/null 2>/dev/null")
                            .c_str()),
            0);
  // One byte changed: both refuse.
  std::string tampered = content;
  tampered[tampered.size() - 2] = '3';
  EXPECT_FALSE(VerifyDetachedCmsPem(tampered, *sig, Read("ca.pem")).ok());
  phi::testing::WriteFile(dir_.path() / "cert.json", tampered);
  EXPECT_NE(OpensslVerify(""), 0);
}

TEST_F(CmsTest, UntrustedSignerIsRefused) {
  const std::string content = "{}";
  auto sig = SignDetachedCmsPem(content, Read("other.pem"), Read("other.key"));
  ASSERT_TRUE(sig.ok());
  EXPECT_FALSE(VerifyDetachedCmsPem(content, *sig, Read("ca.pem")).ok());
  EXPECT_TRUE(VerifyDetachedCmsPem(content, *sig, Read("other.pem")).ok());
}

TEST_F(CmsTest, BadKeyMaterialIsAnError) {
  EXPECT_FALSE(SignDetachedCmsPem("{}", Read("server.pem"), Read("other.key")).ok());
  EXPECT_FALSE(SignDetachedCmsPem("{}", "not a pem", Read("server.key")).ok());
  EXPECT_FALSE(SignDetachedCmsPem("{}", Read("server.pem"), "garbage").ok());
  EXPECT_FALSE(VerifyDetachedCmsPem("{}", "garbage", Read("ca.pem")).ok());
}

}  // namespace
}  // namespace phi::audit
