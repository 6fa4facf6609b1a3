// SecretBytes: ownership, moves, and the page flags the kernel reports.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "libphi/crypto/crypto.h"

namespace phi::crypto {
namespace {

// The /proc/self/smaps block of the mapping that contains `addr`, or "" when
// no mapping does. (Containment, not start address: the kernel may merge our
// pages with a neighbouring mapping that has identical flags.)
std::string SmapsBlockFor(const void* addr) {
  std::ifstream f("/proc/self/smaps");
  std::string line, block;
  bool in = false;
  const auto want = reinterpret_cast<uintptr_t>(addr);
  while (std::getline(f, line)) {
    // Header lines look like "7f12a000-7f12b000 rw-p 00000000 00:00 0 ...".
    auto dash = line.find('-');
    auto space = line.find(' ');
    bool header = dash != std::string::npos && space != std::string::npos && dash < space &&
                  line.find(':') > space;
    if (header) {
      if (in) return block;
      uintptr_t start = std::stoull(line.substr(0, dash), nullptr, 16);
      uintptr_t end = std::stoull(line.substr(dash + 1, space - dash - 1), nullptr, 16);
      in = start <= want && want < end;
      block.clear();
    }
    if (in) block += line + "\n";
  }
  return in ? block : "";
}

std::string VmFlags(const std::string& block) {
  auto p = block.find("VmFlags:");
  if (p == std::string::npos) return "";
  auto e = block.find('\n', p);
  return " " + block.substr(p + 8, e - p - 8) + " ";
}

TEST(SecretBytesTest, ZeroFilledCopyAndRandom) {
  SecretBytes z(40);
  ASSERT_EQ(z.size(), 40u);
  for (std::byte b : z.span()) EXPECT_EQ(b, std::byte{0});

  const char msg[] = "0123456789abcdef0123456789abcdef";
  SecretBytes c = SecretBytes::CopyFrom(AsBytes(msg));
  EXPECT_EQ(std::memcmp(c.span().data(), msg, sizeof msg - 1), 0);

  auto r1 = SecretBytes::Random(32), r2 = SecretBytes::Random(32);
  ASSERT_TRUE(r1.ok() && r2.ok());
  EXPECT_FALSE(ConstantTimeEqual(r1->span(), r2->span()));

  SecretBytes empty;
  EXPECT_TRUE(empty.empty());
  EXPECT_TRUE(SecretBytes(0).empty());
}

TEST(SecretBytesTest, MovedFromIsEmptyAndMoveAssignReleasesOldPages) {
  SecretBytes a = SecretBytes::CopyFrom(AsBytes("key material 32 bytes long......"));
  const void* a_pages = a.span().data();
  SecretBytes b(std::move(a));
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): the contract under test
  EXPECT_EQ(a.span().data(), nullptr);
  EXPECT_EQ(b.span().data(), a_pages);  // the same locked pages, not a copy
  EXPECT_EQ(std::memcmp(b.span().data(), "key material", 12), 0);

  SecretBytes c(16);
  const void* c_pages = c.span().data();
  ASSERT_FALSE(SmapsBlockFor(c_pages).empty());
  c = std::move(b);
  EXPECT_TRUE(b.empty());  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(c.span().data(), a_pages);
  // c's previous pages were wiped and unmapped: the kernel no longer lists them.
  EXPECT_TRUE(SmapsBlockFor(c_pages).empty());
  { SecretBytes d(std::move(c)); }
  EXPECT_TRUE(SmapsBlockFor(a_pages).empty());
}

TEST(SecretBytesTest, PagesAreNoDumpAndLockedWhenTheLimitAllows) {
  [[maybe_unused]] const uint64_t failures_before = SecretBytesMlockFailures();
  SecretBytes s(32);
  std::string block = SmapsBlockFor(s.span().data());
  ASSERT_FALSE(block.empty()) << "mapping not found in /proc/self/smaps";
  std::string flags = VmFlags(block);
  ASSERT_FALSE(flags.empty()) << block;
  EXPECT_NE(flags.find(" dd "), std::string::npos) << "MADV_DONTDUMP missing: " << flags;
  EXPECT_NE(flags.find(" dc "), std::string::npos) << "MADV_DONTFORK missing: " << flags;
#if defined(__SANITIZE_ADDRESS__)
  // AddressSanitizer intercepts mlock() as a successful no-op: nothing to check.
  const bool lock_expected = false;
#else
  const bool lock_expected = SecretBytesMlockFailures() == failures_before;
#endif
  if (lock_expected) {
    EXPECT_NE(flags.find(" lo "), std::string::npos) << "mlock missing: " << flags;
  } else {
    GTEST_LOG_(INFO) << "mlock refused (RLIMIT_MEMLOCK) or faked (ASan); lock flag not checked";
  }
}

}  // namespace
}  // namespace phi::crypto
