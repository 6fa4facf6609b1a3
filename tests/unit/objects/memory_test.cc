// Streams a 2 GiB object through FsObjectStore and back, generating and
// checking the data on the fly, and asserts the peak RSS stays bounded: the
// writer and reader hold one segment, never the object. Own binary and ctest
// entry (label "slow"): ru_maxrss is per process.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <cstring>
#include <filesystem>

#include "libphi/objects/fs_object_store.h"
#include "tests/support/temp_dir.h"
#include "tests/unit/objects/test_util.h"

namespace phi::objects {
namespace {

constexpr uint64_t kObjectBytes = uint64_t{2} << 30;  // 2 GiB
constexpr size_t kChunk = 256 * 1024;
constexpr long kMaxRssKiB = 64 * 1024;  // 64 MiB

// Fast deterministic data: word i (8 bytes) = splitmix64(i).
void FillWords(uint64_t offset, std::span<std::byte> out) {
  uint64_t w = offset / 8;
  for (size_t i = 0; i + 8 <= out.size(); i += 8, ++w) {
    uint64_t x = w * 0x9E3779B97F4A7C15ull + 0x1234;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    x ^= x >> 31;
    std::memcpy(out.data() + i, &x, 8);
  }
}

long PeakRssKiB() {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

TEST(ObjectsMemory, TwoGiBStreamsInBoundedMemory) {
  testing::TempDir dir;
  PosixEnv env;
  auto store = FsObjectStore::Open(dir.path(), env);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  auto key = testutil::NewKey();
  KeyId key_id = testutil::NewKeyId();

  std::vector<std::byte> chunk(kChunk);
  std::string id;
  {
    auto w = (*store)->NewObject(key_id, *key);
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    for (uint64_t off = 0; off < kObjectBytes; off += kChunk) {
      FillWords(off, chunk);
      Status s = (*w)->Append(chunk);
      ASSERT_TRUE(s.ok()) << s.ToString();
    }
    auto info = (*w)->Finish();
    ASSERT_TRUE(info.ok()) << info.status().ToString();
    EXPECT_EQ(info->plaintext_size, kObjectBytes);
    id = info->object_id;
  }

  auto r = (*store)->Open(id, key_id, *key);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ((*r)->plaintext_size(), kObjectBytes);
  uint64_t pos = 0;
  std::vector<std::byte> expect(phg::kDefaultSegmentSize);
  bool all_equal = true;
  Status s = (*r)->ReadAll([&](std::span<const std::byte> b) {
    FillWords(pos, std::span(expect).first(b.size()));
    all_equal = all_equal && std::memcmp(b.data(), expect.data(), b.size()) == 0;
    pos += b.size();
    return Status::Ok();
  });
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(pos, kObjectBytes);
  EXPECT_TRUE(all_equal);

  // A range straddling a segment boundary deep inside the object.
  std::vector<std::byte> out(4096), want(4096);
  const uint64_t off = 1500 * uint64_t{phg::kDefaultSegmentSize} - 2048;
  auto got = (*r)->Read(off, out);
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(*got, out.size());
  FillWords(off, want);
  EXPECT_EQ(out, want);

  r->reset();
  ASSERT_TRUE((*store)->Remove(id).ok());
  const long peak = PeakRssKiB();
  RecordProperty("peak_rss_kib", static_cast<int>(peak));
  EXPECT_LT(peak, kMaxRssKiB) << "peak RSS " << peak << " KiB";
}

}  // namespace
}  // namespace phi::objects
