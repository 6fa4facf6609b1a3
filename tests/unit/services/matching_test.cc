#include "libphi/services/matching.h"

#include <gtest/gtest.h>

#include "libphi/services/phi_fields.h"

namespace phi::services {
namespace {

TEST(WildcardMatchTest, StarAndQuestion) {
  EXPECT_TRUE(WildcardMatch("SMI*", "SMITH^JOHN"));
  EXPECT_FALSE(WildcardMatch("SMI*", "DOE^SMITH"));
  EXPECT_TRUE(WildcardMatch("*SMITH*", "DOE^SMITH"));
  EXPECT_TRUE(WildcardMatch("SM?TH^*", "SMYTH^A"));
  EXPECT_FALSE(WildcardMatch("SM?TH", "SMTH"));
  EXPECT_TRUE(WildcardMatch("*", ""));
  EXPECT_TRUE(WildcardMatch("", "ANY"));  // universal match
  EXPECT_TRUE(WildcardMatch("A*B*C", "AxxBxxBxxC"));
  EXPECT_FALSE(WildcardMatch("A*B*C", "AxxBxxBxxD"));
  EXPECT_FALSE(WildcardMatch("ABC", "ABCD"));
}

TEST(WildcardMatchTest, QuestionMarkIsOneUtf8Character) {
  EXPECT_TRUE(WildcardMatch("M?LLER", "M\xc3\xbcLLER"));  // MüLLER
  EXPECT_TRUE(WildcardMatch("*\xc3\xbc*", "M\xc3\xbcLLER"));
}

TEST(WildcardMatchTest, CaseFolding) {
  EXPECT_FALSE(WildcardMatch("smi*", "SMITH"));
  EXPECT_TRUE(WildcardMatch("smi*", "SMITH", /*fold_case=*/true));
}

TEST(DateRangeTest, Ranges) {
  EXPECT_TRUE(DateRangeMatch("20200101-20201231", "20200615"));
  EXPECT_FALSE(DateRangeMatch("20200101-20201231", "20210101"));
  EXPECT_TRUE(DateRangeMatch("-20201231", "19991231"));
  EXPECT_TRUE(DateRangeMatch("20200101-", "20991231"));
  EXPECT_TRUE(DateRangeMatch("20200615", "20200615"));
  EXPECT_FALSE(DateRangeMatch("20200615", "20200616"));
  EXPECT_TRUE(DateRangeMatch("", ""));
  EXPECT_FALSE(DateRangeMatch("20200101-", ""));
}

TEST(DateRangeTest, Validation) {
  EXPECT_TRUE(IsValidDateRange("20200101-20201231"));
  EXPECT_FALSE(IsValidDateRange("2020-01-01"));
  EXPECT_FALSE(IsValidDateRange("-"));
  EXPECT_FALSE(IsValidDateRange("20201301"));
  EXPECT_FALSE(IsValidDateRange("abc"));
  EXPECT_FALSE(DateRangeMatch("garbage", "20200101"));
  int a = 0, b = 0;
  ASSERT_TRUE(DateRangeYears("20190505-20210101", &a, &b));
  EXPECT_EQ(a, 2019);
  EXPECT_EQ(b, 2021);
  ASSERT_TRUE(DateRangeYears("-20210101", &a, &b));
  EXPECT_EQ(a, 0);
}

TEST(PhiFieldsTest, RoundTripAndOrder) {
  PhiFields f;
  f.Set("PatientName", "DOE^JANE");
  f.Set("AccessionNumber", "ACC1");
  f.Set("PatientName", "DOE^JOHN");
  EXPECT_EQ(f.Get("PatientName"), "DOE^JOHN");
  EXPECT_EQ(f.Get("Missing"), "");
  auto d = PhiFields::Decode(f.Encode());
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*d, f);
  EXPECT_EQ(d->items().front().first, "AccessionNumber");
}

TEST(PhiFieldsTest, RejectsMalformed) {
  PhiFields f;
  f.Set("PatientID", "12345");
  std::string enc = f.Encode();
  EXPECT_FALSE(PhiFields::Decode("").ok());
  EXPECT_FALSE(PhiFields::Decode(std::string("\x02", 1)).ok());
  EXPECT_TRUE(PhiFields::Decode(enc.substr(0, 1))->items().empty());  // version only: no fields
  for (size_t cut = 2; cut < enc.size(); ++cut) {
    auto r = PhiFields::Decode(enc.substr(0, cut));
    EXPECT_FALSE(r.ok()) << "truncated at " << cut;
  }
  std::string huge = enc;
  huge[1 + 4 + 9] = '\x7f';  // value length far beyond the input
  EXPECT_EQ(PhiFields::Decode(huge).status().code(), Code::kCorruption);
}

}  // namespace
}  // namespace phi::services
