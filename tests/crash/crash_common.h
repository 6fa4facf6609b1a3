// Shared by the crash child and the crash test: deterministic object content
// from a SOP Instance UID, and the storage stack configuration.
#pragma once

#include <cstdint>
#include <string>

#include "libphi/config/config.h"

namespace phi::crashtest {

inline std::string Content(const std::string& sop_uid, size_t size) {
  std::string s = "DICM" + sop_uid + "|";
  uint64_t x = 1469598103934665603ull;
  for (char c : sop_uid) x = (x ^ static_cast<uint8_t>(c)) * 1099511628211ull;
  while (s.size() < size) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    s.push_back(static_cast<char>(x));
  }
  s.resize(size);
  return s;
}

inline size_t SizeFor(uint64_t n) { return 64 + (n * 2654435761u) % (96 * 1024); }

inline config::KeysConfig Keys(const std::string& kek_path) {
  config::KeysConfig k;
  k.active = "crash-kek";
  config::KekConfig kek;
  kek.id = "crash-kek";
  kek.file = kek_path;
  k.keks = {kek};
  return k;
}

inline config::StorageConfig Storage(const std::string& root) {
  config::StorageConfig s;
  s.root = root;
  s.require_encrypted_volume = false;  // a temp folder, KEK beside it
  return s;
}

}  // namespace phi::crashtest
