#include "libphi/dicom/dimse_status.h"

#include <gtest/gtest.h>

namespace phi::dicom {
namespace {

TEST(DimseStatusTest, MapsEveryCodeToTheDocumentedStatus) {
  EXPECT_EQ(StoreStatusToDimse(Status::Ok()), 0x0000);
  EXPECT_EQ(StoreStatusToDimse(Status::ResourceExhausted("disk full")), 0xA700);
  EXPECT_EQ(StoreStatusToDimse(Status::Unavailable("sticky")), 0xA700);
  EXPECT_EQ(StoreStatusToDimse(Status::IOError("fsync")), 0xA700);
  EXPECT_EQ(StoreStatusToDimse(Status::Internal("bug")), 0xA700);
  EXPECT_EQ(StoreStatusToDimse(Status::InvalidArgument("no uid")), 0xC000);
  EXPECT_EQ(StoreStatusToDimse(Status::Corruption("bad")), 0xC000);
}

}  // namespace
}  // namespace phi::dicom
