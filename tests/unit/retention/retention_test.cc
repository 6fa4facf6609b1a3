// Retention on a real storage stack (SQLite catalog, vault, object store):
// audit pruning with its signed anchor, study retention plan/run with
// per-modality rules and legal hold, the daily scheduler on a manual clock,
// and the retention config section.
#include "libphi/services/retention.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>

#include "libphi/config/config.h"
#include "libphi/config/dev_config.h"
#include "libphi/services/integrity.h"
#include "tests/unit/services/services_fixture.h"

namespace phi::services::testing {
namespace {

using std::chrono::hours;

SystemTime At(int y, int mo, int d, int h = 0, int mi = 0) {
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  return SystemTime(std::chrono::seconds(timegm(&tm)));
}

class RetentionTest : public ServicesTest {
 protected:
  audit::MacFn Mac() {
    vault::KeyVault* v = vault_.get();
    return [v](crypto::ByteSpan d) { return v->AuditMac(d); };
  }
  audit::VerifyReport VerifyChain() {
    auto r = audit::Verify(*catalog_, Mac());
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : audit::VerifyReport{};
  }
  void StoreStudy(const std::string& uid, const std::string& date, const std::string& modality,
                  int instances = 1) {
    Patient p{"DOE^JANE", "PID" + uid.substr(uid.size() - 3), "19700101", "ACC1", uid, date,
              modality};
    for (int i = 1; i <= instances; ++i) ASSERT_TRUE(Store(p, 1, i).ok());
  }
  config::RetentionConfig Cfg() {
    config::RetentionConfig c;
    c.enabled = true;
    c.keep_years = 10;
    c.rules = {{"MG", 20}};
    return c;
  }
  std::vector<std::string> DueUids(const config::RetentionConfig& c, SystemTime now) {
    auto plan = PlanRetention(*catalog_, *keys_, c, now, 100);
    EXPECT_TRUE(plan.ok()) << plan.status().ToString();
    std::vector<std::string> out;
    if (plan.ok()) {
      for (const auto& d : plan->due) out.push_back(d.study_instance_uid);
    }
    return out;
  }
};

// ---- audit pruning ----

TEST_F(RetentionTest, PruneKeepsYoungRecordsAndLeavesAVerifiableChain) {
  StoreStudy("1.2.3.100", "20240101", "CT", 3);
  audit::VerifyReport before = VerifyChain();
  ASSERT_TRUE(before.ok);
  ASSERT_GE(before.count, 3);

  // Today, everything is younger than 6 years: nothing goes.
  auto none = PruneAudit(*catalog_, Mac(), env_.Now(), 6, std::nullopt, "admin:uid=0");
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_EQ(none->pruned, 0);

  // Ten years on, every record so far is older than the retention.
  const SystemTime later = env_.Now() + hours(24 * 365 * 10);
  auto r = PruneAudit(*catalog_, Mac(), later, 6, std::nullopt, "admin:uid=0");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->pruned, before.count + 1);  // + the first (empty) prune record
  EXPECT_EQ(r->through_seq, before.last_seq + 1);
  audit::VerifyReport after = VerifyChain();
  EXPECT_TRUE(after.ok) << audit::BreakReasonName(after.reason);
  EXPECT_EQ(after.anchor_seq, r->through_seq);
  EXPECT_EQ(after.count, 1);  // the record of this prune
  auto rows = catalog_->ReadAudit(0, 10);
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].action, "audit_prune");

  // The chain goes on after a reopen and still verifies.
  Open({"A"}, "A");
  StoreStudy("1.2.3.101", "20240101", "CT");
  audit::VerifyReport reopened = VerifyChain();
  EXPECT_TRUE(reopened.ok) << audit::BreakReasonName(reopened.reason);
  EXPECT_EQ(reopened.anchor_seq, r->through_seq);
}

TEST_F(RetentionTest, CatalogRefusesToDeleteRecordsYoungerThanTheRetention) {
  StoreStudy("1.2.3.110", "20240101", "CT");
  audit::VerifyReport v = VerifyChain();
  const int64_t now_us =
      std::chrono::duration_cast<std::chrono::microseconds>(env_.Now().time_since_epoch()).count();
  const std::string anchor = audit::EncodeAnchor({v.last_seq, v.head.hash}, Mac());
  Status s = catalog_->Write([&](index::WriteTxn& txn) -> Status {
    // min_keep = an hour ago: every record is younger.
    return txn.PruneAudit(v.last_seq, now_us - 3600LL * 1000000, anchor).status();
  });
  EXPECT_EQ(s.code(), Code::kPermissionDenied) << s.ToString();
  audit::VerifyReport still = VerifyChain();
  EXPECT_TRUE(still.ok);
  EXPECT_EQ(still.count, v.count);
  EXPECT_EQ(still.anchor_seq, 0);
  // Retention 0 (keep forever) refuses outright.
  EXPECT_EQ(PruneAudit(*catalog_, Mac(), env_.Now(), 0, std::nullopt, "x").status().code(),
            Code::kPermissionDenied);
}

TEST_F(RetentionTest, PruneRefusesABrokenChain) {
  StoreStudy("1.2.3.120", "20240101", "CT", 2);
  catalog_.reset();
  {
    // Tamper with a record behind the catalog's back, like an attacker with the file.
    std::string cmd = "sqlite3 " + (storage_.path() / "catalog.db").string() +
                      " \"UPDATE audit SET actor = 'x' WHERE seq = 2\"";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
  }
  Open({"A"}, "A");
  auto r = PruneAudit(*catalog_, Mac(), env_.Now() + hours(24 * 365 * 10), 6, std::nullopt, "x");
  EXPECT_EQ(r.status().code(), Code::kPermissionDenied);
  audit::VerifyReport v = VerifyChain();
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.broken_seq, 2);
}

// ---- study retention ----

TEST_F(RetentionTest, PlanFollowsStudyDateModalityRulesAndLegalHold) {
  StoreStudy("1.2.3.201", "20100315", "CT");  // 2010 + 10 <= 2026: due
  StoreStudy("1.2.3.202", "20100315", "MG");  // MG keeps 20 years: not due
  StoreStudy("1.2.3.203", "20161126", "CT");  // due on 2026-11-26, not on the 25th
  StoreStudy("1.2.3.204", "20000101", "CT");  // due, but under legal hold
  StoreStudy("1.2.3.205", "20200101", "CT");  // not due
  ASSERT_TRUE(SetLegalHold(*vault_, *catalog_, "1.2.3.204", true, "admin:uid=0", "case 7").ok());
  config::RetentionConfig c = Cfg();
  EXPECT_EQ(DueUids(c, At(2026, 11, 25)), std::vector<std::string>({"1.2.3.201"}));
  EXPECT_EQ(DueUids(c, At(2026, 11, 26)), std::vector<std::string>({"1.2.3.201", "1.2.3.203"}));
  EXPECT_EQ(DueUids(c, At(2030, 3, 15)),
            std::vector<std::string>({"1.2.3.201", "1.2.3.202", "1.2.3.203", "1.2.3.205"}));
  // Keep forever: nothing; an MG rule of 0 keeps MG forever.
  c.keep_years = 0;
  c.rules.clear();
  EXPECT_TRUE(DueUids(c, At(2090, 1, 1)).empty());
  c.keep_years = 10;
  c.rules = {{"MG", 0}};
  EXPECT_EQ(DueUids(c, At(2090, 1, 1)).size(), 3u);  // 201, 203, 205 (204 held, 202 MG)
  EXPECT_EQ(KeepYearsFor(c, "CT,MG"), 0u);
  EXPECT_EQ(KeepYearsFor(c, "CT"), 10u);
}

TEST_F(RetentionTest, LastAccessBasis) {
  StoreStudy("1.2.3.301", "19990101", "CT");
  config::RetentionConfig c = Cfg();
  c.basis = config::RetentionBasis::kLastAccess;
  // Received (and accessed) today: due only ten years from now.
  EXPECT_TRUE(DueUids(c, env_.Now() + hours(24 * 365 * 9)).empty());
  EXPECT_EQ(DueUids(c, env_.Now() + hours(24 * (365 * 10 + 4))),
            std::vector<std::string>({"1.2.3.301"}));
}

TEST_F(RetentionTest, RunErasesDueStudiesInBoundedBatchesAndRespectsHold) {
  for (int i = 0; i < 5; ++i) StoreStudy("1.2.3.40" + std::to_string(i), "20050101", "CT", 2);
  StoreStudy("1.2.3.409", "20050101", "CT");
  ASSERT_TRUE(SetLegalHold(*vault_, *catalog_, "1.2.3.409", true, "admin:uid=0", "").ok());
  config::RetentionConfig c = Cfg();
  c.batch_size = 2;
  c.max_per_run = 3;
  auto r = RunRetention(*catalog_, *keys_, *erasure_, c, At(2026, 1, 1));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->erased, 3);
  EXPECT_EQ(r->failed, 0);
  EXPECT_EQ(r->batches, 2);
  EXPECT_EQ(r->audit_seqs.size(), 3u);
  EXPECT_EQ(DueUids(c, At(2026, 1, 1)).size(), 2u);
  r = RunRetention(*catalog_, *keys_, *erasure_, c, At(2026, 1, 1));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->erased, 2);
  EXPECT_TRUE(DueUids(c, At(2026, 1, 1)).empty());
  // Erased for real: no study, no readable instance; the held one is intact.
  EXPECT_EQ(query_->GetStudy("1.2.3.400").status().code(), Code::kNotFound);
  EXPECT_FALSE(query_->OpenInstance("1.2.3.400.1.1").ok());
  EXPECT_TRUE(query_->GetStudy("1.2.3.409").ok());
  // The erasures are certificates in the audit trail, by the retention actor.
  auto rows = catalog_->ReadAudit(0, 1000);
  ASSERT_TRUE(rows.ok());
  int erase_records = 0;
  for (const auto& rec : *rows) {
    if (rec.action == "erase") {
      ++erase_records;
      EXPECT_EQ(rec.actor, "system:retention");
    }
  }
  EXPECT_EQ(erase_records, 5);
  // Releasing the hold makes it due; an admin erasure under hold is refused.
  EXPECT_EQ(erasure_->EraseStudy("1.2.3.409", "admin:uid=0", "x").status().code(),
            Code::kPermissionDenied);
  ASSERT_TRUE(SetLegalHold(*vault_, *catalog_, "1.2.3.409", false, "admin:uid=0", "").ok());
  EXPECT_EQ(DueUids(c, At(2026, 1, 1)), std::vector<std::string>({"1.2.3.409"}));
}

TEST_F(RetentionTest, SchedulerRunsOnceADayAtItsTimeOnAManualClock) {
  StoreStudy("1.2.3.501", "20050101", "CT");
  StoreStudy("1.2.3.502", "20160102", "CT");  // due from 2026-01-02
  config::RetentionConfig c = Cfg();
  c.run_at_minute = 2 * 60 + 30;
  RetentionScheduler sched(*catalog_, *keys_, *erasure_, c, env_);
  EXPECT_FALSE(sched.Tick(At(2026, 1, 1, 2, 29)).has_value());  // before 02:30
  auto run = sched.Tick(At(2026, 1, 1, 2, 30));
  ASSERT_TRUE(run.has_value());
  EXPECT_EQ(run->erased, 1);
  EXPECT_FALSE(sched.Tick(At(2026, 1, 1, 23, 0)).has_value());  // once a day
  run = sched.Tick(At(2026, 1, 2, 3, 0));
  ASSERT_TRUE(run.has_value());
  EXPECT_EQ(run->erased, 1);
  // Disabled: never runs.
  StoreStudy("1.2.3.503", "20000101", "CT");
  c.enabled = false;
  RetentionScheduler off(*catalog_, *keys_, *erasure_, c, env_);
  EXPECT_FALSE(off.Tick(At(2026, 1, 3, 3, 0)).has_value());
  EXPECT_TRUE(query_->GetStudy("1.2.3.503").ok());
}

// ---- integrity (phigatectl verify) ----

TEST_F(RetentionTest, VerifyFindsCorruptMissingAndOrphanObjectsAndChangesNothing) {
  StoreStudy("1.2.3.601", "20240101", "CT", 3);
  StoreStudy("1.2.3.602", "20240101", "MR", 2);
  auto clean = VerifyStorage(*vault_, *catalog_, *objects_, *keys_, std::nullopt, nullptr);
  ASSERT_TRUE(clean.ok()) << clean.status().ToString();
  EXPECT_TRUE(clean->ok());
  EXPECT_EQ(clean->studies, 2);
  EXPECT_EQ(clean->instances, 5);
  EXPECT_EQ(clean->bytes, 5 * 4096);

  // One object flipped, one deleted, one stray file.
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::recursive_directory_iterator(storage_.path() / "objects")) {
    if (e.is_regular_file() && e.path().extension() == ".phg") files.push_back(e.path());
  }
  ASSERT_EQ(files.size(), 5u);
  std::sort(files.begin(), files.end());
  std::string bytes = phi::testing::ReadFile(files[0]);
  bytes[bytes.size() / 2] ^= 0x01;
  phi::testing::WriteFile(files[0], bytes);
  std::filesystem::remove(files[1]);
  const std::string stray = phi::testing::ReadFile(files[2]);
  // Same directory, same id length: only the last id character differs.
  std::string name = files[2].stem().string();
  name.back() = name.back() == '0' ? '1' : '0';
  std::filesystem::path orphan = files[2].parent_path() / (name + ".phg");
  ASSERT_FALSE(std::filesystem::exists(orphan));
  phi::testing::WriteFile(orphan, stray);

  auto bad = VerifyStorage(*vault_, *catalog_, *objects_, *keys_, std::nullopt, nullptr);
  ASSERT_TRUE(bad.ok()) << bad.status().ToString();
  EXPECT_FALSE(bad->ok());
  std::map<std::string, int> kinds;
  for (const auto& p : bad->problems) ++kinds[p.kind];
  EXPECT_EQ(kinds["object_unreadable"], 2);  // the flipped one and the missing one
  EXPECT_EQ(kinds["orphan_object"], 1);
  EXPECT_EQ(bad->problem_count, 3);
  // Nothing was repaired or removed.
  EXPECT_TRUE(std::filesystem::exists(orphan));
  EXPECT_FALSE(std::filesystem::exists(files[1]));
  EXPECT_EQ(phi::testing::ReadFile(files[0]), bytes);

  // One study only: no orphan scan, only its own objects.
  int64_t progress = 0;
  auto one = VerifyStorage(*vault_, *catalog_, *objects_, *keys_, std::string("1.2.3.602"),
                           [&](int64_t n) { progress = n; });
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->instances, 2);
  EXPECT_EQ(progress, 2);
  EXPECT_EQ(VerifyStorage(*vault_, *catalog_, *objects_, *keys_, std::string("9.9"), nullptr)
                .status()
                .code(),
            Code::kNotFound);
}

TEST(RetentionConfigTest, LoadsAndValidatesTheSection) {
  phi::testing::TempDir dir;
  PosixEnv env;
  auto load = [&](const std::string& yaml, std::vector<config::ConfigError>* errs) {
    // A complete (dev) config with the section under test appended.
    phi::testing::WriteFile(dir.path() / "c.yaml", config::DevConfigYaml(dir.path()) + yaml);
    return config::Load(dir.path() / "c.yaml", env, config::LoadOptions{.check_files = false},
                        errs);
  };
  std::vector<config::ConfigError> errs;
  auto c = load(
      "retention:\n  enabled: true\n  keep_years: 10\n  basis: last_access\n  run_at: \"03:15\"\n"
      "  batch_size: 5\n  rules:\n    - modality: MG\n      keep_years: 20\n",
      &errs);
  std::string first = errs.empty() ? c.status().ToString() : errs[0].ToString();
  ASSERT_TRUE(c.ok()) << first;
  EXPECT_TRUE(c->retention.enabled);
  EXPECT_EQ(c->retention.keep_years, 10u);
  EXPECT_EQ(c->retention.basis, config::RetentionBasis::kLastAccess);
  EXPECT_EQ(c->retention.run_at_minute, 3u * 60 + 15);
  EXPECT_EQ(c->retention.batch_size, 5u);
  ASSERT_EQ(c->retention.rules.size(), 1u);
  EXPECT_EQ(c->retention.rules[0], (config::RetentionRule{"MG", 20}));

  errs.clear();
  c = load("retention:\n  run_at: \"25:00\"\n  basis: forever\n  rules:\n    - modality: mg\n",
           &errs);
  EXPECT_FALSE(c.ok());
  std::string all;
  for (const auto& e : errs) all += e.ToString() + "\n";
  EXPECT_NE(all.find("retention.run_at"), std::string::npos) << all;
  EXPECT_NE(all.find("retention.basis"), std::string::npos) << all;
  EXPECT_NE(all.find("retention.rules[0].modality"), std::string::npos) << all;
  EXPECT_NE(all.find("retention.rules[0].keep_years"), std::string::npos) << all;
}

}  // namespace
}  // namespace phi::services::testing
