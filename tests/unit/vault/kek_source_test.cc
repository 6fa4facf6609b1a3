// KEK sources: key files and systemd credentials, with real files, modes,
// symlinks and two real filesystems (/dev/shm tmpfs vs $TMPDIR).
#include "libphi/vault/kek_source.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <memory>

#include "libphi/vault/key_vault.h"
#include "tests/unit/vault/vault_test_util.h"

namespace phi::vault {
namespace {

using phi::testing::TempDir;
using phi::testing::WriteFile;
using testing::OtherFsDir;

class KekSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!keys_.DiffersFrom(storage_.path())) {
      GTEST_SKIP() << "needs /dev/shm on a different filesystem from $TMPDIR";
    }
  }
  Result<crypto::SecretBytes> Read(const std::filesystem::path& p) {
    return ReadKekFile(p, storage_.path(), "test");
  }

  TempDir storage_;
  OtherFsDir keys_;
};

TEST_F(KekSourceTest, AcceptsRawAndHexWithTheSameBytes) {
  const std::string raw = testing::RandomKeyBytes();
  const std::string hex = crypto::ToHex(crypto::AsBytes(raw));
  WriteFile(keys_ / "raw", raw, 0400);
  WriteFile(keys_ / "hex_nl", hex + "\n", 0600);
  std::string upper = hex;
  for (char& c : upper) c = static_cast<char>(toupper(c));
  WriteFile(keys_ / "hex_upper", upper, 0400);

  for (const char* name : {"raw", "hex_nl", "hex_upper"}) {
    auto k = Read(keys_ / name);
    ASSERT_TRUE(k.ok()) << name << ": " << k.status().ToString();
    ASSERT_EQ(k->size(), crypto::kKeyBytes);
    EXPECT_TRUE(crypto::ConstantTimeEqual(k->span(), crypto::AsBytes(raw))) << name;
  }
}

TEST_F(KekSourceTest, RefusesGroupOrOtherAccess) {
  for (int mode : {0644, 0640, 0604, 0401}) {
    const auto path = keys_ / ("k" + std::to_string(mode));
    WriteFile(path, testing::RandomKeyBytes(), mode);
    auto k = Read(path);
    ASSERT_FALSE(k.ok()) << std::oct << mode;
    EXPECT_NE(k.status().message().find("mode"), std::string::npos) << k.status().ToString();
    EXPECT_NE(k.status().message().find(path.string()), std::string::npos);
  }
}

TEST_F(KekSourceTest, RefusesSymlinkEvenToAGoodFile) {
  WriteFile(keys_ / "real", testing::RandomKeyBytes(), 0400);
  ASSERT_TRUE(Read(keys_ / "real").ok());
  std::filesystem::create_symlink(keys_ / "real", keys_ / "link");
  auto k = Read(keys_ / "link");
  ASSERT_FALSE(k.ok());
  EXPECT_NE(k.status().message().find("symlink"), std::string::npos) << k.status().ToString();
}

TEST_F(KekSourceTest, RefusesWrongLengthAndNonHex) {
  const std::string raw = testing::RandomKeyBytes();
  const std::string hex = crypto::ToHex(crypto::AsBytes(raw));
  const std::string bad[] = {
      raw.substr(0, 31),
      raw + "x",
      "",
      hex.substr(0, 63),
      hex + "\n\n",
      hex + " ",
      std::string(64, 'g'),
      std::string(4096, 'a'),
  };
  int i = 0;
  for (const auto& content : bad) {
    const auto path = keys_ / ("k" + std::to_string(i++));  // 0400 files are not rewritable
    WriteFile(path, content, 0400);
    auto k = Read(path);
    ASSERT_FALSE(k.ok()) << content.size();
    // The error never carries key bytes: only the path and a reason.
    EXPECT_EQ(k.status().message().find(hex.substr(0, 16)), std::string::npos);
  }
}

TEST_F(KekSourceTest, RefusesDirectoriesAndMissingFilesAndRelativePaths) {
  std::filesystem::create_directory(keys_ / "dir");
  ::chmod((keys_ / "dir").c_str(), 0700);
  EXPECT_FALSE(Read(keys_ / "dir").ok());
  EXPECT_FALSE(Read(keys_ / "missing").ok());
  EXPECT_FALSE(Read("relative/kek").ok());
}

TEST_F(KekSourceTest, RefusesKeysOnTheStorageVolume) {
  // Under the storage root.
  WriteFile(storage_ / "kek", testing::RandomKeyBytes(), 0400);
  auto under = Read(storage_ / "kek");
  ASSERT_FALSE(under.ok());
  EXPECT_NE(under.status().message().find("under the storage root"), std::string::npos)
      << under.status().ToString();
  // Not under it, but on the same filesystem.
  TempDir sibling;
  WriteFile(sibling / "kek", testing::RandomKeyBytes(), 0400);
  auto same_fs = Read(sibling / "kek");
  ASSERT_FALSE(same_fs.ok());
  EXPECT_NE(same_fs.status().message().find("same filesystem"), std::string::npos)
      << same_fs.status().ToString();
  // A missing storage root is an error too: the check cannot be made.
  EXPECT_FALSE(ReadKekFile(keys_ / "x", storage_ / "nope", "test").ok());
}

TEST_F(KekSourceTest, SameFilesystemAllowedOnlyWhenStorageIsNotAVolume) {
  // storage.require_encrypted_volume: false (dev, tests): the storage root is a
  // plain folder, so a sibling key file is accepted; under the root never is.
  TempDir sibling;
  WriteFile(sibling / "kek", testing::RandomKeyBytes(), 0400);
  EXPECT_TRUE(ReadKekFile(sibling / "kek", storage_.path(), "test", /*check_same_fs=*/false).ok());
  WriteFile(storage_ / "kek", testing::RandomKeyBytes(), 0400);
  EXPECT_FALSE(
      ReadKekFile(storage_ / "kek", storage_.path(), "test", /*check_same_fs=*/false).ok());
}

class ScopedEnvVar {
 public:
  ScopedEnvVar(const char* name, const char* value) : name_(name) {
    const char* old = ::getenv(name);
    if (old != nullptr) old_ = std::make_unique<std::string>(old);
    if (value != nullptr) {
      ::setenv(name, value, 1);
    } else {
      ::unsetenv(name);
    }
  }
  ~ScopedEnvVar() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::unique_ptr<std::string> old_;
};

TEST_F(KekSourceTest, CredentialFromCredentialsDirectory) {
  const std::string raw = testing::RandomKeyBytes();
  WriteFile(keys_ / "phigate.kek", raw, 0400);
  ScopedEnvVar creds("CREDENTIALS_DIRECTORY", keys_.path().c_str());

  auto kek = LoadKek(testing::CredentialKek("k1", "phigate.kek"), storage_.path());
  ASSERT_TRUE(kek.ok()) << kek.status().ToString();
  EXPECT_EQ(kek->id, "k1");
  EXPECT_TRUE(crypto::ConstantTimeEqual(kek->key.span(), crypto::AsBytes(raw)));

  // The credential and the same key as a file are the same KEK: a key wrapped by a
  // vault reading the file opens in a vault reading the credential.
  WriteFile(keys_ / "file.kek", crypto::ToHex(crypto::AsBytes(raw)) + "\n", 0400);
  PosixEnv env;
  auto from_file = KeyVault::Open(testing::Keys({testing::FileKek("k1", keys_ / "file.kek")}, "k1"),
                                  storage_.path(), env);
  auto from_cred = KeyVault::Open(
      testing::Keys({testing::CredentialKek("k1", "phigate.kek")}, "k1"), storage_.path(), env);
  ASSERT_TRUE(from_file.ok()) << from_file.status().ToString();
  ASSERT_TRUE(from_cred.ok()) << from_cred.status().ToString();
  auto wk = (*from_file)->CreateStudyKey();
  ASSERT_TRUE(wk.ok());
  EXPECT_TRUE((*from_cred)->LoadStudyKey(*wk).ok());

  // Missing credential, path-like names.
  EXPECT_FALSE(LoadKek(testing::CredentialKek("k1", "absent"), storage_.path()).ok());
  EXPECT_EQ(LoadKek(testing::CredentialKek("k1", "../x"), storage_.path()).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(LoadKek(testing::CredentialKek("k1", ".."), storage_.path()).status().code(),
            Code::kInvalidArgument);
}

TEST_F(KekSourceTest, CredentialWithoutCredentialsDirectoryIsAClearError) {
  ScopedEnvVar creds("CREDENTIALS_DIRECTORY", nullptr);
  auto kek = LoadKek(testing::CredentialKek("k1", "phigate.kek"), storage_.path());
  ASSERT_FALSE(kek.ok());
  EXPECT_NE(kek.status().message().find("CREDENTIALS_DIRECTORY"), std::string::npos)
      << kek.status().ToString();
}

TEST_F(KekSourceTest, ExactlyOneSource) {
  config::KekConfig both = testing::FileKek("k", keys_ / "k");
  both.credential = "phigate.kek";
  EXPECT_EQ(LoadKek(both, storage_.path()).status().code(), Code::kInvalidArgument);
  config::KekConfig none;
  none.id = "k";
  EXPECT_EQ(LoadKek(none, storage_.path()).status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace phi::vault
