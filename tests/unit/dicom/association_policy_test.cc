#include "libphi/dicom/association_policy.h"

#include <gtest/gtest.h>

namespace phi::dicom {
namespace {

config::Network Net(const std::string& s) {
  auto n = ParseNetwork(s);
  EXPECT_TRUE(n.has_value()) << s;
  return n.value_or(config::Network{});
}

TEST(NetworkTest, Ipv4PrefixMatching) {
  EXPECT_TRUE(AddressInNetwork("10.1.2.3", Net("10.0.0.0/8")));
  EXPECT_FALSE(AddressInNetwork("11.1.2.3", Net("10.0.0.0/8")));
  EXPECT_TRUE(AddressInNetwork("192.168.1.129", Net("192.168.1.128/25")));
  EXPECT_FALSE(AddressInNetwork("192.168.1.127", Net("192.168.1.128/25")));
  EXPECT_TRUE(AddressInNetwork("127.0.0.1", Net("127.0.0.1")));
  EXPECT_FALSE(AddressInNetwork("127.0.0.2", Net("127.0.0.1")));
  EXPECT_TRUE(AddressInNetwork("8.8.8.8", Net("0.0.0.0/0")));
}

TEST(NetworkTest, Ipv6AndMappedAddresses) {
  EXPECT_TRUE(AddressInNetwork("::1", Net("::1/128")));
  EXPECT_TRUE(AddressInNetwork("2001:db8::5", Net("2001:db8::/32")));
  EXPECT_FALSE(AddressInNetwork("2001:db9::5", Net("2001:db8::/32")));
  EXPECT_TRUE(AddressInNetwork("::ffff:10.0.0.7", Net("10.0.0.0/8")));  // v4-mapped
  EXPECT_FALSE(AddressInNetwork("::1", Net("127.0.0.0/8")));
}

TEST(NetworkTest, RejectsGarbage) {
  EXPECT_FALSE(ParseNetwork("10.0.0.0/33").has_value());
  EXPECT_FALSE(ParseNetwork("10.0.0/8").has_value());
  EXPECT_FALSE(ParseNetwork("::/129").has_value());
  EXPECT_FALSE(ParseNetwork("10.0.0.0/").has_value());
  EXPECT_FALSE(ParseNetwork("10.0.0.0/8x").has_value());
  EXPECT_FALSE(AddressInNetwork("not-an-ip", Net("0.0.0.0/0")));
}

config::DicomConfig Cfg() {
  config::DicomConfig c;
  c.ae_title = "PHIGATE";
  c.max_associations_per_ae = 8;
  config::DicomPeer ct;
  ct.ae_title = "CT01";
  ct.certificate_subject = "CN=CT01,O=phigate-dev";
  c.allowed_peers.push_back(ct);
  config::DicomPeer mr;
  mr.ae_title = "MR01";
  mr.networks = {Net("10.0.0.0/8")};
  mr.max_associations = 2;
  c.allowed_peers.push_back(mr);
  config::DicomPeer open_tls;  // TLS-only: no networks
  open_tls.ae_title = "VIEWER";
  c.allowed_peers.push_back(open_tls);
  return c;
}

AssociationRequest Rq(std::string calling, bool tls = true, std::string ip = "10.1.1.1") {
  AssociationRequest r;
  r.called_ae = "PHIGATE";
  r.calling_ae = std::move(calling);
  r.peer_ip = std::move(ip);
  r.tls = tls;
  return r;
}

TEST(AssociationPolicyTest, CalledAeMustBeOurs) {
  AssociationPolicy p(Cfg());
  auto r = Rq("MR01");
  r.called_ae = "OTHER";
  EXPECT_EQ(p.Evaluate(r).reject, RejectKind::kCalledAeNotRecognized);
}

TEST(AssociationPolicyTest, UnknownCallingAeRejected) {
  AssociationPolicy p(Cfg());
  EXPECT_EQ(p.Evaluate(Rq("NOBODY")).reject, RejectKind::kCallingAeNotRecognized);
}

TEST(AssociationPolicyTest, NetworkRestriction) {
  AssociationPolicy p(Cfg());
  auto ok = p.Evaluate(Rq("MR01", true, "10.9.9.9"));
  EXPECT_EQ(ok.reject, RejectKind::kNone);
  EXPECT_EQ(ok.per_ae_limit, 2u);
  EXPECT_EQ(p.Evaluate(Rq("MR01", true, "192.168.0.1")).reject,
            RejectKind::kCallingAeNotRecognized);
  // Plain listener with a network list: allowed from inside it.
  EXPECT_EQ(p.Evaluate(Rq("MR01", false, "10.0.0.1")).reject, RejectKind::kNone);
}

TEST(AssociationPolicyTest, PlainListenerNeedsNetworks) {
  AssociationPolicy p(Cfg());
  EXPECT_EQ(p.Evaluate(Rq("VIEWER", true)).reject, RejectKind::kNone);
  EXPECT_EQ(p.Evaluate(Rq("VIEWER", false)).reject, RejectKind::kCallingAeNotRecognized);
}

TEST(AssociationPolicyTest, CertificateBinding) {
  AssociationPolicy p(Cfg());
  auto r = Rq("CT01");
  EXPECT_EQ(p.Evaluate(r).reject, RejectKind::kCallingAeNotRecognized);  // no cert
  r.client_subject = "CN=clinician,O=phigate-dev";
  EXPECT_EQ(p.Evaluate(r).reject, RejectKind::kCallingAeNotRecognized);  // other cert
  r.client_subject = "CN=CT01,O=phigate-dev";
  auto d = p.Evaluate(r);
  EXPECT_EQ(d.reject, RejectKind::kNone);
  EXPECT_EQ(d.per_ae_limit, 8u);  // global per-AE default
  r.tls = false;                  // same subject claimed on the plain listener
  EXPECT_EQ(p.Evaluate(r).reject, RejectKind::kCallingAeNotRecognized);
}

TEST(AssociationPolicyTest, WildcardDoesNotWidenAnExplicitAe) {
  auto c = Cfg();
  config::DicomPeer any;
  any.ae_title = "*";
  c.allowed_peers.push_back(any);
  AssociationPolicy p(c);
  EXPECT_EQ(p.Evaluate(Rq("SOMEONE")).reject, RejectKind::kNone);
  EXPECT_EQ(p.Evaluate(Rq("SOMEONE", false)).reject, RejectKind::kNone);  // "*" dev entry
  auto r = Rq("CT01");
  r.client_subject = "CN=clinician,O=phigate-dev";
  EXPECT_EQ(p.Evaluate(r).reject, RejectKind::kCallingAeNotRecognized);
}

TEST(AssociationLimiterTest, TotalAndPerAeLimits) {
  AssociationLimiter l(3, 2);
  EXPECT_TRUE(l.TryAcquire("A", 0));
  EXPECT_TRUE(l.TryAcquire("A", 0));
  EXPECT_FALSE(l.TryAcquire("A", 0));  // per-AE default 2
  EXPECT_TRUE(l.TryAcquire("B", 1));
  EXPECT_FALSE(l.TryAcquire("C", 0));  // total 3
  EXPECT_EQ(l.open(), 3u);
  l.Release("A");
  EXPECT_FALSE(l.TryAcquire("B", 1));  // B's own limit of 1
  EXPECT_TRUE(l.TryAcquire("C", 0));
  l.Release("unknown");  // ignored
  EXPECT_EQ(l.open(), 3u);
}

}  // namespace
}  // namespace phi::dicom
