#include "libphi/audit/audit_log.h"

#include <cstring>

namespace phi::audit {
namespace {

constexpr size_t kVerifyPage = 512;

void PutU32(std::string& out, uint32_t v) {
  for (int i = 3; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void PutU64(std::string& out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void PutField(std::string& out, std::string_view s) {
  PutU32(out, static_cast<uint32_t>(s.size()));
  out.append(s);
}

bool IsZero(const crypto::Digest& d) {
  for (std::byte b : d) {
    if (b != std::byte{0}) return false;
  }
  return true;
}

}  // namespace

Status ValidateEvent(const AuditEvent& ev) {
  for (const std::string* f : {&ev.actor, &ev.action, &ev.object, &ev.outcome, &ev.peer}) {
    if (f->size() > kMaxShortField) {
      return Status::InvalidArgument("audit: field longer than " + std::to_string(kMaxShortField));
    }
  }
  if (ev.detail.size() > kMaxDetailField) {
    return Status::InvalidArgument("audit: detail longer than " + std::to_string(kMaxDetailField));
  }
  if (ev.action.empty()) return Status::InvalidArgument("audit: empty action");
  return Status::Ok();
}

std::string Canonical(const AuditRecord& r) {
  std::string out;
  out.reserve(1 + 8 + 8 + 6 * 4 + r.actor.size() + r.action.size() + r.object.size() +
              r.outcome.size() + r.peer.size() + r.detail.size());
  out.push_back(static_cast<char>(kCanonicalVersion));
  PutU64(out, static_cast<uint64_t>(r.seq));
  PutU64(out, static_cast<uint64_t>(r.time_us));
  PutField(out, r.actor);
  PutField(out, r.action);
  PutField(out, r.object);
  PutField(out, r.outcome);
  PutField(out, r.peer);
  PutField(out, r.detail);
  return out;
}

std::string ChainInput(const AuditRecord& r) {
  std::string out(reinterpret_cast<const char*>(r.prev_hash.data()), r.prev_hash.size());
  out += Canonical(r);
  return out;
}

crypto::Digest RecordHash(const AuditRecord& r) {
  return crypto::Sha256(crypto::AsBytes(ChainInput(r)));
}

Result<AuditRecord> MakeNext(ChainHead& head, const AuditEvent& ev, int64_t time_us,
                             const MacFn& mac) {
  PHI_RETURN_IF_ERROR(ValidateEvent(ev));
  if (!mac) return Status::Internal("audit: no MAC function configured");
  AuditRecord r;
  r.seq = head.seq + 1;
  r.time_us = time_us;
  r.actor = ev.actor;
  r.action = ev.action;
  r.object = ev.object;
  r.outcome = ev.outcome;
  r.peer = ev.peer;
  r.detail = ev.detail;
  r.prev_hash = head.hash;
  const std::string input = ChainInput(r);
  r.mac = mac(crypto::AsBytes(input));
  head.seq = r.seq;
  head.hash = crypto::Sha256(crypto::AsBytes(input));
  return r;
}

namespace {
std::string HeadMacInput(const ChainHead& head, std::string_view domain = "phigate-audit-head-v1") {
  std::string in(domain);
  PutU64(in, static_cast<uint64_t>(head.seq));
  in.append(reinterpret_cast<const char*>(head.hash.data()), head.hash.size());
  return in;
}
}  // namespace

std::string EncodeSignedHead(const ChainHead& head, const MacFn& mac) {
  std::string out;
  PutU64(out, static_cast<uint64_t>(head.seq));
  out.append(reinterpret_cast<const char*>(head.hash.data()), head.hash.size());
  const crypto::Digest m = mac(crypto::AsBytes(HeadMacInput(head)));
  out.append(reinterpret_cast<const char*>(m.data()), m.size());
  return out;
}

Result<ChainHead> ParseSignedHeadUnverified(std::string_view blob) {
  if (blob.size() != kSignedHeadBytes) return Status::Corruption("audit: bad signed head size");
  ChainHead head;
  uint64_t seq = 0;
  for (int i = 0; i < 8; ++i) seq = (seq << 8) | static_cast<uint8_t>(blob[i]);
  head.seq = static_cast<int64_t>(seq);
  std::memcpy(head.hash.data(), blob.data() + 8, head.hash.size());
  return head;
}

namespace {
constexpr std::string_view kAnchorDomain = "phigate-audit-anchor-v1";
}  // namespace

std::string EncodeAnchor(const ChainHead& anchor, const MacFn& mac) {
  std::string out;
  PutU64(out, static_cast<uint64_t>(anchor.seq));
  out.append(reinterpret_cast<const char*>(anchor.hash.data()), anchor.hash.size());
  const crypto::Digest m = mac(crypto::AsBytes(HeadMacInput(anchor, kAnchorDomain)));
  out.append(reinterpret_cast<const char*>(m.data()), m.size());
  return out;
}

Result<ChainHead> DecodeAnchor(std::string_view blob, const MacFn& mac) {
  if (blob.size() != kSignedHeadBytes) return Status::Corruption("audit: bad anchor size");
  PHI_ASSIGN_OR_RETURN(ChainHead anchor, ParseSignedHeadUnverified(blob));
  if (anchor.seq <= 0) return Status::Corruption("audit: bad anchor seq");
  const crypto::Digest want = mac(crypto::AsBytes(HeadMacInput(anchor, kAnchorDomain)));
  if (!crypto::ConstantTimeEqual(want, crypto::AsBytes(blob.substr(40)))) {
    return Status::Corruption("audit: anchor MAC mismatch");
  }
  return anchor;
}

Result<ChainHead> DecodeSignedHead(std::string_view blob, const MacFn& mac) {
  PHI_ASSIGN_OR_RETURN(ChainHead head, ParseSignedHeadUnverified(blob));
  const crypto::Digest want = mac(crypto::AsBytes(HeadMacInput(head)));
  if (!crypto::ConstantTimeEqual(want, crypto::AsBytes(blob.substr(40)))) {
    return Status::Corruption("audit: signed head MAC mismatch");
  }
  return head;
}

std::string_view TableDdl() {
  return "CREATE TABLE audit ("
         " seq INTEGER PRIMARY KEY,"  // assigned by the writer: last seq + 1, never reused
         " time_us INTEGER NOT NULL,"
         " actor TEXT NOT NULL,"
         " action TEXT NOT NULL,"
         " object TEXT NOT NULL,"
         " outcome TEXT NOT NULL,"
         " peer TEXT NOT NULL,"
         " detail TEXT NOT NULL,"
         " prev_hash BLOB NOT NULL CHECK (length(prev_hash) = 32),"
         " mac BLOB NOT NULL CHECK (length(mac) = 32)"
         ");"
         "CREATE INDEX audit_time ON audit(time_us);";
}

std::string_view BreakReasonName(BreakReason r) {
  switch (r) {
    case BreakReason::kNone:
      return "none";
    case BreakReason::kBadGenesis:
      return "bad_genesis";
    case BreakReason::kSeqGap:
      return "seq_gap";
    case BreakReason::kPrevHashMismatch:
      return "prev_hash_mismatch";
    case BreakReason::kMacMismatch:
      return "mac_mismatch";
    case BreakReason::kTruncated:
      return "truncated";
    case BreakReason::kBadHead:
      return "bad_head";
    case BreakReason::kBadAnchor:
      return "bad_anchor";
  }
  return "unknown";
}

Result<VerifyReport> Verify(AuditReader& reader, const MacFn& mac) {
  if (!mac) return Status::InvalidArgument("audit verify: no MAC function");
  VerifyReport rep;
  auto fail = [&rep](int64_t seq, BreakReason why) {
    rep.ok = false;
    rep.broken_seq = seq;
    rep.reason = why;
    return rep;
  };
  int64_t after = 0;
  bool first = true;
  PHI_ASSIGN_OR_RETURN(std::optional<std::string> anchor_blob, reader.ReadAuditAnchor());
  if (anchor_blob) {
    Result<ChainHead> anchor = DecodeAnchor(*anchor_blob, mac);
    if (!anchor.ok()) return fail(1, BreakReason::kBadAnchor);
    rep.anchor_seq = anchor->seq;
    rep.head = *anchor;
    rep.last_seq = anchor->seq;
    after = anchor->seq;
  }
  for (;;) {
    // From 0 even after pruning: a row left below the anchor is a break too.
    PHI_ASSIGN_OR_RETURN(std::vector<AuditRecord> rows,
                         reader.ReadAudit(first ? 0 : after, kVerifyPage));
    if (rows.empty()) break;
    for (const AuditRecord& r : rows) {
      ++rep.count;
      if (first) {
        first = false;
        if (rep.anchor_seq == 0) {
          if (r.seq != 1 || !IsZero(r.prev_hash)) return fail(1, BreakReason::kBadGenesis);
        } else if (r.seq != rep.anchor_seq + 1) {
          return fail(rep.anchor_seq + 1,
                      r.seq <= rep.anchor_seq ? BreakReason::kBadGenesis : BreakReason::kSeqGap);
        }
      } else if (r.seq != rep.head.seq + 1) {
        // The first missing seq is where the chain was cut.
        return fail(rep.head.seq + 1, BreakReason::kSeqGap);
      }
      if (!crypto::ConstantTimeEqual(r.prev_hash, rep.head.hash)) {
        return fail(r.seq, BreakReason::kPrevHashMismatch);
      }
      const std::string input = ChainInput(r);
      const crypto::Digest want = mac(crypto::AsBytes(input));
      if (!crypto::ConstantTimeEqual(want, r.mac)) return fail(r.seq, BreakReason::kMacMismatch);
      rep.head.seq = r.seq;
      rep.head.hash = crypto::Sha256(crypto::AsBytes(input));
      rep.last_seq = r.seq;
    }
    after = rows.back().seq;
    if (rows.size() < kVerifyPage) break;
  }
  // The rows are a valid chain; does it end where the signed head says?
  PHI_ASSIGN_OR_RETURN(std::optional<std::string> blob, reader.ReadAuditHead());
  if (!blob) {
    if (rep.count == 0 && rep.anchor_seq == 0) return rep;  // nothing was ever appended
    return fail(rep.last_seq + 1, BreakReason::kBadHead);
  }
  Result<ChainHead> head = DecodeSignedHead(*blob, mac);
  if (!head.ok()) return fail(rep.last_seq + 1, BreakReason::kBadHead);
  if (head->seq > rep.last_seq) return fail(rep.last_seq + 1, BreakReason::kTruncated);
  if (head->seq < rep.last_seq || !crypto::ConstantTimeEqual(head->hash, rep.head.hash)) {
    return fail(rep.last_seq + 1, BreakReason::kBadHead);
  }
  return rep;
}

}  // namespace phi::audit
