// The background scrub: its rate limiter (pure arithmetic over given times),
// a tampered object reported (log + audit) without any change on disk, and a
// prompt Stop() in the middle of a slow pass.
#include "libphi/services/integrity.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "tests/unit/services/services_fixture.h"

namespace phi::services {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::seconds;
using testing::Patient;

TEST(RateLimiterTest, BurstThenTheRate) {
  const MonotonicTime t0{};
  RateLimiter rl(1000.0, 500.0);                   // 1000 B/s, 500 B burst
  EXPECT_EQ(rl.Reserve(500, t0), nanoseconds(0));  // the burst is free
  // 1000 more bytes at the same instant: one second of debt.
  EXPECT_EQ(rl.Reserve(1000, t0), std::chrono::duration_cast<nanoseconds>(seconds(1)));
  // The caller waited that second: the debt is paid, nothing more is owed.
  EXPECT_EQ(rl.Reserve(0, t0 + seconds(1)), nanoseconds(0));
  // 250 bytes 0.25 s later: exactly the rate, no wait.
  EXPECT_EQ(rl.Reserve(250, t0 + milliseconds(1250)), nanoseconds(0));
  // Idle for an hour: the bucket refills only up to the burst.
  EXPECT_EQ(rl.Reserve(500, t0 + seconds(3600)), nanoseconds(0));
  EXPECT_EQ(rl.Reserve(100, t0 + seconds(3600)),
            std::chrono::duration_cast<nanoseconds>(milliseconds(100)));
}

TEST(RateLimiterTest, LongRunAverageIsTheRate) {
  // 100 chunks of 1 MiB at 10 MiB/s: the waits add up to ~10 s minus the burst.
  const double rate = 10.0 * 1024 * 1024;
  RateLimiter rl(rate, 1024 * 1024);
  MonotonicTime now{};
  for (int i = 0; i < 100; ++i) now += rl.Reserve(1024 * 1024, now);
  const double secs = std::chrono::duration<double>(now - MonotonicTime{}).count();
  EXPECT_NEAR(secs, 9.9, 0.01);
}

class ScrubTest : public testing::ServicesTest {
 protected:
  config::ScrubConfig Cfg(uint32_t rate_mb) {
    config::ScrubConfig c;
    c.enabled = true;
    c.rate_mb_per_s = rate_mb;
    c.interval_hours = 1;
    c.start_delay_seconds = 0;
    return c;
  }
  std::vector<fs::path> Files() {
    std::vector<fs::path> out;
    for (const auto& e : fs::recursive_directory_iterator(storage_.path() / "objects")) {
      if (e.is_regular_file()) out.push_back(e.path());
    }
    std::sort(out.begin(), out.end());
    return out;
  }
  Patient a_{"Doe^Jane", "PID-1", "19700101", "ACC-1", "1.2.3.801", "20240101", "CT"};
};

TEST_F(ScrubTest, ATamperedObjectIsReportedAndAuditedAndNothingChanges) {
  for (int i = 1; i <= 4; ++i) ASSERT_TRUE(Store(a_, 1, i, 20000).ok());
  Scrubber scrub(*vault_, *catalog_, *objects_, *keys_, Cfg(100), env_);
  auto clean = scrub.RunPass();
  ASSERT_TRUE(clean.ok()) << clean.status().ToString();
  EXPECT_TRUE(clean->ok());
  EXPECT_EQ(clean->instances, 4);

  auto files = Files();
  ASSERT_EQ(files.size(), 4u);
  std::string bytes = phi::testing::ReadFile(files[2]);
  bytes[bytes.size() - 40] ^= 0x08;
  phi::testing::WriteFile(files[2], bytes);
  const std::string id = files[2].stem().string();

  auto before = catalog_->ReadAudit(0, 100000);
  ASSERT_TRUE(before.ok());
  auto bad = scrub.RunPass();
  ASSERT_TRUE(bad.ok()) << bad.status().ToString();
  ASSERT_EQ(bad->problem_count, 1);
  EXPECT_EQ(bad->problems[0].kind, "object_unreadable");
  EXPECT_EQ(bad->problems[0].object, "object:" + id);

  // Audited: one record for the object, one for the pass.
  auto after = catalog_->ReadAudit(0, 100000);
  ASSERT_TRUE(after.ok());
  ASSERT_EQ(after->size(), before->size() + 2);
  const auto& rec = (*after)[before->size()];
  EXPECT_EQ(rec.action, "integrity_problem");
  EXPECT_EQ(rec.object, "object:" + id);
  EXPECT_EQ(rec.outcome, "error:object_unreadable");
  EXPECT_EQ(rec.actor, "phigated:scrub");
  EXPECT_EQ((*after)[before->size() + 1].action, "scrub");
  // No PHI in what it recorded.
  for (const std::string& phi : {a_.name, a_.id, a_.accession}) {
    EXPECT_EQ(rec.detail.find(phi), std::string::npos);
  }
  // Never modifies: the damaged file is left as it is, nothing removed.
  EXPECT_EQ(phi::testing::ReadFile(files[2]), bytes);
  EXPECT_EQ(Files().size(), 4u);

  ScrubStatus st = scrub.status();
  EXPECT_EQ(st.passes, 2);
  ASSERT_TRUE(st.last_report.has_value());
  EXPECT_EQ(st.last_report->problem_count, 1);
}

TEST_F(ScrubTest, StopEndsASlowPassPromptly) {
  // 4 objects of 3 MiB at 1 MiB/s: a pass takes ~10 s; Stop() must not wait for it.
  for (int i = 1; i <= 4; ++i) ASSERT_TRUE(Store(a_, 1, i, 3 * 1024 * 1024).ok());
  Scrubber scrub(*vault_, *catalog_, *objects_, *keys_, Cfg(1), env_);
  scrub.Start();
  // Wait until the pass has started reading.
  for (int i = 0; i < 2000 && scrub.status().current_bytes == 0; ++i) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  ScrubStatus running = scrub.status();
  EXPECT_EQ(running.state, "running");
  scrub.Stop();  // a hang here fails the test by its timeout
  ScrubStatus st = scrub.status();
  EXPECT_EQ(st.state, "stopped");
  EXPECT_EQ(st.passes, 0);
  EXPECT_LT(st.current_instances_done, 4);
}

}  // namespace
}  // namespace phi::services
