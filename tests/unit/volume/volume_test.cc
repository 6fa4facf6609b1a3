// Tests for CheckStorageVolume / EnforceEncryptedVolume over fixture procfs/sysfs trees.
#include "libphi/util/volume.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "libphi/util/log.h"
#include "tests/support/temp_dir.h"

namespace phi {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;
using testing::WriteFile;

// A fake /proc and /sys under a temp dir.
class VolumeTest : public ::testing::Test {
 protected:
  VolumeTest() : env_(dir_ / "proc", dir_ / "sys") {
    fs::create_directories(dir_ / "proc" / "self");
    fs::create_directories(dir_ / "sys" / "dev" / "block");
  }

  void Mountinfo(const std::string& text) { WriteFile(dir_ / "proc/self/mountinfo", text); }
  // A block device entry; empty uuid = not a dm device.
  void Block(const std::string& majmin, const std::string& dm_uuid, const std::string& dm_name) {
    fs::path d = dir_ / "sys/dev/block" / majmin;
    fs::create_directories(d);
    if (!dm_uuid.empty()) {
      fs::create_directories(d / "dm");
      WriteFile(d / "dm/uuid", dm_uuid + "\n");
      WriteFile(d / "dm/name", dm_name + "\n");
    }
  }

  TempDir dir_;
  PosixEnv env_;
};

// Storage roots below are fixture paths that need not exist on this machine.
constexpr char kBase[] =
    "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro\n"
    "23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw\n";

TEST_F(VolumeTest, LuksDmDeviceIsEncrypted) {
  Mountinfo(std::string(kBase) +
            "40 22 254:3 / /srv/phitest-vol rw,relatime shared:30 - ext4 /dev/mapper/phigate "
            "rw\n");
  Block("8:1", "", "");
  Block("254:3", "CRYPT-LUKS2-0123456789abcdef0123456789abcdef-phigate", "phigate");
  auto v = CheckStorageVolume("/srv/phitest-vol/data", env_);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_TRUE(v->encrypted);
  EXPECT_TRUE(v->is_dm);
  EXPECT_EQ(v->mount_point, "/srv/phitest-vol");
  EXPECT_EQ(v->fs_type, "ext4");
  EXPECT_EQ(v->source, "/dev/mapper/phigate");
  EXPECT_EQ(v->dm_name, "phigate");
  EXPECT_EQ(v->major, 254u);
  EXPECT_EQ(v->minor, 3u);
  EXPECT_EQ(v->DmUuidPrefix(), "CRYPT-LUKS2");

  config::StorageConfig cfg;
  cfg.root = "/srv/phitest-vol/data";
  VolumeInfo out;
  EXPECT_TRUE(EnforceEncryptedVolume(cfg, env_, &out).ok());
  EXPECT_TRUE(out.encrypted);
  EXPECT_TRUE(out.required);
}

TEST_F(VolumeTest, Luks1AlsoCounts) {
  Mountinfo(std::string(kBase) + "40 22 254:0 / /srv/phitest-l1 rw - xfs /dev/dm-0 rw\n");
  Block("254:0", "CRYPT-LUKS1-abcdef-old", "old");
  auto v = CheckStorageVolume("/srv/phitest-l1", env_);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_TRUE(v->encrypted);
  EXPECT_EQ(v->fs_type, "xfs");
}

TEST_F(VolumeTest, PlainPartitionIsRefused) {
  Mountinfo(kBase);
  Block("8:1", "", "");
  auto v = CheckStorageVolume("/srv/phitest-plain", env_);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_FALSE(v->encrypted);
  EXPECT_FALSE(v->is_dm);
  EXPECT_EQ(v->mount_point, "/");

  config::StorageConfig cfg;
  cfg.root = "/srv/phitest-plain";
  Status s = EnforceEncryptedVolume(cfg, env_, nullptr);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Code::kPermissionDenied);
  EXPECT_NE(s.message().find("/dev/sda1"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("mount /"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("require_encrypted_volume"), std::string::npos) << s.message();
}

TEST_F(VolumeTest, LvmDmDeviceIsRefused) {
  Mountinfo(std::string(kBase) +
            "41 22 254:1 / /srv/phitest-lvm rw - ext4 /dev/mapper/vg0-data rw\n");
  Block("254:1", "LVM-Xq3abcdefghijklmnopqrstuvwxyz0123456789", "vg0-data");
  auto v = CheckStorageVolume("/srv/phitest-lvm", env_);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_TRUE(v->is_dm);
  EXPECT_FALSE(v->encrypted);
  EXPECT_EQ(v->DmUuidPrefix(), "LVM");

  config::StorageConfig cfg;
  cfg.root = "/srv/phitest-lvm";
  Status s = EnforceEncryptedVolume(cfg, env_, nullptr);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("/dev/mapper/vg0-data"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("/srv/phitest-lvm"), std::string::npos) << s.message();
}

TEST_F(VolumeTest, NotRequiredWarnsAndPasses) {
  Mountinfo(kBase);
  std::string captured;
  log::SetCaptureForTest(&captured);
  config::StorageConfig cfg;
  cfg.root = "/srv/phitest-plain";
  cfg.require_encrypted_volume = false;
  VolumeInfo out;
  Status s = EnforceEncryptedVolume(cfg, env_, &out);
  log::SetCaptureForTest(nullptr);
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_FALSE(out.encrypted);
  EXPECT_FALSE(out.required);
  EXPECT_NE(captured.find("NOT encrypted"), std::string::npos) << captured;
}

TEST_F(VolumeTest, NestedMountsLongestPrefixWins) {
  Mountinfo(std::string(kBase) +
            "40 22 254:3 / /srv/phitest-a rw - ext4 /dev/mapper/outer rw\n"
            "41 40 8:17 / /srv/phitest-a/b rw - ext4 /dev/sdb1 rw\n"
            "42 22 254:4 / /srv/phitest-ab rw - ext4 /dev/mapper/sibling rw\n");
  Block("254:3", "CRYPT-LUKS2-1111-outer", "outer");
  Block("8:17", "", "");
  Block("254:4", "CRYPT-LUKS2-2222-sibling", "sibling");

  auto inner = CheckStorageVolume("/srv/phitest-a/b/c", env_);
  ASSERT_TRUE(inner.ok()) << inner.status().ToString();
  EXPECT_EQ(inner->mount_point, "/srv/phitest-a/b");
  EXPECT_FALSE(inner->encrypted);

  auto outer = CheckStorageVolume("/srv/phitest-a/bc", env_);  // not under /srv/phitest-a/b
  ASSERT_TRUE(outer.ok()) << outer.status().ToString();
  EXPECT_EQ(outer->mount_point, "/srv/phitest-a");
  EXPECT_TRUE(outer->encrypted);
  EXPECT_EQ(outer->dm_name, "outer");

  auto exact = CheckStorageVolume("/srv/phitest-a/b", env_);
  ASSERT_TRUE(exact.ok());
  EXPECT_EQ(exact->mount_point, "/srv/phitest-a/b");
}

TEST_F(VolumeTest, OvermountLaterEntryWins) {
  Mountinfo(std::string(kBase) +
            "40 22 8:17 / /srv/phitest-o rw - ext4 /dev/sdb1 rw\n"
            "41 40 254:3 / /srv/phitest-o rw - ext4 /dev/mapper/top rw\n");
  Block("254:3", "CRYPT-LUKS2-3333-top", "top");
  auto v = CheckStorageVolume("/srv/phitest-o", env_);
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->encrypted);
  EXPECT_EQ(v->source, "/dev/mapper/top");
}

TEST_F(VolumeTest, EscapedMountPoint) {
  Mountinfo(std::string(kBase) +
            "40 22 254:3 / /srv/phi\\040test\\011vol rw - ext4 /dev/mapper/my\\134dev rw\n");
  Block("254:3", "CRYPT-LUKS2-4444-x", "x");
  auto v = CheckStorageVolume("/srv/phi test\tvol/storage", env_);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->mount_point, "/srv/phi test\tvol");
  EXPECT_EQ(v->source, "/dev/mapper/my\\dev");
  EXPECT_TRUE(v->encrypted);
  // The escaped spelling itself is not a path anyone uses.
  auto other = CheckStorageVolume("/srv/phi\\040test\\011vol", env_);
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(other->mount_point, "/");
}

TEST(UnescapeMountField, Decodes) {
  EXPECT_EQ(UnescapeMountField("a\\040b"), "a b");
  EXPECT_EQ(UnescapeMountField("a\\012b"), "a\nb");
  EXPECT_EQ(UnescapeMountField("a\\134"), "a\\");
  EXPECT_EQ(UnescapeMountField("a\\04"), "a\\04");  // truncated: kept as is
  EXPECT_EQ(UnescapeMountField("a\\999"), "a\\999");
}

TEST_F(VolumeTest, MissingMountinfoIsAClearError) {
  auto v = CheckStorageVolume("/srv/x", env_);
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.status().message().find("mountinfo"), std::string::npos) << v.status().ToString();
  config::StorageConfig cfg;
  cfg.root = "/srv/x";
  Status s = EnforceEncryptedVolume(cfg, env_, nullptr);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("mountinfo"), std::string::npos) << s.ToString();
}

TEST_F(VolumeTest, GarbageMountinfoIsCorruption) {
  Mountinfo("this is not a mount table\n");
  auto v = CheckStorageVolume("/srv/x", env_);
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), Code::kCorruption);
}

TEST_F(VolumeTest, RelativeDotsAreNormalised) {
  Mountinfo(std::string(kBase) + "40 22 254:3 / /srv/phitest-n rw - ext4 /dev/mapper/n rw\n");
  Block("254:3", "CRYPT-LUKS2-5-n", "n");
  auto v = CheckStorageVolume("/srv/phitest-n/../phitest-n/./s/", env_);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->mount_point, "/srv/phitest-n");
  EXPECT_TRUE(v->encrypted);
}

TEST(VolumeReal, ThisMachineHasAVolume) {
  PosixEnv env;
  auto v = CheckStorageVolume(fs::temp_directory_path(), env);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_FALSE(v->mount_point.empty());
  EXPECT_FALSE(v->fs_type.empty());
}

}  // namespace
}  // namespace phi
