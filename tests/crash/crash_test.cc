// A real crash test of the durability contract (DESIGN.md): a child process
// stores objects and reports each acknowledged one on a pipe; we SIGKILL it at
// random moments, many times, and after each kill reopen the storage (with
// recovery) and check that every acknowledged object reads back
// byte-identical, that every object the catalog names is whole, and that
// nothing is left half-written (tmp/ empty, no object without a catalog row).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include "libphi/services/storage_stack.h"
#include "tests/crash/crash_common.h"
#include "tests/support/temp_dir.h"

extern char** environ;

namespace phi::crashtest {
namespace {

namespace fs = std::filesystem;

// Runs the child for `run_ms`, SIGKILLs it, returns everything it printed.
std::string RunAndKill(const std::string& root, const std::string& kek, int run, int run_ms) {
  int pipefd[2];
  EXPECT_EQ(::pipe2(pipefd, O_CLOEXEC), 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDOUT_FILENO);
  std::string run_s = std::to_string(run);
  const char* args[] = {PHI_CRASH_CHILD_PATH, root.c_str(), kek.c_str(), run_s.c_str(), nullptr};
  pid_t pid = -1;
  int rc = posix_spawn(&pid, PHI_CRASH_CHILD_PATH, &fa, nullptr, const_cast<char**>(args), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(pipefd[1]);
  EXPECT_EQ(rc, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(run_ms));
  ::kill(pid, SIGKILL);
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(pipefd[0], buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(pipefd[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
      << "the child must still be running when killed; its output:\n"
      << out.substr(0, 2000);
  return out;
}

size_t CountFiles(const fs::path& dir) {
  size_t n = 0;
  if (!fs::exists(dir)) return 0;
  for (const auto& e : fs::recursive_directory_iterator(dir)) n += e.is_regular_file() ? 1 : 0;
  return n;
}

std::string ReadAll(services::StorageStack& s, const std::string& uid, Status* st) {
  std::string out;
  auto o = s.query().OpenInstance(uid);
  if (!o.ok()) {
    *st = o.status();
    return out;
  }
  *st = o->reader->ReadAll([&](std::span<const std::byte> c) {
    out.append(reinterpret_cast<const char*>(c.data()), c.size());
    return Status::Ok();
  });
  return out;
}

TEST(CrashTest, KillNineNeverLosesAnAcknowledgedObject) {
  testing::TempDir dir;
  const fs::path root = dir / "storage";
  fs::create_directory(root);
  const std::string kek = (dir / "kek").string();
  testing::WriteFile(kek, std::string(32, '\x5a'), 0400);

  std::mt19937 rng(20261125);
  std::uniform_int_distribution<int> ms(40, 260);
  std::map<std::string, size_t> acked;
  constexpr int kKills = 60;
  int kills_with_progress = 0;
  size_t unacked_rows_removed = 0;  // pending rows whose object never became durable
  for (int run = 1; run <= kKills; ++run) {
    const size_t before = acked.size();
    std::istringstream lines(RunAndKill(root.string(), kek, run, run == 1 ? 400 : ms(rng)));
    std::string word, uid;
    size_t size = 0;
    while (lines >> word) {
      if (word == "ACK" && (lines >> uid >> size)) {
        acked[uid] = size;
      } else if (word == "ERR") {
        std::string rest;
        std::getline(lines, rest);
        ADD_FAILURE() << "store failed in the child:" << rest;
      }
    }
    if (acked.size() > before) ++kills_with_progress;

    // Reopen, recover, check.
    auto stack = services::StorageStack::Open(Keys(kek), Storage(root.string()), Env::Default());
    ASSERT_TRUE(stack.ok()) << "run " << run << ": " << stack.status().ToString();
    auto rec = (*stack)->Recover();
    ASSERT_TRUE(rec.ok()) << rec.status().ToString();
    EXPECT_EQ(rec->missing_objects, 0u) << "run " << run;
    unacked_rows_removed += rec->unacknowledged_rows_removed;
    auto pending = (*stack)->catalog().ListPendingObjectIds();
    ASSERT_TRUE(pending.ok());
    EXPECT_TRUE(pending->empty()) << "recovery leaves no pending row (run " << run << ")";
    EXPECT_EQ(CountFiles(root / "tmp"), 0u) << "run " << run;
    auto counts = (*stack)->catalog().CountObjects();
    ASSERT_TRUE(counts.ok());
    EXPECT_EQ(static_cast<size_t>(counts->instances), CountFiles(root / "objects"))
        << "every object file has a catalog row and vice versa (run " << run << ")";
    EXPECT_GE(static_cast<size_t>(counts->instances), acked.size()) << "run " << run;

    // Every acknowledged object, byte-identical. Every object the catalog
    // names (acknowledged or not) is whole: it decrypts and authenticates.
    const bool full = run % 10 == 0 || run == kKills;
    for (const auto& [ack_uid, ack_size] : acked) {
      if (!full && acked.size() - before > 0 &&
          ack_uid.find(".9." + std::to_string(run) + ".") == std::string::npos) {
        continue;  // between full checks, only this run's acknowledgements
      }
      Status st;
      std::string got = ReadAll(**stack, ack_uid, &st);
      ASSERT_TRUE(st.ok()) << "acknowledged " << ack_uid << " lost: " << st.ToString();
      ASSERT_EQ(got, Content(ack_uid, ack_size)) << ack_uid;
    }
    if (full) {
      auto studies = (*stack)->query().FindStudies({.limit = 10000});
      ASSERT_TRUE(studies.ok());
      size_t seen = 0;
      for (const auto& study : *studies) {
        auto inst = (*stack)->query().ListInstances(study.phi.Get("StudyInstanceUID"));
        ASSERT_TRUE(inst.ok());
        for (const auto& i : *inst) {
          const std::string uid = i.phi.Get("SOPInstanceUID");
          Status st;
          std::string got = ReadAll(**stack, uid, &st);
          ASSERT_TRUE(st.ok()) << uid << ": " << st.ToString();
          EXPECT_EQ(got, Content(uid, static_cast<size_t>(i.row.size_bytes))) << uid;
          ++seen;
        }
      }
      EXPECT_EQ(seen, static_cast<size_t>(counts->instances));
    }
  }
  std::printf(
      "crash test: %d kills, %d with new acknowledgements, %zu objects acknowledged, %zu "
      "unacknowledged pending rows removed by recovery\n",
      kKills, kills_with_progress, acked.size(), unacked_rows_removed);
  EXPECT_GE(kills_with_progress, kKills / 2) << "most kills must land while storing";
  EXPECT_GE(acked.size(), 200u);
}

}  // namespace
}  // namespace phi::crashtest
