// Pruning anchors in Verify, the ATNA (RFC 5424 + DICOM PS3.15 A.5) rendering,
// export ranges and time parsing, with an in-memory row source.
#include <gtest/gtest.h>

#include <map>

#include "libphi/audit/audit_atna.h"
#include "libphi/audit/audit_export.h"
#include "libphi/audit/audit_log.h"

namespace phi::audit {
namespace {

MacFn HmacWith(uint8_t seed) {
  crypto::Digest key;
  for (size_t i = 0; i < key.size(); ++i) key[i] = std::byte(static_cast<uint8_t>(seed + i));
  return [key](crypto::ByteSpan d) { return crypto::HmacSha256(key, d); };
}

class MapReader : public AuditReader {
 public:
  Result<std::vector<AuditRecord>> ReadAudit(int64_t after, size_t limit) override {
    std::vector<AuditRecord> out;
    for (auto it = rows.upper_bound(after); it != rows.end() && out.size() < limit; ++it) {
      out.push_back(it->second);
    }
    return out;
  }
  Result<std::optional<std::string>> ReadAuditHead() override { return head; }
  Result<std::optional<std::string>> ReadAuditAnchor() override { return anchor; }
  std::map<int64_t, AuditRecord> rows;
  std::optional<std::string> head, anchor;
};

MapReader Chain(int n, const MacFn& mac) {
  MapReader r;
  ChainHead head;
  for (int i = 0; i < n; ++i) {
    AuditEvent e;
    e.actor = "dicom:MOD";
    e.action = "store";
    e.object = "object:" + std::to_string(i);
    e.outcome = "ok";
    auto rec = MakeNext(head, e, 1700000000000000 + i, mac);
    EXPECT_TRUE(rec.ok());
    r.rows[rec->seq] = *rec;
  }
  r.head = EncodeSignedHead(head, mac);
  return r;
}

// Deletes rows 1..through and leaves the anchor pruning would leave.
void Prune(MapReader& r, int64_t through, const MacFn& mac) {
  ChainHead a{through, RecordHash(r.rows.at(through))};
  for (int64_t s = 1; s <= through; ++s) r.rows.erase(s);
  r.anchor = EncodeAnchor(a, mac);
}

TEST(AuditAnchor, PrunedChainVerifiesFromTheAnchor) {
  MacFn mac = HmacWith(1);
  MapReader r = Chain(10, mac);
  Prune(r, 4, mac);
  auto v = Verify(r, mac);
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok) << BreakReasonName(v->reason);
  EXPECT_EQ(v->count, 6);
  EXPECT_EQ(v->anchor_seq, 4);
  EXPECT_EQ(v->last_seq, 10);
}

TEST(AuditAnchor, EverythingPrunedStillVerifiesAgainstTheHead) {
  MacFn mac = HmacWith(1);
  MapReader r = Chain(5, mac);
  Prune(r, 5, mac);
  auto v = Verify(r, mac);
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok) << BreakReasonName(v->reason);
  EXPECT_EQ(v->count, 0);
}

TEST(AuditAnchor, TampersAroundTheAnchorAreFound) {
  MacFn mac = HmacWith(1);
  {  // anchor removed: the chain no longer starts at genesis
    MapReader r = Chain(10, mac);
    Prune(r, 4, mac);
    r.anchor.reset();
    auto v = Verify(r, mac);
    ASSERT_TRUE(v.ok());
    EXPECT_FALSE(v->ok);
    EXPECT_EQ(v->reason, BreakReason::kBadGenesis);
  }
  {  // anchor forged without the key
    MapReader r = Chain(10, mac);
    Prune(r, 4, mac);
    r.anchor = EncodeAnchor({6, RecordHash(r.rows.at(6))}, HmacWith(2));
    auto v = Verify(r, mac);
    ASSERT_TRUE(v.ok());
    EXPECT_EQ(v->reason, BreakReason::kBadAnchor);
  }
  {  // the first row after the anchor deleted as well
    MapReader r = Chain(10, mac);
    Prune(r, 4, mac);
    r.rows.erase(5);
    auto v = Verify(r, mac);
    ASSERT_TRUE(v.ok());
    EXPECT_EQ(v->reason, BreakReason::kSeqGap);
    EXPECT_EQ(v->broken_seq, 5);
  }
  {  // a row left below the anchor
    MapReader r = Chain(10, mac);
    AuditRecord keep = r.rows.at(2);
    Prune(r, 4, mac);
    r.rows[2] = keep;
    auto v = Verify(r, mac);
    ASSERT_TRUE(v.ok());
    EXPECT_EQ(v->reason, BreakReason::kBadGenesis);
  }
  {  // an anchor moved forward (re-MAC'd with the right key but a wrong hash)
    MapReader r = Chain(10, mac);
    Prune(r, 4, mac);
    r.anchor = EncodeAnchor({4, RecordHash(r.rows.at(7))}, mac);
    auto v = Verify(r, mac);
    ASSERT_TRUE(v.ok());
    EXPECT_EQ(v->reason, BreakReason::kPrevHashMismatch);
    EXPECT_EQ(v->broken_seq, 5);
  }
}

TEST(AuditAnchor, DecodeChecksSizeAndMac) {
  MacFn mac = HmacWith(3);
  ChainHead a{7, {}};
  std::string blob = EncodeAnchor(a, mac);
  ASSERT_EQ(blob.size(), kSignedHeadBytes);
  auto d = DecodeAnchor(blob, mac);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->seq, 7);
  EXPECT_FALSE(DecodeAnchor(blob.substr(1), mac).ok());
  // A head is not an anchor (different MAC domain).
  EXPECT_FALSE(DecodeAnchor(EncodeSignedHead(a, mac), mac).ok());
}

AuditRecord Rec(std::string action, std::string outcome) {
  AuditRecord r;
  r.seq = 42;
  r.time_us = 1795638600123456;
  r.actor = "web:CN=a<b>&\"c\",O=x";
  r.action = std::move(action);
  r.object = "study:7";
  r.outcome = std::move(outcome);
  r.peer = "10.1.2.3:5555";
  r.detail = "line1\nline2";
  return r;
}

TEST(AuditAtna, SyslogHeaderAndDicomMessage) {
  AtnaOptions o;
  o.hostname = "pacs gw";  // a space is not allowed in HOSTNAME: dropped
  std::string line = ToAtnaSyslog(Rec("erase", "ok"), o);
  EXPECT_EQ(line.rfind("<85>1 2026-11-25T20:30:00.123456Z pacsgw phigated - IHE+RFC-3881 "
                       "[phigate@32473 seq=\"42\" mac=\"",
                       0),
            0u)
      << line;
  EXPECT_EQ(line.find('\n'), std::string::npos);
  EXPECT_NE(line.find("<AuditMessage><EventIdentification EventActionCode=\"D\" "
                      "EventDateTime=\"2026-11-25T20:30:00.123456Z\" EventOutcomeIndicator=\"0\">"
                      "<EventID csd-code=\"110105\" codeSystemName=\"DCM\""),
            std::string::npos)
      << line;
  // Markup in fields is escaped, never injected.
  EXPECT_NE(line.find("UserID=\"web:CN=a&lt;b&gt;&amp;&quot;c&quot;,O=x\""), std::string::npos);
  EXPECT_NE(line.find("NetworkAccessPointID=\"10.1.2.3\""), std::string::npos);
  EXPECT_NE(line.find("ParticipantObjectID=\"study:7\""), std::string::npos);
  // The detail (which has a newline) is carried base64-encoded.
  EXPECT_NE(line.find("value=\"bGluZTEKbGluZTI=\""), std::string::npos);
  EXPECT_NE(line.find("AuditSourceID=\"phigated@pacsgw\""), std::string::npos);
}

TEST(AuditAtna, FailuresAreWarningsWithTheirOutcome) {
  std::string denied = ToAtnaSyslog(Rec("admin_connect", "denied"), {});
  EXPECT_EQ(denied.rfind("<84>1 ", 0), 0u);
  EXPECT_NE(denied.find("EventOutcomeIndicator=\"4\""), std::string::npos);
  EXPECT_NE(denied.find("csd-code=\"110114\""), std::string::npos);
  std::string err = ToAtnaSyslog(Rec("store", "error:IOError"), {});
  EXPECT_NE(err.find("EventOutcomeIndicator=\"8\""), std::string::npos);
  EXPECT_NE(err.find("EventActionCode=\"C\""), std::string::npos);
  EXPECT_NE(err.find("csd-code=\"110104\""), std::string::npos);
}

TEST(AuditExport, RangeFiltersByTimeAndPages) {
  MacFn mac = HmacWith(1);
  MapReader r = Chain(1200, mac);  // time_us = 1700000000000000 + i
  std::vector<int64_t> seqs;
  ExportRange range;
  range.since_us = 1700000000000000 + 100;
  range.until_us = 1700000000000000 + 1100;
  auto res = ExportRecords(r, range, [&](const AuditRecord& rec) {
    seqs.push_back(rec.seq);
    return Status::Ok();
  });
  ASSERT_TRUE(res.ok());
  EXPECT_EQ(res->count, 1000);
  EXPECT_EQ(seqs.front(), 101);
  EXPECT_EQ(seqs.back(), 1100);
  EXPECT_FALSE(res->more);
  range.max_records = 10;
  range.after_seq = 500;
  seqs.clear();
  res = ExportRecords(r, range, [&](const AuditRecord& rec) {
    seqs.push_back(rec.seq);
    return Status::Ok();
  });
  ASSERT_TRUE(res.ok());
  EXPECT_EQ(res->count, 10);
  EXPECT_TRUE(res->more);
  EXPECT_EQ(res->last_seq, 510);
  EXPECT_EQ(seqs.front(), 501);
}

TEST(AuditExport, ParsesDatesAndTimes) {
  EXPECT_EQ(*ParseTimeUs("1970-01-01"), 0);
  EXPECT_EQ(*ParseTimeUs("2026-11-25T20:30:00Z"), 1795638600LL * 1000000);
  EXPECT_EQ(*ParseTimeUs("2026-11-25T20:30:00.5Z"), 1795638600LL * 1000000 + 500000);
  EXPECT_EQ(*ParseTimeUs("2000-02-29"), 951782400LL * 1000000);
  for (const char* bad : {"", "2026", "2026-13-01", "2026-11-25T20:30:00", "2026-11-25T20:30Z",
                          "2026-11-25X", "2026-11-25T20:30:00.Z", "20261125"}) {
    EXPECT_FALSE(ParseTimeUs(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace phi::audit
