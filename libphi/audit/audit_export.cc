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

}  // namespace phi::audit
