#include "libphi/util/env.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>

#include "tests/support/temp_dir.h"

namespace phi {
namespace {

std::span<const std::byte> Bytes(std::string_view s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

TEST(PosixEnvTest, WriteSyncRenameReadBack) {
  testing::TempDir dir;
  PosixEnv env;
  ASSERT_TRUE(env.CreateDirs(dir / "a/b").ok());
  auto f = env.NewWritableFile(dir / "a/b/tmp");
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  ASSERT_TRUE((*f)->Append(Bytes("hello ")).ok());
  ASSERT_TRUE((*f)->Append(Bytes("world")).ok());
  ASSERT_TRUE((*f)->Sync().ok());
  ASSERT_TRUE((*f)->Close().ok());
  ASSERT_TRUE(env.RenameFile(dir / "a/b/tmp", dir / "a/b/final").ok());
  ASSERT_TRUE(env.SyncDir(dir / "a/b").ok());
  EXPECT_FALSE(env.FileExists(dir / "a/b/tmp"));

  auto r = env.NewRandomAccessFile(dir / "a/b/final");
  ASSERT_TRUE(r.ok());
  std::byte buf[5];
  auto n = (*r)->Read(6, buf);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 5u);
  EXPECT_EQ(std::memcmp(buf, "world", 5), 0);
  EXPECT_EQ(*(*r)->Size(), 11u);
  EXPECT_EQ(*(*r)->Read(11, buf), 0u);

  struct stat st;
  ASSERT_EQ(::stat((dir / "a/b/final").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "object files must not be group/other readable";
}

TEST(PosixEnvTest, NewWritableFileRefusesToOverwrite) {
  testing::TempDir dir;
  PosixEnv env;
  testing::WriteFile(dir / "x", "old");
  auto f = env.NewWritableFile(dir / "x");
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), Code::kAlreadyExists);
  EXPECT_EQ(testing::ReadFile(dir / "x"), "old");
}

TEST(PosixEnvTest, ListAndRemove) {
  testing::TempDir dir;
  PosixEnv env;
  testing::WriteFile(dir / "one", "1");
  testing::WriteFile(dir / "two", "2");
  auto names = env.ListDir(dir.path());
  ASSERT_TRUE(names.ok());
  std::sort(names->begin(), names->end());
  EXPECT_EQ(*names, (std::vector<std::string>{"one", "two"}));
  ASSERT_TRUE(env.RemoveFile(dir / "one").ok());
  EXPECT_EQ(env.RemoveFile(dir / "one").code(), Code::kNotFound);
  EXPECT_EQ(env.ListDir(dir / "missing").status().code(), Code::kNotFound);
}

TEST(PosixEnvTest, ReadSmallFileIsBounded) {
  testing::TempDir dir;
  PosixEnv env;
  testing::WriteFile(dir / "f", std::string(100, 'x'));
  EXPECT_EQ(env.ReadSmallFile(dir / "f", 100)->size(), 100u);
  EXPECT_EQ(env.ReadSmallFile(dir / "f", 99).status().code(), Code::kResourceExhausted);
}

TEST(PosixEnvTest, RandomBytesDiffer) {
  PosixEnv env;
  std::array<std::byte, 32> a{}, b{};
  ASSERT_TRUE(env.RandomBytes(a).ok());
  ASSERT_TRUE(env.RandomBytes(b).ok());
  EXPECT_NE(a, b);
}

TEST(PosixEnvTest, InjectedRootsAreReported) {
  PosixEnv env("/fixture/proc", "/fixture/sys");
  EXPECT_EQ(env.ProcRoot(), "/fixture/proc");
  EXPECT_EQ(env.SysRoot(), "/fixture/sys");
  EnvWrapper w(env);
  EXPECT_EQ(w.SysRoot(), "/fixture/sys");
}

}  // namespace
}  // namespace phi
