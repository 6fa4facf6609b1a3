// DevConfigYaml: validates cleanly against a fake dev dir laid out like
// scripts/dev-run.sh makes it, and says what the dev setup expects.
#include "libphi/config/dev_config.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "libphi/config/config.h"
#include "tests/support/temp_dir.h"

namespace phi::config {
namespace {

void MakeDevDir(const Path& dir) {
  std::filesystem::create_directories(dir / "storage");
  std::filesystem::create_directories(dir / "pki");
  phi::testing::WriteFile(dir / "kek", std::string(32, 'k'), 0400);
  for (const char* f : {"server.pem", "server.key", "ca.pem", "crl.pem"}) {
    phi::testing::WriteFile(dir / "pki" / f, "dummy", 0600);
  }
}

Result<Config> LoadDev(const Path& dir, std::vector<ConfigError>* errs) {
  PosixEnv env;
  return LoadFromString(DevConfigYaml(dir), dir / "phigate.yaml", env, errs);
}

std::string Dump(const std::vector<ConfigError>& errs) {
  std::string out;
  for (const auto& e : errs) out += "  " + e.ToString() + "\n";
  return out;
}

TEST(DevConfigTest, ValidatesCleanlyAgainstADevDir) {
  phi::testing::TempDir tmp;
  Path dir = tmp / "dev";
  MakeDevDir(dir);
  std::vector<ConfigError> errs;
  auto r = LoadDev(dir, &errs);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const Config& c = *r;

  EXPECT_EQ(c.storage.root, dir / "storage");
  EXPECT_FALSE(c.storage.require_encrypted_volume);
  ASSERT_EQ(c.keys.keks.size(), 1u);
  EXPECT_EQ(c.keys.keks[0].id, "dev-kek-1");
  EXPECT_EQ(c.keys.keks[0].file, dir / "kek");
  EXPECT_EQ(c.keys.active, "dev-kek-1");
  EXPECT_EQ(c.tls.certificate, dir / "pki/server.pem");
  EXPECT_EQ(c.tls.private_key, dir / "pki/server.key");
  EXPECT_EQ(c.tls.ca_bundle, dir / "pki/ca.pem");
  ASSERT_EQ(c.tls.crls.size(), 1u);
  EXPECT_EQ(c.tls.crls[0], dir / "pki/crl.pem");
  EXPECT_EQ(c.admin.socket, dir / "admin.sock");

  EXPECT_EQ(c.dicom.ae_title, "PHIGATE");
  struct {
    const Listener& l;
    uint16_t port;
  } listeners[] = {{c.dicom.tls, 2762},
                   {c.dicom.plain, 11112},
                   {c.hl7.tls, 2576},
                   {c.hl7.plain, 2575},
                   {c.web.https, 8443}};
  for (const auto& [l, port] : listeners) {
    EXPECT_TRUE(l.enabled) << port;
    EXPECT_EQ(l.bind, "127.0.0.1") << port;
    EXPECT_EQ(l.port, port);
  }
  ASSERT_EQ(c.dicom.allowed_peers.size(), 1u);
  EXPECT_EQ(c.dicom.allowed_peers[0].ae_title, "*");
  ASSERT_EQ(c.dicom.allowed_peers[0].networks.size(), 1u);
  EXPECT_TRUE(NetworkContains(c.dicom.allowed_peers[0].networks[0], "127.0.0.1"));
  EXPECT_FALSE(NetworkContains(c.dicom.allowed_peers[0].networks[0], "10.0.0.1"));
  ASSERT_EQ(c.hl7.allowed_networks.size(), 1u);
  EXPECT_EQ(c.hl7.allowed_networks[0].text, "127.0.0.0/8");

  ASSERT_EQ(c.web.roles.size(), 4u);
  const std::pair<const char*, Role> roles[] = {{"CN=clinician,O=phigate-dev", Role::kClinician},
                                                {"CN=share,O=phigate-dev", Role::kShare},
                                                {"CN=admin,O=phigate-dev", Role::kAdmin},
                                                {"CN=modality,O=phigate-dev", Role::kModality}};
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(c.web.roles[i].subject, roles[i].first);
    EXPECT_EQ(c.web.roles[i].role, roles[i].second);
  }
}

TEST(DevConfigTest, PathsWithOddCharactersSurviveQuoting) {
  phi::testing::TempDir tmp;
  Path dir = tmp / "dev dir: #1 \"q\" \\ 'x'";
  MakeDevDir(dir);
  std::vector<ConfigError> errs;
  auto r = LoadDev(dir, &errs);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->storage.root, dir / "storage");
  EXPECT_EQ(r->keys.keks[0].file, dir / "kek");
}

TEST(DevConfigTest, TheDevKekIsReallyChecked) {
  phi::testing::TempDir tmp;
  Path dir = tmp / "dev";
  MakeDevDir(dir);
  ASSERT_EQ(::chmod((dir / "kek").c_str(), 0644), 0);
  std::filesystem::remove(dir / "pki/crl.pem");
  std::vector<ConfigError> errs;
  auto r = LoadDev(dir, &errs);
  ASSERT_FALSE(r.ok());
  ASSERT_EQ(errs.size(), 2u) << Dump(errs);
  EXPECT_EQ(errs[0].key, "keys.keks[0].file");
  EXPECT_NE(errs[0].message.find("chmod 0400"), std::string::npos);
  EXPECT_EQ(errs[1].key, "tls.crls[0]");
}

}  // namespace
}  // namespace phi::config
