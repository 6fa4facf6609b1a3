// Helpers shared by the objects/ unit tests: deterministic data, real keys.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "libphi/crypto/crypto.h"
#include "libphi/objects/phg_format.h"

namespace phi::objects::testutil {

// Deterministic pseudo-random bytes (splitmix64): byte i of stream `seed` is
// the same however the stream is chunked.
inline void FillPattern(uint64_t seed, uint64_t offset, std::span<std::byte> out) {
  for (size_t i = 0; i < out.size(); ++i) {
    uint64_t x = seed + ((offset + i) >> 3) * 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    x ^= x >> 31;
    out[i] = std::byte(x >> (8 * ((offset + i) & 7)));
  }
}

inline std::vector<std::byte> Pattern(uint64_t seed, size_t n) {
  std::vector<std::byte> v(n);
  FillPattern(seed, 0, v);
  return v;
}

inline std::unique_ptr<crypto::AesGcm> NewKey() {
  std::array<std::byte, crypto::kKeyBytes> k;
  EXPECT_TRUE(crypto::RandomBytes(k).ok());
  auto r = crypto::AesGcm::Create(k);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return std::move(r).value();
}

inline KeyId NewKeyId() {
  KeyId id;
  EXPECT_TRUE(crypto::RandomBytes(id).ok());
  return id;
}

}  // namespace phi::objects::testutil
