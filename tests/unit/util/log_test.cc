#include "libphi/util/log.h"

#include <gtest/gtest.h>

namespace phi::log {
namespace {

class LogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SetCaptureForTest(&out_);
    SetLevel(Level::kInfo);
  }
  void TearDown() override { SetCaptureForTest(nullptr); }
  std::string out_;
};

TEST_F(LogTest, WritesMessageAndFields) {
  PHI_LOG(kInfo, "object stored", {{"object_id", Safe("ab12")}, {"bytes", 524288}});
  EXPECT_EQ(out_, "info object stored object_id=ab12 bytes=524288\n");
}

TEST_F(LogTest, LevelFilters) {
  PHI_LOG(kDebug, "noise");
  EXPECT_EQ(out_, "");
  SetLevel(Level::kDebug);
  PHI_LOG(kDebug, "noise");
  EXPECT_EQ(out_, "debug noise\n");
}

TEST_F(LogTest, ValuesCannotForgeLines) {
  PHI_LOG(kWarning, "peer refused", {{"peer", Safe("1.2.3.4\ninfo fake=1")}});
  EXPECT_EQ(out_, "warning peer refused peer=\"1.2.3.4\\x0ainfo fake=1\"\n");
  EXPECT_EQ(out_.find('\n'), out_.size() - 1);
}

TEST_F(LogTest, StatusIsLoggable) {
  PHI_LOG(kError, "write failed", {{"status", Status::IOError("fsync /x: EIO")}});
  EXPECT_EQ(out_, "error write failed status=\"IOError: fsync /x: EIO\"\n");
}

TEST(LogLevelTest, ParseLevel) {
  Level l;
  ASSERT_TRUE(ParseLevel("warning", &l));
  EXPECT_EQ(l, Level::kWarning);
  EXPECT_FALSE(ParseLevel("verbose", &l));
}

}  // namespace
}  // namespace phi::log
