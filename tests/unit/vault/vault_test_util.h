// Helpers for the vault tests: a key directory on a different filesystem from
// the storage root (KEKs must not sit on the data volume), and KeysConfig builders.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <array>
#include <filesystem>
#include <string>
#include <vector>

#include "libphi/config/config.h"
#include "libphi/crypto/crypto.h"
#include "tests/support/temp_dir.h"

namespace phi::vault::testing {

// A temporary directory under /dev/shm (tmpfs), removed on destruction.
// ok() is false when /dev/shm is missing or on the same filesystem as $TMPDIR.
class OtherFsDir {
 public:
  OtherFsDir() {
    std::string tmpl = "/dev/shm/phivault.XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) return;
    path_ = tmpl;
  }
  ~OtherFsDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  OtherFsDir(const OtherFsDir&) = delete;
  OtherFsDir& operator=(const OtherFsDir&) = delete;

  bool DiffersFrom(const std::filesystem::path& other) const {
    struct stat a, b;
    return !path_.empty() && ::stat(path_.c_str(), &a) == 0 && ::stat(other.c_str(), &b) == 0 &&
           a.st_dev != b.st_dev;
  }
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& n) const { return path_ / n; }

 private:
  std::filesystem::path path_;
};

inline std::string RandomKeyBytes() {
  std::array<std::byte, 32> k{};
  EXPECT_TRUE(crypto::RandomBytes(k).ok());
  return std::string(reinterpret_cast<const char*>(k.data()), k.size());
}

inline config::KekConfig FileKek(const std::string& id, const std::filesystem::path& file) {
  config::KekConfig k;
  k.id = id;
  k.file = file;
  return k;
}

inline config::KekConfig CredentialKek(const std::string& id, const std::string& name) {
  config::KekConfig k;
  k.id = id;
  k.credential = name;
  return k;
}

inline config::KeysConfig Keys(std::vector<config::KekConfig> keks, const std::string& active) {
  config::KeysConfig c;
  c.keks = std::move(keks);
  c.active = active;
  return c;
}

}  // namespace phi::vault::testing
