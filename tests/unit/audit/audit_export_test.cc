#include "libphi/audit/audit_export.h"

#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>

namespace phi::audit {
namespace {

class MapReader : public AuditReader {
 public:
  Result<std::vector<AuditRecord>> ReadAudit(int64_t after, size_t limit) override {
    std::vector<AuditRecord> out;
    for (auto it = rows.upper_bound(after); it != rows.end() && out.size() < limit; ++it) {
      out.push_back(it->second);
    }
    return out;
  }
  Result<std::optional<std::string>> ReadAuditHead() override {
    return std::optional<std::string>();
  }
  std::map<int64_t, AuditRecord> rows;
};

TEST(AuditExport, FormatsTimeInUtcWithMicroseconds) {
  EXPECT_EQ(FormatTimeUs(0), "1970-01-01T00:00:00.000000Z");
  EXPECT_EQ(FormatTimeUs(1'700'000'000'123'456), "2023-11-14T22:13:20.123456Z");
  EXPECT_EQ(FormatTimeUs(-1), "1969-12-31T23:59:59.999999Z");
}

TEST(AuditExport, JsonLinesRoundTripAndPaging) {
  MapReader r;
  MacFn mac = [](crypto::ByteSpan d) { return crypto::Sha256(d); };  // any MAC will do here
  ChainHead head;
  for (int i = 0; i < 1100; ++i) {
    AuditEvent e{{},
                 "web:CN=viewer",
                 "retrieve",
                 "study:" + std::to_string(i),
                 "ok",
                 "10.0.0.9:443",
                 i == 5 ? std::string("bad\xff utf8") : std::string("quote\"")};
    auto rec = MakeNext(head, e, 1'700'000'000'000'000 + i, mac);
    ASSERT_TRUE(rec.ok());
    r.rows[rec->seq] = *rec;
  }
  std::vector<std::string> lines;
  auto n = ExportJsonLines(r, 100, [&](std::string_view l) {
    lines.emplace_back(l);
    return Status::Ok();
  });
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 1000);
  ASSERT_EQ(lines.size(), 1000u);
  for (const auto& l : lines) EXPECT_EQ(l.find('\n'), std::string::npos);
  auto j = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(j["seq"], 101);
  EXPECT_EQ(j["object"], "study:100");
  EXPECT_EQ(j["detail"], "quote\"");
  EXPECT_EQ(j["mac"], crypto::ToHex(r.rows[101].mac));
  EXPECT_EQ(j["prev_hash"].get<std::string>().size(), 64u);
  // Invalid UTF-8 is replaced, not an error.
  MapReader one;
  one.rows[6] = r.rows[6];
  std::string line;
  ASSERT_TRUE(ExportJsonLines(one, 0, [&](std::string_view l) {
                line = l;
                return Status::Ok();
              }).ok());
  EXPECT_NE(line.find("bad\xef\xbf\xbd utf8"), std::string::npos);
  // A failing sink stops the export with its error.
  int calls = 0;
  auto stopped = ExportJsonLines(r, 0, [&](std::string_view) {
    return ++calls == 3 ? Status::IOError("disk full") : Status::Ok();
  });
  EXPECT_EQ(stopped.status().code(), Code::kIOError);
  EXPECT_EQ(calls, 3);
}

}  // namespace
}  // namespace phi::audit
