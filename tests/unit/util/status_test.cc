#include "libphi/util/status.h"

#include <gtest/gtest.h>

#include <cerrno>

namespace phi {
namespace {

Result<int> Half(int x) {
  if (x % 2 != 0) return Status::InvalidArgument("odd");
  return x / 2;
}

Result<int> Quarter(int x) {
  PHI_ASSIGN_OR_RETURN(int h, Half(x));
  PHI_ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

TEST(StatusTest, OkAndErrorsFormat) {
  EXPECT_TRUE(Status::Ok().ok());
  EXPECT_EQ(Status::Ok().ToString(), "OK");
  Status s = Status::Corruption("tag mismatch").WithContext("object 42");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Code::kCorruption);
  EXPECT_EQ(s.ToString(), "Corruption: object 42: tag mismatch");
}

TEST(StatusTest, PosixErrorMapsErrno) {
  EXPECT_EQ(PosixError("write /x", ENOSPC).code(), Code::kResourceExhausted);
  EXPECT_EQ(PosixError("open /x", ENOENT).code(), Code::kNotFound);
  EXPECT_EQ(PosixError("open /x", EACCES).code(), Code::kPermissionDenied);
  Status eio = PosixError("fsync /x", EIO);
  EXPECT_EQ(eio.code(), Code::kIOError);
  EXPECT_NE(eio.message().find("fsync /x: "), std::string::npos);
}

TEST(ResultTest, PropagatesValueAndStatus) {
  Result<int> ok = Quarter(8);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, 2);
  Result<int> bad = Quarter(6);  // 6 -> 3 -> odd
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Code::kInvalidArgument);
}

TEST(ResultTest, OkStatusIsNotAValue) {
  Result<int> r{Status::Ok()};
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInternal);
}

}  // namespace
}  // namespace phi
