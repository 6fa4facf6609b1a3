// SqliteCatalog against real SQLite files in a temp dir: pragmas, group
// commit, savepoint isolation, cascades, queries, migrations, the audit chain
// (tampered with the sqlite3 CLI), and secure_delete erasure (file scan).
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <future>
#include <sstream>
#include <thread>

#include "libphi/crypto/crypto.h"
#include "libphi/index/schema.h"
#include "libphi/index/sqlite_catalog.h"
#include "tests/support/temp_dir.h"
#include "tests/unit/index/fault_vfs.h"

namespace phi::index {
namespace {

using phi::testing::TempDir;

audit::MacFn TestMac() {
  crypto::Digest key;
  for (size_t i = 0; i < key.size(); ++i) key[i] = std::byte(static_cast<uint8_t>(0xA0 + i));
  return [key](crypto::ByteSpan d) { return crypto::HmacSha256(key, d); };
}

// A distinct 32-byte token per (kind, n).
Token Tok(char kind, int n) {
  std::string s = std::string(1, kind) + ":" + std::to_string(n);
  crypto::Digest d = crypto::Sha256(crypto::AsBytes(s));
  return Token(reinterpret_cast<const char*>(d.data()), d.size());
}

std::string ReadAll(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Runs a one-value query on the database file with a separate connection.
int64_t RawQueryInt(const std::filesystem::path& path, const char* sql) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, sql, -1, &st, nullptr), SQLITE_OK);
  int64_t v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
  sqlite3_finalize(st);
  sqlite3_close(db);
  return v;
}

// Runs the sqlite3 CLI on the (closed) catalog.
void Cli(const std::filesystem::path& db, const std::string& sql) {
  std::string cmd = "sqlite3 '" + db.string() + "' \"" + sql + "\"";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
}

class CatalogTest : public ::testing::Test {
 protected:
  std::unique_ptr<SqliteCatalog> OpenCatalog(SqliteCatalog::Options o = {}) {
    if (!o.audit_mac) o.audit_mac = TestMac();
    auto c = SqliteCatalog::Open(dir_.path(), env_, std::move(o));
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(c).value() : nullptr;
  }
  std::filesystem::path DbPath() const { return dir_ / "catalog.db"; }

  // Key + study (+ optional series/instance) in one transaction. Returns study_pk.
  int64_t AddStudy(SqliteCatalog& c, int n, std::optional<int32_t> year, std::string modality,
                   int instances = 1, const std::string& phi = "sealed") {
    int64_t pk = 0;
    Status s = c.Write([&](WriteTxn& t) -> Status {
      PHI_RETURN_IF_ERROR(t.PutStudyKey({"k" + std::to_string(n), "kek1", "wrapped" + phi, 0}));
      NewStudy ns{"k" + std::to_string(n), Tok('S', n), Tok('P', n % 3), Tok('A', n), year,
                  "study-" + phi};
      PHI_ASSIGN_OR_RETURN(pk, t.UpsertStudy(ns));
      PHI_ASSIGN_OR_RETURN(int64_t series,
                           t.UpsertSeries({pk, Tok('R', n), modality, 1, "series-" + phi}));
      for (int i = 0; i < instances; ++i) {
        NewInstance ni{series,
                       Tok('I', n * 1000 + i),
                       "1.2.840.10008.5.1.4.1.1.2",
                       "1.2.840.10008.1.2.1",
                       i + 1,
                       "obj" + std::to_string(n * 1000 + i),
                       100,
                       "inst-" + phi};
        PHI_ASSIGN_OR_RETURN(int64_t ipk, t.InsertInstance(ni));
        (void)ipk;
      }
      return Status::Ok();
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
    return pk;
  }

  Status Audit(SqliteCatalog& c, int i) {
    return c.Write([&](WriteTxn& t) -> Status {
      audit::AuditEvent e;
      e.actor = "admin:test";
      e.action = "store";
      e.object = "object:" + std::to_string(i);
      e.outcome = "ok";
      return t.AppendAudit(e).status();
    });
  }

  PosixEnv env_;
  TempDir dir_;
};

TEST_F(CatalogTest, PragmasOnEveryConnectionAndFileMode) {
  auto c = OpenCatalog({.readers = 3});
  ASSERT_TRUE(c);
  struct Want {
    const char* pragma;
    std::string writer, reader;
  } wants[] = {{"journal_mode", "wal", "wal"}, {"synchronous", "2", "2"},
               {"secure_delete", "1", "1"},    {"foreign_keys", "1", "1"},
               {"query_only", "0", "1"},       {"trusted_schema", "0", "0"},
               {"temp_store", "2", "2"}};
  for (const Want& w : wants) {
    auto v = c->PragmaOnAllConnectionsForTest(w.pragma);
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    ASSERT_EQ(v->size(), 4u);
    EXPECT_EQ((*v)[0], w.writer) << w.pragma;
    for (size_t i = 1; i < v->size(); ++i) EXPECT_EQ((*v)[i], w.reader) << w.pragma;
  }
  auto busy = c->PragmaOnAllConnectionsForTest("busy_timeout");
  ASSERT_TRUE(busy.ok());
  for (const auto& b : *busy) EXPECT_NE(b, "0");
  EXPECT_EQ(c->schema_version(), LatestSchemaVersion());
  AddStudy(*c, 1, 2020, "CT");  // creates -wal
  for (const char* f : {"catalog.db", "catalog.db-wal", "catalog.db-shm"}) {
    struct stat st {};
    ASSERT_EQ(::stat((dir_ / f).c_str(), &st), 0) << f;
    EXPECT_EQ(st.st_mode & 0777, 0600u) << f;
  }
}

TEST_F(CatalogTest, GroupCommitFromManyThreads) {
  auto c = OpenCatalog();
  ASSERT_TRUE(c);
  constexpr int kThreads = 16, kPer = 50;
  std::vector<std::thread> ts;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < kPer; ++i) {
        int n = t * kPer + i;
        Status s = c->Write([&](WriteTxn& txn) -> Status {
          PHI_RETURN_IF_ERROR(txn.PutStudyKey({"k" + std::to_string(n), "kek1", "w", 0}));
          PHI_ASSIGN_OR_RETURN(
              int64_t pk,
              txn.UpsertStudy({"k" + std::to_string(n), Tok('S', n), {}, {}, 2024, "phi"}));
          audit::AuditEvent e{{}, "test", "store", "study:" + std::to_string(pk), "ok", "", ""};
          return txn.AppendAudit(e).status();
        });
        if (!s.ok()) failures++;
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(failures.load(), 0);
  CatalogStats st = c->stats();
  EXPECT_EQ(st.transactions, uint64_t{kThreads * kPer});
  EXPECT_EQ(st.transactions_failed, 0u);
  EXPECT_LT(st.commits, st.transactions);  // batches shared commits
  RecordProperty("commits", static_cast<int>(st.commits));
  auto counts = c->CountObjects();
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ(counts->studies, kThreads * kPer);
  auto rep = audit::Verify(*c, TestMac());
  ASSERT_TRUE(rep.ok());
  EXPECT_TRUE(rep->ok) << audit::BreakReasonName(rep->reason) << " at " << rep->broken_seq;
  EXPECT_EQ(rep->count, kThreads * kPer);
}

// Holds the writer inside one closure until released, so that the closures
// queued meanwhile are deterministically committed as one batch.
class WriterGate {
 public:
  explicit WriterGate(SqliteCatalog& c) {
    std::promise<void> started;
    auto started_f = started.get_future();
    auto released = release_.get_future().share();
    t_ = std::thread([this, &c, &started, released] {
      status_ = c.Write([&](WriteTxn&) {
        started.set_value();
        released.wait();
        return Status::Ok();
      });
    });
    started_f.wait();
  }
  // Returns the gate closure's own Write status.
  Status Release() {
    release_.set_value();
    t_.join();
    return status_;
  }

 private:
  Status status_;
  std::promise<void> release_;
  std::thread t_;
};

void WaitForQueue(SqliteCatalog& c, size_t n) {
  while (c.QueueDepthForTest() < n) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

TEST_F(CatalogTest, QueuedClosuresShareOneCommitAndFailIndependently) {
  auto c = OpenCatalog();
  ASSERT_TRUE(c);
  ASSERT_TRUE(Audit(*c, 0).ok());
  WriterGate gate(*c);
  const uint64_t commits_before = c->stats().commits;
  std::vector<std::future<Status>> fs;
  for (int i = 0; i < 8; ++i) {
    fs.push_back(std::async(std::launch::async, [&, i] {
      return c->Write([&, i](WriteTxn& t) -> Status {
        PHI_RETURN_IF_ERROR(t.PutStudyKey({"key" + std::to_string(i), "kek", "w", 0}));
        audit::AuditEvent e{{}, "test", "store", "key:" + std::to_string(i), "ok", "", ""};
        PHI_RETURN_IF_ERROR(t.AppendAudit(e).status());
        if (i == 3) return Status::InvalidArgument("closure 3 fails after writing");
        return Status::Ok();
      });
    }));
  }
  WaitForQueue(*c, 8);
  ASSERT_TRUE(gate.Release().ok());
  for (int i = 0; i < 8; ++i) {
    Status s = fs[i].get();
    if (i == 3) {
      EXPECT_EQ(s.code(), Code::kInvalidArgument);
    } else {
      EXPECT_TRUE(s.ok()) << i << ": " << s.ToString();
    }
  }
  // The gate's batch + one batch for all eight.
  EXPECT_EQ(c->stats().commits, commits_before + 2);
  for (int i = 0; i < 8; ++i) {
    auto k = c->GetStudyKey("key" + std::to_string(i));
    if (i == 3) {
      EXPECT_EQ(k.status().code(), Code::kNotFound);
    } else {
      EXPECT_TRUE(k.ok()) << i;
    }
  }
  // The failed closure's audit record was rolled back with it, and the
  // in-memory chain head too: the chain is whole, 1 + 7 records.
  auto rep = audit::Verify(*c, TestMac());
  ASSERT_TRUE(rep.ok());
  EXPECT_TRUE(rep->ok);
  EXPECT_EQ(rep->count, 8);
}

// Catalog pages never leave the storage folder: SQLite's default spills a
// savepoint's journal (the original of every page a closure changes) to a
// temporary file in /var/tmp once it passes 64 KiB, and the writer runs each
// closure in a savepoint. With temp_store = MEMORY no temporary file opens.
TEST_F(CatalogTest, SavepointJournalsStayInMemory) {
  const char* vfs = index::testing::RegisterFaultVfs();
  auto c = OpenCatalog({.vfs_for_test = vfs});
  ASSERT_TRUE(c);
  std::vector<int64_t> pks;
  for (int n = 0; n < 150; ++n)
    pks.push_back(AddStudy(*c, n, 2020, "CT", 1, std::string(900, 'a')));
  const long before = index::testing::TempFileOpens();
  // One closure rewrites every study row: ~150 KiB of pages journaled in its savepoint.
  Status s = c->Write([&](WriteTxn& t) -> Status {
    for (size_t i = 0; i < pks.size(); ++i) {
      StudyPhiUpdate u;
      u.patient_id_token = Tok('P', static_cast<int>(i % 3));
      u.accession_token = Tok('A', static_cast<int>(i));
      u.study_year = 2021;
      u.phi = "study-" + std::string(900, 'b');
      PHI_RETURN_IF_ERROR(t.UpdateStudyPhi(pks[i], u));
    }
    return Status::Ok();
  });
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(RawQueryInt(DbPath(), "SELECT count(*) FROM studies WHERE study_year = 2021"), 150);
  EXPECT_EQ(index::testing::TempFileOpens(), before);
}

TEST_F(CatalogTest, CommitFailureFailsWholeBatchAndIsSticky) {
  const char* vfs = index::testing::RegisterFaultVfs();
  {
    auto c = OpenCatalog({.vfs_for_test = vfs});
    ASSERT_TRUE(c);
    AddStudy(*c, 1, 2020, "CT");
    ASSERT_TRUE(Audit(*c, 1).ok());
    const long syncs = index::testing::SyncCount();
    ASSERT_TRUE(Audit(*c, 2).ok());
    EXPECT_GT(index::testing::SyncCount(), syncs);  // commits really fsync through the shim

    WriterGate gate(*c);
    std::vector<std::future<Status>> fs;
    for (int i = 0; i < 3; ++i) {
      fs.push_back(std::async(std::launch::async, [&, i] {
        return c->Write([i](WriteTxn& t) -> Status {
          PHI_RETURN_IF_ERROR(t.PutStudyKey({"x" + std::to_string(i), "kek", "w", 0}));
          // The last closure arms the fault: the batch's COMMIT fsync fails.
          if (i == 2) index::testing::SetFailSync(true);
          return Status::Ok();
        });
      }));
    }
    WaitForQueue(*c, 3);
    ASSERT_TRUE(gate.Release().ok());
    Status first;
    for (auto& f : fs) {
      Status s = f.get();
      EXPECT_EQ(s.code(), Code::kIOError) << s.ToString();
      if (first.ok()) first = s;
    }
    index::testing::SetFailSync(false);
    // Sticky: the disk "works" again, but writes keep failing with the original error.
    EXPECT_EQ(c->health(), first);
    EXPECT_EQ(Audit(*c, 3), first);
    EXPECT_EQ(c->Checkpoint(), first);
    EXPECT_EQ(c->stats().commit_failures, 1u);
    // Reads still work.
    EXPECT_TRUE(c->GetStudyKey("k1").ok());
  }
  auto c = OpenCatalog();
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->health().ok());
  EXPECT_TRUE(c->GetStudyKey("k1").ok());
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(c->GetStudyKey("x" + std::to_string(i)).status().code(), Code::kNotFound) << i;
  }
  auto rep = audit::Verify(*c, TestMac());
  ASSERT_TRUE(rep.ok());
  EXPECT_TRUE(rep->ok);
  EXPECT_EQ(rep->count, 2);
  EXPECT_TRUE(Audit(*c, 3).ok());
}

TEST_F(CatalogTest, WriteFromInsideClosureIsRefused) {
  auto c = OpenCatalog();
  ASSERT_TRUE(c);
  Status inner;
  Status outer = c->Write([&](WriteTxn&) {
    inner = c->Write([](WriteTxn&) { return Status::Ok(); });
    return Status::Ok();
  });
  EXPECT_TRUE(outer.ok());
  EXPECT_EQ(inner.code(), Code::kInternal);
}

TEST_F(CatalogTest, InstancesCountersDuplicatesAndReplace) {
  auto c = OpenCatalog();
  ASSERT_TRUE(c);
  int64_t pk = AddStudy(*c, 7, 2021, "MR", 3);
  auto study = c->GetStudy(pk);
  ASSERT_TRUE(study.ok());
  EXPECT_EQ(study->num_series, 1);
  EXPECT_EQ(study->num_instances, 3);
  EXPECT_EQ(study->total_bytes, 300);
  EXPECT_EQ(study->modalities, "MR");
  EXPECT_EQ(study->phi, "study-sealed");

  auto series = c->ListSeries(pk);
  ASSERT_TRUE(series.ok());
  ASSERT_EQ(series->size(), 1u);
  const int64_t series_pk = (*series)[0].series_pk;
  EXPECT_EQ((*series)[0].num_instances, 3);

  // Same SOP token again: AlreadyExists, nothing changes.
  NewInstance dup{series_pk, Tok('I', 7000), "cls", "ts", 1, "objX", 5, "p"};
  Status s = c->Write([&](WriteTxn& t) { return t.InsertInstance(dup).status(); });
  EXPECT_EQ(s.code(), Code::kAlreadyExists) << s.ToString();

  // Replace: the old object id comes back, counters follow the new size.
  std::string old_object;
  NewInstance rep{series_pk, Tok('I', 7000), "cls", "ts", 1, "objNew", 1000, "p2"};
  ASSERT_TRUE(c->Write([&](WriteTxn& t) -> Status {
                 PHI_ASSIGN_OR_RETURN(old_object, t.ReplaceInstance(rep));
                 return Status::Ok();
               }).ok());
  EXPECT_EQ(old_object, "obj7000");
  auto inst = c->GetInstanceBySopToken(Tok('I', 7000));
  ASSERT_TRUE(inst.ok());
  EXPECT_EQ(inst->object_id, "objNew");
  EXPECT_EQ(inst->study_pk, pk);
  EXPECT_EQ(inst->phi, "p2");
  EXPECT_EQ(c->StudyTotalBytes(pk).value(), 1200);
  EXPECT_EQ(c->GetStudy(pk)->num_instances, 3);

  // Unknown series: the foreign key refuses the row.
  NewInstance orphan{999999, Tok('I', 1), "cls", "ts", 1, "objO", 5, "p"};
  EXPECT_EQ(c->Write([&](WriteTxn& t) { return t.InsertInstance(orphan).status(); }).code(),
            Code::kInvalidArgument);
  // Bad token length.
  NewInstance bad{series_pk, "short", "cls", "ts", 1, "objB", 5, "p"};
  EXPECT_EQ(c->Write([&](WriteTxn& t) { return t.InsertInstance(bad).status(); }).code(),
            Code::kInvalidArgument);

  auto ids = c->ListAllObjectIds();
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, (std::vector<std::string>{"obj7001", "obj7002", "objNew"}));
}

TEST_F(CatalogTest, DeleteStudyCascadesAndFreesTheKey) {
  auto c = OpenCatalog();
  ASSERT_TRUE(c);
  int64_t keep = AddStudy(*c, 1, 2020, "CT", 2);
  int64_t gone = AddStudy(*c, 2, 2020, "CT", 4);

  // The key of a live study cannot be deleted (foreign key).
  EXPECT_FALSE(c->Write([](WriteTxn& t) { return t.DeleteStudyKey("k2"); }).ok());

  DeletedStudy d;
  ASSERT_TRUE(c->Write([&](WriteTxn& t) -> Status {
                 PHI_ASSIGN_OR_RETURN(d, t.DeleteStudy(gone));
                 return t.DeleteStudyKey(d.key_id);
               }).ok());
  EXPECT_EQ(d.key_id, "k2");
  EXPECT_EQ(d.num_instances, 4);
  EXPECT_EQ(d.total_bytes, 400);
  EXPECT_EQ(d.object_ids.size(), 4u);
  EXPECT_EQ(c->GetStudy(gone).status().code(), Code::kNotFound);
  EXPECT_TRUE(c->ListSeries(gone)->empty());
  EXPECT_TRUE(c->ListInstancesOfStudy(gone)->empty());
  EXPECT_EQ(c->GetInstanceBySopToken(Tok('I', 2000)).status().code(), Code::kNotFound);
  EXPECT_EQ(c->GetStudyKey("k2").status().code(), Code::kNotFound);
  auto counts = c->CountObjects();
  EXPECT_EQ(counts->studies, 1);
  EXPECT_EQ(counts->series, 1);
  EXPECT_EQ(counts->instances, 2);
  EXPECT_EQ(counts->total_bytes, 200);
  EXPECT_EQ(c->ListInstancesOfStudy(keep)->size(), 2u);

  // Legal hold blocks deletion.
  ASSERT_TRUE(c->Write([&](WriteTxn& t) { return t.SetLegalHold(keep, true); }).ok());
  EXPECT_EQ(c->Write([&](WriteTxn& t) { return t.DeleteStudy(keep).status(); }).code(),
            Code::kPermissionDenied);
  EXPECT_EQ(c->Write([&](WriteTxn& t) { return t.DeleteStudy(4242).status(); }).code(),
            Code::kNotFound);
}

TEST_F(CatalogTest, QueryStudiesNarrowsOnTokensYearModalityWithCap) {
  auto c = OpenCatalog();
  ASSERT_TRUE(c);
  // n: 0..9; year 2015+n for n<8, unknown for 8,9; CT for even n, MR for odd.
  for (int n = 0; n < 10; ++n) {
    AddStudy(*c, n, n < 8 ? std::optional<int32_t>(2015 + n) : std::nullopt, n % 2 ? "MR" : "CT");
  }
  auto pks = [](const StudyCandidates& sc) {
    std::vector<std::string> keys;
    for (const auto& r : sc.rows) keys.push_back(r.key_id);
    return keys;
  };
  using V = std::vector<std::string>;

  StudyFilter f;
  f.patient_id_token = Tok('P', 1);  // n % 3 == 1
  EXPECT_EQ(pks(*c->QueryStudies(f)), (V{"k1", "k4", "k7"}));

  f = {};
  f.accession_token = Tok('A', 5);
  EXPECT_EQ(pks(*c->QueryStudies(f)), (V{"k5"}));

  f = {};
  f.study_uid_tokens = {Tok('S', 2), Tok('S', 9), Tok('S', 42)};
  EXPECT_EQ(pks(*c->QueryStudies(f)), (V{"k2", "k9"}));

  f = {};
  f.year_min = 2017;
  f.year_max = 2019;
  f.include_unknown_year = false;
  EXPECT_EQ(pks(*c->QueryStudies(f)), (V{"k2", "k3", "k4"}));
  f.include_unknown_year = true;
  EXPECT_EQ(pks(*c->QueryStudies(f)), (V{"k2", "k3", "k4", "k8", "k9"}));

  f = {};
  f.modality = "MR";
  f.year_min = 2018;
  f.include_unknown_year = false;
  EXPECT_EQ(pks(*c->QueryStudies(f)), (V{"k3", "k5", "k7"}));

  // Cap + paging.
  f = {};
  f.modality = "CT";
  f.limit = 3;
  auto page1 = c->QueryStudies(f);
  ASSERT_TRUE(page1.ok());
  EXPECT_EQ(pks(*page1), (V{"k0", "k2", "k4"}));
  EXPECT_TRUE(page1->truncated);
  f.after_study_pk = page1->rows.back().study_pk;
  auto page2 = c->QueryStudies(f);
  EXPECT_EQ(pks(*page2), (V{"k6", "k8"}));
  EXPECT_FALSE(page2->truncated);

  f = {};
  f.created_min = 0;
  f.created_max = 1;  // nothing was created in 1970
  EXPECT_TRUE(c->QueryStudies(f)->rows.empty());

  f = {};
  f.patient_id_token = "not32bytes";
  EXPECT_EQ(c->QueryStudies(f).status().code(), Code::kInvalidArgument);
  f = {};
  f.limit = 0;
  EXPECT_EQ(c->QueryStudies(f).status().code(), Code::kInvalidArgument);

  // Key listing in batches (KEK rotation).
  auto keys = c->ListStudyKeys("", 4);
  ASSERT_TRUE(keys.ok());
  ASSERT_EQ(keys->size(), 4u);
  EXPECT_EQ((*keys)[0].key_id, "k0");
  auto rest = c->ListStudyKeys(keys->back().key_id, 100);
  EXPECT_EQ(rest->size(), 6u);
}

// The real PosixEnv with a settable clock.
class ClockEnv : public EnvWrapper {
 public:
  explicit ClockEnv(Env& t) : EnvWrapper(t) {}
  SystemTime Now() override { return SystemTime(std::chrono::seconds(now_s.load())); }
  std::atomic<int64_t> now_s{1'000'000};
};

TEST_F(CatalogTest, RetentionFiltersUseInjectedClock) {
  ClockEnv clock(env_);
  auto opened = SqliteCatalog::Open(dir_.path(), clock, {.audit_mac = TestMac()});
  ASSERT_TRUE(opened.ok());
  auto& c = *opened.value();
  std::vector<int64_t> pk;
  for (int n = 0; n < 4; ++n) {
    clock.now_s = 1'000'000 + n * 100;  // created at 1000000, 1000100, 1000200, 1000300
    pk.push_back(AddStudy(c, n, 2020, "CT"));
  }
  clock.now_s = 2'000'000;
  ASSERT_TRUE(c.Write([&](WriteTxn& t) -> Status {
                 PHI_RETURN_IF_ERROR(t.TouchStudy(pk[0]));
                 return t.SetLegalHold(pk[1], true);
               }).ok());
  EXPECT_EQ(c.GetStudy(pk[0])->last_access_at, 2'000'000);
  EXPECT_EQ(c.GetStudy(pk[2])->created_at, 1'000'200);

  auto keys = [&](const StudyFilter& f) {
    std::vector<std::string> out;
    auto r = c.QueryStudies(f);
    EXPECT_TRUE(r.ok());
    for (const auto& row : r->rows) out.push_back(row.key_id);
    return out;
  };
  using V = std::vector<std::string>;
  StudyFilter f;
  f.created_min = 1'000'100;
  f.created_max = 1'000'200;
  EXPECT_EQ(keys(f), (V{"k1", "k2"}));
  // Retention candidates: not accessed since 1500000 and not on hold.
  f = {};
  f.last_access_max = 1'500'000;
  f.exclude_legal_hold = true;
  EXPECT_EQ(keys(f), (V{"k2", "k3"}));
}

TEST_F(CatalogTest, UpsertAndMetaAndPhiUpdate) {
  auto c = OpenCatalog();
  ASSERT_TRUE(c);
  int64_t pk = AddStudy(*c, 1, 2020, "CT");
  bool created = true;
  int64_t again = 0;
  ASSERT_TRUE(
      c->Write([&](WriteTxn& t) -> Status {
         PHI_ASSIGN_OR_RETURN(again, t.UpsertStudy({"k1", Tok('S', 1), {}, {}, {}, "x"}, &created));
         PHI_RETURN_IF_ERROR(t.UpdateStudyPhi(pk, {Tok('P', 9), {}, 2001, "new", true}));
         return t.PutMeta("vault.derivation", std::string("\x00\x01", 2));
       }).ok());
  EXPECT_EQ(again, pk);
  EXPECT_FALSE(created);
  auto s = c->FindStudyByUidToken(Tok('S', 1));
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->phi, "new");
  EXPECT_TRUE(s->conflict);
  EXPECT_EQ(s->study_year, 2001);
  EXPECT_EQ(s->patient_id_token, Tok('P', 9));
  EXPECT_FALSE(s->accession_token.has_value());
  EXPECT_EQ(c->GetMeta("vault.derivation").value(), std::string("\x00\x01", 2));
  EXPECT_EQ(c->GetMeta("nope").status().code(), Code::kNotFound);
}

TEST_F(CatalogTest, MigratesFromZeroAndFromOlderVersions) {
  {
    auto c = OpenCatalog({.schema_version_for_test = 1});
    ASSERT_TRUE(c);
    EXPECT_EQ(c->schema_version(), 1);
    AddStudy(*c, 1, 2020, "CT");
    EXPECT_EQ(c->ReadAudit(0, 10).status().code(), Code::kUnavailable);
  }
  {
    auto c = OpenCatalog();
    ASSERT_TRUE(c);
    EXPECT_EQ(c->schema_version(), LatestSchemaVersion());
    EXPECT_TRUE(c->GetStudyKey("k1").ok());  // data survived the migration
    EXPECT_TRUE(Audit(*c, 1).ok());
  }
  EXPECT_EQ(RawQueryInt(DbPath(), "PRAGMA user_version"), LatestSchemaVersion());
}

TEST_F(CatalogTest, RefusesNewerSchema) {
  { ASSERT_TRUE(OpenCatalog()); }
  Cli(DbPath(), "PRAGMA user_version = " + std::to_string(LatestSchemaVersion() + 1) + ";");
  auto c = SqliteCatalog::Open(dir_.path(), env_, {.audit_mac = TestMac()});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), Code::kUnavailable);
}

TEST_F(CatalogTest, FailedMigrationLeavesNothingBehind) {
  // A foreign table with a clashing name makes migration 1 fail midway.
  Cli(DbPath(), "CREATE TABLE series(x);");
  auto c = SqliteCatalog::Open(dir_.path(), env_, {.audit_mac = TestMac()});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(RawQueryInt(DbPath(), "PRAGMA user_version"), 0);
  EXPECT_EQ(RawQueryInt(DbPath(), "SELECT count(*) FROM sqlite_master WHERE name = 'studies'"), 0);
}

TEST_F(CatalogTest, TightensLooseFileMode) {
  Cli(DbPath(), "PRAGMA user_version = 0;");  // the CLI creates it with the umask's mode
  ASSERT_EQ(::chmod(DbPath().c_str(), 0644), 0);
  ASSERT_TRUE(OpenCatalog());
  struct stat st {};
  ASSERT_EQ(::stat(DbPath().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(CatalogTest, RefusesAFileThatIsNotACatalog) {
  phi::testing::WriteFile(DbPath(), std::string(8192, 'x'));
  auto c = SqliteCatalog::Open(dir_.path(), env_, {.audit_mac = TestMac()});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), Code::kCorruption) << c.status().ToString();
}

TEST_F(CatalogTest, BoundsEveryInput) {
  auto c = OpenCatalog();
  ASSERT_TRUE(c);
  auto code = [&](std::function<Status(WriteTxn&)> fn) { return c->Write(std::move(fn)).code(); };
  EXPECT_EQ(code([](WriteTxn& t) {
              return t.PutStudyKey({"k", "kek", std::string(kMaxBlobBytes + 1, 'w'), 0});
            }),
            Code::kInvalidArgument);
  EXPECT_EQ(code([](WriteTxn& t) {
              return t.PutStudyKey({std::string(kMaxTextBytes + 1, 'k'), "kek", "w", 0});
            }),
            Code::kInvalidArgument);
  EXPECT_EQ(code([](WriteTxn& t) {
              return t.PutStudyKey({"", "kek", "w", 0});
            }),
            Code::kInvalidArgument);
  EXPECT_EQ(code([](WriteTxn& t) {
              return t.UpsertStudy({"k", Tok('S', 1), {}, {}, 12345, "phi"}).status();
            }),
            Code::kInvalidArgument);
  EXPECT_EQ(code([](WriteTxn& t) {
              return t.UpsertStudy({"k", Tok('S', 1), {}, {}, {}, ""}).status();
            }),
            Code::kInvalidArgument);
  audit::AuditEvent big{
      {}, "a", "store", "o", "ok", "", std::string(audit::kMaxDetailField + 1, 'd')};
  EXPECT_EQ(code([&](WriteTxn& t) { return t.AppendAudit(big).status(); }), Code::kInvalidArgument);
  StudyFilter f;
  f.study_uid_tokens.assign(SqliteCatalog::kMaxStudyFilterTokens + 1, Tok('S', 1));
  EXPECT_EQ(c->QueryStudies(f).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(c->ListStudyKeys("", 0).status().code(), Code::kInvalidArgument);
  // Nothing above reached the tables.
  EXPECT_EQ(c->CountObjects()->studies, 0);
  EXPECT_TRUE(c->ReadAudit(0, 10)->empty());
}

// kill -9 of a process in the middle of a stream of writes: every write it
// acknowledged is in the catalog afterwards, and the audit chain is whole.
// (Process death, not power loss: the page cache survives; fsync ordering is
// SQLite's WAL contract with synchronous=FULL.)
TEST_F(CatalogTest, KillNineNeverLosesAnAcknowledgedWrite) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(fds[0]);
    auto c = SqliteCatalog::Open(dir_.path(), env_, {.audit_mac = TestMac()});
    if (!c.ok()) ::_exit(2);
    for (int i = 0;; ++i) {
      Status s = (*c)->Write([i](WriteTxn& t) -> Status {
        PHI_RETURN_IF_ERROR(t.PutStudyKey({"k" + std::to_string(i), "kek", "w", 0}));
        audit::AuditEvent e{{}, "test", "store", "key:" + std::to_string(i), "ok", "", ""};
        return t.AppendAudit(e).status();
      });
      if (!s.ok()) ::_exit(3);
      if (::write(fds[1], &i, sizeof i) != sizeof i) ::_exit(4);
    }
  }
  ::close(fds[1]);
  int last = -1, v = 0;
  while (last < 40 && ::read(fds[0], &v, sizeof v) == sizeof v) last = v;
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  int wstatus = 0;
  ASSERT_EQ(::waitpid(pid, &wstatus, 0), pid);
  EXPECT_TRUE(WIFSIGNALED(wstatus));
  while (::read(fds[0], &v, sizeof v) == sizeof v) last = v;  // acks sent before death
  ::close(fds[0]);
  ASSERT_GE(last, 40);

  auto c = OpenCatalog();
  ASSERT_TRUE(c);
  for (int i = 0; i <= last; ++i) EXPECT_TRUE(c->GetStudyKey("k" + std::to_string(i)).ok()) << i;
  auto rep = audit::Verify(*c, TestMac());
  ASSERT_TRUE(rep.ok());
  EXPECT_TRUE(rep->ok) << audit::BreakReasonName(rep->reason) << " at " << rep->broken_seq;
  EXPECT_GE(rep->count, last + 1);
  EXPECT_TRUE(Audit(*c, 0).ok());
}

class AuditTamperTest : public CatalogTest {
 protected:
  void SetUp() override {
    auto c = OpenCatalog();
    ASSERT_TRUE(c);
    for (int i = 1; i <= 10; ++i) ASSERT_TRUE(Audit(*c, i).ok());
    auto rep = audit::Verify(*c, TestMac());
    ASSERT_TRUE(rep.ok());
    ASSERT_TRUE(rep->ok);
    ASSERT_EQ(rep->count, 10);
  }
  audit::VerifyReport Reverify() {
    auto c = OpenCatalog();
    EXPECT_TRUE(c);
    auto rep = audit::Verify(*c, TestMac());
    EXPECT_TRUE(rep.ok());
    return *rep;
  }
};

TEST_F(AuditTamperTest, EditedField) {
  Cli(DbPath(), "UPDATE audit SET object = 'object:99' WHERE seq = 4;");
  auto rep = Reverify();
  EXPECT_FALSE(rep.ok);
  EXPECT_EQ(rep.broken_seq, 4);
  EXPECT_EQ(rep.reason, audit::BreakReason::kMacMismatch);
}

TEST_F(AuditTamperTest, DeletedRow) {
  Cli(DbPath(), "DELETE FROM audit WHERE seq = 6;");
  auto rep = Reverify();
  EXPECT_EQ(rep.broken_seq, 6);
  EXPECT_EQ(rep.reason, audit::BreakReason::kSeqGap);
}

TEST_F(AuditTamperTest, SwappedRows) {
  Cli(DbPath(),
      "UPDATE audit SET seq = -3 WHERE seq = 3; UPDATE audit SET seq = 3 WHERE seq = 7;"
      "UPDATE audit SET seq = 7 WHERE seq = -3;");
  auto rep = Reverify();
  EXPECT_EQ(rep.broken_seq, 3);
  EXPECT_EQ(rep.reason, audit::BreakReason::kPrevHashMismatch);
}

TEST_F(AuditTamperTest, ChangedMac) {
  Cli(DbPath(), "UPDATE audit SET mac = zeroblob(32) WHERE seq = 9;");
  auto rep = Reverify();
  EXPECT_EQ(rep.broken_seq, 9);
  EXPECT_EQ(rep.reason, audit::BreakReason::kMacMismatch);
}

TEST_F(AuditTamperTest, TruncatedTail) {
  Cli(DbPath(), "DELETE FROM audit WHERE seq >= 9;");
  auto rep = Reverify();
  EXPECT_EQ(rep.broken_seq, 9);
  EXPECT_EQ(rep.reason, audit::BreakReason::kTruncated);
  // Appending after the truncation does not hide it: the chain continues from
  // the signed head, leaving a visible gap.
  {
    auto c = OpenCatalog();
    ASSERT_TRUE(c);
    ASSERT_TRUE(Audit(*c, 11).ok());
  }
  rep = Reverify();
  EXPECT_EQ(rep.broken_seq, 9);
  EXPECT_EQ(rep.reason, audit::BreakReason::kSeqGap);
}

// The vault loads the MAC key's secret from meta after the catalog opens: the
// catalog must not call the MAC at Open, for reads, or for writes without audit.
TEST_F(AuditTamperTest, MacIsCalledOnlyByAppendAudit) {
  std::atomic<bool> key_loaded{false};
  std::atomic<int> early_calls{0};
  audit::MacFn real = TestMac();
  audit::MacFn guarded = [&](crypto::ByteSpan d) {
    if (!key_loaded) early_calls++;
    return real(d);
  };
  auto c = OpenCatalog({.audit_mac = guarded});
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->Write([](WriteTxn& t) { return t.PutMeta("vault.derivation", "wrapped"); }).ok());
  EXPECT_TRUE(c->GetMeta("vault.derivation").ok());
  EXPECT_EQ(early_calls.load(), 0);
  key_loaded = true;
  ASSERT_TRUE(Audit(*c, 11).ok());
  auto rep = audit::Verify(*c, TestMac());
  ASSERT_TRUE(rep.ok());
  EXPECT_TRUE(rep->ok);
  EXPECT_EQ(rep->count, 11);
}

TEST_F(AuditTamperTest, AppendAfterReopenContinuesTheChain) {
  {
    auto c = OpenCatalog();
    ASSERT_TRUE(c);
    ASSERT_TRUE(Audit(*c, 11).ok());
  }
  auto rep = Reverify();
  EXPECT_TRUE(rep.ok);
  EXPECT_EQ(rep.count, 11);
}

TEST_F(CatalogTest, SecureDeleteLeavesNoTraceAfterCheckpoint) {
  auto c = OpenCatalog();
  ASSERT_TRUE(c);
  const std::string canary = "CANARY-7f3a9c2e-PHI-that-must-vanish";
  AddStudy(*c, 1, 2020, "CT", 1, "keep-me");
  int64_t pk = AddStudy(*c, 2, 2020, "CT", 3, canary);
  ASSERT_TRUE(c->Checkpoint().ok());
  // The scan can see the canary while the study exists.
  EXPECT_NE(ReadAll(DbPath()).find(canary), std::string::npos);

  ASSERT_TRUE(c->Write([&](WriteTxn& t) -> Status {
                 PHI_ASSIGN_OR_RETURN(DeletedStudy d, t.DeleteStudy(pk));
                 PHI_RETURN_IF_ERROR(t.DeleteStudyKey(d.key_id));
                 audit::AuditEvent e{{},   "admin:test", "erase", "study:" + std::to_string(pk),
                                     "ok", "",           "key:k2"};
                 return t.AppendAudit(e).status();
               }).ok());
  ASSERT_TRUE(c->Checkpoint().ok());
  EXPECT_EQ(c->stats().checkpoints, 2u);
  for (const char* f : {"catalog.db", "catalog.db-wal", "catalog.db-shm"}) {
    std::string bytes = ReadAll(dir_ / f);
    EXPECT_EQ(bytes.find(canary), std::string::npos) << f;
  }
  EXPECT_NE(ReadAll(DbPath()).find("keep-me"), std::string::npos);
}

// IngestService commits an instance's rows in parallel with its object
// (WriteAsync, flagged pending); recovery and failed stores rely on these.
TEST_F(CatalogTest, WriteAsyncCommitsAndPendingRowsAreClearedOrRemoved) {
  auto c = OpenCatalog();
  ASSERT_NE(c, nullptr);
  const int64_t kept_pk = AddStudy(*c, 1, 2020, "CT", 1);  // not pending
  // One study with two pending instances, another with one.
  auto add_pending = [&](int study, int inst) {
    return c->WriteAsync([&, study, inst](WriteTxn& t) -> Status {
      (void)t.PutStudyKey({"k" + std::to_string(study), "kek1", "w", 0});
      NewStudy ns{
          "k" + std::to_string(study), Tok('S', study), std::nullopt, std::nullopt, 2021, "s"};
      PHI_ASSIGN_OR_RETURN(int64_t pk, t.UpsertStudy(ns));
      PHI_ASSIGN_OR_RETURN(int64_t series, t.UpsertSeries({pk, Tok('R', study), "MR", 1, "r"}));
      NewInstance ni{series,
                     Tok('I', study * 1000 + inst),
                     "1.2.840.10008.5.1.4.1.1.4",
                     "1.2.840.10008.1.2.1",
                     inst,
                     "pend" + std::to_string(study * 1000 + inst),
                     10,
                     "i"};
      ni.pending = true;
      return t.InsertInstance(ni).status();
    });
  };
  std::future<Status> a = add_pending(2, 1);
  ASSERT_TRUE(a.get().ok());
  ASSERT_TRUE(add_pending(2, 2).get().ok());
  ASSERT_TRUE(add_pending(3, 1).get().ok());
  auto pending = c->ListPendingObjectIds();
  ASSERT_TRUE(pending.ok());
  EXPECT_EQ(*pending, (std::vector<std::string>{"pend2001", "pend2002", "pend3001"}));
  EXPECT_EQ(c->CountObjects()->instances, 4);

  // A lazily queued clear rides on the next group commit.
  c->ClearPendingLater("pend2001");
  ASSERT_TRUE(Audit(*c, 1).ok());
  EXPECT_EQ(*c->ListPendingObjectIds(), (std::vector<std::string>{"pend2002", "pend3001"}));

  // Removing: only pending rows; empty series and studies go with them.
  Status s = c->Write([&](WriteTxn& t) -> Status {
    PHI_ASSIGN_OR_RETURN(bool r1, t.RemovePendingInstance("pend2001"));  // cleared: kept
    PHI_ASSIGN_OR_RETURN(bool r2, t.RemovePendingInstance("obj1000"));   // never pending
    PHI_ASSIGN_OR_RETURN(bool r3, t.RemovePendingInstance("pend2002"));
    PHI_ASSIGN_OR_RETURN(bool r4, t.RemovePendingInstance("pend3001"));
    PHI_ASSIGN_OR_RETURN(bool r5, t.RemovePendingInstance("no-such-object"));
    EXPECT_FALSE(r1);
    EXPECT_FALSE(r2);
    EXPECT_TRUE(r3);
    EXPECT_TRUE(r4);
    EXPECT_FALSE(r5);
    return Status::Ok();
  });
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(c->ListPendingObjectIds()->empty());
  ObjectCounts n = *c->CountObjects();
  EXPECT_EQ(n.instances, 2);  // obj1000 and pend2001
  EXPECT_EQ(n.series, 2);     // study 3's series was left empty and removed
  EXPECT_EQ(n.studies, 2);
  EXPECT_TRUE(c->FindStudyByUidToken(Tok('S', 2)).ok());
  EXPECT_EQ(c->FindStudyByUidToken(Tok('S', 3)).status().code(), Code::kNotFound);
  EXPECT_TRUE(c->GetStudy(kept_pk).ok());
}

TEST_F(CatalogTest, PendingClearsAreFlushedWhenIdleAndAtClose) {
  {
    auto c = OpenCatalog();
    ASSERT_NE(c, nullptr);
    AddStudy(*c, 1, 2020, "CT", 0);
    Status s = c->Write([&](WriteTxn& t) -> Status {
      PHI_ASSIGN_OR_RETURN(StudyRow st, t.FindStudyByUidToken(Tok('S', 1)));
      PHI_ASSIGN_OR_RETURN(int64_t series,
                           t.UpsertSeries({st.study_pk, Tok('R', 1), "CT", 1, "r"}));
      for (int i = 0; i < 2; ++i) {
        NewInstance ni{series,
                       Tok('I', i),
                       "1.2.840.10008.5.1.4.1.1.2",
                       "1.2.840.10008.1.2.1",
                       i,
                       "p" + std::to_string(i),
                       1,
                       "i"};
        ni.pending = true;
        PHI_RETURN_IF_ERROR(t.InsertInstance(ni).status());
      }
      return Status::Ok();
    });
    ASSERT_TRUE(s.ok()) << s.ToString();
    c->ClearPendingLater("p0");
    // No other write follows: the idle writer flushes within about a second.
    for (int i = 0; i < 100 && c->ListPendingObjectIds()->size() != 1; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    EXPECT_EQ(*c->ListPendingObjectIds(), std::vector<std::string>{"p1"});
    c->ClearPendingLater("p1");  // then closed at once: flushed at close
  }
  EXPECT_EQ(RawQueryInt(DbPath(), "SELECT count(*) FROM instances WHERE flags & 1"), 0);
  EXPECT_EQ(RawQueryInt(DbPath(), "SELECT count(*) FROM instances"), 2);
}

// Checkpoints run on a background thread once the WAL passes the threshold,
// so the WAL stays bounded without any COMMIT paying for a checkpoint.
TEST_F(CatalogTest, BackgroundCheckpointsKeepTheWalBounded) {
  SqliteCatalog::Options o;
  o.checkpoint_pages = 16;
  auto c = OpenCatalog(o);
  ASSERT_NE(c, nullptr);
  const std::string value(8000, 'v');  // ~2 pages per commit
  for (int i = 0; i < 400; ++i) {
    Status s =
        c->Write([&](WriteTxn& t) { return t.PutMeta("k" + std::to_string(i % 50), value); });
    ASSERT_TRUE(s.ok()) << s.ToString();
    if (i % 50 == 49) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (int i = 0; i < 100 && c->stats().checkpoints == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_GT(c->stats().checkpoints, 0u);
  // 400 commits of ~8 KB would be over 3 MB of WAL without checkpoints; the
  // WAL is reused from its start after each completed checkpoint.
  EXPECT_LT(std::filesystem::file_size(DbPath().string() + "-wal"), 2u << 20);
  EXPECT_EQ(c->GetMeta("k7").value(), value);
}

// While a reader pins an old snapshot no checkpoint can complete, and every
// commit leaves the WAL past the threshold: the checkpointer is still woken
// once per quarter-threshold of new frames, not after every commit (each
// checkpoint costs two fsyncs).
TEST_F(CatalogTest, APinnedWalWakesTheCheckpointerOncePerQuarterThreshold) {
  SqliteCatalog::Options o;
  o.checkpoint_pages = 64;
  auto c = OpenCatalog(o);
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->Write([](WriteTxn& t) { return t.PutMeta("k", "v"); }).ok());
  sqlite3* pin = nullptr;
  ASSERT_EQ(sqlite3_open(DbPath().c_str(), &pin), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(pin, "BEGIN; SELECT count(*) FROM meta;", nullptr, nullptr, nullptr),
            SQLITE_OK);
  const uint64_t before = c->stats().checkpoints;
  for (int i = 0; i < 300; ++i) {
    ASSERT_TRUE(
        c->Write([&](WriteTxn& t) { return t.PutMeta("k" + std::to_string(i), "v"); }).ok());
  }
  for (int i = 0; i < 50 && c->stats().checkpoints == before; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const uint64_t woken = c->stats().checkpoints - before;
  // 300 commits of one to two pages, most of them past the threshold of 64:
  // one wake-up per 16 new frames is at most ~40 (292 when woken per commit).
  EXPECT_GT(woken, 0u);
  EXPECT_LT(woken, 60u);
  EXPECT_EQ(sqlite3_exec(pin, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(pin);
}

// Under writes that never pause (several callers: a batch is always waiting)
// the background checkpoint never reaches the last frame, and SQLite restarts
// the WAL only when it has; the writer finishes the checkpoint between
// batches, so the WAL is still reused from its start.
TEST_F(CatalogTest, CheckpointsKeepTheWalBoundedUnderWritesThatNeverPause) {
  SqliteCatalog::Options o;
  o.checkpoint_pages = 64;
  auto c = OpenCatalog(o);
  ASSERT_NE(c, nullptr);
  const std::string value(6000, 'v');  // two pages per closure
  std::atomic<int> failures{0};
  std::vector<std::thread> writers;
  for (int w = 0; w < 4; ++w) {
    writers.emplace_back([&, w] {
      for (int i = 0; i < 1000; ++i) {
        const std::string key = "k" + std::to_string(w * 1000 + i % 100);
        if (!c->Write([&](WriteTxn& t) { return t.PutMeta(key, value); }).ok()) ++failures;
      }
    });
  }
  for (std::thread& t : writers) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_GT(c->stats().checkpoints, 0u);
  // 4,000 closures in ~1,000 commits of two pages or more: 4-4.4 MB of WAL
  // without the writer's part (a restart only when a checkpoint happened to
  // end between two batches), 0.4-0.6 MB with it.
  EXPECT_LT(std::filesystem::file_size(DbPath().string() + "-wal"), 2u << 20);
  EXPECT_EQ(c->GetMeta("k3099").value(), value);
}

}  // namespace
}  // namespace phi::index
