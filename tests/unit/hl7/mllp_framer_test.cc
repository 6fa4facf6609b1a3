#include "libphi/hl7/mllp_framer.h"

#include <gtest/gtest.h>

namespace phi::hl7 {
namespace {

std::string F(const std::string& m) { return MllpEncode(m); }

TEST(MllpFramer, EncodeWrapsWithStartAndEnd) {
  EXPECT_EQ(MllpEncode("MSH|x"), std::string("\x0bMSH|x\x1c\r"));
}

TEST(MllpFramer, FrameSplitAcrossEveryPossibleReadBoundary) {
  const std::string wire = F("MSH|^~\\&|A\rPID|1") + F("MSH|^~\\&|B");
  for (size_t cut = 0; cut <= wire.size(); ++cut) {
    MllpFramer f(1024);
    std::deque<std::string> out;
    ASSERT_TRUE(f.Feed(std::string_view(wire).substr(0, cut), &out).ok());
    ASSERT_TRUE(f.Feed(std::string_view(wire).substr(cut), &out).ok());
    ASSERT_EQ(out.size(), 2u) << cut;
    EXPECT_EQ(out[0], "MSH|^~\\&|A\rPID|1");
    EXPECT_EQ(out[1], "MSH|^~\\&|B");
    EXPECT_FALSE(f.in_frame());
  }
}

TEST(MllpFramer, ByteAtATime) {
  const std::string wire = F("one") + "\r\n" + F("two");
  MllpFramer f(16);
  std::deque<std::string> out;
  for (char c : wire) ASSERT_TRUE(f.Feed(std::string_view(&c, 1), &out).ok());
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[1], "two");
  EXPECT_EQ(f.skipped_bytes(), 2u);  // the CR LF between frames
  EXPECT_EQ(f.messages(), 2u);
}

TEST(MllpFramer, GarbageBeforeStartIsSkippedAndCounted) {
  MllpFramer f(64);
  std::deque<std::string> out;
  ASSERT_TRUE(f.Feed("GET / HTTP/1.0\r\n" + F("MSH|a"), &out).ok());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0], "MSH|a");
  EXPECT_EQ(f.skipped_bytes(), 16u);
}

TEST(MllpFramer, OversizeAbortsAtTheLimitWithoutBuffering) {
  MllpFramer f(100);
  std::deque<std::string> out;
  ASSERT_TRUE(f.Feed("\x0b" + std::string(100, 'a'), &out).ok());  // exactly the cap
  EXPECT_EQ(f.buffered_bytes(), 100u);
  Status s = f.Feed("a", &out);  // one more byte
  EXPECT_EQ(s.code(), Code::kResourceExhausted);
  EXPECT_EQ(f.buffered_bytes(), 0u);
  // Sticky.
  EXPECT_FALSE(f.Feed(F("MSH|ok"), &out).ok());
  EXPECT_TRUE(out.empty());
}

TEST(MllpFramer, MessageOfExactlyTheCapIsAccepted) {
  MllpFramer f(10);
  std::deque<std::string> out;
  ASSERT_TRUE(f.Feed(F(std::string(10, 'x')), &out).ok());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_FALSE(MllpFramer(9).Feed(F(std::string(10, 'x')), &out).ok());
}

TEST(MllpFramer, HugeSingleReadIsRefusedNotBuffered) {
  MllpFramer f(1000);
  std::deque<std::string> out;
  std::string big = "\x0b" + std::string(1 << 20, 'z') + "\x1c\r";
  EXPECT_EQ(f.Feed(big, &out).code(), Code::kResourceExhausted);
  EXPECT_TRUE(out.empty());
}

TEST(MllpFramer, BrokenFramingIsAnError) {
  std::deque<std::string> out;
  MllpFramer a(100);
  EXPECT_EQ(a.Feed("\x0b"
                   "abc\x0b"
                   "def",
                   &out)
                .code(),
            Code::kInvalidArgument);
  MllpFramer b(100);
  EXPECT_EQ(b.Feed("\x0b"
                   "abc\x1cX",
                   &out)
                .code(),
            Code::kInvalidArgument);
  MllpFramer c(8);
  EXPECT_FALSE(c.Feed(std::string(9, 'g'), &out).ok());  // endless garbage is bounded too
  EXPECT_TRUE(out.empty());
}

TEST(MllpFramer, ManyFramesInOneRead) {
  std::string wire;
  for (int i = 0; i < 50; ++i) wire += F("MSH|" + std::to_string(i));
  MllpFramer f(64);
  std::deque<std::string> out;
  ASSERT_TRUE(f.Feed(wire, &out).ok());
  ASSERT_EQ(out.size(), 50u);
  EXPECT_EQ(out[49], "MSH|49");
}

}  // namespace
}  // namespace phi::hl7
