// The loader against real files: good configs load, each kind of problem is reported
// with its file, line (1-based) and dotted key, and all problems are reported at once.
#include "libphi/config/config.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/support/temp_dir.h"
#include "tests/unit/config/test_util.h"

namespace phi::config {
namespace {

using testutil::Dump;
using testutil::Find;

class ConfigTest : public ::testing::Test {
 protected:
  testutil::Fixture fx_;
  // BaseYaml() is 15 lines, so an appended snippet starts at line 16.
  std::string Base() { return fx_.BaseYaml(); }

  // Asserts one error for `key` at `line` whose message contains `text`.
  void ExpectError(const std::vector<ConfigError>& errs, const std::string& key, int line,
                   const std::string& text) {
    const ConfigError* e = Find(errs, key);
    ASSERT_NE(e, nullptr) << "no error for " << key << "; got:\n" << Dump(errs);
    EXPECT_EQ(e->line, line) << e->ToString();
    EXPECT_EQ(e->file, Path("test.yaml"));
    EXPECT_NE(e->message.find(text), std::string::npos) << e->ToString();
  }
};

TEST_F(ConfigTest, GoodFileLoadsFromDisk) {
  std::string yaml = Base() +
                     "dicom:\n"
                     "  ae_title: GATE1\n"
                     "  plain: {enabled: true, bind: 127.0.0.1, port: 4242}\n"
                     "  max_pdu_bytes: 65536\n"
                     "  allowed_peers:\n"
                     "    - ae_title: CT1\n"
                     "      networks: [10.20.0.0/24, 'fd00::/8']\n"
                     "      max_associations: 2\n"
                     "hl7:\n"
                     "  allowed_networks: [10.30.0.5]\n"
                     "  max_message_bytes: 1024\n"
                     "web:\n"
                     "  roles:\n"
                     "    - subject: CN=viewer1,O=Hospital\n"
                     "      role: clinician\n"
                     "    - organization: Hospital\n"
                     "      org_unit: Teaching\n"
                     "      role: share\n"
                     "logging: {level: debug, sink: journal}\n";
  Path file = fx_.dir() / "phigate.yaml";
  phi::testing::WriteFile(file, yaml);

  std::vector<ConfigError> errs;
  auto r = Load(file, fx_.env(), &errs);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(errs.empty());
  const Config& c = *r;
  EXPECT_EQ(c.source, file);
  EXPECT_EQ(c.storage.root, fx_.dir() / "storage");
  EXPECT_FALSE(c.storage.require_encrypted_volume);
  ASSERT_EQ(c.keys.keks.size(), 1u);
  EXPECT_EQ(c.keys.keks[0].id, "k1");
  EXPECT_TRUE(c.keys.keks[0].credential.empty());
  EXPECT_EQ(c.keys.keks[0].file, fx_.dir() / "keys/kek");
  EXPECT_EQ(c.keys.keks[0].line, 7);
  EXPECT_EQ(c.keys.active, "k1");
  ASSERT_EQ(c.tls.crls.size(), 1u);
  EXPECT_EQ(c.tls.crls[0], fx_.dir() / "pki/crl.pem");
  EXPECT_EQ(c.dicom.ae_title, "GATE1");
  EXPECT_TRUE(c.dicom.plain.enabled);
  EXPECT_EQ(c.dicom.plain.bind, "127.0.0.1");
  EXPECT_EQ(c.dicom.plain.port, 4242);
  EXPECT_EQ(c.dicom.tls, DicomConfig{}.tls);  // an absent listener keeps its defaults
  EXPECT_EQ(c.hl7.tls, Hl7Config{}.tls);
  EXPECT_EQ(c.dicom.max_pdu_bytes, 65536u);
  ASSERT_EQ(c.dicom.allowed_peers.size(), 1u);
  EXPECT_EQ(c.dicom.allowed_peers[0].ae_title, "CT1");
  ASSERT_EQ(c.dicom.allowed_peers[0].networks.size(), 2u);
  EXPECT_EQ(c.dicom.allowed_peers[0].networks[0].prefix_len, 24);
  EXPECT_FALSE(c.dicom.allowed_peers[0].networks[0].v6);
  EXPECT_TRUE(c.dicom.allowed_peers[0].networks[1].v6);
  EXPECT_EQ(c.dicom.allowed_peers[0].max_associations, 2u);
  ASSERT_EQ(c.hl7.allowed_networks.size(), 1u);
  EXPECT_EQ(c.hl7.allowed_networks[0].prefix_len, 32);
  EXPECT_EQ(c.hl7.max_message_bytes, 1024u);
  ASSERT_EQ(c.web.roles.size(), 2u);
  EXPECT_EQ(c.web.roles[0].subject, "CN=viewer1,O=Hospital");
  EXPECT_EQ(c.web.roles[0].role, Role::kClinician);
  EXPECT_EQ(c.web.roles[1].organization, "Hospital");
  EXPECT_EQ(c.web.roles[1].org_unit, "Teaching");
  EXPECT_EQ(c.web.roles[1].role, Role::kShare);
  EXPECT_EQ(c.logging.level, log::Level::kDebug);
  EXPECT_EQ(c.logging.sink, log::Sink::kJournal);
  EXPECT_EQ(c.audit, AuditConfig{});
}

TEST_F(ConfigTest, EmptyFileTakesEveryDefault) {
  std::vector<ConfigError> errs;
  auto r = LoadFromString("", "test.yaml", fx_.env(), LoadOptions{.check_files = false}, &errs);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  Config expected;
  expected.source = "test.yaml";
  EXPECT_EQ(*r, expected);
  EXPECT_EQ(r->keys.keks.at(0).credential, "phigate.kek");
}

TEST_F(ConfigTest, MissingFileIsAnError) {
  std::vector<ConfigError> errs;
  auto r = Load(fx_.dir() / "nope.yaml", fx_.env(), &errs);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_EQ(errs[0].file, fx_.dir() / "nope.yaml");
  EXPECT_EQ(errs[0].line, 0);
  EXPECT_NE(errs[0].message.find("cannot read"), std::string::npos);
}

TEST_F(ConfigTest, ErrorToString) {
  EXPECT_EQ((ConfigError{"a.yaml", 3, "dicom.plain.port", "must be 1-65535"}.ToString()),
            "a.yaml:3: dicom.plain.port: must be 1-65535");
  EXPECT_EQ((ConfigError{"a.yaml", 0, "keys.keks", "x"}.ToString()), "a.yaml: keys.keks: x");
  EXPECT_EQ((ConfigError{"a.yaml", 2, "", "x"}.ToString()), "a.yaml:2: x");
}

TEST_F(ConfigTest, WrongTypes) {
  auto errs = fx_.Errors(Base() +
                         "dicom:\n"                   // 16
                         "  ae_title: [a, b]\n"       // 17
                         "  tls:\n"                   // 18
                         "    enabled: maybe\n"       // 19
                         "    port: abc\n"            // 20
                         "  max_associations: 1.5\n"  // 21
                         "  allowed_peers: 5\n"       // 22
                         "hl7: 3\n"                   // 23
                         "logging:\n"                 // 24
                         "  level: {a: 1}\n");        // 25
  ExpectError(errs, "dicom.ae_title", 17, "expected a string");
  ExpectError(errs, "dicom.tls.enabled", 19, "expected true/false");
  ExpectError(errs, "dicom.tls.port", 20, "expected an integer");
  ExpectError(errs, "dicom.max_associations", 21, "expected an integer");
  ExpectError(errs, "dicom.allowed_peers", 22, "expected a list");
  ExpectError(errs, "hl7", 23, "expected a mapping");
  ExpectError(errs, "logging.level", 25, "expected a string");
  EXPECT_EQ(errs.size(), 7u) << Dump(errs);
}

TEST_F(ConfigTest, BadPorts) {
  auto errs = fx_.Errors(Base() +
                         "dicom:\n"                                      // 16
                         "  tls: {port: 0}\n"                            // 17
                         "  plain: {port: 70000}\n"                      // 18
                         "hl7:\n"                                        // 19
                         "  tls:\n"                                      // 20
                         "    port: -1\n"                                // 21
                         "web:\n"                                        // 22
                         "  https: {port: 99999999999999999999999}\n");  // 23
  ExpectError(errs, "dicom.tls.port", 17, "must be 1-65535");
  ExpectError(errs, "dicom.plain.port", 18, "must be 1-65535");
  ExpectError(errs, "hl7.tls.port", 21, "must be 1-65535");
  ExpectError(errs, "web.https.port", 23, "must be 1-65535");
  EXPECT_EQ(errs.size(), 4u) << Dump(errs);
}

TEST_F(ConfigTest, DuplicatePortsAmongEnabledListeners) {
  auto errs = fx_.Errors(Base() +
                         "dicom:\n"                                                      // 16
                         "  plain:\n"                                                    // 17
                         "    enabled: true\n"                                           // 18
                         "    port: 2576\n"                                              // 19
                         "  allowed_peers: [{ae_title: CT1, networks: [10.0.0.0/8]}]\n"  // 20
                         "web:\n"                                                        // 21
                         "  https: {bind: 127.0.0.1, port: 2762}\n"                      // 22
                         "hl7:\n"                                                        // 23
                         "  plain: {enabled: false, port: 8443}\n");                     // 24
  // dicom.plain takes hl7.tls's default port 2576 (hl7.tls has no line: the
  // error goes where the port was written).
  ExpectError(errs, "dicom.plain.port", 19, "hl7.tls");
  // 127.0.0.1:2762 overlaps dicom.tls on 0.0.0.0:2762.
  ExpectError(errs, "web.https.port", 22, "dicom.tls");
  // A disabled listener (hl7.plain) conflicts with nothing.
  EXPECT_EQ(errs.size(), 2u) << Dump(errs);
}

TEST_F(ConfigTest, DifferentAddressesMayShareAPort) {
  auto errs = fx_.Errors(Base() +
                         "dicom:\n"
                         "  tls: {bind: 127.0.0.1, port: 5000}\n"
                         "hl7:\n"
                         "  tls: {bind: 127.0.0.2, port: 5000}\n");
  EXPECT_TRUE(errs.empty()) << Dump(errs);
}

TEST_F(ConfigTest, InvalidEnums) {
  auto errs =
      fx_.Errors(fx_.Sub("storage:\n"                                // 1
                         "  root: @D@/storage\n"                     // 2
                         "  require_encrypted_volume: false\n"       // 3
                         "  duplicate_policy: keep-last\n"           // 4
                         "keys:\n"                                   // 5
                         "  keks: [{id: k1, file: @D@/keys/kek}]\n"  // 6
                         "  active: k1\n"                            // 7
                         "tls:\n"                                    // 8
                         "  certificate: @D@/pki/server.pem\n"       // 9
                         "  private_key: @D@/pki/server.key\n"       // 10
                         "  ca_bundle: @D@/pki/ca.pem\n"             // 11
                         "  profile: bcp196\n"                       // 12
                         "logging:\n"                                // 13
                         "  level: verbose\n"                        // 14
                         "  sink: syslog\n"                          // 15
                         "web:\n"                                    // 16
                         "  roles:\n"                                // 17
                         "    - subject: CN=a,O=b\n"                 // 18
                         "      role: doctor\n"                      // 19
                         "admin: {socket: @D@/run/admin.sock}\n"));  // 20
  ExpectError(errs, "storage.duplicate_policy", 4, "expected one of keep-first, replace");
  ExpectError(errs, "tls.profile", 12, "did you mean 'bcp195'?");
  ExpectError(errs, "logging.level", 14, "invalid value 'verbose'");
  ExpectError(errs, "logging.sink", 15, "expected one of auto, stderr, journal");
  ExpectError(errs, "web.roles[0].role", 19, "clinician, share, admin, modality");
  EXPECT_EQ(errs.size(), 5u) << Dump(errs);
}

TEST_F(ConfigTest, InvalidNetworks) {
  auto errs = fx_.Errors(Base() +
                         "dicom:\n"                                             // 16
                         "  allowed_peers:\n"                                   // 17
                         "    - ae_title: CT1\n"                                // 18
                         "      networks:\n"                                    // 19
                         "        - 10.0.0.0/33\n"                              // 20
                         "        - banana\n"                                   // 21
                         "        - 10.1.2.3/8\n"                               // 22
                         "        - \"fe80::/129\"\n"                           // 23
                         "hl7:\n"                                               // 24
                         "  allowed_networks: [192.168.1.0/24, 300.1.1.1]\n");  // 25
  ExpectError(errs, "dicom.allowed_peers[0].networks[0]", 20, "prefix length must be 0-32");
  ExpectError(errs, "dicom.allowed_peers[0].networks[1]", 21, "invalid network");
  ExpectError(errs, "dicom.allowed_peers[0].networks[2]", 22, "did you mean 10.0.0.0/8?");
  ExpectError(errs, "dicom.allowed_peers[0].networks[3]", 23, "prefix length must be 0-128");
  ExpectError(errs, "hl7.allowed_networks[1]", 25, "invalid network");
  EXPECT_EQ(errs.size(), 5u) << Dump(errs);
}

TEST_F(ConfigTest, BadBindAeTitleAndLimits) {
  auto errs = fx_.Errors(Base() +
                         "dicom:\n"                                   // 16
                         "  ae_title: THIS_AE_TITLE_IS_TOO_LONG\n"    // 17
                         "  tls: {bind: localhost}\n"                 // 18
                         "  max_pdu_bytes: 1024\n"                    // 19
                         "  max_associations: 4\n"                    // 20
                         "  max_associations_per_ae: 5\n"             // 21
                         "hl7:\n"                                     // 22
                         "  max_message_bytes: 2147483648\n"          // 23
                         "web:\n"                                     // 24
                         "  https: {require_client_cert: false}\n");  // 25
  ExpectError(errs, "dicom.ae_title", 17, "1-16");
  ExpectError(errs, "dicom.tls.bind", 18, "IPv4 or IPv6 address");
  ExpectError(errs, "dicom.max_pdu_bytes", 19, "must be 4096-16777216");
  ExpectError(errs, "dicom.max_associations_per_ae", 21, "must not exceed");
  ExpectError(errs, "hl7.max_message_bytes", 23, "must be 1024-1073741824");
  ExpectError(errs, "web.https.require_client_cert", 25, "must be true");
  EXPECT_EQ(errs.size(), 6u) << Dump(errs);
}

TEST_F(ConfigTest, PlainListenersNeedAllowLists) {
  auto errs = fx_.Errors(Base() +
                         "dicom:\n"                                            // 16
                         "  plain: {enabled: true}\n"                          // 17
                         "  allowed_peers: [{ae_title: RIS, networks: []}]\n"  // 18
                         "hl7:\n"                                              // 19
                         "  plain:\n"                                          // 20
                         "    enabled: true\n");                               // 21
  ExpectError(errs, "dicom.plain.enabled", 17, "none has any");
  ExpectError(errs, "hl7.plain.enabled", 21, "allowed_networks");
  EXPECT_EQ(errs.size(), 2u) << Dump(errs);
}

TEST_F(ConfigTest, TlsFilesMissingOrNotRegular) {
  std::string yaml = Base();
  yaml.replace(yaml.find("pki/server.pem"), 14, "pki/missing.pem");
  yaml.replace(yaml.find("pki/crl.pem"), 11, "pki");
  auto errs = fx_.Errors(yaml);
  ExpectError(errs, "tls.certificate", 10, "file not found");
  ExpectError(errs, "tls.crls[0]", 13, "not a regular file");
  EXPECT_EQ(errs.size(), 2u) << Dump(errs);

  // Not checked without a TLS listener, nor when file checks are off.
  std::string no_tls = yaml +
                       "dicom: {tls: {enabled: false}}\n"
                       "hl7: {tls: {enabled: false}}\n"
                       "web: {https: {enabled: false}}\n";
  EXPECT_TRUE(fx_.Errors(no_tls).empty()) << Dump(fx_.Errors(no_tls));
  EXPECT_TRUE(fx_.Errors(yaml, LoadOptions{.check_files = false}).empty());
}

TEST_F(ConfigTest, DefaultTlsPathsAreCheckedToo) {
  // Without a tls section the defaults (/etc/phigate/tls/...) apply and are checked.
  auto errs =
      fx_.Errors(fx_.Sub("storage: {root: @D@/storage, require_encrypted_volume: false}\n"
                         "keys: {active: k1, keks: [{id: k1, file: @D@/keys/kek}]}\n"
                         "admin: {socket: @D@/run/admin.sock}\n"));
  if (::access("/etc/phigate/tls/server.pem", F_OK) == 0) GTEST_SKIP() << "host has phigate TLS";
  const ConfigError* e = Find(errs, "tls.certificate");
  ASSERT_NE(e, nullptr) << Dump(errs);
  EXPECT_EQ(e->line, 0);
  EXPECT_NE(e->message.find("/etc/phigate/tls/server.pem"), std::string::npos);
}

TEST_F(ConfigTest, UnreadableTlsFile) {
  if (::geteuid() == 0) GTEST_SKIP() << "root reads any file";
  ASSERT_EQ(::chmod((fx_.dir() / "pki/ca.pem").c_str(), 0), 0);
  auto errs = fx_.Errors(Base());
  ExpectError(errs, "tls.ca_bundle", 12, "not readable");
  EXPECT_EQ(errs.size(), 1u) << Dump(errs);
}

TEST_F(ConfigTest, DicomPeersAndRoles) {
  auto errs = fx_.Errors(Base() +
                         "dicom:\n"                                    // 16
                         "  max_associations: 4\n"                     // 17
                         "  allowed_peers:\n"                          // 18
                         "    - networks: [10.0.0.0/8]\n"              // 19
                         "    - ae_title: 'CT\\\\1'\n"                 // 20
                         "      certificate_subject: just-a-name\n"    // 21
                         "      max_associations: 5\n"                 // 22
                         "    - ae_title: '*'\n"                       // 23
                         "      certificate_subject: CN=ct,O=H\n"      // 24
                         "web:\n"                                      // 25
                         "  roles:\n"                                  // 26
                         "    - role: admin\n"                         // 27
                         "    - subject: CN=x,O=y\n"                   // 28
                         "      organization: y\n"                     // 29
                         "      role: admin\n"                         // 30
                         "    - subject: CN=x,O=y\n"                   // 31
                         "    - {org_unit: Radiology, role: share}\n"  // 32
                         "    - {subject: nobody, role: share}\n");    // 33
  ExpectError(errs, "dicom.allowed_peers[0].ae_title", 19, "required");
  ExpectError(errs, "dicom.allowed_peers[1].ae_title", 20, "no backslash");
  ExpectError(errs, "dicom.allowed_peers[1].certificate_subject", 21, "RFC 2253");
  ExpectError(errs, "dicom.allowed_peers[1].max_associations", 22, "must not exceed");
  ExpectError(errs, "web.roles[0]", 27, "needs a subject or an organization/org_unit");
  ExpectError(errs, "web.roles[1]", 28, "not both");
  ExpectError(errs, "web.roles[2].role", 31, "required");
  ExpectError(errs, "web.roles[4].subject", 33, "RFC 2253");
  // max_associations_per_ae keeps its default (8), now above the total.
  ExpectError(errs, "dicom.max_associations", 17, "at least dicom.max_associations_per_ae (8)");
  EXPECT_EQ(errs.size(), 9u) << Dump(errs);
}

TEST_F(ConfigTest, KeysStructure) {
  auto errs = fx_.Errors(fx_.Sub("storage: {root: @D@/storage, require_encrypted_volume: false}\n"
                                 "keys:\n"                              // 2
                                 "  active: k9\n"                       // 3
                                 "  keks:\n"                            // 4
                                 "    - id: k1\n"                       // 5
                                 "      credential: phigate.kek\n"      // 6
                                 "    - id: k1\n"                       // 7
                                 "      credential: other.kek\n"        // 8
                                 "    - id: k2\n"                       // 9
                                 "      credential: a.kek\n"            // 10
                                 "      file: @D@/keys/kek\n"           // 11
                                 "    - id: k3\n"                       // 12
                                 "    - id: \"\"\n"                     // 13
                                 "      credential: x.kek\n"            // 14
                                 "    - id: k5\n"                       // 15
                                 "      credential: ../etc/passwd\n"),  // 16
                         LoadOptions{.check_files = false});
  ExpectError(errs, "keys.active", 3, "names no configured KEK 'k9'");
  ExpectError(errs, "keys.keks[1].id", 7, "duplicate KEK id 'k1' (first at line 5)");
  ExpectError(errs, "keys.keks[2]", 9, "exactly one of credential or file");
  ExpectError(errs, "keys.keks[3]", 12, "needs a credential");
  ExpectError(errs, "keys.keks[4].id", 13, "required");
  ExpectError(errs, "keys.keks[5].credential", 16, "plain credential file name");
  EXPECT_EQ(errs.size(), 6u) << Dump(errs);
}

TEST_F(ConfigTest, AtLeastOneKek) {
  auto errs = fx_.Errors(
      "keys:\n"
      "  active: k1\n"
      "  keks: []\n",
      LoadOptions{.check_files = false});
  ExpectError(errs, "keys.keks", 3, "at least one KEK");
  EXPECT_EQ(errs.size(), 1u) << Dump(errs);
}

TEST_F(ConfigTest, KekFileWithMode0644IsRefused) {
  ASSERT_EQ(::chmod((fx_.dir() / "keys/kek").c_str(), 0644), 0);
  auto errs = fx_.Errors(Base());
  ExpectError(errs, "keys.keks[0].file", 8, "mode 0644");
  ExpectError(errs, "keys.keks[0].file", 8, "chmod 0400");
  EXPECT_EQ(errs.size(), 1u) << Dump(errs);

  ASSERT_EQ(::chmod((fx_.dir() / "keys/kek").c_str(), 0440), 0);  // group-readable: refused too
  EXPECT_EQ(fx_.Errors(Base()).size(), 1u);
  ASSERT_EQ(::chmod((fx_.dir() / "keys/kek").c_str(), 0600), 0);  // owner only: fine
  EXPECT_TRUE(fx_.Errors(Base()).empty()) << Dump(fx_.Errors(Base()));
}

TEST_F(ConfigTest, KekFileMissing) {
  std::filesystem::remove(fx_.dir() / "keys/kek");
  auto errs = fx_.Errors(Base());
  ExpectError(errs, "keys.keks[0].file", 8, "file not found");
  EXPECT_EQ(errs.size(), 1u) << Dump(errs);
}

TEST_F(ConfigTest, KekUnderStorageRootIsRefused) {
  phi::testing::WriteFile(fx_.dir() / "storage/kek", std::string(32, 'k'), 0400);
  std::string yaml = Base();
  yaml.replace(yaml.find("keys/kek"), 8, "storage/./kek");
  auto errs = fx_.Errors(yaml);
  ExpectError(errs, "keys.keks[0].file", 8, "under storage.root");
  EXPECT_EQ(errs.size(), 1u) << Dump(errs);
}

TEST_F(ConfigTest, KekOnTheStorageFilesystemIsRefusedWhenEncryptionIsRequired) {
  // The temp dir is one filesystem: with require_encrypted_volume (production) the KEK
  // shares storage.root's st_dev, which is refused.
  std::string yaml = Base();
  yaml.replace(yaml.find("require_encrypted_volume: false"), 31, "require_encrypted_volume: true");
  auto errs = fx_.Errors(yaml);
  ExpectError(errs, "keys.keks[0].file", 8, "same filesystem as storage.root");
  EXPECT_EQ(errs.size(), 1u) << Dump(errs);
}

TEST_F(ConfigTest, StorageRootAndAdminSocketDirectoryMustExist) {
  std::string yaml = Base();
  yaml.replace(yaml.find("/storage"), 8, "/nostorage");
  yaml.replace(yaml.find("/run/admin.sock"), 15, "/norun/admin.sock");
  auto errs = fx_.Errors(yaml);
  ExpectError(errs, "storage.root", 2, "directory not found");
  ExpectError(errs, "admin.socket", 15, "directory not found");
  EXPECT_EQ(errs.size(), 2u) << Dump(errs);

  std::string file_root = Base();
  file_root.replace(file_root.find("/storage"), 8, "/pki/ca.pem");
  errs = fx_.Errors(file_root);
  ExpectError(errs, "storage.root", 2, "not a directory");
}

TEST_F(ConfigTest, RelativePathsAreRefused) {
  auto errs = fx_.Errors("storage: {root: var/lib/phigate}\n", LoadOptions{.check_files = false});
  ExpectError(errs, "storage.root", 1, "absolute path");
}

TEST_F(ConfigTest, UnknownKeysWithHints) {
  auto errs = fx_.Errors(Base() +
                         "dicom:\n"                                  // 16
                         "  tls:\n"                                  // 17
                         "    prot: 2762\n"                          // 18
                         "  zzzzzz_qqq: 1\n"                         // 19
                         "hl7m: {}\n"                                // 20
                         "hl7:\n"                                    // 21
                         "  plain: {require_client_cert: true}\n");  // 22
  ExpectError(errs, "dicom.tls.prot", 18, "unknown key (did you mean 'port'?)");
  ExpectError(errs, "dicom.zzzzzz_qqq", 19, "unknown key");
  EXPECT_EQ(Find(errs, "dicom.zzzzzz_qqq")->message, "unknown key");  // nothing close
  ExpectError(errs, "hl7m", 20, "did you mean 'hl7'?");
  ExpectError(errs, "hl7.plain.require_client_cert", 22, "unknown key");
  EXPECT_EQ(errs.size(), 4u) << Dump(errs);
}

TEST_F(ConfigTest, DuplicateKeys) {
  auto errs = fx_.Errors(Base() +
                         "dicom:\n"           // 16
                         "  ae_title: A\n"    // 17
                         "  ae_title: B\n");  // 18
  ExpectError(errs, "dicom.ae_title", 18, "duplicate key (first at line 17)");
  EXPECT_EQ(errs.size(), 1u) << Dump(errs);
}

TEST_F(ConfigTest, AllErrorsAreReportedAtOnceInLineOrder) {
  std::string yaml = Base() +
                     "dicom:\n"                             // 16
                     "  tls: {port: 0}\n"                   // 17
                     "  max_pdu_bytes: lots\n"              // 18
                     "logging: {level: loud}\n"             // 19
                     "audit: {retention_years: 0}\n"        // 20
                     "bogus: 1\n";                          // 21
  yaml.replace(yaml.find("active: k1"), 10, "active: k2");  // line 5
  std::vector<ConfigError> errs;
  auto r = LoadFromString(yaml, "test.yaml", fx_.env(), &errs);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  ASSERT_EQ(errs.size(), 6u) << Dump(errs);
  const int lines[] = {5, 17, 18, 19, 20, 21};
  const char* keys[] = {"keys.active",   "dicom.tls.port",        "dicom.max_pdu_bytes",
                        "logging.level", "audit.retention_years", "bogus"};
  std::string expected_msg;
  for (size_t i = 0; i < errs.size(); ++i) {
    EXPECT_EQ(errs[i].line, lines[i]) << errs[i].ToString();
    EXPECT_EQ(errs[i].key, keys[i]) << errs[i].ToString();
    expected_msg += (i ? "\n" : "") + errs[i].ToString();
  }
  EXPECT_EQ(r.status().message(), expected_msg);
}

TEST_F(ConfigTest, IntegrityScrubIsReadAndBounded) {
  std::vector<ConfigError> errs;
  auto r = LoadFromString(Base() +
                              "integrity:\n"                   // 16
                              "  scrub:\n"                     // 17
                              "    enabled: false\n"           // 18
                              "    rate_mb_per_s: 5\n"         // 19
                              "    interval_hours: 24\n"       // 20
                              "    start_delay_seconds: 0\n",  // 21
                          "test.yaml", fx_.env(), &errs);
  ASSERT_TRUE(r.ok()) << Dump(errs);
  EXPECT_FALSE(r->integrity.scrub.enabled);
  EXPECT_EQ(r->integrity.scrub.rate_mb_per_s, 5u);
  EXPECT_EQ(r->integrity.scrub.interval_hours, 24u);
  EXPECT_EQ(r->integrity.scrub.start_delay_seconds, 0u);

  errs = fx_.Errors(Base() +
                    "integrity:\n"                // 16
                    "  scrub:\n"                  // 17
                    "    rate_mb_per_s: 0\n"      // 18
                    "    interval_hours: 9999\n"  // 19
                    "    speed: 3\n");            // 20
  ExpectError(errs, "integrity.scrub.rate_mb_per_s", 18, "");
  ExpectError(errs, "integrity.scrub.interval_hours", 19, "");
  ExpectError(errs, "integrity.scrub.speed", 20, "unknown key");
  EXPECT_EQ(errs.size(), 3u) << Dump(errs);
}

TEST_F(ConfigTest, YamlSyntaxErrorHasALine) {
  std::vector<ConfigError> errs;
  auto r = LoadFromString("storage:\n  root: /x\n  bad: [unclosed\nkeys: {}\n", "test.yaml",
                          fx_.env(), &errs);
  ASSERT_FALSE(r.ok());
  ASSERT_EQ(errs.size(), 1u) << Dump(errs);
  EXPECT_NE(errs[0].message.find("YAML syntax error"), std::string::npos);
  // yaml-cpp notices the unclosed '[' where the next token cannot continue it.
  EXPECT_EQ(errs[0].line, 4);
}

TEST_F(ConfigTest, HostileInputNeverThrows) {
  const std::string inputs[] = {"[[[[",
                                "{a: b",
                                "\t\t:",
                                "- 1\n- 2\n",
                                "just a scalar",
                                "a: *nope",
                                "? [a]\n: b\n",
                                "%YAML 9.9\n---\n",
                                "---\na: 1\n---\nb: 2\n",
                                std::string("storage:\n  root: \"/x\\0y\"\n"),
                                std::string("a\0b", 3),
                                std::string(100000, '['),
                                "dicom: {allowed_peers: [[1], ~, {ae_title: ~}]}\n",
                                "web: {roles: [{}, {role: admin}, {subject: x, role: admin}]}\n"};
  for (const auto& in : inputs) {
    std::vector<ConfigError> errs;
    Result<Config> r = Status::Internal("unset");
    EXPECT_NO_THROW(
        r = LoadFromString(in, "test.yaml", fx_.env(), LoadOptions{.check_files = false}, &errs));
    EXPECT_FALSE(r.ok()) << in.substr(0, 40);
    EXPECT_FALSE(errs.empty());
  }
}

}  // namespace
}  // namespace phi::config
