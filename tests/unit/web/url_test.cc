#include "libphi/web/url.h"

#include <gtest/gtest.h>

namespace phi::web {
namespace {

TEST(Url, DecodesStrictly) {
  EXPECT_EQ(*PercentDecode("a%20b+c", true), "a b c");
  EXPECT_EQ(*PercentDecode("a+b", false), "a+b");
  EXPECT_FALSE(PercentDecode("%2", false).ok());
  EXPECT_FALSE(PercentDecode("%zz", false).ok());
  EXPECT_FALSE(PercentDecode("a%00b", false).ok());
  EXPECT_FALSE(PercentDecode("a%0Ab", false).ok());
}

TEST(Url, ParsesTargetAndQuery) {
  auto t = ParseTarget("/studies/1.2.3/series?PatientID=A%26B&limit=5&flag");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->path, "/studies/1.2.3/series");
  ASSERT_EQ(t->query.size(), 3u);
  EXPECT_EQ(t->query[0], (std::pair<std::string, std::string>{"PatientID", "A&B"}));
  EXPECT_EQ(t->query[2].first, "flag");
}

TEST(Url, RefusesTraversalInEveryEncoding) {
  for (const char* bad :
       {"/a/../b", "/..", "/a/%2e%2e/b", "/a/%2E%2e", "/a/.%2e/b", "/a/./b", "/a%2fb", "/a%5cb",
        "/a\\b", "/a%00", "relative", "http://x/y", "/a#frag"}) {
    EXPECT_FALSE(ParseTarget(bad).ok()) << bad;
  }
  EXPECT_TRUE(ParseTarget("/a/..b/c").ok());  // not a dot segment
}

}  // namespace
}  // namespace phi::web
