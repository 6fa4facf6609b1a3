// conf/phigate.yaml documents every default: it must load, and every value it sets
// must equal the member initialisers in config.h, so the two cannot drift.
#include <gtest/gtest.h>

#include "libphi/config/config.h"

namespace phi::config {
namespace {

TEST(ShippedConfigTest, EqualsTheCompiledDefaults) {
  PosixEnv env;
  std::vector<ConfigError> errs;
  // The production paths (/var/lib/phigate, /etc/phigate/tls) need not exist here.
  auto r = Load(PHI_SHIPPED_CONFIG, env, LoadOptions{.check_files = false}, &errs);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  Config c = *r;
  Config defaults;
  defaults.source = PHI_SHIPPED_CONFIG;
  ASSERT_EQ(c.keys.keks.size(), 1u);
  EXPECT_GT(c.keys.keks[0].line, 0);
  c.keys.keks[0].line = 0;  // where it was written, not a value

  // Section by section first, for readable failures, then everything.
  EXPECT_EQ(c.storage, defaults.storage);
  EXPECT_EQ(c.keys, defaults.keys);
  EXPECT_EQ(c.tls, defaults.tls);
  EXPECT_EQ(c.dicom, defaults.dicom);
  EXPECT_EQ(c.hl7, defaults.hl7);
  EXPECT_EQ(c.web, defaults.web);
  EXPECT_EQ(c.admin, defaults.admin);
  EXPECT_EQ(c.logging, defaults.logging);
  EXPECT_EQ(c.lifecycle, defaults.lifecycle);
  EXPECT_EQ(c.audit, defaults.audit);
  EXPECT_EQ(c.retention, defaults.retention);
  EXPECT_EQ(c.integrity, defaults.integrity);
  EXPECT_EQ(c, defaults);
}

TEST(ShippedConfigTest, OnlyFileChecksFailAwayFromProduction) {
  // With file checks on, whatever fails must be about files and directories that are
  // absent on this machine, never about the text itself.
  PosixEnv env;
  std::vector<ConfigError> errs;
  auto r = Load(PHI_SHIPPED_CONFIG, env, &errs);
  for (const auto& e : errs) {
    bool about_files = e.message.find("not found") != std::string::npos ||
                       e.message.find("not readable") != std::string::npos;
    EXPECT_TRUE(about_files) << e.ToString();
  }
  EXPECT_EQ(r.ok(), errs.empty());
}

}  // namespace
}  // namespace phi::config
