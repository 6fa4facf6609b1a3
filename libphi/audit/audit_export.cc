#include "libphi/audit/audit_export.h"

#include <ctime>
#include <nlohmann/json.hpp>

namespace phi::audit {
namespace {
constexpr size_t kExportPage = 512;
}  // namespace

std::string FormatTimeUs(int64_t time_us) {
  int64_t secs = time_us / 1'000'000;
  int64_t us = time_us % 1'000'000;
  if (us < 0) {
    us += 1'000'000;
    secs -= 1;
  }
  std::time_t t = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<long long>(us));
  return buf;
}

std::string ToJsonLine(const AuditRecord& r) {
  nlohmann::ordered_json j;
  j["seq"] = r.seq;
  j["time"] = FormatTimeUs(r.time_us);
  j["time_us"] = r.time_us;
  j["actor"] = r.actor;
  j["action"] = r.action;
  j["object"] = r.object;
  j["outcome"] = r.outcome;
  j["peer"] = r.peer;
  j["detail"] = r.detail;
  j["prev_hash"] = crypto::ToHex(r.prev_hash);
  j["mac"] = crypto::ToHex(r.mac);
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Result<int64_t> ExportJsonLines(AuditReader& reader, int64_t after_seq,
                                const std::function<Status(std::string_view line)>& sink) {
  int64_t count = 0;
  for (;;) {
    PHI_ASSIGN_OR_RETURN(std::vector<AuditRecord> rows, reader.ReadAudit(after_seq, kExportPage));
    for (const AuditRecord& r : rows) {
      PHI_RETURN_IF_ERROR(sink(ToJsonLine(r)));
      ++count;
    }
    if (rows.size() < kExportPage) break;
    after_seq = rows.back().seq;
  }
  return count;
}

Result<ExportResult> ExportRecords(AuditReader& reader, const ExportRange& range,
                                   const std::function<Status(const AuditRecord&)>& sink) {
  ExportResult res;
  int64_t after = range.after_seq;
  for (;;) {
    PHI_ASSIGN_OR_RETURN(std::vector<AuditRecord> rows, reader.ReadAudit(after, kExportPage));
    for (const AuditRecord& r : rows) {
      if (range.max_records != 0 && res.count >= static_cast<int64_t>(range.max_records)) {
        res.more = true;
        return res;
      }
      if (r.time_us < range.since_us || r.time_us >= range.until_us) continue;
      PHI_RETURN_IF_ERROR(sink(r));
      ++res.count;
      res.last_seq = r.seq;
    }
    if (rows.size() < kExportPage) break;
    after = rows.back().seq;
  }
  return res;
}

Result<int64_t> ParseTimeUs(std::string_view text) {
  auto bad = [&] {
    return Status::InvalidArgument("time must be YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS[.ffffff]Z");
  };
  auto digits = [&](size_t pos, size_t n, int* out) {
    if (pos + n > text.size()) return false;
    int v = 0;
    for (size_t i = pos; i < pos + n; ++i) {
      if (text[i] < '0' || text[i] > '9') return false;
      v = v * 10 + (text[i] - '0');
    }
    *out = v;
    return true;
  };
  int y, mo, d, h = 0, mi = 0, sec = 0;
  if (!digits(0, 4, &y) || text.size() < 10 || text[4] != '-' || !digits(5, 2, &mo) ||
      text[7] != '-' || !digits(8, 2, &d)) {
    return bad();
  }
  int64_t frac_us = 0;
  if (text.size() > 10) {
    if (text.size() < 20 || (text[10] != 'T' && text[10] != ' ') || !digits(11, 2, &h) ||
        text[13] != ':' || !digits(14, 2, &mi) || text[16] != ':' || !digits(17, 2, &sec)) {
      return bad();
    }
    size_t i = 19;
    if (i < text.size() && text[i] == '.') {
      ++i;
      int64_t scale = 100000;
      size_t start = i;
      while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
        if (i - start < 6) frac_us += (text[i] - '0') * scale;
        scale /= 10;
        ++i;
      }
      if (i == start) return bad();
    }
    if (i + 1 != text.size() || text[i] != 'Z') return bad();
  }
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60) return bad();
  // Days from civil (H. Hinnant's algorithm), proleptic Gregorian, UTC.
  const int yy = mo <= 2 ? y - 1 : y;
  const int era = (yy >= 0 ? yy : yy - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(yy - era * 400);
  const unsigned doy =
      (153 * static_cast<unsigned>(mo + (mo > 2 ? -3 : 9)) + 2) / 5 + static_cast<unsigned>(d) - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  const int64_t days = static_cast<int64_t>(era) * 146097 + static_cast<int64_t>(doe) - 719468;
  const int64_t secs = days * 86400 + h * 3600 + mi * 60 + sec;
  return secs * 1000000 + frac_us;
}

}  // namespace phi::audit
