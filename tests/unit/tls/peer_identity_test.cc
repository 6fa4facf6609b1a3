#include "libphi/tls/peer_identity.h"

#include <gtest/gtest.h>
#include <openssl/pem.h>

#include <algorithm>
#include <cctype>
#include <cstdio>

#include "tests/unit/tls/net_test_util.h"

namespace phi::tls {
namespace {

using nettest::Pki;

struct X509Deleter {
  void operator()(X509* x) const { X509_free(x); }
};
using X509Ptr = std::unique_ptr<X509, X509Deleter>;

X509Ptr LoadCert(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) return nullptr;
  X509* x = PEM_read_X509(f, nullptr, nullptr, nullptr);
  std::fclose(f);
  return X509Ptr(x);
}

// "SHA256 Fingerprint=AB:CD:..." -> "abcd..."; "serial=0A1B" -> "0A1B".
std::string AfterEquals(std::string s) {
  s = s.substr(s.find('=') + 1);
  s.erase(std::remove_if(s.begin(), s.end(), [](char c) { return c == ':' || c == '\n'; }),
          s.end());
  return s;
}

TEST(PeerIdentity, ClientCertificateFieldsMatchOpensslCli) {
  X509Ptr cert = LoadCert(Pki("clinician.pem"));
  ASSERT_NE(cert, nullptr);
  auto id = IdentityFromCertificate(cert.get());
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  EXPECT_EQ(id->subject, "CN=clinician,O=phigate-dev");
  EXPECT_EQ(id->issuer, "CN=phigate dev CA,O=phigate-dev");
  EXPECT_EQ(id->common_name, "clinician");
  EXPECT_EQ(id->organization, "phigate-dev");
  EXPECT_TRUE(id->org_units.empty());

  auto fp = nettest::Run("openssl x509 -noout -fingerprint -sha256 -in " + Pki("clinician.pem"));
  ASSERT_EQ(fp.exit_code, 0);
  std::string want = AfterEquals(fp.output);
  std::transform(want.begin(), want.end(), want.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  EXPECT_EQ(id->sha256_fingerprint, want);

  auto serial = nettest::Run("openssl x509 -noout -serial -in " + Pki("clinician.pem"));
  ASSERT_EQ(serial.exit_code, 0);
  EXPECT_EQ(id->serial, AfterEquals(serial.output));
}

TEST(PeerIdentity, ServerCertificateSans) {
  X509Ptr cert = LoadCert(Pki("server.pem"));
  ASSERT_NE(cert, nullptr);
  auto id = IdentityFromCertificate(cert.get());
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(id->san_dns, std::vector<std::string>{"localhost"});
  EXPECT_TRUE(id->san_email.empty());
  EXPECT_EQ(id->common_name, "localhost");
}

TEST(PeerIdentity, NullCertificateIsAnError) {
  EXPECT_FALSE(IdentityFromCertificate(nullptr).ok());
  EXPECT_EQ(IdentityFromSsl(nullptr).status().code(), Code::kInvalidArgument);
}

PeerIdentity Id(std::string subject, std::string o, std::vector<std::string> ous) {
  PeerIdentity id;
  id.subject = std::move(subject);
  id.organization = std::move(o);
  id.org_units = std::move(ous);
  return id;
}

TEST(MapRole, ExactSubjectThenOrganisationRules) {
  std::vector<config::RoleMapping> roles = {
      {"CN=admin,O=phigate-dev", "", "", config::Role::kAdmin},
      {"", "phigate-dev", "radiology", config::Role::kClinician},
      {"", "partner", "", config::Role::kShare},
      {"", "", "", config::Role::kAdmin},  // matches nothing by design
  };
  EXPECT_EQ(MapRole(Id("CN=admin,O=phigate-dev", "phigate-dev", {}), roles), config::Role::kAdmin);
  EXPECT_EQ(MapRole(Id("CN=x,OU=radiology,O=phigate-dev", "phigate-dev", {"radiology"}), roles),
            config::Role::kClinician);
  // O matches but OU does not, and no other rule applies.
  EXPECT_EQ(MapRole(Id("CN=x,OU=billing,O=phigate-dev", "phigate-dev", {"billing"}), roles),
            std::nullopt);
  EXPECT_EQ(MapRole(Id("CN=y,O=partner", "partner", {}), roles), config::Role::kShare);
  // Subject comparison is exact: a differently ordered DN is a different subject.
  EXPECT_EQ(MapRole(Id("O=phigate-dev,CN=admin", "other", {}), roles), std::nullopt);
  EXPECT_EQ(MapRole(Id("", "", {}), roles), std::nullopt);
}

}  // namespace
}  // namespace phi::tls
