// Backup and restore on a real storage stack (real SQLite, real files, real
// fsync): round trip, tamper detection naming the file, incomplete backups,
// refusal of a non-empty root or a missing KEK, and an erasure racing a backup.
#include "libphi/backup/backup.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>

#include "libphi/backup/restore.h"
#include "libphi/services/integrity.h"
#include "libphi/services/removal_gate.h"
#include "libphi/services/storage_stack.h"
#include "tests/unit/services/services_fixture.h"

namespace phi::backup {
namespace {

namespace fs = std::filesystem;
using services::testing::Patient;

class BackupTest : public services::testing::ServicesTest {
 protected:
  void SetUp() override {
    ServicesTest::SetUp();
    if (IsSkipped()) return;
    gate_ = std::make_unique<services::RemovalGate>(*objects_);
    gated_erasure_ =
        std::make_unique<services::ErasureService>(*vault_, *catalog_, *gate_, *keys_, env_);
  }
  void TearDown() override {
    gated_erasure_.reset();
    gate_.reset();
    ServicesTest::TearDown();
  }

  // Two studies, five instances.
  void StoreSome() {
    for (int i = 1; i <= 3; ++i) ASSERT_TRUE(Store(a_, 1, i, 5000 + i).ok());
    for (int i = 1; i <= 2; ++i) ASSERT_TRUE(Store(b_, 1, i, 70000 + i).ok());
  }

  Result<BackupReport> Backup(const fs::path& dir,
                              std::function<bool(const BackupProgress&)> progress = nullptr) {
    BackupRequest req;
    req.dir = dir;
    req.actor = "admin:uid=0";
    req.progress = std::move(progress);
    return RunBackup(*catalog_, *objects_, *gate_, env_, req);
  }

  // A storage stack over `root` with KEK A (what phigated --restore opens).
  Result<std::unique_ptr<services::StorageStack>> OpenStack(const fs::path& root) {
    config::StorageConfig st;
    st.root = root;
    st.require_encrypted_volume = false;
    return services::StorageStack::Open(
        vault::testing::Keys({vault::testing::FileKek("A", keys_dir_ / "a.kek")}, "A"), st, posix_);
  }

  static std::vector<fs::path> ObjectFiles(const fs::path& root) {
    std::vector<fs::path> out;
    if (!fs::exists(root / "objects")) return out;
    for (const auto& e : fs::recursive_directory_iterator(root / "objects")) {
      if (e.is_regular_file() && e.path().extension() == ".phg") out.push_back(e.path());
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  Patient a_{"Doe^Jane", "PID-1", "19700101", "ACC-1", "1.2.3.901", "20240101", "CT"};
  Patient b_{"Roe^Rick", "PID-2", "19800202", "ACC-2", "1.2.3.902", "20240202", "MR"};
  phi::testing::TempDir backups_;
  phi::testing::TempDir restored_;
  std::unique_ptr<services::RemovalGate> gate_;
  std::unique_ptr<services::ErasureService> gated_erasure_;
};

TEST_F(BackupTest, RoundTripRestoresEveryObjectByteForByte) {
  StoreSome();
  const fs::path dir = backups_.path() / "b1";
  auto rep = Backup(dir);
  ASSERT_TRUE(rep.ok()) << rep.status().ToString();
  EXPECT_EQ(rep->studies, 2);
  EXPECT_EQ(rep->objects, 5);
  EXPECT_EQ(rep->kek_ids, std::vector<std::string>{"A"});
  EXPECT_GT(rep->audit_seq, 0);
  EXPECT_FALSE(fs::exists(dir / "MANIFEST.tmp"));
  auto m = ParseManifest(phi::testing::ReadFile(dir / "MANIFEST"));
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->files.size(), 6u);
  EXPECT_EQ(m->files[0].path, "catalog.db");
  EXPECT_EQ(m->storage_id, rep->storage_id);
  // Each object file in the backup is the live one, byte for byte.
  for (size_t i = 1; i < m->files.size(); ++i) {
    EXPECT_EQ(phi::testing::ReadFile(dir / m->files[i].path),
              phi::testing::ReadFile(storage_.path() / m->files[i].path));
  }
  // The backup is itself audited in the live chain.
  auto audit = catalog_->ReadAudit(rep->audit_seq - 1, 1);
  ASSERT_TRUE(audit.ok() && audit->size() == 1u);
  EXPECT_EQ((*audit)[0].action, "backup");
  EXPECT_EQ((*audit)[0].outcome, "ok");

  auto lock = StorageLock::Acquire(restored_.path());
  ASSERT_TRUE(lock.ok());
  auto r = RestoreBackup(posix_, dir, restored_.path(), {"A"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->objects, 5);
  lock->reset();

  const std::string want_a2 = ReadInstance("1.2.3.901.1.2");
  const std::string want_b1 = ReadInstance("1.2.3.902.1.1");
  auto stack = OpenStack(restored_.path());
  ASSERT_TRUE(stack.ok()) << stack.status().ToString();
  auto rec = (*stack)->Recover();
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(rec->orphans_removed, 0u);
  EXPECT_EQ(rec->missing_objects, 0u);
  auto v = services::VerifyStorage((*stack)->vault(), (*stack)->catalog(), (*stack)->objects(),
                                   (*stack)->keys(), services::VerifyOptions{});
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_TRUE(v->ok());
  EXPECT_EQ(v->instances, 5);
  auto read = [&](const std::string& sop) {
    auto o = (*stack)->query().OpenInstance(sop);
    EXPECT_TRUE(o.ok()) << o.status().ToString();
    std::string out;
    if (o.ok()) {
      EXPECT_TRUE(o->reader
                      ->ReadAll([&](std::span<const std::byte> c) {
                        out.append(reinterpret_cast<const char*>(c.data()), c.size());
                        return Status::Ok();
                      })
                      .ok());
    }
    return out;
  };
  EXPECT_EQ(read("1.2.3.901.1.2"), want_a2);
  EXPECT_EQ(read("1.2.3.902.1.1"), want_b1);
  auto chain = audit::Verify((*stack)->catalog(), (*stack)->AuditMac());
  ASSERT_TRUE(chain.ok());
  EXPECT_TRUE(chain->ok);
}

TEST_F(BackupTest, OneChangedByteInAnObjectRefusesTheRestoreNamingTheFile) {
  StoreSome();
  const fs::path dir = backups_.path() / "b1";
  ASSERT_TRUE(Backup(dir).ok());
  auto m = ParseManifest(phi::testing::ReadFile(dir / "MANIFEST"));
  ASSERT_TRUE(m.ok());
  const std::string victim = m->files[3].path;
  std::string bytes = phi::testing::ReadFile(dir / victim);
  bytes[bytes.size() / 3] ^= 0x40;
  phi::testing::WriteFile(dir / victim, bytes);

  auto r = RestoreBackup(posix_, dir, restored_.path(), {"A"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kCorruption);
  EXPECT_NE(r.status().message().find(victim), std::string::npos) << r.status().ToString();
  // Nothing was written: the root is still empty.
  EXPECT_TRUE(fs::is_empty(restored_.path()));
  // CheckBackup alone says the same.
  auto c = CheckBackup(posix_, dir);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find(victim), std::string::npos);
}

TEST_F(BackupTest, ChangedCatalogOrManifestOrMissingManifestIsRefused) {
  StoreSome();
  const fs::path dir = backups_.path() / "b1";
  ASSERT_TRUE(Backup(dir).ok());
  const std::string manifest = phi::testing::ReadFile(dir / "MANIFEST");

  // A changed catalog.db byte.
  std::string db = phi::testing::ReadFile(dir / "catalog.db");
  db[db.size() - 100] ^= 0x01;
  phi::testing::WriteFile(dir / "catalog.db", db);
  auto r = RestoreBackup(posix_, dir, restored_.path(), {"A"});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("catalog.db"), std::string::npos);
  db[db.size() - 100] ^= 0x01;
  phi::testing::WriteFile(dir / "catalog.db", db);
  ASSERT_TRUE(CheckBackup(posix_, dir).ok());

  // A MANIFEST edited to match a changed file (its own hash no longer matches).
  std::string edited = manifest;
  size_t at = edited.find("file ") + 5;
  edited[at] = edited[at] == '0' ? '1' : '0';
  phi::testing::WriteFile(dir / "MANIFEST", edited);
  r = RestoreBackup(posix_, dir, restored_.path(), {"A"});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("manifest_sha256"), std::string::npos)
      << r.status().ToString();

  // No MANIFEST: an incomplete backup.
  fs::remove(dir / "MANIFEST");
  r = RestoreBackup(posix_, dir, restored_.path(), {"A"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kNotFound);
  EXPECT_NE(r.status().message().find("incomplete"), std::string::npos);
  EXPECT_TRUE(fs::is_empty(restored_.path()));
}

TEST_F(BackupTest, RestoreRefusesANonEmptyRootAMissingKekAndALockedRoot) {
  StoreSome();
  const fs::path dir = backups_.path() / "b1";
  ASSERT_TRUE(Backup(dir).ok());

  auto r = RestoreBackup(posix_, dir, restored_.path(), {"B"});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("KEK 'A'"), std::string::npos) << r.status().ToString();

  // Empty objects/ and tmp/ (as phigated's start-up creates them) are fine;
  // anything else is not.
  fs::create_directories(restored_.path() / "objects");
  fs::create_directories(restored_.path() / "tmp");
  phi::testing::WriteFile(restored_.path() / "catalog.db", "x");
  r = RestoreBackup(posix_, dir, restored_.path(), {"A"});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("not empty"), std::string::npos) << r.status().ToString();
  EXPECT_EQ(phi::testing::ReadFile(restored_.path() / "catalog.db"), "x");

  // The live root is locked while a (simulated) daemon holds it.
  auto held = StorageLock::Acquire(storage_.path());
  ASSERT_TRUE(held.ok());
  auto again = StorageLock::Acquire(storage_.path());
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), Code::kUnavailable);
}

TEST_F(BackupTest, BackupDirMustBeAbsoluteOutsideTheRootAndEmpty) {
  EXPECT_FALSE(CheckBackupDir("relative/dir", storage_.path()).ok());
  EXPECT_FALSE(CheckBackupDir(storage_.path() / "bk", storage_.path()).ok());
  EXPECT_FALSE(CheckBackupDir(storage_.path().parent_path(), storage_.path()).ok());
  EXPECT_FALSE(CheckBackupDir(backups_.path() / "a/../b", storage_.path()).ok());
  EXPECT_TRUE(CheckBackupDir(backups_.path() / "b", storage_.path()).ok());
  phi::testing::WriteFile(backups_.path() / "junk", "x");
  auto r = Backup(backups_.path());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kAlreadyExists);
  // The refused attempt is audited too.
  auto head = catalog_->ReadAudit(0, 100000);
  ASSERT_TRUE(head.ok());
  ASSERT_FALSE(head->empty());
  EXPECT_EQ(head->back().action, "backup");
  EXPECT_EQ(head->back().outcome, "error:AlreadyExists");
}

// An erasure committed after the snapshot: its unlinks wait for the backup,
// so the backup holds the study whole (key row + objects) and restores clean;
// the live files go when the backup ends.
TEST_F(BackupTest, ErasureDuringABackupIsHeldBackAndTheBackupStaysWhole) {
  StoreSome();
  const auto before = ObjectFiles(storage_.path());
  ASSERT_EQ(before.size(), 5u);
  bool erased = false;
  const fs::path dir = backups_.path() / "b1";
  auto rep = Backup(dir, [&](const BackupProgress& p) {
    if (p.phase == "objects" && p.objects_done == 1 && !erased) {
      auto cert = gated_erasure_->EraseStudy(b_.study_uid, "admin:uid=0", "test");
      EXPECT_TRUE(cert.ok()) << cert.status().ToString();
      erased = true;
      // Held back: still on disk.
      EXPECT_EQ(ObjectFiles(storage_.path()).size(), 5u);
      EXPECT_EQ(gate_->deferred(), 2u);
      // verify/scrub during the hold: the held files are orphans for a plain
      // check, expected ones when it asks the gate.
      services::VerifyOptions plain;
      auto v = services::VerifyStorage(*vault_, *catalog_, *objects_, *keys_, plain);
      EXPECT_TRUE(v.ok() && v->problem_count == 2);
      services::VerifyOptions gated;
      gated.expected_unreferenced = [&](const std::string& id) { return gate_->IsDeferred(id); };
      v = services::VerifyStorage(*vault_, *catalog_, *objects_, *keys_, gated);
      EXPECT_TRUE(v.ok() && v->ok());
    }
    return true;
  });
  ASSERT_TRUE(rep.ok()) << rep.status().ToString();
  EXPECT_TRUE(erased);
  EXPECT_EQ(rep->objects, 5);
  EXPECT_EQ(rep->unlinks_held_back, 2);
  // The hold is gone and so are the erased study's files.
  EXPECT_EQ(gate_->deferred(), 0u);
  EXPECT_EQ(ObjectFiles(storage_.path()).size(), 3u);

  ASSERT_TRUE(RestoreBackup(posix_, dir, restored_.path(), {"A"}).ok());
  auto stack = OpenStack(restored_.path());
  ASSERT_TRUE(stack.ok()) << stack.status().ToString();
  ASSERT_TRUE((*stack)->Recover().ok());
  auto v = services::VerifyStorage((*stack)->vault(), (*stack)->catalog(), (*stack)->objects(),
                                   (*stack)->keys(), services::VerifyOptions{});
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok()) << (v->problems.empty() ? "" : v->problems[0].kind);
  EXPECT_EQ(v->studies, 2);
  EXPECT_EQ(v->instances, 5);
}

TEST(ManifestTest, RoundTripAndHostilePaths) {
  Manifest m;
  m.storage_id = std::string(32, 'a');
  m.created = "2026-11-25T22:00:00Z";
  m.kek_ids = {"kek-1", "kek-2"};
  m.studies = 1;
  m.objects = 1;
  m.object_bytes = 10;
  m.files = {{"catalog.db", 4096, std::string(64, 'b')},
             {ObjectRelPath(std::string(32, 'c')), 10, std::string(64, 'd')}};
  std::string text = SerializeManifest(m);
  auto p = ParseManifest(text);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->files.size(), 2u);
  EXPECT_EQ(p->files[1].path, "objects/cc/cc/" + std::string(32, 'c') + ".phg");
  EXPECT_EQ(p->kek_ids, m.kek_ids);

  // Paths that escape, even under a correct self hash, are refused.
  const std::vector<std::string> bads = {"../etc/passwd", "/etc/passwd",
                                         "objects/cc/cc/../../../x.phg",
                                         "objects/aa/cc/" + std::string(32, 'c') + ".phg"};
  for (const std::string& bad : bads) {
    Manifest h = m;
    h.files[1].path = bad;
    auto r = ParseManifest(SerializeManifest(h));
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find("bad path"), std::string::npos) << r.status().ToString();
  }
  // Truncated: no self-hash line.
  auto t = ParseManifest(text.substr(0, text.rfind("manifest_sha256")));
  EXPECT_FALSE(t.ok());
}

}  // namespace
}  // namespace phi::backup
