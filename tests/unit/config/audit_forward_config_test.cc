// audit.forward (live syslog-TLS forwarding) and retention rules by source
// AE: defaults, a full section, and every refusal with file, line and key.
#include <gtest/gtest.h>

#include <algorithm>

#include "libphi/config/config.h"
#include "tests/unit/config/test_util.h"

namespace phi::config {
namespace {

using testutil::Dump;
using testutil::Find;

TEST(AuditForwardConfigTest, DefaultsAreOff) {
  AuditForwardConfig d;
  EXPECT_FALSE(d.enabled);
  EXPECT_EQ(d.port, 6514);
  EXPECT_EQ(d.queue_max, 10000u);
  EXPECT_EQ(d.format, AuditForwardFormat::kAtna);
  EXPECT_EQ(AuditForwardFormatName(AuditForwardFormat::kJsonl), "jsonl");
}

TEST(AuditForwardConfigTest, LoadsAFullSection) {
  testutil::Fixture fx;
  std::string yaml = fx.BaseYaml() + fx.Sub(
                                         "audit:\n"
                                         "  retention_years: 7\n"
                                         "  forward:\n"
                                         "    enabled: true\n"
                                         "    host: siem.example.org\n"
                                         "    port: 10514\n"
                                         "    ca: @D@/pki/ca.pem\n"
                                         "    cert: @D@/pki/server.pem\n"
                                         "    key: @D@/pki/server.key\n"
                                         "    queue_max: 50\n"
                                         "    format: jsonl\n"
                                         "retention:\n"
                                         "  rules:\n"
                                         "    - source_ae: CT_SCANNER_1\n"
                                         "      keep_years: 10\n"
                                         "    - modality: US\n"
                                         "      source_ae: US CART 2\n"
                                         "      keep_years: 0\n");
  std::vector<ConfigError> errs;
  auto c = LoadFromString(yaml, "test.yaml", fx.env(), &errs);
  ASSERT_TRUE(c.ok()) << Dump(errs);
  const AuditForwardConfig& f = c->audit.forward;
  EXPECT_TRUE(f.enabled);
  EXPECT_EQ(f.host, "siem.example.org");
  EXPECT_EQ(f.port, 10514);
  EXPECT_EQ(f.ca, fx.dir() / "pki/ca.pem");
  EXPECT_EQ(f.cert, fx.dir() / "pki/server.pem");
  EXPECT_EQ(f.key, fx.dir() / "pki/server.key");
  EXPECT_EQ(f.queue_max, 50u);
  EXPECT_EQ(f.format, AuditForwardFormat::kJsonl);
  ASSERT_EQ(c->retention.rules.size(), 2u);
  EXPECT_EQ(c->retention.rules[0].source_ae, "CT_SCANNER_1");
  EXPECT_EQ(c->retention.rules[0].modality, "");
  EXPECT_EQ(c->retention.rules[0].keep_years, 10u);
  EXPECT_EQ(c->retention.rules[1].source_ae, "US CART 2");
  EXPECT_EQ(c->retention.rules[1].modality, "US");
}

TEST(AuditForwardConfigTest, RefusalsNameFileLineAndKey) {
  testutil::Fixture fx;
  // Line numbers below count from the first line of this block.
  const std::string base = fx.BaseYaml();
  const int b = static_cast<int>(std::count(base.begin(), base.end(), '\n'));
  std::string yaml = base + fx.Sub(
                                "audit:\n"                                    // b+1
                                "  forward:\n"                                // b+2
                                "    enabled: true\n"                         // b+3
                                "    host: -bad_host!\n"                      // b+4
                                "    port: 0\n"                               // b+5
                                "    ca: relative/ca.pem\n"                   // b+6
                                "    cert: @D@/pki/missing.pem\n"             // b+7
                                "    queue_max: 0\n"                          // b+8
                                "    format: cef\n"                           // b+9
                                "    hots: typo\n"                            // b+10
                                "retention:\n"                                // b+11
                                "  rules:\n"                                  // b+12
                                "    - source_ae: WAY_TOO_LONG_AE_TITLE_X\n"  // b+13
                                "      keep_years: 3\n"                       // b+14
                                "    - keep_years: 3\n");                     // b+15
  auto errs = fx.Errors(yaml);
  struct Want {
    const char* key;
    int line;
    const char* text;
  } wants[] = {
      {"audit.forward.host", b + 4, "host name"},
      {"audit.forward.port", b + 5, "1-65535"},
      {"audit.forward.ca", b + 6, "absolute"},
      {"audit.forward.queue_max", b + 8, "must be"},
      {"audit.forward.format", b + 9, "atna, jsonl"},
      {"audit.forward.hots", b + 10, "did you mean 'host'"},
      {"audit.forward.key", b + 7, "both cert and key"},
      {"retention.rules[0].source_ae", b + 13, "AE title"},
      {"retention.rules[1].modality", b + 15, "modality, source_ae, or both"},
  };
  for (const auto& w : wants) {
    bool found = false;
    for (const auto& e : errs) {
      if (e.key == w.key && e.line == w.line && e.file == "test.yaml" &&
          e.message.find(w.text) != std::string::npos) {
        found = true;
      }
    }
    EXPECT_TRUE(found) << w.key << " line " << w.line << " '" << w.text << "'\n" << Dump(errs);
  }
  // The missing client certificate file is found too (file checks on).
  bool missing = false;
  for (const auto& e : errs) {
    if (e.key == "audit.forward.cert" && e.message.find("not found") != std::string::npos) {
      missing = e.line == b + 7;
    }
  }
  EXPECT_TRUE(missing) << Dump(errs);

  // Enabled without host and ca: both required, pointing at `enabled`.
  errs = fx.Errors(base + "audit:\n  forward:\n    enabled: true\n");
  ASSERT_NE(Find(errs, "audit.forward.host"), nullptr) << Dump(errs);
  EXPECT_EQ(Find(errs, "audit.forward.host")->line, b + 3);
  ASSERT_NE(Find(errs, "audit.forward.ca"), nullptr) << Dump(errs);
  // Disabled: host and ca may stay unset.
  errs = fx.Errors(base + "audit:\n  forward:\n    enabled: false\n    port: 6514\n");
  EXPECT_TRUE(errs.empty()) << Dump(errs);
}

}  // namespace
}  // namespace phi::config
