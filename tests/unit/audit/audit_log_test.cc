// Tests of the audit record format and chain with an in-memory row source
// (the SQLite-backed source is exercised in tests/unit/index/).
#include "libphi/audit/audit_log.h"

#include <gtest/gtest.h>

#include <map>

namespace phi::audit {
namespace {

crypto::Digest Key(uint8_t seed) {
  crypto::Digest k;
  for (size_t i = 0; i < k.size(); ++i) k[i] = std::byte(static_cast<uint8_t>(seed + i));
  return k;
}

MacFn HmacWith(crypto::Digest key) {
  return [key](crypto::ByteSpan d) { return crypto::HmacSha256(key, d); };
}

// Rows kept in a map by seq, like the audit table.
class VectorReader : public AuditReader {
 public:
  Result<std::vector<AuditRecord>> ReadAudit(int64_t after, size_t limit) override {
    std::vector<AuditRecord> out;
    for (auto it = rows.upper_bound(after); it != rows.end() && out.size() < limit; ++it) {
      out.push_back(it->second);
    }
    return out;
  }
  Result<std::optional<std::string>> ReadAuditHead() override { return head; }
  std::map<int64_t, AuditRecord> rows;
  std::optional<std::string> head;
};

AuditEvent Ev(int i) {
  AuditEvent e;
  e.actor = "dicom:MOD" + std::to_string(i % 3);
  e.action = "store";
  e.object = "object:" + std::to_string(i);
  e.outcome = "ok";
  e.peer = "10.0.0.1:" + std::to_string(1000 + i);
  e.detail = "";
  return e;
}

VectorReader Chain(int n, const MacFn& mac) {
  VectorReader r;
  ChainHead head;
  for (int i = 0; i < n; ++i) {
    auto rec = MakeNext(head, Ev(i), 1700000000000000 + i, mac);
    EXPECT_TRUE(rec.ok()) << rec.status().ToString();
    r.rows[rec->seq] = *rec;
  }
  if (n > 0) r.head = EncodeSignedHead(head, mac);
  return r;
}

TEST(AuditCanonical, LayoutIsVersionedAndLengthPrefixed) {
  AuditRecord r;
  r.seq = 0x0102;
  r.time_us = 5;
  r.actor = "ab";
  r.action = "c";
  std::string c = Canonical(r);
  ASSERT_EQ(c.size(), 1u + 8 + 8 + 6 * 4 + 3);
  EXPECT_EQ(c[0], char(kCanonicalVersion));
  EXPECT_EQ(c.substr(1, 8), std::string("\0\0\0\0\0\0\x01\x02", 8));
  EXPECT_EQ(c.substr(17, 6), std::string("\0\0\0\x02"
                                         "ab",
                                         6));
  // Moving a byte between adjacent fields changes the serialisation.
  AuditRecord r2 = r;
  r2.actor = "a";
  r2.action = "bc";
  EXPECT_NE(Canonical(r2), c);
}

TEST(AuditChain, GenesisLinksAndHashes) {
  MacFn mac = HmacWith(Key(1));
  VectorReader r = Chain(3, mac);
  ASSERT_EQ(r.rows.size(), 3u);
  for (std::byte b : r.rows[1].prev_hash) EXPECT_EQ(b, std::byte{0});
  EXPECT_EQ(r.rows[2].prev_hash, RecordHash(r.rows[1]));
  EXPECT_EQ(r.rows[3].prev_hash, RecordHash(r.rows[2]));
  std::string in = ChainInput(r.rows[2]);
  EXPECT_EQ(r.rows[2].mac, crypto::HmacSha256(Key(1), crypto::AsBytes(in)));
}

TEST(AuditChain, RejectsOversizedFields) {
  ChainHead head;
  AuditEvent e = Ev(0);
  e.actor.assign(kMaxShortField + 1, 'x');
  EXPECT_EQ(MakeNext(head, e, 1, HmacWith(Key(1))).status().code(), Code::kInvalidArgument);
  e = Ev(0);
  e.detail.assign(kMaxDetailField + 1, 'x');
  EXPECT_EQ(MakeNext(head, e, 1, HmacWith(Key(1))).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(head.seq, 0);  // head untouched on failure
}

TEST(AuditVerify, IntactChainIsOkAcrossPages) {
  MacFn mac = HmacWith(Key(2));
  VectorReader r = Chain(1200, mac);  // > one verify page
  auto rep = Verify(r, mac);
  ASSERT_TRUE(rep.ok());
  EXPECT_TRUE(rep->ok);
  EXPECT_EQ(rep->count, 1200);
  EXPECT_EQ(rep->last_seq, 1200);
  EXPECT_EQ(rep->head.hash, RecordHash(r.rows[1200]));
}

TEST(AuditVerify, EmptyChainIsOk) {
  VectorReader r;
  auto rep = Verify(r, HmacWith(Key(2)));
  ASSERT_TRUE(rep.ok());
  EXPECT_TRUE(rep->ok);
  EXPECT_EQ(rep->count, 0);
}

TEST(AuditVerify, DetectsEachTamper) {
  MacFn mac = HmacWith(Key(3));
  {
    VectorReader r = Chain(10, mac);
    r.rows[4].object = "object:999";
    auto rep = Verify(r, mac);
    ASSERT_TRUE(rep.ok());
    EXPECT_FALSE(rep->ok);
    EXPECT_EQ(rep->broken_seq, 4);
    EXPECT_EQ(rep->reason, BreakReason::kMacMismatch);
  }
  {
    VectorReader r = Chain(10, mac);
    r.rows.erase(6);
    auto rep = Verify(r, mac);
    EXPECT_EQ(rep->broken_seq, 6);
    EXPECT_EQ(rep->reason, BreakReason::kSeqGap);
  }
  {
    VectorReader r = Chain(10, mac);
    r.rows.erase(1);
    auto rep = Verify(r, mac);
    EXPECT_EQ(rep->broken_seq, 1);
    EXPECT_EQ(rep->reason, BreakReason::kBadGenesis);
  }
  {
    VectorReader r = Chain(10, mac);
    AuditRecord a = r.rows[3], b = r.rows[7];
    std::swap(a.seq, b.seq);  // contents swapped, seqs stay
    r.rows[3] = b;
    r.rows[7] = a;
    auto rep = Verify(r, mac);
    EXPECT_EQ(rep->broken_seq, 3);
    EXPECT_EQ(rep->reason, BreakReason::kPrevHashMismatch);
  }
  {
    VectorReader r = Chain(10, mac);
    r.rows[9].mac[0] ^= std::byte{1};
    auto rep = Verify(r, mac);
    EXPECT_EQ(rep->broken_seq, 9);
    EXPECT_EQ(rep->reason, BreakReason::kMacMismatch);
  }
  {
    // Tail truncation: the rows are a valid chain, but the signed head is further on.
    VectorReader r = Chain(10, mac);
    r.rows.erase(10);
    r.rows.erase(9);
    auto rep = Verify(r, mac);
    EXPECT_EQ(rep->broken_seq, 9);
    EXPECT_EQ(rep->reason, BreakReason::kTruncated);
    EXPECT_EQ(rep->last_seq, 8);
  }
  {
    // A head re-signed by someone without the key, or removed.
    VectorReader r = Chain(10, mac);
    r.rows.erase(10);
    ChainHead forged{9, RecordHash(r.rows[9])};
    r.head = EncodeSignedHead(forged, HmacWith(Key(9)));
    auto rep = Verify(r, mac);
    EXPECT_EQ(rep->reason, BreakReason::kBadHead);
    r.head.reset();
    EXPECT_EQ(Verify(r, mac)->reason, BreakReason::kBadHead);
  }
  {
    // A chain written under another key does not verify.
    VectorReader r = Chain(3, HmacWith(Key(4)));
    auto rep = Verify(r, mac);
    EXPECT_EQ(rep->broken_seq, 1);
    EXPECT_EQ(rep->reason, BreakReason::kMacMismatch);
  }
}

}  // namespace
}  // namespace phi::audit
