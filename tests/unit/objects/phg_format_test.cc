#include "libphi/objects/phg_format.h"

#include <gtest/gtest.h>

#include <cstring>

namespace phi::objects::phg {
namespace {

TEST(PhgFormat, SegmentSizeValidation) {
  EXPECT_TRUE(ValidateSegmentSize(4096).ok());
  EXPECT_TRUE(ValidateSegmentSize(1 << 20).ok());
  EXPECT_TRUE(ValidateSegmentSize(16 << 20).ok());
  EXPECT_EQ(ValidateSegmentSize(2048).code(), Code::kInvalidArgument);
  EXPECT_EQ(ValidateSegmentSize(32 << 20).code(), Code::kInvalidArgument);
  EXPECT_EQ(ValidateSegmentSize(4096 + 1).code(), Code::kInvalidArgument);
  EXPECT_EQ(ValidateSegmentSize(3 << 12).code(), Code::kInvalidArgument);
  EXPECT_EQ(ValidateSegmentSize(0).code(), Code::kInvalidArgument);
}

Header SampleHeader() {
  Header h;
  h.segment_size = 1 << 16;
  for (size_t i = 0; i < kIdBytes; ++i) {
    h.study_key_id[i] = std::byte(i + 1);
    h.object_id[i] = std::byte(0xA0 + i);
  }
  for (size_t i = 0; i < kNonceBytes; ++i) h.base_nonce[i] = std::byte(0x50 + i);
  return h;
}

TEST(PhgFormat, HeaderLayoutIsBigEndianAndRoundTrips) {
  Header h = SampleHeader();
  HeaderBytes b = EncodeHeader(h);
  EXPECT_EQ(std::memcmp(b.data(), "PHGOBJ\r\n", 8), 0);
  EXPECT_EQ(b[kVersionOffset], std::byte{0});
  EXPECT_EQ(b[kVersionOffset + 1], std::byte{1});
  // 65536 = 00 01 00 00
  EXPECT_EQ(b[kSegmentSizeOffset + 1], std::byte{1});
  EXPECT_EQ(b[kSegmentSizeOffset + 2], std::byte{0});
  EXPECT_EQ(b[kKeyIdOffset], std::byte{1});
  EXPECT_EQ(b[kObjectIdOffset], std::byte{0xA0});
  EXPECT_EQ(b[kBaseNonceOffset + 11], std::byte{0x5B});
  auto d = DecodeHeader(b);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->segment_size, h.segment_size);
  EXPECT_EQ(d->study_key_id, h.study_key_id);
  EXPECT_EQ(d->object_id, h.object_id);
  EXPECT_EQ(d->base_nonce, h.base_nonce);
}

TEST(PhgFormat, DecodeRejectsBadFields) {
  const HeaderBytes good = EncodeHeader(SampleHeader());
  auto expect_corrupt = [](HeaderBytes b) {
    EXPECT_EQ(DecodeHeader(b).status().code(), Code::kCorruption);
  };
  HeaderBytes b = good;
  b[0] ^= std::byte{1};
  expect_corrupt(b);  // magic
  b = good;
  b[kVersionOffset + 1] = std::byte{2};
  expect_corrupt(b);  // version
  b = good;
  b[kFlagsOffset + 1] = std::byte{1};
  expect_corrupt(b);  // flags
  b = good;
  b[kSegmentSizeOffset + 3] = std::byte{1};
  expect_corrupt(b);  // not a power of two
  b = good;
  b[kSegmentSizeOffset] = std::byte{0x40};
  expect_corrupt(b);  // too large
  b = good;
  b[kReservedOffset + 2] = std::byte{1};
  expect_corrupt(b);  // reserved
  EXPECT_EQ(DecodeHeader(std::span(good).first(kHeaderSize - 1)).status().code(),
            Code::kCorruption);
}

TEST(PhgFormat, SegmentNonceXorsCounterIntoLastEightBytes) {
  Nonce base{};
  for (size_t i = 0; i < kNonceBytes; ++i) base[i] = std::byte(0xFF);
  Nonce n0 = SegmentNonce(base, 0);
  EXPECT_EQ(n0, base);
  Nonce n = SegmentNonce(base, 0x0102);
  for (size_t i = 0; i < 10; ++i) EXPECT_EQ(n[i], std::byte{0xFF}) << i;
  EXPECT_EQ(n[10], std::byte{0xFE});
  EXPECT_EQ(n[11], std::byte{0xFD});
  EXPECT_NE(SegmentNonce(base, 1), SegmentNonce(base, 2));
}

TEST(PhgFormat, AadCarriesHeaderIndexAndLastFlag) {
  HeaderBytes h = EncodeHeader(SampleHeader());
  Aad a = SegmentAad(h, 7, true);
  EXPECT_TRUE(std::equal(h.begin(), h.end(), a.begin()));
  EXPECT_EQ(a[kHeaderSize + 7], std::byte{7});
  EXPECT_EQ(a[kHeaderSize + 8], std::byte{1});
  EXPECT_NE(SegmentAad(h, 7, false), a);
}

TEST(PhgFormat, StoredSizeInvertsForEverySize) {
  const uint32_t seg = 4096;
  for (uint64_t p : {0ull, 1ull, 4095ull, 4096ull, 4097ull, 3 * 4096ull + 2048, 1ull << 31}) {
    uint64_t stored = StoredSize(p, seg);
    auto back = PlaintextSizeFromStored(stored, seg);
    ASSERT_TRUE(back.ok()) << p;
    EXPECT_EQ(*back, p);
  }
  EXPECT_EQ(StoredSize(0, seg), kHeaderSize + kTagBytes);
  EXPECT_EQ(StoredSize(seg, seg), kHeaderSize + seg + 2 * kTagBytes);  // + empty last segment
  // A file cut at a segment boundary has no final segment.
  EXPECT_EQ(PlaintextSizeFromStored(kHeaderSize + seg + kTagBytes, seg).status().code(),
            Code::kCorruption);
  EXPECT_EQ(PlaintextSizeFromStored(kHeaderSize + 5, seg).status().code(), Code::kCorruption);
  EXPECT_EQ(PlaintextSizeFromStored(10, seg).status().code(), Code::kCorruption);
}

TEST(PhgFormat, IdHexRoundTripAndStrictParse) {
  ObjectId id;
  for (size_t i = 0; i < kIdBytes; ++i) id[i] = std::byte(i * 17);
  std::string hex = IdToHex(id);
  EXPECT_EQ(hex, "00112233445566778899aabbccddeeff");
  auto back = ParseId(hex);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, id);
  EXPECT_FALSE(ParseId("00112233445566778899AABBCCDDEEFF").ok());
  EXPECT_FALSE(ParseId("../../../../etc/passwd").ok());
  EXPECT_FALSE(ParseId(hex + "0").ok());
  EXPECT_FALSE(ParseId("0011223344556677/899aabbccddeeff").ok());
}

}  // namespace
}  // namespace phi::objects::phg
