// Retention rules by source AE (issue 7 item 3) on a real storage stack: the
// catalog records the calling AE title that first stored each study (schema
// v4), MatchRetention combines modality and source AE rules (longest keep
// wins, forever over everything), and the plan / run keep or erase a study
// according to the AE that sent it.
#include <gtest/gtest.h>

#include <ctime>
#include <string>
#include <vector>

#include "libphi/index/schema.h"
#include "libphi/services/retention.h"
#include "tests/unit/services/services_fixture.h"

namespace phi::services::testing {
namespace {

SystemTime At(int y, int mo, int d) {
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  return SystemTime(std::chrono::seconds(timegm(&tm)));
}

config::RetentionRule ByAe(std::string ae, uint32_t years) {
  config::RetentionRule r;
  r.source_ae = std::move(ae);
  r.keep_years = years;
  return r;
}

TEST(MatchRetentionTest, SourceAeModalityAndBothWithTheLongestKeepWinning) {
  config::RetentionConfig c;
  c.keep_years = 5;
  c.rules = {{"MG", 20}, ByAe("CT_SCANNER_1", 10), ByAe("CT_SCANNER_2", 3)};
  config::RetentionRule both{"US", 40, "US_CART"};
  c.rules.push_back(both);

  auto m = MatchRetention(c, "CT", "CT_SCANNER_1");
  EXPECT_EQ(m.keep_years, 10u);
  EXPECT_EQ(m.rule, "rules[1] source_ae=CT_SCANNER_1");
  // A shorter AE rule still wins over the default: the rule matched.
  m = MatchRetention(c, "CT", "CT_SCANNER_2");
  EXPECT_EQ(m.keep_years, 3u);
  EXPECT_EQ(m.rule, "rules[2] source_ae=CT_SCANNER_2");
  // Modality and AE both match: the longest keep.
  m = MatchRetention(c, "CT,MG", "CT_SCANNER_1");
  EXPECT_EQ(m.keep_years, 20u);
  EXPECT_EQ(m.rule, "rules[0] modality=MG");
  // AE titles compare exactly; an unknown source (STOW-RS, pre-v4) never matches an AE rule.
  EXPECT_EQ(MatchRetention(c, "CT", "CT_SCANNER_10").rule, "default");
  EXPECT_EQ(MatchRetention(c, "CT", "ct_scanner_1").keep_years, 5u);
  EXPECT_EQ(MatchRetention(c, "CT", "").rule, "default");
  // A rule with both keys needs both.
  EXPECT_EQ(MatchRetention(c, "US", "OTHER").rule, "default");
  EXPECT_EQ(MatchRetention(c, "CT", "US_CART").rule, "default");
  m = MatchRetention(c, "US", "US_CART");
  EXPECT_EQ(m.keep_years, 40u);
  EXPECT_EQ(m.rule, "rules[3] modality=US source_ae=US_CART");
  // Forever (0) beats every finite keep, in any order.
  c.rules.push_back(ByAe("ARCHIVE_ME", 0));
  c.rules.insert(c.rules.begin(), ByAe("ARCHIVE_ME", 50));
  m = MatchRetention(c, "MG", "ARCHIVE_ME");
  EXPECT_EQ(m.keep_years, 0u);
  EXPECT_EQ(m.rule, "rules[5] source_ae=ARCHIVE_ME");
  // The modality-only helper is unchanged.
  EXPECT_EQ(KeepYearsFor(c, "MG"), 20u);
  EXPECT_EQ(KeepYearsFor(c, "CT"), 5u);
}

class SourceAeRetentionTest : public ServicesTest {
 protected:
  // Stores one instance of `uid` as the DICOM calling AE `ae` ("" = STOW-RS,
  // which has no calling AE).
  void StoreFrom(const std::string& ae, const std::string& uid, int instance = 1,
                 const std::string& date = "20100315") {
    Patient p{"ROE^RICHARD", "PID-" + uid.substr(uid.size() - 3), "19600101", "ACC-AE", uid, date,
              "CT"};
    InstanceAttributes a = Attrs(p, 1, instance);
    std::string bytes = FakePart10(a, 2048);
    IngestContext ctx;
    ctx.actor = ae.empty() ? "web:CN=modality,O=phigate-dev" : "dicom:" + ae;
    ctx.peer = "127.0.0.1:4242";
    ctx.calling_ae = ae;
    auto r = ingest_->Store(ctx, a, Bytes(bytes));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }
  std::string SourceAeOf(const std::string& uid) {
    crypto::Digest d = vault_->IndexToken("StudyInstanceUID", uid);
    auto row = catalog_->FindStudyByUidToken(
        index::Token(reinterpret_cast<const char*>(d.data()), d.size()));
    EXPECT_TRUE(row.ok()) << row.status().ToString();
    if (!row.ok()) return "?";
    auto ae = catalog_->GetStudySourceAe(row->study_pk);
    EXPECT_TRUE(ae.ok()) << ae.status().ToString();
    return ae.ok() ? *ae : "?";
  }
};

TEST_F(SourceAeRetentionTest, CatalogKeepsTheFirstCallingAeOfEachStudy) {
  StoreFrom("CT_SCANNER_1", "1.2.3.501");
  StoreFrom("OTHER_AE", "1.2.3.501", 2);  // a later sender does not change it
  StoreFrom("", "1.2.3.502");             // STOW-RS: none
  StoreFrom("MR_1", "1.2.3.503");
  EXPECT_EQ(SourceAeOf("1.2.3.501"), "CT_SCANNER_1");
  EXPECT_EQ(SourceAeOf("1.2.3.502"), "");
  EXPECT_EQ(SourceAeOf("1.2.3.503"), "MR_1");
  EXPECT_EQ(catalog_->schema_version(), index::LatestSchemaVersion());
  EXPECT_GE(catalog_->schema_version(), 4);
  // It survives a reopen (it is a column, not memory).
  Open({"A"}, "A");
  EXPECT_EQ(SourceAeOf("1.2.3.501"), "CT_SCANNER_1");
}

TEST_F(SourceAeRetentionTest, StudyFromTheRuledAeIsKeptOthersAreErased) {
  StoreFrom("CT_SCANNER_1", "1.2.3.601");  // rule: kept 30 years
  StoreFrom("CT_SCANNER_2", "1.2.3.602");  // default: 10 years -> due in 2026
  StoreFrom("", "1.2.3.603");              // STOW-RS, no AE: default -> due
  StoreFrom("ARCHIVE_AE", "1.2.3.604");    // rule: forever
  config::RetentionConfig c;
  c.enabled = true;
  c.keep_years = 10;
  c.rules = {ByAe("CT_SCANNER_1", 30), ByAe("ARCHIVE_AE", 0)};

  auto plan = PlanRetention(*catalog_, *keys_, c, At(2026, 6, 1), 100);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  ASSERT_EQ(plan->due.size(), 2u);
  EXPECT_EQ(plan->due[0].study_instance_uid, "1.2.3.602");
  EXPECT_EQ(plan->due[0].source_ae, "CT_SCANNER_2");
  EXPECT_EQ(plan->due[0].rule, "default");
  EXPECT_EQ(plan->due[0].keep_years, 10u);
  EXPECT_EQ(plan->due[1].study_instance_uid, "1.2.3.603");
  EXPECT_EQ(plan->due[1].source_ae, "");

  auto run = RunRetention(*catalog_, *keys_, *erasure_, c, At(2026, 6, 1));
  ASSERT_TRUE(run.ok()) << run.status().ToString();
  EXPECT_EQ(run->erased, 2);
  EXPECT_EQ(run->failed, 0);
  EXPECT_EQ(query_->GetStudy("1.2.3.602").status().code(), Code::kNotFound);
  EXPECT_EQ(query_->GetStudy("1.2.3.603").status().code(), Code::kNotFound);
  EXPECT_TRUE(query_->GetStudy("1.2.3.601").ok());
  EXPECT_TRUE(query_->GetStudy("1.2.3.604").ok());
  EXPECT_EQ(ReadInstance("1.2.3.601.1.1").substr(0, 5), "DICM|");

  // 30 years after 2010: the CT_SCANNER_1 study is due, by its rule; the
  // forever rule still keeps ARCHIVE_AE's.
  plan = PlanRetention(*catalog_, *keys_, c, At(2040, 3, 15), 100);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  ASSERT_EQ(plan->due.size(), 1u);
  EXPECT_EQ(plan->due[0].study_instance_uid, "1.2.3.601");
  EXPECT_EQ(plan->due[0].rule, "rules[0] source_ae=CT_SCANNER_1");
  EXPECT_EQ(plan->due[0].keep_years, 30u);
  run = RunRetention(*catalog_, *keys_, *erasure_, c, At(2040, 3, 15));
  ASSERT_TRUE(run.ok()) << run.status().ToString();
  EXPECT_EQ(run->erased, 1);
  EXPECT_EQ(query_->GetStudy("1.2.3.601").status().code(), Code::kNotFound);
  EXPECT_TRUE(query_->GetStudy("1.2.3.604").ok());
  // The erasure record says which rule erased it.
  auto rows = catalog_->ReadAudit(0, 10000);
  ASSERT_TRUE(rows.ok());
  bool found = false;
  for (const auto& r : *rows) {
    if (r.action == "erase" && r.detail.find("source_ae=CT_SCANNER_1") != std::string::npos) {
      found = true;
    }
  }
  EXPECT_TRUE(found);
}

}  // namespace
}  // namespace phi::services::testing
