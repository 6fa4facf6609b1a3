// Helpers shared by the tls, web and hl7 tests: the dev PKI (scripts/dev-pki.sh,
// run once per test binary into a temp dir) and running real command-line tools.
#pragma once

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "libphi/config/config.h"
#include "tests/support/temp_dir.h"

namespace phi::nettest {

// Directory holding the dev PKI; created on first use, removed at exit.
inline const std::filesystem::path& DevPki() {
  static phi::testing::TempDir* dir = [] {
    auto* d = new phi::testing::TempDir();
    std::string cmd = std::string(PHI_SOURCE_DIR "/scripts/dev-pki.sh ") +
                      (d->path() / "pki").string() + " >/dev/null";
    if (std::system(cmd.c_str()) != 0) std::abort();
    std::atexit([] { delete dir; });
    return d;
  }();
  static const std::filesystem::path p = dir->path() / "pki";
  return p;
}

inline std::string Pki(const std::string& name) { return (DevPki() / name).string(); }

inline config::TlsConfig DevTlsConfig(bool with_crl = true) {
  config::TlsConfig c;
  c.certificate = DevPki() / "server.pem";
  c.private_key = DevPki() / "server.key";
  c.ca_bundle = DevPki() / "ca.pem";
  if (with_crl) c.crls.push_back(DevPki() / "crl.pem");
  return c;
}

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout (add 2>&1 to the command for stderr)
};

// Runs `cmd` through /bin/sh and captures stdout.
inline CommandResult Run(const std::string& cmd) {
  CommandResult r;
  FILE* f = ::popen(cmd.c_str(), "r");
  if (f == nullptr) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) r.output.append(buf.data(), n);
  int st = ::pclose(f);
  r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

}  // namespace phi::nettest
