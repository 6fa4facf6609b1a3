// phi::audit: the tamper-evident audit trail's record format and hash chain.
//
// Owns: the AuditEvent/AuditRecord types, the canonical (versioned,
// length-prefixed) serialisation, the chain rule, the `audit` table DDL, and
// Verify(). It knows no SQL driver, no keys and no protocols: the MAC is an
// injected function (the vault provides HMAC-SHA256 under its derived audit
// key), and rows are appended by the catalog inside the caller's write
// transaction (index/), so a record commits atomically with what it describes.
//
// Chain (genesis prev_hash = 32 zero bytes, first seq = 1):
//   canonical_i = Canonical(record_i)            (includes seq and time)
//   hash_i      = SHA-256(prev_hash_i || canonical_i)
//   mac_i       = MAC(prev_hash_i || canonical_i)
//   prev_hash_{i+1} = hash_i
//
// PHI: every string field holds internal ids, UIDs, AE titles, certificate
// subjects, peer addresses or fixed vocabulary - never patient names, patient
// ids, birth dates or accession numbers. Callers are responsible for this;
// records are exported and shown to auditors.
//
// Thread-safety: free functions are thread-safe (given a thread-safe MacFn).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "libphi/crypto/crypto.h"
#include "libphi/util/env.h"
#include "libphi/util/status.h"

namespace phi::audit {

using MacFn = std::function<crypto::Digest(crypto::ByteSpan)>;

// What happened. Strings are bounded (see kMax*); no PHI (see header comment).
struct AuditEvent {
  SystemTime time{};    // epoch (default) = "now" from the catalog's Env
  std::string actor;    // "dicom:MODALITY1", "web:CN=viewer1", "admin:uid=0", "system"
  std::string action;   // "store", "query", "retrieve", "erase", "login_failure", ...
  std::string object;   // internal ids: "study:<pk>", "object:<id>", "key:<key_id>"
  std::string outcome;  // "ok", "denied", "error:<code>"
  std::string peer;     // "10.1.2.3:51234", "" for local actions
  std::string detail;   // free text, still no PHI (e.g. an erasure certificate)
};

inline constexpr size_t kMaxShortField = 1024;    // actor, action, object, outcome, peer
inline constexpr size_t kMaxDetailField = 16384;  // detail
inline constexpr uint8_t kCanonicalVersion = 1;

// A stored row of the `audit` table.
struct AuditRecord {
  int64_t seq = 0;
  int64_t time_us = 0;  // microseconds since the Unix epoch
  std::string actor, action, object, outcome, peer, detail;
  crypto::Digest prev_hash{};
  crypto::Digest mac{};
};

// The end of the chain: the last record's seq and hash (genesis: 0 and zeros).
struct ChainHead {
  int64_t seq = 0;
  crypto::Digest hash{};
};

// InvalidArgument if a field is longer than its bound.
Status ValidateEvent(const AuditEvent& ev);

// Canonical serialisation of everything but prev_hash and mac:
//   u8 version(=1) | u64be seq | i64be time_us | 6 x (u32be len | bytes)
// in the order actor, action, object, outcome, peer, detail.
std::string Canonical(const AuditRecord& r);

// prev_hash || Canonical(r): the bytes that are hashed and MAC'd.
std::string ChainInput(const AuditRecord& r);

// SHA-256(prev_hash || canonical): the next record's prev_hash.
crypto::Digest RecordHash(const AuditRecord& r);

// Builds the record that follows `head` (seq, prev_hash, mac filled in) and
// advances `head`. REQUIRES: mac is callable.
Result<AuditRecord> MakeNext(ChainHead& head, const AuditEvent& ev, int64_t time_us,
                             const MacFn& mac);

// The signed chain head, kept by the catalog next to the rows (meta key
// kHeadMetaKey) and updated in the same transaction as every append, so that
// deleting the last rows (tail truncation) is detected. Layout:
//   u64be seq | hash (32) | MAC("phigate-audit-head-v1" | u64be seq | hash) (32)
inline constexpr const char* kHeadMetaKey = "audit.head";
inline constexpr size_t kSignedHeadBytes = 8 + 32 + 32;
std::string EncodeSignedHead(const ChainHead& head, const MacFn& mac);
// Corruption if the size or the MAC is wrong.
Result<ChainHead> DecodeSignedHead(std::string_view blob, const MacFn& mac);
// The seq and hash without checking the MAC (Corruption on a bad size). For
// the catalog at Open, before the MAC key is available: an unverified head
// is only used to keep a truncation visible, never to vouch for anything.
Result<ChainHead> ParseSignedHeadUnverified(std::string_view blob);

// The signed anchor left by pruning (meta key kAnchorMetaKey): the seq and
// hash of the last pruned row, so that the first remaining row (anchor.seq + 1)
// chains to it. Same layout as the head, MAC domain "phigate-audit-anchor-v1":
//   u64be seq | hash (32) | MAC("phigate-audit-anchor-v1" | u64be seq | hash) (32)
inline constexpr const char* kAnchorMetaKey = "audit.anchor";
std::string EncodeAnchor(const ChainHead& anchor, const MacFn& mac);
// Corruption if the size or the MAC is wrong.
Result<ChainHead> DecodeAnchor(std::string_view blob, const MacFn& mac);

// DDL of the audit table; the catalog runs it in its migrations.
std::string_view TableDdl();

// Pages through the audit rows in seq order (implemented by the catalog).
class AuditReader {
 public:
  virtual ~AuditReader() = default;
  // Up to `limit` rows with seq > after_seq, ascending by seq.
  virtual Result<std::vector<AuditRecord>> ReadAudit(int64_t after_seq, size_t limit) = 0;
  // The signed head (EncodeSignedHead), or nullopt when none was ever written.
  virtual Result<std::optional<std::string>> ReadAuditHead() = 0;
  // The signed anchor (EncodeAnchor), or nullopt when the chain was never
  // pruned (it then starts at seq 1 with a zero prev_hash).
  virtual Result<std::optional<std::string>> ReadAuditAnchor() {
    return std::optional<std::string>();
  }
};

enum class BreakReason : uint8_t {
  kNone = 0,
  kBadGenesis,        // first row is not seq 1 with a zero prev_hash
  kSeqGap,            // a seq is missing: a row was deleted
  kPrevHashMismatch,  // prev_hash != hash of the previous row: reordered/inserted row
  kMacMismatch,       // the row's contents or its mac were edited
  kTruncated,         // rows after last_seq are missing (the signed head is further on)
  kBadHead,           // the signed head is missing, forged, or behind the rows
  kBadAnchor,         // the pruning anchor is forged or malformed
};
std::string_view BreakReasonName(BreakReason r);

struct VerifyReport {
  bool ok = true;
  int64_t count = 0;       // rows checked (up to and including the broken one)
  int64_t last_seq = 0;    // last good seq
  int64_t broken_seq = 0;  // first broken seq (0 when ok)
  BreakReason reason = BreakReason::kNone;
  ChainHead head;          // hash of the last good row
  int64_t anchor_seq = 0;  // records 1..anchor_seq were pruned (0: never pruned)
};

// Walks every row by seq (from seq 1, or from the signed anchor after pruning:
// the first row must then be anchor.seq + 1 and chain to anchor.hash; a bad
// anchor MAC is kBadAnchor, a first row that does not follow it kBadGenesis)
// and reports OK + count, or the first broken seq and
// why, then checks the last row against the signed head (kTruncated: broken_seq
// is the first missing seq; kBadHead: broken_seq is the last row's seq + 1). Errors reading rows
// are returned as a Status (not a report).
Result<VerifyReport> Verify(AuditReader& reader, const MacFn& mac);

}  // namespace phi::audit
