// ParseNetwork / NetworkContains: IPv4, IPv6, prefixes on and off byte boundaries,
// v4-mapped addresses, and inputs that must match nothing.
#include <gtest/gtest.h>

#include "libphi/config/config.h"

namespace phi::config {
namespace {

Network Net(const std::string& s) {
  auto r = ParseNetwork(s);
  EXPECT_TRUE(r.ok()) << s << ": " << r.status().ToString();
  return r.ok() ? *r : Network{};
}

TEST(ParseNetworkTest, AcceptsCidrAndBareAddresses) {
  Network n = Net("10.0.0.0/8");
  EXPECT_FALSE(n.v6);
  EXPECT_EQ(n.prefix_len, 8);
  EXPECT_EQ(n.addr[0], 10);
  EXPECT_EQ(n.text, "10.0.0.0/8");
  EXPECT_EQ(Net("192.168.1.20").prefix_len, 32);
  EXPECT_EQ(Net("::1").prefix_len, 128);
  EXPECT_TRUE(Net("::1").v6);
  EXPECT_EQ(Net("0.0.0.0/0").prefix_len, 0);
  EXPECT_EQ(Net("fd00::/8").addr[0], 0xfd);
}

TEST(ParseNetworkTest, RejectsBadInput) {
  for (const char* bad : {"", "/8", "10.0.0.0/", "10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/8/8",
                          "10.0.0/8", "300.0.0.0/8", "banana", "::/129", "10.0.0.0/ 8",
                          "10.0.0.0/0008", "fe80::1%eth0", " 10.0.0.0/8", "10.0.0.0/8 "}) {
    EXPECT_FALSE(ParseNetwork(bad).ok()) << bad;
  }
}

TEST(ParseNetworkTest, RejectsHostBitsWithAHint) {
  auto r = ParseNetwork("10.1.2.3/8");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("did you mean 10.0.0.0/8?"), std::string::npos);
  auto r6 = ParseNetwork("2001:db8::1/64");
  ASSERT_FALSE(r6.ok());
  EXPECT_NE(r6.status().message().find("did you mean 2001:db8::/64?"), std::string::npos);
  EXPECT_FALSE(ParseNetwork("10.0.0.128/25").ok() == false);  // exactly on the boundary: fine
  EXPECT_FALSE(ParseNetwork("10.0.0.129/25").ok());
}

TEST(NetworkContainsTest, Ipv4) {
  Network n = Net("10.0.0.0/8");
  EXPECT_TRUE(NetworkContains(n, "10.0.0.0"));
  EXPECT_TRUE(NetworkContains(n, "10.255.255.255"));
  EXPECT_FALSE(NetworkContains(n, "11.0.0.0"));
  EXPECT_FALSE(NetworkContains(n, "9.255.255.255"));

  Network n20 = Net("172.16.16.0/20");  // prefix not on a byte boundary
  EXPECT_TRUE(NetworkContains(n20, "172.16.16.1"));
  EXPECT_TRUE(NetworkContains(n20, "172.16.31.255"));
  EXPECT_FALSE(NetworkContains(n20, "172.16.32.0"));
  EXPECT_FALSE(NetworkContains(n20, "172.16.15.255"));

  Network host = Net("192.168.1.20");
  EXPECT_TRUE(NetworkContains(host, "192.168.1.20"));
  EXPECT_FALSE(NetworkContains(host, "192.168.1.21"));

  Network all = Net("0.0.0.0/0");
  EXPECT_TRUE(NetworkContains(all, "1.2.3.4"));
  EXPECT_TRUE(NetworkContains(all, "255.255.255.255"));
  EXPECT_FALSE(NetworkContains(all, "2001:db8::1"));  // all of IPv4 is not IPv6
}

TEST(NetworkContainsTest, Ipv6) {
  Network n = Net("2001:db8::/32");
  EXPECT_TRUE(NetworkContains(n, "2001:db8::1"));
  EXPECT_TRUE(NetworkContains(n, "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"));
  EXPECT_FALSE(NetworkContains(n, "2001:db9::"));
  EXPECT_FALSE(NetworkContains(n, "10.0.0.1"));

  Network lo = Net("::1/128");
  EXPECT_TRUE(NetworkContains(lo, "::1"));
  EXPECT_TRUE(NetworkContains(lo, "0:0:0:0:0:0:0:1"));
  EXPECT_FALSE(NetworkContains(lo, "::2"));

  Network n57 = Net("fd00:0:0:80::/57");
  EXPECT_TRUE(NetworkContains(n57, "fd00:0:0:ff::1"));
  EXPECT_FALSE(NetworkContains(n57, "fd00:0:0:7f::1"));
  EXPECT_FALSE(NetworkContains(n57, "fd00:0:0:100::1"));
}

TEST(NetworkContainsTest, V4MappedAddresses) {
  // A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d.
  Network lo = Net("127.0.0.0/8");
  EXPECT_TRUE(NetworkContains(lo, "::ffff:127.0.0.1"));
  EXPECT_FALSE(NetworkContains(lo, "::ffff:128.0.0.1"));
  EXPECT_FALSE(NetworkContains(lo, "::127.0.0.1"));  // v4-compatible, not mapped
  Network mapped = Net("::ffff:0:0/96");
  EXPECT_TRUE(NetworkContains(mapped, "10.1.2.3"));
  EXPECT_FALSE(NetworkContains(mapped, "2001:db8::1"));
}

TEST(NetworkContainsTest, UnparsableAddressesMatchNothing) {
  Network all4 = Net("0.0.0.0/0");
  Network all6 = Net("::/0");
  for (const char* bad : {"", "localhost", "1.2.3", "1.2.3.4.5", "256.1.1.1", "fe80::1%eth0",
                          " 1.2.3.4", "1.2.3.4 ", "::ffff:1.2.3.4.5"}) {
    EXPECT_FALSE(NetworkContains(all4, bad)) << bad;
    EXPECT_FALSE(NetworkContains(all6, bad)) << bad;
  }
  EXPECT_FALSE(NetworkContains(all4, std::string(1000, '1')));
}

}  // namespace
}  // namespace phi::config
