// A per-test temporary directory under $TMPDIR, removed with its contents on destruction.
#pragma once

#include <filesystem>
#include <string>

namespace phi::testing {

class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// Writes `content` to `path` (creating or truncating it) with the given mode.
void WriteFile(const std::filesystem::path& path, const std::string& content, int mode = 0600);
std::string ReadFile(const std::filesystem::path& path);

}  // namespace phi::testing
