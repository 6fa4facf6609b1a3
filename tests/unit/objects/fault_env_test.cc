// Tests of tests/support/fault_env (owned by objects/, used by every module).
#include "tests/support/fault_env.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <filesystem>

#include "libphi/crypto/crypto.h"
#include "tests/support/temp_dir.h"

namespace phi::testing {
namespace {

namespace fs = std::filesystem;

class FaultEnvTest : public ::testing::Test {
 protected:
  Status WriteAll(const Path& p, std::string_view s, bool sync) {
    PHI_ASSIGN_OR_RETURN(WritableFilePtr f, env_.NewWritableFile(p));
    PHI_RETURN_IF_ERROR(f->Append(crypto::AsBytes(s)));
    if (sync) PHI_RETURN_IF_ERROR(f->Sync());
    return f->Close();
  }
  TempDir dir_;
  PosixEnv posix_;
  FaultEnv env_{posix_};
};

TEST_F(FaultEnvTest, FailNthCountsFromNextCallAndThenClears) {
  auto f = env_.NewWritableFile(dir_ / "f");
  ASSERT_TRUE(f.ok());
  env_.FailNth(FaultEnv::Op::kAppend, 2, ENOSPC);
  EXPECT_TRUE((*f)->Append(crypto::AsBytes("a")).ok());
  Status s = (*f)->Append(crypto::AsBytes("b"));
  EXPECT_EQ(s.code(), Code::kResourceExhausted);  // PosixError maps ENOSPC
  EXPECT_NE(s.message().find("No space left"), std::string::npos);
  EXPECT_TRUE((*f)->Append(crypto::AsBytes("c")).ok());
  EXPECT_EQ(env_.Calls(FaultEnv::Op::kAppend), 3);
  ASSERT_TRUE((*f)->Close().ok());
  EXPECT_EQ(ReadFile(dir_ / "f"), "ac");

  env_.FailAlways(FaultEnv::Op::kRename, EIO);
  EXPECT_FALSE(env_.RenameFile(dir_ / "f", dir_ / "g").ok());
  EXPECT_FALSE(env_.RenameFile(dir_ / "f", dir_ / "g").ok());
  env_.ClearFaults();
  EXPECT_TRUE(env_.RenameFile(dir_ / "f", dir_ / "g").ok());
}

TEST_F(FaultEnvTest, ShortAppendWritesAPrefixThenFails) {
  auto f = env_.NewWritableFile(dir_ / "f");
  ASSERT_TRUE(f.ok());
  env_.SetShortAppends(true);
  EXPECT_EQ((*f)->Append(crypto::AsBytes("12345678")).code(), Code::kResourceExhausted);
  ASSERT_TRUE((*f)->Close().ok());
  EXPECT_EQ(ReadFile(dir_ / "f"), "1234");
}

TEST_F(FaultEnvTest, CrashDropsUnsyncedFilesAndData) {
  // Synced data in a dir-synced file survives; later appends do not.
  {
    auto f = env_.NewWritableFile(dir_ / "durable");
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE((*f)->Append(crypto::AsBytes("kept")).ok());
    ASSERT_TRUE((*f)->Sync().ok());
    ASSERT_TRUE(env_.SyncDir(dir_.path()).ok());
    ASSERT_TRUE((*f)->Append(crypto::AsBytes("lost")).ok());
    ASSERT_TRUE((*f)->Close().ok());
  }
  // Synced data, but the directory entry never was: the file disappears.
  ASSERT_TRUE(WriteAll(dir_ / "no_dir_sync", "x", /*sync=*/true).ok());
  // A file made outside the FaultEnv is not touched.
  WriteFile(dir_ / "outside", "o");
  ASSERT_TRUE(env_.SimulateCrash().ok());
  EXPECT_EQ(ReadFile(dir_ / "durable"), "kept");
  EXPECT_FALSE(fs::exists(dir_ / "no_dir_sync"));
  EXPECT_EQ(ReadFile(dir_ / "outside"), "o");
}

TEST_F(FaultEnvTest, CrashUndoesRenamesWithoutDirSync) {
  fs::create_directories(dir_ / "tmp");
  fs::create_directories(dir_ / "obj");
  ASSERT_TRUE(WriteAll(dir_ / "tmp" / "a", "A", true).ok());
  ASSERT_TRUE(WriteAll(dir_ / "tmp" / "b", "B", true).ok());
  ASSERT_TRUE(env_.SyncDir(dir_ / "tmp").ok());
  ASSERT_TRUE(env_.RenameFile(dir_ / "tmp" / "a", dir_ / "obj" / "a").ok());
  ASSERT_TRUE(env_.SyncDir(dir_ / "obj").ok());  // a's rename is durable
  ASSERT_TRUE(env_.RenameFile(dir_ / "tmp" / "b", dir_ / "obj" / "b").ok());  // b's is not
  ASSERT_TRUE(env_.SimulateCrash().ok());
  EXPECT_EQ(ReadFile(dir_ / "obj" / "a"), "A");
  EXPECT_FALSE(fs::exists(dir_ / "obj" / "b"));
  EXPECT_EQ(ReadFile(dir_ / "tmp" / "b"), "B");
}

TEST_F(FaultEnvTest, HookSeesPathAndCanInjectForTheCurrentCall) {
  std::vector<Path> seen;
  env_.SetHook(FaultEnv::Op::kSyncDir, [&](const Path& p) {
    seen.push_back(p);
    if (p.filename() == "bad") env_.FailNth(FaultEnv::Op::kSyncDir, 1, EIO);
  });
  fs::create_directories(dir_ / "bad");
  EXPECT_TRUE(env_.SyncDir(dir_.path()).ok());
  EXPECT_EQ(env_.SyncDir(dir_ / "bad").code(), Code::kIOError);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(env_.SyncedDirs().size(), 1u);
}

}  // namespace
}  // namespace phi::testing
