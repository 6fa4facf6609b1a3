// Schema v4 (studies.source_ae) on an existing catalog: a v3 database with a
// study in it, written with the sqlite3 CLI, opens under this build, is
// migrated in place, keeps its study (source AE unknown) and records the
// source AE of new studies.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "libphi/crypto/crypto.h"
#include "libphi/index/schema.h"
#include "libphi/index/sqlite_catalog.h"
#include "tests/support/temp_dir.h"

namespace phi::index {
namespace {

audit::MacFn Mac() {
  crypto::Digest key{};
  return [key](crypto::ByteSpan d) { return crypto::HmacSha256(key, d); };
}

Token Tok(const std::string& s) {
  crypto::Digest d = crypto::Sha256(crypto::AsBytes(s));
  return Token(reinterpret_cast<const char*>(d.data()), d.size());
}

void Cli(const std::filesystem::path& db, const std::string& sql) {
  std::string cmd = "sqlite3 '" + db.string() + "' \"" + sql + "\"";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
}

TEST(SourceAeMigrationTest, V3CatalogIsMigratedAndNewStudiesRecordTheirSourceAe) {
  phi::testing::TempDir dir;
  PosixEnv env;
  ASSERT_GE(LatestSchemaVersion(), 4);
  {
    SqliteCatalog::Options o;
    o.audit_mac = Mac();
    o.schema_version_for_test = 3;
    auto c = SqliteCatalog::Open(dir.path(), env, o);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    EXPECT_EQ((*c)->schema_version(), 3);
  }
  const auto db = dir.path() / "catalog.db";
  // A study as a v3 build wrote it: no source_ae column yet.
  Cli(db,
      "INSERT INTO study_keys(key_id, kek_id, wrapped, created_at) VALUES ('k-old', 'kek', "
      "x'01', 1); INSERT INTO studies(key_id, study_uid_token, created_at, updated_at, "
      "last_access_at, phi) VALUES ('k-old', zeroblob(32), 1, 1, 1, x'02');");

  SqliteCatalog::Options o;
  o.audit_mac = Mac();
  auto c = SqliteCatalog::Open(dir.path(), env, o);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ((*c)->schema_version(), LatestSchemaVersion());
  auto old = (*c)->GetStudy(1);
  ASSERT_TRUE(old.ok()) << old.status().ToString();
  EXPECT_EQ((*c)->GetStudySourceAe(1).value(), "");
  EXPECT_EQ(old->key_id, "k-old");

  int64_t pk = 0;
  Status s = (*c)->Write([&](WriteTxn& txn) -> Status {
    PHI_RETURN_IF_ERROR(txn.PutStudyKey({"k-new", "kek", "w", 0}));
    NewStudy ns;
    ns.key_id = "k-new";
    ns.study_uid_token = Tok("study-new");
    ns.phi = "sealed";
    ns.source_ae = "CT_SCANNER_1";
    PHI_ASSIGN_OR_RETURN(pk, txn.UpsertStudy(ns));
    // The first AE stays: a second upsert by another AE leaves the row as is.
    ns.source_ae = "OTHER_AE";
    PHI_ASSIGN_OR_RETURN(int64_t again, txn.UpsertStudy(ns));
    return again == pk ? Status::Ok() : Status::Internal("upsert created a second study");
  });
  ASSERT_TRUE(s.ok()) << s.ToString();
  auto fresh = (*c)->GetStudy(pk);
  ASSERT_TRUE(fresh.ok()) << fresh.status().ToString();
  EXPECT_EQ((*c)->GetStudySourceAe(pk).value(), "CT_SCANNER_1");
  EXPECT_EQ((*c)->GetStudySourceAe(pk + 100).status().code(), Code::kNotFound);

  // Bounded like every text column.
  s = (*c)->Write([&](WriteTxn& txn) -> Status {
    NewStudy ns;
    ns.key_id = "k-new";
    ns.study_uid_token = Tok("study-long-ae");
    ns.phi = "sealed";
    ns.source_ae = std::string(kMaxTextBytes + 1, 'A');
    return txn.UpsertStudy(ns).status();
  });
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace phi::index
