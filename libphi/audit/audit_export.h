// phi::audit export: audit records as JSON lines (one object per record),
// for `phigatectl audit export` and SIEM ingestion. Fields: seq, time
// (RFC 3339 UTC, microseconds), time_us, actor, action, object, outcome, peer,
// detail, prev_hash and mac (lowercase hex). Invalid UTF-8 is replaced
// (U+FFFD), never an error. Records carry no PHI by contract (audit_log.h).
// Thread-safety: free functions; the reader and sink are used from the caller's thread.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "libphi/audit/audit_log.h"

namespace phi::audit {

// One record as a JSON object (no trailing newline).
std::string ToJsonLine(const AuditRecord& r);

// Formats microseconds since the epoch as "YYYY-MM-DDTHH:MM:SS.uuuuuuZ".
std::string FormatTimeUs(int64_t time_us);

// Streams every record with seq > after_seq, in seq order, to sink (one line
// per call, without newline). Stops at the first sink error. Returns the count.
Result<int64_t> ExportJsonLines(AuditReader& reader, int64_t after_seq,
                                const std::function<Status(std::string_view line)>& sink);

// Which records an export covers. Time bounds are on the record's time_us
// (inclusive since, exclusive until); records are still visited in seq order.
struct ExportRange {
  int64_t after_seq = 0;
  int64_t since_us = INT64_MIN;
  int64_t until_us = INT64_MAX;
  size_t max_records = 0;  // 0 = no limit; otherwise stop after this many
};

struct ExportResult {
  int64_t count = 0;     // records passed to the sink
  int64_t last_seq = 0;  // seq of the last record passed (0 if none)
  bool more = false;     // stopped at max_records with records possibly left
};

// Calls sink for every record in range, in seq order. Stops at the first sink error.
Result<ExportResult> ExportRecords(AuditReader& reader, const ExportRange& range,
                                   const std::function<Status(const AuditRecord&)>& sink);

// Parses "YYYY-MM-DD" (midnight UTC) or "YYYY-MM-DDTHH:MM:SS[.frac]Z" into
// microseconds since the epoch. InvalidArgument otherwise.
Result<int64_t> ParseTimeUs(std::string_view text);

}  // namespace phi::audit
