// Helpers for the config tests: a real directory tree with a storage root, a KEK
// file (mode 0400, outside the storage root) and dummy TLS files.
#pragma once

#include <sys/stat.h>

#include <string>
#include <vector>

#include "libphi/config/config.h"
#include "tests/support/temp_dir.h"

namespace phi::config::testutil {

class Fixture {
 public:
  Fixture() {
    std::filesystem::create_directories(dir_ / "storage");
    std::filesystem::create_directories(dir_ / "keys");
    std::filesystem::create_directories(dir_ / "pki");
    std::filesystem::create_directories(dir_ / "run");
    phi::testing::WriteFile(dir_ / "keys/kek", std::string(32, 'k'), 0400);
    for (const char* f : {"server.pem", "server.key", "ca.pem", "crl.pem"}) {
      phi::testing::WriteFile(dir_ / "pki" / f, "dummy", 0600);
    }
  }
  const std::filesystem::path& dir() const { return dir_.path(); }

  // Replaces every "@D@" in `yaml` with the temp dir (line numbers are unchanged).
  std::string Sub(std::string yaml) const {
    const std::string d = dir_.path().string();
    for (size_t p = yaml.find("@D@"); p != std::string::npos; p = yaml.find("@D@", p + d.size())) {
      yaml.replace(p, 3, d);
    }
    return yaml;
  }

  // Everything the checks need, with every listener on defaults.
  std::string BaseYaml() const {
    return Sub(
        "storage:\n"
        "  root: @D@/storage\n"
        "  require_encrypted_volume: false\n"
        "keys:\n"
        "  active: k1\n"
        "  keks:\n"
        "    - id: k1\n"
        "      file: @D@/keys/kek\n"
        "tls:\n"
        "  certificate: @D@/pki/server.pem\n"
        "  private_key: @D@/pki/server.key\n"
        "  ca_bundle: @D@/pki/ca.pem\n"
        "  crls: [@D@/pki/crl.pem]\n"
        "admin:\n"
        "  socket: @D@/run/admin.sock\n");
  }

  std::vector<ConfigError> Errors(const std::string& yaml, LoadOptions opts = {}) {
    std::vector<ConfigError> errs;
    auto r = LoadFromString(yaml, "test.yaml", env_, opts, &errs);
    EXPECT_EQ(r.ok(), errs.empty());
    return errs;
  }

  Env& env() { return env_; }

 private:
  phi::testing::TempDir dir_;
  PosixEnv env_;
};

// Formats errors for failure messages.
inline std::string Dump(const std::vector<ConfigError>& errs) {
  std::string out;
  for (const auto& e : errs) out += "  " + e.ToString() + "\n";
  return out;
}

// The error for `key`, or nullptr.
inline const ConfigError* Find(const std::vector<ConfigError>& errs, const std::string& key) {
  for (const auto& e : errs) {
    if (e.key == key) return &e;
  }
  return nullptr;
}

}  // namespace phi::config::testutil
