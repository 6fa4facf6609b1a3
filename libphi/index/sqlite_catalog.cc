#include "libphi/index/sqlite_catalog.h"

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "libphi/index/hl7_tables.h"
#include "libphi/index/schema.h"
#include "libphi/index/sqlite_db.h"
#include "libphi/util/log.h"

namespace phi::index {
namespace {

#define PHI_STUDY_COLS                                                                           \
  "study_pk, key_id, study_uid_token, patient_id_token, accession_token, study_year, "           \
  "modalities, num_series, num_instances, total_bytes, created_at, updated_at, last_access_at, " \
  "legal_hold, conflict, phi"
#define PHI_SERIES_COLS \
  "series_pk, study_pk, series_uid_token, modality, series_number, num_instances, phi"
#define PHI_INSTANCE_COLS                                                      \
  "i.instance_pk, i.series_pk, s.study_pk, i.sop_uid_token, i.sop_class_uid, " \
  "i.transfer_syntax_uid, i.instance_number, i.object_id, i.size_bytes, i.stored_at, i.phi"
#define PHI_KEY_COLS "key_id, kek_id, wrapped, created_at"
#define PHI_AUDIT_COLS "seq, time_us, actor, action, object, outcome, peer, detail, prev_hash, mac"

constexpr const char* kSelectStudyByToken =
    "SELECT " PHI_STUDY_COLS " FROM studies WHERE study_uid_token = ?1";
constexpr const char* kSelectStudyByPk =
    "SELECT " PHI_STUDY_COLS " FROM studies WHERE study_pk = ?1";
constexpr const char* kSelectKey = "SELECT " PHI_KEY_COLS " FROM study_keys WHERE key_id = ?1";
constexpr const char* kListKeys =
    "SELECT " PHI_KEY_COLS " FROM study_keys WHERE key_id > ?1 ORDER BY key_id LIMIT ?2";
constexpr const char* kSelectMeta = "SELECT value FROM meta WHERE key = ?1";
constexpr const char* kListSeries =
    "SELECT " PHI_SERIES_COLS " FROM series WHERE study_pk = ?1 ORDER BY series_pk";
constexpr const char* kInstancesOfSeries =
    "SELECT " PHI_INSTANCE_COLS
    " FROM instances i JOIN series s ON s.series_pk = i.series_pk"
    " WHERE i.series_pk = ?1 ORDER BY i.instance_pk";
constexpr const char* kInstancesOfStudy =
    "SELECT " PHI_INSTANCE_COLS
    " FROM instances i JOIN series s ON s.series_pk = i.series_pk"
    " WHERE s.study_pk = ?1 ORDER BY i.instance_pk";
constexpr const char* kInstanceBySop =
    "SELECT " PHI_INSTANCE_COLS
    " FROM instances i JOIN series s ON s.series_pk = i.series_pk WHERE i.sop_uid_token = ?1";
constexpr const char* kCountObjects =
    "SELECT (SELECT count(*) FROM studies), (SELECT count(*) FROM series),"
    " (SELECT count(*) FROM instances), (SELECT ifnull(sum(size_bytes), 0) FROM instances)";
constexpr const char* kAllObjectIds = "SELECT object_id FROM instances ORDER BY object_id";
constexpr const char* kStudyBytes = "SELECT total_bytes FROM studies WHERE study_pk = ?1";
constexpr const char* kReadAudit =
    "SELECT " PHI_AUDIT_COLS " FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2";
constexpr const char* kLastAudit = "SELECT " PHI_AUDIT_COLS " FROM audit ORDER BY seq DESC LIMIT 1";

constexpr const char* kInsertKey =
    "INSERT INTO study_keys(key_id, kek_id, wrapped, created_at) VALUES (?1, ?2, ?3, ?4)";
constexpr const char* kRewrapKey =
    "UPDATE study_keys SET kek_id = ?2, wrapped = ?3, rewrapped_at = ?4 WHERE key_id = ?1";
constexpr const char* kDeleteKey = "DELETE FROM study_keys WHERE key_id = ?1";
constexpr const char* kInsertStudy =
    "INSERT INTO studies(key_id, study_uid_token, patient_id_token, accession_token, study_year,"
    " created_at, updated_at, last_access_at, phi) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?6, ?7)";
// Schema v4: set right after the insert, only when known, so that the study
// statements above stay valid on older schemas (schema_version_for_test).
constexpr const char* kSetSourceAe = "UPDATE studies SET source_ae = ?2 WHERE study_pk = ?1";
constexpr const char* kStudySourceAe =
    "SELECT ifnull(source_ae, '') FROM studies WHERE study_pk = ?1";
constexpr const char* kUpdateStudyPhi =
    "UPDATE studies SET patient_id_token = ?2, accession_token = ?3, study_year = ?4, phi = ?5,"
    " conflict = ?6, updated_at = ?7 WHERE study_pk = ?1";
constexpr const char* kSetHold = "UPDATE studies SET legal_hold = ?2 WHERE study_pk = ?1";
constexpr const char* kTouch = "UPDATE studies SET last_access_at = ?2 WHERE study_pk = ?1";
constexpr const char* kStudyUpdated = "UPDATE studies SET updated_at = ?2 WHERE study_pk = ?1";
constexpr const char* kDeleteStudy = "DELETE FROM studies WHERE study_pk = ?1";
constexpr const char* kObjectIdsOfStudy =
    "SELECT i.object_id FROM instances i JOIN series s ON s.series_pk = i.series_pk"
    " WHERE s.study_pk = ?1 ORDER BY i.object_id";
constexpr const char* kSeriesByToken =
    "SELECT series_pk, study_pk FROM series WHERE series_uid_token = ?1";
constexpr const char* kInsertSeries =
    "INSERT INTO series(study_pk, series_uid_token, modality, series_number, phi)"
    " VALUES (?1, ?2, ?3, ?4, ?5)";
constexpr const char* kStudyOfSeries = "SELECT study_pk FROM series WHERE series_pk = ?1";
constexpr const char* kInsertInstance =
    "INSERT INTO instances(series_pk, sop_uid_token, sop_class_uid, transfer_syntax_uid,"
    " instance_number, object_id, size_bytes, stored_at, phi, flags)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
constexpr const char* kClearPending =
    "UPDATE instances SET flags = flags & ~1 WHERE object_id = ?1 AND (flags & 1) <> 0";
constexpr const char* kPendingInstance =
    "SELECT i.instance_pk, i.series_pk, s.study_pk FROM instances i"
    " JOIN series s ON s.series_pk = i.series_pk"
    " WHERE i.object_id = ?1 AND (i.flags & 1) <> 0";
constexpr const char* kDeleteInstance = "DELETE FROM instances WHERE instance_pk = ?1";
constexpr const char* kDeleteEmptySeries =
    "DELETE FROM series WHERE series_pk = ?1 AND num_instances = 0";
constexpr const char* kDeleteEmptyStudy =
    "DELETE FROM studies WHERE study_pk = ?1 AND num_instances = 0 AND num_series = 0";
constexpr const char* kPendingObjectIds =
    "SELECT object_id FROM instances WHERE (flags & 1) <> 0 ORDER BY object_id";
constexpr const char* kInstanceIdBySop =
    "SELECT instance_pk, object_id FROM instances WHERE sop_uid_token = ?1";
constexpr const char* kReplaceInstance =
    "UPDATE instances SET series_pk = ?2, sop_class_uid = ?3, transfer_syntax_uid = ?4,"
    " instance_number = ?5, object_id = ?6, size_bytes = ?7, stored_at = ?8, phi = ?9"
    " WHERE instance_pk = ?1";
constexpr const char* kPutMeta =
    "INSERT INTO meta(key, value) VALUES (?1, ?2)"
    " ON CONFLICT(key) DO UPDATE SET value = excluded.value";
constexpr const char* kInsertAudit =
    "INSERT INTO audit(" PHI_AUDIT_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";

// ---- validation (every input is bounded) ----

Status CheckToken(const Token& t, const char* what) {
  if (t.size() != kTokenBytes) {
    return Status::InvalidArgument(std::string("catalog: ") + what + " must be 32 bytes");
  }
  return Status::Ok();
}
Status CheckOptToken(const std::optional<Token>& t, const char* what) {
  return t ? CheckToken(*t, what) : Status::Ok();
}
Status CheckText(const std::string& s, const char* what, bool required) {
  if (required && s.empty()) {
    return Status::InvalidArgument(std::string("catalog: empty ") + what);
  }
  if (s.size() > kMaxTextBytes) {
    return Status::InvalidArgument(std::string("catalog: ") + what + " too long");
  }
  return Status::Ok();
}
Status CheckBlob(const Blob& b, const char* what) {
  if (b.empty()) return Status::InvalidArgument(std::string("catalog: empty ") + what);
  if (b.size() > kMaxBlobBytes) {
    return Status::InvalidArgument(std::string("catalog: ") + what + " too large");
  }
  return Status::Ok();
}
Status CheckYear(const std::optional<int32_t>& y) {
  if (y && (*y < 0 || *y > 9999))
    return Status::InvalidArgument("catalog: study_year out of range");
  return Status::Ok();
}

// ---- row readers ----

StudyRow ReadStudy(const Stmt& st) {
  StudyRow r;
  r.study_pk = st.Int(0);
  r.key_id = st.Text(1);
  r.study_uid_token = st.BlobCol(2);
  r.patient_id_token = st.OptBlob(3);
  r.accession_token = st.OptBlob(4);
  r.study_year = st.OptInt(5);
  r.modalities = st.Text(6);
  r.num_series = st.Int(7);
  r.num_instances = st.Int(8);
  r.total_bytes = st.Int(9);
  r.created_at = st.Int(10);
  r.updated_at = st.Int(11);
  r.last_access_at = st.Int(12);
  r.legal_hold = st.Int(13) != 0;
  r.conflict = st.Int(14) != 0;
  r.phi = st.BlobCol(15);
  return r;
}

SeriesRow ReadSeries(const Stmt& st) {
  SeriesRow r;
  r.series_pk = st.Int(0);
  r.study_pk = st.Int(1);
  r.series_uid_token = st.BlobCol(2);
  r.modality = st.Text(3);
  r.series_number = st.OptInt(4);
  r.num_instances = st.Int(5);
  r.phi = st.BlobCol(6);
  return r;
}

InstanceRow ReadInstance(const Stmt& st) {
  InstanceRow r;
  r.instance_pk = st.Int(0);
  r.series_pk = st.Int(1);
  r.study_pk = st.Int(2);
  r.sop_uid_token = st.BlobCol(3);
  r.sop_class_uid = st.Text(4);
  r.transfer_syntax_uid = st.Text(5);
  r.instance_number = st.OptInt(6);
  r.object_id = st.Text(7);
  r.size_bytes = st.Int(8);
  r.stored_at = st.Int(9);
  r.phi = st.BlobCol(10);
  return r;
}

StudyKeyRow ReadKey(const Stmt& st) {
  StudyKeyRow r;
  r.key_id = st.Text(0);
  r.kek_id = st.Text(1);
  r.wrapped = st.BlobCol(2);
  r.created_at = st.Int(3);
  return r;
}

void CopyDigest(const std::string& b, crypto::Digest& d) {
  d.fill(std::byte{0});
  std::memcpy(d.data(), b.data(), std::min(b.size(), d.size()));
}

audit::AuditRecord ReadAuditRow(const Stmt& st) {
  audit::AuditRecord r;
  r.seq = st.Int(0);
  r.time_us = st.Int(1);
  r.actor = st.Text(2);
  r.action = st.Text(3);
  r.object = st.Text(4);
  r.outcome = st.Text(5);
  r.peer = st.Text(6);
  r.detail = st.Text(7);
  CopyDigest(st.BlobCol(8), r.prev_hash);
  CopyDigest(st.BlobCol(9), r.mac);
  return r;
}

std::string_view DigestView(const crypto::Digest& d) {
  return {reinterpret_cast<const char*>(d.data()), d.size()};
}

template <typename T, typename F>
Result<T> QueryOne(Db& db, const char* sql, F bind, T (*read)(const Stmt&), const char* what) {
  PHI_ASSIGN_OR_RETURN(Stmt st, db.Prepare(sql));
  PHI_RETURN_IF_ERROR(bind(st));
  PHI_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return Status::NotFound(std::string("catalog: no such ") + what);
  return read(st);
}

template <typename T, typename F>
Result<std::vector<T>> QueryAll(Db& db, const char* sql, F bind, T (*read)(const Stmt&)) {
  PHI_ASSIGN_OR_RETURN(Stmt st, db.Prepare(sql));
  PHI_RETURN_IF_ERROR(bind(st));
  std::vector<T> out;
  for (;;) {
    PHI_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back(read(st));
  }
  return out;
}

Status ApplyPragmas(Db& db, int busy_timeout_ms, bool query_only) {
  int on = 1;
  sqlite3_db_config(db.raw(), SQLITE_DBCONFIG_DEFENSIVE, 1, &on);
  sqlite3_db_config(db.raw(), SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, &on);
  PHI_RETURN_IF_ERROR(db.Exec("PRAGMA busy_timeout = " + std::to_string(busy_timeout_ms)));
  PHI_ASSIGN_OR_RETURN(std::string mode, db.QueryText("PRAGMA journal_mode = WAL"));
  if (mode != "wal")
    return Status::IOError("catalog: cannot enable WAL (journal_mode=" + mode + ")");
  // temp_store = MEMORY: SQLite otherwise spills a savepoint's journal (the
  // original of each page a write closure changes; past 64 KiB, i.e. in most
  // batches) and temporary tables to files in /var/tmp, outside the
  // encrypted volume, and pays an open/unlink and page writes for each.
  PHI_RETURN_IF_ERROR(
      db.Exec("PRAGMA synchronous = FULL; PRAGMA secure_delete = ON; PRAGMA foreign_keys = ON;"
              "PRAGMA trusted_schema = OFF; PRAGMA temp_store = MEMORY;"));
  if (query_only) PHI_RETURN_IF_ERROR(db.Exec("PRAGMA query_only = ON"));
  return Status::Ok();
}

}  // namespace

// ---------------------------------------------------------------------------
// Jobs and the reader pool

struct SqliteCatalog::Job {
  std::function<Status(WriteTxn&)> txn;  // a write transaction closure, or
  std::function<Status(Db&)> raw;        // a statement outside any transaction
  std::promise<Status> done;
  bool owned = false;  // heap-allocated by WriteAsync: Complete() deletes it
  // WriteThen: called with the result instead of `done` (the job is owned).
  std::function<void(Status)> then;
};

class SqliteCatalog::ReaderLease {
 public:
  ReaderLease(SqliteCatalog* c, Db* db) : c_(c), db_(db) {}
  ReaderLease(ReaderLease&& o) noexcept : c_(o.c_), db_(o.db_) { o.db_ = nullptr; }
  ReaderLease(const ReaderLease&) = delete;
  ReaderLease& operator=(const ReaderLease&) = delete;
  ReaderLease& operator=(ReaderLease&&) = delete;
  ~ReaderLease() {
    if (db_ != nullptr) c_->ReleaseReader(db_);
  }
  Db& db() { return *db_; }

 private:
  SqliteCatalog* c_;
  Db* db_;
};

Result<SqliteCatalog::ReaderLease> SqliteCatalog::AcquireReader() {
  std::unique_lock<std::mutex> lk(readers_mu_);
  readers_cv_.wait(lk, [this] { return !free_readers_.empty(); });
  Db* db = free_readers_.back();
  free_readers_.pop_back();
  return ReaderLease(this, db);
}

void SqliteCatalog::ReleaseReader(Db* db) {
  {
    std::lock_guard<std::mutex> lk(readers_mu_);
    free_readers_.push_back(db);
  }
  readers_cv_.notify_one();
}

// ---------------------------------------------------------------------------
// The write transaction

class SqliteWriteTxn final : public WriteTxn {
 public:
  SqliteWriteTxn(SqliteCatalog& c, Db& db) : c_(c), db_(db) {}

  Status PutStudyKey(const StudyKeyRow& row) override {
    PHI_RETURN_IF_ERROR(CheckText(row.key_id, "key_id", true));
    PHI_RETURN_IF_ERROR(CheckText(row.kek_id, "kek_id", true));
    PHI_RETURN_IF_ERROR(CheckBlob(row.wrapped, "wrapped key"));
    PHI_ASSIGN_OR_RETURN(Stmt st, db_.Prepare(kInsertKey));
    PHI_RETURN_IF_ERROR(st.BindText(1, row.key_id));
    PHI_RETURN_IF_ERROR(st.BindText(2, row.kek_id));
    PHI_RETURN_IF_ERROR(st.BindBlob(3, row.wrapped));
    PHI_RETURN_IF_ERROR(st.BindInt(4, c_.NowSeconds()));
    return st.Run();
  }

  Status UpdateStudyKeyWrap(const std::string& key_id, const std::string& kek_id,
                            const Blob& wrapped) override {
    PHI_RETURN_IF_ERROR(CheckText(key_id, "key_id", true));
    PHI_RETURN_IF_ERROR(CheckText(kek_id, "kek_id", true));
    PHI_RETURN_IF_ERROR(CheckBlob(wrapped, "wrapped key"));
    PHI_ASSIGN_OR_RETURN(Stmt st, db_.Prepare(kRewrapKey));
    PHI_RETURN_IF_ERROR(st.BindText(1, key_id));
    PHI_RETURN_IF_ERROR(st.BindText(2, kek_id));
    PHI_RETURN_IF_ERROR(st.BindBlob(3, wrapped));
    PHI_RETURN_IF_ERROR(st.BindInt(4, c_.NowSeconds()));
    PHI_RETURN_IF_ERROR(st.Run());
    return Changed("study key");
  }

  Status DeleteStudyKey(const std::string& key_id) override {
    PHI_RETURN_IF_ERROR(CheckText(key_id, "key_id", true));
    PHI_ASSIGN_OR_RETURN(Stmt st, db_.Prepare(kDeleteKey));
    PHI_RETURN_IF_ERROR(st.BindText(1, key_id));
    Status s = st.Run();
    if (!s.ok()) return s.WithContext("delete study key (still referenced by a study?)");
    return Changed("study key");
  }

  Result<StudyKeyRow> GetStudyKey(const std::string& key_id) override {
    PHI_RETURN_IF_ERROR(CheckText(key_id, "key_id", true));
    return QueryOne<StudyKeyRow>(
        db_, kSelectKey, [&](Stmt& st) { return st.BindText(1, key_id); }, &ReadKey, "study key");
  }

  Result<int64_t> UpsertStudy(const NewStudy& s, bool* created) override {
    if (created) *created = false;
    PHI_RETURN_IF_ERROR(CheckText(s.key_id, "key_id", true));
    PHI_RETURN_IF_ERROR(CheckToken(s.study_uid_token, "study_uid_token"));
    PHI_RETURN_IF_ERROR(CheckOptToken(s.patient_id_token, "patient_id_token"));
    PHI_RETURN_IF_ERROR(CheckOptToken(s.accession_token, "accession_token"));
    PHI_RETURN_IF_ERROR(CheckYear(s.study_year));
    PHI_RETURN_IF_ERROR(CheckBlob(s.phi, "study phi"));
    PHI_RETURN_IF_ERROR(CheckText(s.source_ae, "source_ae", false));
    Result<StudyRow> existing = FindStudyByUidToken(s.study_uid_token);
    if (existing.ok()) return existing->study_pk;
    if (existing.status().code() != Code::kNotFound) return existing.status();
    PHI_ASSIGN_OR_RETURN(Stmt st, db_.Prepare(kInsertStudy));
    PHI_RETURN_IF_ERROR(st.BindText(1, s.key_id));
    PHI_RETURN_IF_ERROR(st.BindBlob(2, s.study_uid_token));
    PHI_RETURN_IF_ERROR(st.BindOptBlob(3, s.patient_id_token));
    PHI_RETURN_IF_ERROR(st.BindOptBlob(4, s.accession_token));
    PHI_RETURN_IF_ERROR(st.BindOptInt(5, s.study_year));
    PHI_RETURN_IF_ERROR(st.BindInt(6, c_.NowSeconds()));
    PHI_RETURN_IF_ERROR(st.BindBlob(7, s.phi));
    PHI_RETURN_IF_ERROR(st.Run());
    const int64_t pk = static_cast<int64_t>(sqlite3_last_insert_rowid(db_.raw()));
    if (!s.source_ae.empty() && c_.schema_version_ >= 4) {
      PHI_ASSIGN_OR_RETURN(Stmt ae, db_.Prepare(kSetSourceAe));
      PHI_RETURN_IF_ERROR(ae.BindInt(1, pk));
      PHI_RETURN_IF_ERROR(ae.BindText(2, s.source_ae));
      PHI_RETURN_IF_ERROR(ae.Run());
    }
    if (created) *created = true;
    return pk;
  }

  Result<StudyRow> FindStudyByUidToken(const Token& t) override {
    PHI_RETURN_IF_ERROR(CheckToken(t, "study_uid_token"));
    return QueryOne<StudyRow>(
        db_, kSelectStudyByToken, [&](Stmt& st) { return st.BindBlob(1, t); }, &ReadStudy, "study");
  }

  Status UpdateStudyPhi(int64_t study_pk, const StudyPhiUpdate& u) override {
    PHI_RETURN_IF_ERROR(CheckOptToken(u.patient_id_token, "patient_id_token"));
    PHI_RETURN_IF_ERROR(CheckOptToken(u.accession_token, "accession_token"));
    PHI_RETURN_IF_ERROR(CheckYear(u.study_year));
    PHI_RETURN_IF_ERROR(CheckBlob(u.phi, "study phi"));
    PHI_ASSIGN_OR_RETURN(Stmt st, db_.Prepare(kUpdateStudyPhi));
    PHI_RETURN_IF_ERROR(st.BindInt(1, study_pk));
    PHI_RETURN_IF_ERROR(st.BindOptBlob(2, u.patient_id_token));
    PHI_RETURN_IF_ERROR(st.BindOptBlob(3, u.accession_token));
    PHI_RETURN_IF_ERROR(st.BindOptInt(4, u.study_year));
    PHI_RETURN_IF_ERROR(st.BindBlob(5, u.phi));
    PHI_RETURN_IF_ERROR(st.BindInt(6, u.conflict ? 1 : 0));
    PHI_RETURN_IF_ERROR(st.BindInt(7, c_.NowSeconds()));
    PHI_RETURN_IF_ERROR(st.Run());
    return Changed("study");
  }

  Status SetLegalHold(int64_t study_pk, bool hold) override {
    PHI_ASSIGN_OR_RETURN(Stmt st, db_.Prepare(kSetHold));
    PHI_RETURN_IF_ERROR(st.BindInt(1, study_pk));
    PHI_RETURN_IF_ERROR(st.BindInt(2, hold ? 1 : 0));
    PHI_RETURN_IF_ERROR(st.Run());
    return Changed("study");
  }

  Status TouchStudy(int64_t study_pk) override {
    PHI_ASSIGN_OR_RETURN(Stmt st, db_.Prepare(kTouch));
    PHI_RETURN_IF_ERROR(st.BindInt(1, study_pk));
    PHI_RETURN_IF_ERROR(st.BindInt(2, c_.NowSeconds()));
    PHI_RETURN_IF_ERROR(st.Run());
    return Changed("study");
  }

  Result<DeletedStudy> DeleteStudy(int64_t study_pk) override {
    PHI_ASSIGN_OR_RETURN(StudyRow study, QueryOne<StudyRow>(
                                             db_, kSelectStudyByPk,
                                             [&](Stmt& st) { return st.BindInt(1, study_pk); },
                                             &ReadStudy, "study"));
    if (study.legal_hold) {
      return Status::PermissionDenied("catalog: study " + std::to_string(study_pk) +
                                      " is under legal hold");
    }
    DeletedStudy d;
    d.study_pk = study_pk;
    d.key_id = study.key_id;
    d.num_instances = study.num_instances;
    d.total_bytes = study.total_bytes;
    {
      PHI_ASSIGN_OR_RETURN(Stmt st, db_.Prepare(kObjectIdsOfStudy));
      PHI_RETURN_IF_ERROR(st.BindInt(1, study_pk));
      for (;;) {
        PHI_ASSIGN_OR_RETURN(bool row, st.Step());
        if (!row) break;
        d.object_ids.push_back(st.Text(0));
      }
    }
    PHI_ASSIGN_OR_RETURN(Stmt st, db_.Prepare(kDeleteStudy));
    PHI_RETURN_IF_ERROR(st.BindInt(1, study_pk));
    PHI_RETURN_IF_ERROR(st.Run());
    PHI_RETURN_IF_ERROR(Changed("study"));
    return d;
  }

  Result<int64_t> UpsertSeries(const NewSeries& s, bool* created) override {
    if (created) *created = false;
    PHI_RETURN_IF_ERROR(CheckToken(s.series_uid_token, "series_uid_token"));
    PHI_RETURN_IF_ERROR(CheckText(s.modality, "modality", false));
    PHI_RETURN_IF_ERROR(CheckBlob(s.phi, "series phi"));
    {
      PHI_ASSIGN_OR_RETURN(Stmt st, db_.Prepare(kSeriesByToken));
      PHI_RETURN_IF_ERROR(st.BindBlob(1, s.series_uid_token));
      PHI_ASSIGN_OR_RETURN(bool row, st.Step());
      if (row) {
        if (st.Int(1) != s.study_pk) {
          return Status::InvalidArgument("catalog: series belongs to another study");
        }
        return st.Int(0);
      }
    }
    PHI_ASSIGN_OR_RETURN(Stmt st, db_.Prepare(kInsertSeries));
    PHI_RETURN_IF_ERROR(st.BindInt(1, s.study_pk));
    PHI_RETURN_IF_ERROR(st.BindBlob(2, s.series_uid_token));
    PHI_RETURN_IF_ERROR(st.BindText(3, s.modality));
    PHI_RETURN_IF_ERROR(st.BindOptInt(4, s.series_number));
    PHI_RETURN_IF_ERROR(st.BindBlob(5, s.phi));
    PHI_RETURN_IF_ERROR(st.Run());
    if (created) *created = true;
    int64_t pk = sqlite3_last_insert_rowid(db_.raw());
    PHI_RETURN_IF_ERROR(MarkStudyUpdated(s.study_pk));
    return pk;
  }

  Result<int64_t> InsertInstance(const NewInstance& i) override {
    PHI_RETURN_IF_ERROR(CheckInstance(i));
    PHI_ASSIGN_OR_RETURN(Stmt st, db_.Prepare(kInsertInstance));
    PHI_RETURN_IF_ERROR(BindInstance(st, i, 1));
    PHI_RETURN_IF_ERROR(st.BindInt(10, i.pending ? kInstancePending : 0));
    PHI_RETURN_IF_ERROR(st.Run());
    int64_t pk = sqlite3_last_insert_rowid(db_.raw());
    PHI_RETURN_IF_ERROR(MarkSeriesStudyUpdated(i.series_pk));
    return pk;
  }

  Result<std::string> ReplaceInstance(const NewInstance& i) override {
    PHI_RETURN_IF_ERROR(CheckInstance(i));
    int64_t pk = 0;
    std::string old_object;
    {
      PHI_ASSIGN_OR_RETURN(Stmt st, db_.Prepare(kInstanceIdBySop));
      PHI_RETURN_IF_ERROR(st.BindBlob(1, i.sop_uid_token));
      PHI_ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) return Status::NotFound("catalog: no such instance");
      pk = st.Int(0);
      old_object = st.Text(1);
    }
    PHI_ASSIGN_OR_RETURN(Stmt st, db_.Prepare(kReplaceInstance));
    PHI_RETURN_IF_ERROR(st.BindInt(1, pk));
    PHI_RETURN_IF_ERROR(st.BindInt(2, i.series_pk));
    PHI_RETURN_IF_ERROR(st.BindText(3, i.sop_class_uid));
    PHI_RETURN_IF_ERROR(st.BindText(4, i.transfer_syntax_uid));
    PHI_RETURN_IF_ERROR(st.BindOptInt(5, i.instance_number));
    PHI_RETURN_IF_ERROR(st.BindText(6, i.object_id));
    PHI_RETURN_IF_ERROR(st.BindInt(7, i.size_bytes));
    PHI_RETURN_IF_ERROR(st.BindInt(8, c_.NowSeconds()));
    PHI_RETURN_IF_ERROR(st.BindBlob(9, i.phi));
    PHI_RETURN_IF_ERROR(st.Run());
    PHI_RETURN_IF_ERROR(MarkSeriesStudyUpdated(i.series_pk));
    return old_object;
  }

  Result<InstanceRow> FindInstanceBySopToken(const Token& t) override {
    PHI_RETURN_IF_ERROR(CheckToken(t, "sop_uid_token"));
    return QueryOne<InstanceRow>(
        db_, kInstanceBySop, [&](Stmt& st) { return st.BindBlob(1, t); }, &ReadInstance,
        "instance");
  }

  Status ClearPending(const std::vector<std::string>& object_ids) override {
    for (const std::string& id : object_ids) {
      PHI_RETURN_IF_ERROR(CheckText(id, "object_id", true));
      PHI_ASSIGN_OR_RETURN(Stmt st, db_.Prepare(kClearPending));
      PHI_RETURN_IF_ERROR(st.BindText(1, id));
      PHI_RETURN_IF_ERROR(st.Run());
    }
    return Status::Ok();
  }

  Result<bool> RemovePendingInstance(const std::string& object_id) override {
    PHI_RETURN_IF_ERROR(CheckText(object_id, "object_id", true));
    int64_t instance_pk = 0, series_pk = 0, study_pk = 0;
    {
      PHI_ASSIGN_OR_RETURN(Stmt st, db_.Prepare(kPendingInstance));
      PHI_RETURN_IF_ERROR(st.BindText(1, object_id));
      PHI_ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) return false;
      instance_pk = st.Int(0);
      series_pk = st.Int(1);
      study_pk = st.Int(2);
    }
    // Counters are kept by the triggers, so "empty" below is exact.
    for (auto [sql, pk] :
         {std::pair{kDeleteInstance, instance_pk}, std::pair{kDeleteEmptySeries, series_pk},
          std::pair{kDeleteEmptyStudy, study_pk}}) {
      PHI_ASSIGN_OR_RETURN(Stmt st, db_.Prepare(sql));
      PHI_RETURN_IF_ERROR(st.BindInt(1, pk));
      PHI_RETURN_IF_ERROR(st.Run());
    }
    return true;
  }

  Status PutMeta(const std::string& key, const Blob& value) override {
    PHI_RETURN_IF_ERROR(CheckText(key, "meta key", true));
    if (value.size() > kMaxBlobBytes)
      return Status::InvalidArgument("catalog: meta value too large");
    PHI_ASSIGN_OR_RETURN(Stmt st, db_.Prepare(kPutMeta));
    PHI_RETURN_IF_ERROR(st.BindText(1, key));
    PHI_RETURN_IF_ERROR(st.BindBlob(2, value));
    return st.Run();
  }

  Result<Blob> GetMeta(const std::string& key) override {
    PHI_RETURN_IF_ERROR(CheckText(key, "meta key", true));
    return QueryOne<Blob>(
        db_, kSelectMeta, [&](Stmt& st) { return st.BindText(1, key); },
        +[](const Stmt& st) { return st.BlobCol(0); }, "meta key");
  }

  Result<int64_t> AppendAudit(const audit::AuditEvent& ev) override {
    const SystemTime t = ev.time == SystemTime{} ? c_.env_.Now() : ev.time;
    const int64_t time_us =
        std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
    const audit::ChainHead before = c_.audit_head_;
    PHI_ASSIGN_OR_RETURN(audit::AuditRecord r,
                         audit::MakeNext(c_.audit_head_, ev, time_us, c_.options_.audit_mac));
    Status s = InsertAudit(r);
    if (s.ok()) {
      s = PutMeta(audit::kHeadMetaKey,
                  audit::EncodeSignedHead(c_.audit_head_, c_.options_.audit_mac));
    }
    if (!s.ok()) {
      c_.audit_head_ = before;
      return s;
    }
    return r.seq;
  }

  Result<int64_t> PruneAudit(int64_t through_seq, int64_t min_keep_time_us,
                             const Blob& anchor) override {
    if (through_seq <= 0) return Status::InvalidArgument("catalog: prune through seq <= 0");
    if (through_seq >= c_.audit_head_.seq + 1) {
      return Status::InvalidArgument("catalog: prune beyond the last audit record");
    }
    if (anchor.size() != audit::kSignedHeadBytes) {
      return Status::InvalidArgument("catalog: bad audit anchor size");
    }
    {
      PHI_ASSIGN_OR_RETURN(
          Stmt st, db_.Prepare("SELECT count(*) FROM audit WHERE seq <= ?1 AND time_us >= ?2"));
      PHI_RETURN_IF_ERROR(st.BindInt(1, through_seq));
      PHI_RETURN_IF_ERROR(st.BindInt(2, min_keep_time_us));
      PHI_ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row || st.Int(0) != 0) {
        return Status::PermissionDenied(
            "catalog: audit records younger than the retention cannot be deleted");
      }
    }
    int64_t deleted = 0;
    {
      PHI_ASSIGN_OR_RETURN(Stmt st, db_.Prepare("SELECT count(*) FROM audit WHERE seq <= ?1"));
      PHI_RETURN_IF_ERROR(st.BindInt(1, through_seq));
      PHI_ASSIGN_OR_RETURN(bool row, st.Step());
      if (row) deleted = st.Int(0);
    }
    {
      PHI_ASSIGN_OR_RETURN(Stmt st, db_.Prepare("DELETE FROM audit WHERE seq <= ?1"));
      PHI_RETURN_IF_ERROR(st.BindInt(1, through_seq));
      PHI_RETURN_IF_ERROR(st.Run());
    }
    PHI_RETURN_IF_ERROR(PutMeta(audit::kAnchorMetaKey, anchor));
    return deleted;
  }

  // HL7 tables (hl7_tables.cc).
  Result<std::string> GetPatientKey(const Token& pid) override {
    return hl7tables::GetPatientKey(db_, pid);
  }
  Status PutPatientKey(const Token& pid, const std::string& key_id) override {
    return hl7tables::PutPatientKey(db_, c_.NowSeconds(), pid, key_id);
  }
  Result<std::vector<StudyRow>> ListStudiesOfPatient(const Token& pid, size_t limit) override {
    return hl7tables::ListStudiesOfPatient(db_, pid, limit, &ReadStudy, PHI_STUDY_COLS);
  }
  Result<int64_t> InsertHl7Message(const Hl7MessageRow& r) override {
    return hl7tables::InsertMessage(db_, c_.NowSeconds(), r);
  }
  Result<bool> UpsertWorklist(const WorklistRow& r) override {
    return hl7tables::UpsertWorklist(db_, c_.NowSeconds(), r);
  }
  Result<WorklistRow> FindWorklist(const Token& acc) override {
    return hl7tables::FindWorklist(db_, acc);
  }
  Status DeleteWorklist(const Token& acc) override { return hl7tables::DeleteWorklist(db_, acc); }
  Result<int64_t> InsertReport(const ReportRow& r) override {
    return hl7tables::InsertReport(db_, c_.NowSeconds(), r);
  }
  Status MovePatientHl7(const Token& from, const Token& to) override {
    return hl7tables::MovePatient(db_, from, to);
  }
  Result<Hl7Erased> EraseHl7OfStudy(const StudyRow& erased) override {
    return hl7tables::EraseOfStudy(db_, erased);
  }

 private:
  Status InsertAudit(const audit::AuditRecord& r) {
    PHI_ASSIGN_OR_RETURN(Stmt st, db_.Prepare(kInsertAudit));
    PHI_RETURN_IF_ERROR(st.BindInt(1, r.seq));
    PHI_RETURN_IF_ERROR(st.BindInt(2, r.time_us));
    PHI_RETURN_IF_ERROR(st.BindText(3, r.actor));
    PHI_RETURN_IF_ERROR(st.BindText(4, r.action));
    PHI_RETURN_IF_ERROR(st.BindText(5, r.object));
    PHI_RETURN_IF_ERROR(st.BindText(6, r.outcome));
    PHI_RETURN_IF_ERROR(st.BindText(7, r.peer));
    PHI_RETURN_IF_ERROR(st.BindText(8, r.detail));
    PHI_RETURN_IF_ERROR(st.BindBlob(9, DigestView(r.prev_hash)));
    PHI_RETURN_IF_ERROR(st.BindBlob(10, DigestView(r.mac)));
    return st.Run();
  }

  Status CheckInstance(const NewInstance& i) {
    PHI_RETURN_IF_ERROR(CheckToken(i.sop_uid_token, "sop_uid_token"));
    PHI_RETURN_IF_ERROR(CheckText(i.sop_class_uid, "sop_class_uid", false));
    PHI_RETURN_IF_ERROR(CheckText(i.transfer_syntax_uid, "transfer_syntax_uid", false));
    PHI_RETURN_IF_ERROR(CheckText(i.object_id, "object_id", true));
    PHI_RETURN_IF_ERROR(CheckBlob(i.phi, "instance phi"));
    if (i.size_bytes < 0) return Status::InvalidArgument("catalog: negative size_bytes");
    return Status::Ok();
  }

  Status BindInstance(Stmt& st, const NewInstance& i, int first) {
    PHI_RETURN_IF_ERROR(st.BindInt(first, i.series_pk));
    PHI_RETURN_IF_ERROR(st.BindBlob(first + 1, i.sop_uid_token));
    PHI_RETURN_IF_ERROR(st.BindText(first + 2, i.sop_class_uid));
    PHI_RETURN_IF_ERROR(st.BindText(first + 3, i.transfer_syntax_uid));
    PHI_RETURN_IF_ERROR(st.BindOptInt(first + 4, i.instance_number));
    PHI_RETURN_IF_ERROR(st.BindText(first + 5, i.object_id));
    PHI_RETURN_IF_ERROR(st.BindInt(first + 6, i.size_bytes));
    PHI_RETURN_IF_ERROR(st.BindInt(first + 7, c_.NowSeconds()));
    return st.BindBlob(first + 8, i.phi);
  }

  Status MarkStudyUpdated(int64_t study_pk) {
    PHI_ASSIGN_OR_RETURN(Stmt st, db_.Prepare(kStudyUpdated));
    PHI_RETURN_IF_ERROR(st.BindInt(1, study_pk));
    PHI_RETURN_IF_ERROR(st.BindInt(2, c_.NowSeconds()));
    return st.Run();
  }

  Status MarkSeriesStudyUpdated(int64_t series_pk) {
    int64_t study_pk = 0;
    {
      PHI_ASSIGN_OR_RETURN(Stmt st, db_.Prepare(kStudyOfSeries));
      PHI_RETURN_IF_ERROR(st.BindInt(1, series_pk));
      PHI_ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) return Status::NotFound("catalog: no such series");
      study_pk = st.Int(0);
    }
    return MarkStudyUpdated(study_pk);
  }

  Status Changed(const char* what) {
    if (sqlite3_changes(db_.raw()) == 0)
      return Status::NotFound(std::string("catalog: no such ") + what);
    return Status::Ok();
  }

  SqliteCatalog& c_;
  Db& db_;
};

// ---------------------------------------------------------------------------
// Open / close

SqliteCatalog::SqliteCatalog(Path path, Env& env, Options options)
    : path_(std::move(path)), env_(env), options_(std::move(options)) {}

Result<std::unique_ptr<SqliteCatalog>> SqliteCatalog::Open(const Path& storage_root, Env& env,
                                                           Options options) {
  if (options.readers == 0) options.readers = 1;
  if (options.max_batch == 0) options.max_batch = 1;
  if (options.schema_version_for_test < 0 ||
      options.schema_version_for_test > LatestSchemaVersion()) {
    return Status::InvalidArgument("catalog: bad schema_version_for_test");
  }
  PHI_RETURN_IF_ERROR(env.CreateDirs(storage_root));
  std::unique_ptr<SqliteCatalog> c(new SqliteCatalog(storage_root / kFileName, env, options));
  PHI_RETURN_IF_ERROR(c->Init());
  return c;
}

Status SqliteCatalog::Init() {
  // Create the file ourselves so it is 0600 from the start; SQLite gives its
  // -wal and -shm files the main file's permissions.
  if (!env_.FileExists(path_)) {
    PHI_ASSIGN_OR_RETURN(WritableFilePtr f, env_.NewWritableFile(path_));
    PHI_RETURN_IF_ERROR(f->Close());
    PHI_RETURN_IF_ERROR(env_.SyncDir(path_.parent_path()));
  }
  struct stat st {};
  if (::stat(path_.c_str(), &st) != 0) return PosixError("stat " + path_.string(), errno);
  if ((st.st_mode & 0077) != 0) {
    PHI_LOG(kWarning, "catalog file was group/world accessible; setting mode 0600",
            {{"path", log::Safe(path_.string())}});
    if (::chmod(path_.c_str(), 0600) != 0) return PosixError("chmod " + path_.string(), errno);
  }

  PHI_ASSIGN_OR_RETURN(writer_db_, Db::Open(path_.string(), SQLITE_OPEN_READWRITE, Vfs()));
  PHI_RETURN_IF_ERROR(ApplyPragmas(*writer_db_, options_.busy_timeout_ms, false));

  // Migrations, all in one transaction.
  PHI_ASSIGN_OR_RETURN(int64_t version, writer_db_->QueryInt("PRAGMA user_version"));
  const int latest = LatestSchemaVersion();
  if (version > latest) {
    return Status::Unavailable("catalog: schema version " + std::to_string(version) +
                               " is newer than this build supports (" + std::to_string(latest) +
                               ")");
  }
  if (version < 0) return Status::Corruption("catalog: negative schema version");
  const int target =
      options_.schema_version_for_test > 0 ? options_.schema_version_for_test : latest;
  if (version < target) {
    PHI_RETURN_IF_ERROR(writer_db_->Exec("BEGIN IMMEDIATE"));
    Status s;
    for (const Migration& m : Migrations()) {
      if (m.version <= version || m.version > target) continue;
      s = writer_db_->Exec(m.sql);
      if (!s.ok()) {
        s = s.WithContext("catalog migration " + std::to_string(m.version) + " (" +
                          std::string(m.name) + ")");
        break;
      }
    }
    if (s.ok()) s = writer_db_->Exec("PRAGMA user_version = " + std::to_string(target));
    if (s.ok()) s = writer_db_->Exec("COMMIT");
    if (!s.ok()) {
      (void)writer_db_->Exec("ROLLBACK");
      return s;
    }
    PHI_LOG(kInfo, "catalog schema migrated", {{"from", version}, {"to", target}});
    version = target;
  }
  schema_version_ = static_cast<int>(version);

  if (schema_version_ >= 2) PHI_RETURN_IF_ERROR(LoadAuditHead());

  for (size_t i = 0; i < options_.readers; ++i) {
    PHI_ASSIGN_OR_RETURN(std::unique_ptr<Db> r,
                         Db::Open(path_.string(), SQLITE_OPEN_READWRITE, Vfs()));
    PHI_RETURN_IF_ERROR(ApplyPragmas(*r, options_.busy_timeout_ms, true));
    free_readers_.push_back(r.get());
    readers_.push_back(std::move(r));
  }

  if (options_.checkpoint_pages > 0) {
    PHI_ASSIGN_OR_RETURN(checkpoint_db_, Db::Open(path_.string(), SQLITE_OPEN_READWRITE, Vfs()));
    PHI_RETURN_IF_ERROR(ApplyPragmas(*checkpoint_db_, options_.busy_timeout_ms, false));
    // Replaces SQLite's auto-checkpoint hook on the writer connection.
    sqlite3_wal_hook(writer_db_->raw(), &SqliteCatalog::WalHook, this);
    checkpointer_ = std::thread([this] { CheckpointerLoop(); });
  }
  writer_ = std::thread([this] { WriterLoop(); });
  writer_id_ = writer_.get_id();
  return Status::Ok();
}

// The chain continues from the last row, unless the signed head says the
// chain went further (rows deleted at the tail): then it continues from the
// signed head, so that the deletion stays visible as a seq gap to Verify
// instead of being papered over by the next append.
Status SqliteCatalog::LoadAuditHead() {
  audit::ChainHead from_rows;
  {
    PHI_ASSIGN_OR_RETURN(Stmt st, writer_db_->Prepare(kLastAudit));
    PHI_ASSIGN_OR_RETURN(bool row, st.Step());
    if (row) {
      audit::AuditRecord last = ReadAuditRow(st);
      from_rows.seq = last.seq;
      from_rows.hash = audit::RecordHash(last);
    }
  }
  audit_head_ = from_rows;
  std::optional<std::string> blob;
  {
    PHI_ASSIGN_OR_RETURN(Stmt st, writer_db_->Prepare(kSelectMeta));
    PHI_RETURN_IF_ERROR(st.BindText(1, audit::kHeadMetaKey));
    PHI_ASSIGN_OR_RETURN(bool row, st.Step());
    if (row) blob = st.BlobCol(0);
  }
  if (!blob) {
    if (from_rows.seq != 0) {
      PHI_LOG(kCritical, "audit chain has records but no signed head; run audit verify",
              {{"last_seq", from_rows.seq}});
    }
    return Status::Ok();
  }
  // Not MAC-checked here, and the MAC is never called outside AppendAudit:
  // the MAC key is derived from a secret the vault loads from this catalog's
  // meta after Open. An unverified head is only used to keep a tail
  // truncation visible (continue from it), never to vouch for anything;
  // Verify() checks its MAC.
  Result<audit::ChainHead> signed_head = audit::ParseSignedHeadUnverified(*blob);
  if (!signed_head.ok()) {
    PHI_LOG(kCritical, "audit chain signed head is malformed; run audit verify",
            {{"status", signed_head.status()}});
    return Status::Ok();
  }
  if (signed_head->seq != from_rows.seq || signed_head->hash != from_rows.hash) {
    PHI_LOG(kCritical, "audit chain does not end at its signed head; run audit verify",
            {{"last_seq", from_rows.seq}, {"head_seq", signed_head->seq}});
    if (signed_head->seq > from_rows.seq) audit_head_ = *signed_head;
  }
  return Status::Ok();
}

Result<std::optional<std::string>> SqliteCatalog::ReadAuditHead() {
  Result<Blob> b = GetMeta(audit::kHeadMetaKey);
  if (b.ok()) return std::optional<std::string>(std::move(b).value());
  if (b.status().code() == Code::kNotFound) return std::optional<std::string>();
  return b.status();
}

Result<std::optional<std::string>> SqliteCatalog::ReadAuditAnchor() {
  Result<Blob> b = GetMeta(audit::kAnchorMetaKey);
  if (b.ok()) return std::optional<std::string>(std::move(b).value());
  if (b.status().code() == Code::kNotFound) return std::optional<std::string>();
  return b.status();
}

SqliteCatalog::~SqliteCatalog() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (writer_.joinable()) writer_.join();
  {
    std::lock_guard<std::mutex> lk(ckpt_mu_);
    ckpt_stop_ = true;
  }
  ckpt_cv_.notify_all();
  if (checkpointer_.joinable()) checkpointer_.join();
  checkpoint_db_.reset();
  // Statements are finalized and connections closed by ~Db (readers first).
  readers_.clear();
  writer_db_.reset();
}

// ---------------------------------------------------------------------------
// The writer

const char* SqliteCatalog::Vfs() const {
  return options_.vfs_for_test.empty() ? nullptr : options_.vfs_for_test.c_str();
}

int64_t SqliteCatalog::NowSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(env_.Now().time_since_epoch()).count();
}

Status SqliteCatalog::health() const {
  std::lock_guard<std::mutex> lk(mu_);
  return sticky_;
}

void SqliteCatalog::SetSticky(const Status& s) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (sticky_.ok()) sticky_ = s;
  }
  PHI_LOG(kCritical, "catalog write failed; refusing writes until restart", {{"status", s}});
}

CatalogStats SqliteCatalog::stats() const {
  CatalogStats out;
#define PHI_INDEX_STAT_LOAD(n) out.n = stat_##n##_.load(std::memory_order_relaxed);
  PHI_INDEX_STATS(PHI_INDEX_STAT_LOAD)
#undef PHI_INDEX_STAT_LOAD
  return out;
}

size_t SqliteCatalog::QueueDepthForTest() const {
  std::lock_guard<std::mutex> lk(mu_);
  return queue_.size();
}

void SqliteCatalog::Complete(Job* job, Status s) {
  if (job->then) {
    // The closure (and what it captured) goes before the caller resumes.
    std::function<void(Status)> then = std::move(job->then);
    delete job;
    then(std::move(s));
    return;
  }
  const bool owned = job->owned;
  job->done.set_value(std::move(s));  // a stack Job may be gone after this
  if (owned) delete job;
}

std::future<Status> SqliteCatalog::Submit(Job* job) {
  std::future<Status> f = job->done.get_future();
  Status refused;
  if (std::this_thread::get_id() == writer_id_) {
    refused = Status::Internal("catalog: Write/Checkpoint called from inside a write closure");
  } else {
    std::lock_guard<std::mutex> lk(mu_);
    if (!sticky_.ok()) {
      refused = sticky_;
    } else if (stop_) {
      refused = Status::Unavailable("catalog: closing");
    } else {
      queue_.push_back(job);
    }
  }
  if (!refused.ok()) {
    Complete(job, refused);
    return f;
  }
  cv_.notify_one();
  return f;
}

Status SqliteCatalog::Write(std::function<Status(WriteTxn&)> fn) {
  if (!fn) return Status::InvalidArgument("catalog: empty write closure");
  Job job;
  job.txn = std::move(fn);
  return Enqueue(&job);
}

std::future<Status> SqliteCatalog::WriteAsync(std::function<Status(WriteTxn&)> fn) {
  if (!fn) {
    std::promise<Status> p;
    p.set_value(Status::InvalidArgument("catalog: empty write closure"));
    return p.get_future();
  }
  auto* job = new Job;
  job->owned = true;
  job->txn = std::move(fn);
  return Submit(job);
}

void SqliteCatalog::WriteThen(std::function<Status(WriteTxn&)> fn,
                              std::function<void(Status)> done) {
  if (!fn) {
    done(Status::InvalidArgument("catalog: empty write closure"));
    return;
  }
  auto* job = new Job;
  job->owned = true;
  job->txn = std::move(fn);
  job->then = std::move(done);
  (void)Submit(job);  // the future is never read: `then` gets the result
}

void SqliteCatalog::ClearPendingLater(std::string object_id) {
  constexpr size_t kFlushAt = 4096;
  bool flush_now = false;
  {
    std::lock_guard<std::mutex> lk(mu_);
    to_clear_.push_back(std::move(object_id));
    flush_now = to_clear_.size() >= kFlushAt;
  }
  if (flush_now) cv_.notify_one();
}

Status SqliteCatalog::Checkpoint() {
  Job job;
  job.raw = [this](Db& db) -> Status {
    PHI_ASSIGN_OR_RETURN(Stmt st, db.PrepareOnce("PRAGMA wal_checkpoint(TRUNCATE)"));
    PHI_ASSIGN_OR_RETURN(bool row, st.Step());
    if (row && st.Int(0) != 0) {
      return Status::Unavailable("catalog: checkpoint blocked by a reader; retry");
    }
    stat_checkpoints_.fetch_add(1, std::memory_order_relaxed);
    return Status::Ok();
  };
  return Enqueue(&job);
}

void SqliteCatalog::WriterLoop() {
  // Pending flags are cleared with the next batch, or after this long idle.
  constexpr auto kClearIdle = std::chrono::seconds(1);
  for (;;) {
    std::vector<Job*> batch;
    bool final_flush = false;
    {
      std::unique_lock<std::mutex> lk(mu_);
      bool woke = cv_.wait_for(
          lk, kClearIdle, [this] { return stop_ || !queue_.empty() || to_clear_.size() >= 4096; });
      if (queue_.empty()) {
        if (stop_) {
          // Stopped and drained: one last attempt at the pending clears.
          final_flush = !to_clear_.empty();
          if (!final_flush) return;
        } else if (!woke || to_clear_.size() >= 4096) {
          if (to_clear_.empty()) continue;
        } else {
          continue;
        }
      } else if (queue_.front()->raw) {
        batch.push_back(queue_.front());
        queue_.pop_front();
      } else {
        const size_t want = std::min(
            *std::max_element(recent_batches_.begin(), recent_batches_.end()), options_.max_batch);
        if (queue_.size() < want && options_.commit_delay.count() > 0) {
          cv_.wait_for(lk, options_.commit_delay,
                       [&] { return stop_ || queue_.size() >= want || queue_.back()->raw; });
        }
        while (!queue_.empty() && !queue_.front()->raw && batch.size() < options_.max_batch) {
          batch.push_back(queue_.front());
          queue_.pop_front();
        }
        recent_batches_[batch_seq_++ % kBatchWindow] = batch.size();
      }
    }
    if (!batch.empty() && batch.front()->raw) {
      RunRaw(batch.front());
    } else {
      RunBatch(batch);  // an empty batch only clears pending flags
    }
    if (final_flush) return;
    if (ckpt_finish_.exchange(false) && health().ok()) (void)PassiveCheckpoint(*writer_db_);
  }
}

int SqliteCatalog::WalHook(void* self, sqlite3*, const char*, int pages) {
  auto* c = static_cast<SqliteCatalog*>(self);
  // `pages`: frames in the WAL after this commit. Past the threshold, wake the
  // checkpointer once per quarter-threshold of new frames (or again once the
  // WAL restarted from its start), not after every commit: a checkpoint costs
  // two fsyncs (WAL and database), and while it cannot complete (a reader
  // pins an old snapshot, or it is still copying) every commit passes the
  // threshold again.
  const int threshold = c->options_.checkpoint_pages;
  if (pages < threshold) {
    c->ckpt_asked_at_ = 0;
    return SQLITE_OK;
  }
  if (c->ckpt_asked_at_ != 0 && pages >= c->ckpt_asked_at_ &&
      pages - c->ckpt_asked_at_ < std::max(1, threshold / 4)) {
    return SQLITE_OK;
  }
  c->ckpt_asked_at_ = pages;
  {
    std::lock_guard<std::mutex> lk(c->ckpt_mu_);
    c->ckpt_wanted_ = true;
  }
  c->ckpt_cv_.notify_one();
  return SQLITE_OK;
}

// One PASSIVE checkpoint on `db`: copies what no reader pins, never blocks
// the writer. True when it copied every frame it saw.
bool SqliteCatalog::PassiveCheckpoint(Db& db) {
  int log_pages = 0, done_pages = 0;
  int rc = sqlite3_wal_checkpoint_v2(db.raw(), nullptr, SQLITE_CHECKPOINT_PASSIVE, &log_pages,
                                     &done_pages);
  if (rc == SQLITE_OK) {
    stat_checkpoints_.fetch_add(1, std::memory_order_relaxed);
    return log_pages > 0 && done_pages == log_pages;
  }
  if (rc != SQLITE_BUSY && rc != SQLITE_LOCKED) {
    PHI_LOG(kWarning, "catalog checkpoint failed", {{"error", log::Safe(sqlite3_errstr(rc))}});
  }
  return false;
}

// The checkpointer copies the WAL up to the last frame it saw, but SQLite
// restarts the WAL from its start only once every frame is in the database,
// and under steady writes the batches committed during that copy are always
// left: the WAL then grew without bound (400 MB in 10 s of the HL7 bench).
// So after a complete copy it asks the writer (ckpt_finish_) to copy those
// few frames itself between two batches (one database fsync); the writer's
// next transaction then restarts the WAL.
void SqliteCatalog::CheckpointerLoop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(ckpt_mu_);
      ckpt_cv_.wait(lk, [this] { return ckpt_wanted_ || ckpt_stop_; });
      if (ckpt_stop_) return;
      ckpt_wanted_ = false;
    }
    if (PassiveCheckpoint(*checkpoint_db_)) ckpt_finish_.store(true);
  }
}

void SqliteCatalog::RunRaw(Job* job) {
  Status s = health();
  if (s.ok()) s = job->raw(*writer_db_);
  Complete(job, s);
}

void SqliteCatalog::RunBatch(std::vector<Job*>& batch) {
  Db& db = *writer_db_;
  auto fail_all = [&](const Status& s) {
    stat_transactions_.fetch_add(batch.size(), std::memory_order_relaxed);
    stat_transactions_failed_.fetch_add(batch.size(), std::memory_order_relaxed);
    for (Job* j : batch) Complete(j, s);
  };
  Status sticky = health();
  if (!sticky.ok()) return fail_all(sticky);
  std::vector<std::string> clears;
  {
    std::lock_guard<std::mutex> lk(mu_);
    clears.swap(to_clear_);
  }
  // Lost clears are harmless (recovery re-derives them), but keep them for
  // the next batch when this one fails.
  auto requeue_clears = [&] {
    std::lock_guard<std::mutex> lk(mu_);
    to_clear_.insert(to_clear_.end(), std::make_move_iterator(clears.begin()),
                     std::make_move_iterator(clears.end()));
  };

  Status s = db.Exec("BEGIN IMMEDIATE");
  if (!s.ok()) {
    stat_commit_failures_.fetch_add(1, std::memory_order_relaxed);
    if (s.code() != Code::kUnavailable) SetSticky(s);
    requeue_clears();
    return fail_all(s);
  }
  const audit::ChainHead batch_head = audit_head_;
  std::vector<Status> results(batch.size());
  Status batch_error;
  for (size_t i = 0; i < batch.size() && batch_error.ok(); ++i) {
    const audit::ChainHead job_head = audit_head_;
    Status r = db.Exec("SAVEPOINT txn");
    if (r.ok()) {
      SqliteWriteTxn txn(*this, db);
      try {
        r = batch[i]->txn(txn);
      } catch (...) {
        r = Status::Internal("catalog: write closure threw");
      }
    } else {
      batch_error = r;
      break;
    }
    if (sqlite3_get_autocommit(db.raw()) != 0) {
      // SQLite rolled back the whole transaction (I/O error, disk full...):
      // every closure of the batch is lost.
      batch_error = r.ok() ? Status::IOError("catalog: transaction rolled back by SQLite") : r;
      break;
    }
    Status end;
    if (r.ok()) {
      end = db.Exec("RELEASE txn");
    } else {
      audit_head_ = job_head;
      end = db.Exec("ROLLBACK TO txn");
      if (end.ok()) end = db.Exec("RELEASE txn");
    }
    if (!end.ok()) {
      batch_error = end;
      break;
    }
    results[i] = r;
  }
  if (batch_error.ok() && !clears.empty()) {
    SqliteWriteTxn txn(*this, db);
    batch_error = txn.ClearPending(clears);
  }
  if (batch_error.ok()) {
    batch_error = db.Exec("COMMIT");
    if (!batch_error.ok()) batch_error = batch_error.WithContext("catalog commit");
  }
  if (!batch_error.ok()) {
    audit_head_ = batch_head;
    if (sqlite3_get_autocommit(db.raw()) == 0) (void)db.Exec("ROLLBACK");
    stat_commit_failures_.fetch_add(1, std::memory_order_relaxed);
    // Disk full with a clean rollback is recoverable; anything else leaves
    // the state unknown: refuse further writes until restart.
    if (batch_error.code() != Code::kResourceExhausted || sqlite3_get_autocommit(db.raw()) == 0) {
      SetSticky(batch_error);
    }
    requeue_clears();
    return fail_all(batch_error);
  }
  stat_commits_.fetch_add(1, std::memory_order_relaxed);
  stat_transactions_.fetch_add(batch.size(), std::memory_order_relaxed);
  {
    // Pages written to the WAL since the last reset (the commit's frames and any
    // cache spill): what the commit's fsync has to carry.
    int cur = 0, hi = 0;
    if (sqlite3_db_status(db.raw(), SQLITE_DBSTATUS_CACHE_WRITE, &cur, &hi, 1) == SQLITE_OK) {
      stat_wal_frames_.fetch_add(static_cast<uint64_t>(cur), std::memory_order_relaxed);
    }
  }
  for (size_t i = 0; i < batch.size(); ++i) {
    if (!results[i].ok()) stat_transactions_failed_.fetch_add(1, std::memory_order_relaxed);
    Complete(batch[i], results[i]);
  }
}

// ---------------------------------------------------------------------------
// Reads

#define PHI_WITH_READER(lease) PHI_ASSIGN_OR_RETURN(ReaderLease lease, AcquireReader())

Result<StudyKeyRow> SqliteCatalog::GetStudyKey(const std::string& key_id) {
  PHI_RETURN_IF_ERROR(CheckText(key_id, "key_id", true));
  PHI_WITH_READER(r);
  return QueryOne<StudyKeyRow>(
      r.db(), kSelectKey, [&](Stmt& st) { return st.BindText(1, key_id); }, &ReadKey, "study key");
}

Result<std::vector<StudyKeyRow>> SqliteCatalog::ListStudyKeys(const std::string& after,
                                                              size_t limit) {
  if (limit == 0 || limit > kMaxCandidates) return Status::InvalidArgument("catalog: bad limit");
  PHI_WITH_READER(r);
  return QueryAll<StudyKeyRow>(
      r.db(), kListKeys,
      [&](Stmt& st) -> Status {
        PHI_RETURN_IF_ERROR(st.BindText(1, after));
        return st.BindInt(2, static_cast<int64_t>(limit));
      },
      &ReadKey);
}

Result<Blob> SqliteCatalog::GetMeta(const std::string& key) {
  PHI_RETURN_IF_ERROR(CheckText(key, "meta key", true));
  PHI_WITH_READER(r);
  return QueryOne<Blob>(
      r.db(), kSelectMeta, [&](Stmt& st) { return st.BindText(1, key); },
      +[](const Stmt& st) { return st.BlobCol(0); }, "meta key");
}

Result<StudyRow> SqliteCatalog::FindStudyByUidToken(const Token& t) {
  PHI_RETURN_IF_ERROR(CheckToken(t, "study_uid_token"));
  PHI_WITH_READER(r);
  return QueryOne<StudyRow>(
      r.db(), kSelectStudyByToken, [&](Stmt& st) { return st.BindBlob(1, t); }, &ReadStudy,
      "study");
}

Result<StudyRow> SqliteCatalog::GetStudy(int64_t study_pk) {
  PHI_WITH_READER(r);
  return QueryOne<StudyRow>(
      r.db(), kSelectStudyByPk, [&](Stmt& st) { return st.BindInt(1, study_pk); }, &ReadStudy,
      "study");
}

Result<StudyCandidates> SqliteCatalog::QueryStudies(const StudyFilter& f) {
  if (f.limit == 0 || f.limit > kMaxCandidates) {
    return Status::InvalidArgument("catalog: candidate limit out of range");
  }
  if (f.study_uid_tokens.size() > kMaxStudyFilterTokens) {
    return Status::InvalidArgument("catalog: too many study uid tokens");
  }
  for (const Token& t : f.study_uid_tokens) PHI_RETURN_IF_ERROR(CheckToken(t, "study_uid_token"));
  PHI_RETURN_IF_ERROR(CheckOptToken(f.patient_id_token, "patient_id_token"));
  PHI_RETURN_IF_ERROR(CheckOptToken(f.accession_token, "accession_token"));
  if (f.modality) PHI_RETURN_IF_ERROR(CheckText(*f.modality, "modality", true));

  // Dynamic SQL: only placeholders, never values, are spliced in.
  std::string sql = "SELECT " PHI_STUDY_COLS " FROM studies WHERE study_pk > ?";
  if (!f.study_uid_tokens.empty()) {
    sql += " AND study_uid_token IN (?";
    for (size_t i = 1; i < f.study_uid_tokens.size(); ++i) sql += ", ?";
    sql += ")";
  }
  if (f.patient_id_token) sql += " AND patient_id_token = ?";
  if (f.accession_token) sql += " AND accession_token = ?";
  if (f.year_min || f.year_max) {
    sql += " AND ((1";
    if (f.year_min) sql += " AND study_year >= ?";
    if (f.year_max) sql += " AND study_year <= ?";
    sql += ")";
    if (f.include_unknown_year) sql += " OR study_year IS NULL";
    sql += ")";
  }
  if (f.modality) {
    sql +=
        " AND EXISTS (SELECT 1 FROM series s WHERE s.study_pk = studies.study_pk"
        " AND s.modality = ?)";
  }
  if (f.created_min) sql += " AND created_at >= ?";
  if (f.created_max) sql += " AND created_at <= ?";
  if (f.last_access_max) sql += " AND last_access_at <= ?";
  if (f.exclude_legal_hold) sql += " AND legal_hold = 0";
  if (f.only_conflicts) sql += " AND conflict = 1";
  sql += " ORDER BY study_pk LIMIT ?";

  PHI_WITH_READER(r);
  PHI_ASSIGN_OR_RETURN(Stmt st, r.db().PrepareOnce(sql));
  int i = 1;
  PHI_RETURN_IF_ERROR(st.BindInt(i++, f.after_study_pk));
  for (const Token& t : f.study_uid_tokens) PHI_RETURN_IF_ERROR(st.BindBlob(i++, t));
  if (f.patient_id_token) PHI_RETURN_IF_ERROR(st.BindBlob(i++, *f.patient_id_token));
  if (f.accession_token) PHI_RETURN_IF_ERROR(st.BindBlob(i++, *f.accession_token));
  if (f.year_min) PHI_RETURN_IF_ERROR(st.BindInt(i++, *f.year_min));
  if (f.year_max) PHI_RETURN_IF_ERROR(st.BindInt(i++, *f.year_max));
  if (f.modality) PHI_RETURN_IF_ERROR(st.BindText(i++, *f.modality));
  if (f.created_min) PHI_RETURN_IF_ERROR(st.BindInt(i++, *f.created_min));
  if (f.created_max) PHI_RETURN_IF_ERROR(st.BindInt(i++, *f.created_max));
  if (f.last_access_max) PHI_RETURN_IF_ERROR(st.BindInt(i++, *f.last_access_max));
  PHI_RETURN_IF_ERROR(st.BindInt(i++, static_cast<int64_t>(f.limit) + 1));

  StudyCandidates out;
  for (;;) {
    PHI_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    if (out.rows.size() == f.limit) {
      out.truncated = true;
      break;
    }
    out.rows.push_back(ReadStudy(st));
  }
  return out;
}

Result<std::vector<SeriesRow>> SqliteCatalog::ListSeries(int64_t study_pk) {
  PHI_WITH_READER(r);
  return QueryAll<SeriesRow>(
      r.db(), kListSeries, [&](Stmt& st) { return st.BindInt(1, study_pk); }, &ReadSeries);
}

Result<std::vector<InstanceRow>> SqliteCatalog::ListInstancesOfSeries(int64_t series_pk) {
  PHI_WITH_READER(r);
  return QueryAll<InstanceRow>(
      r.db(), kInstancesOfSeries, [&](Stmt& st) { return st.BindInt(1, series_pk); },
      &ReadInstance);
}

Result<std::vector<InstanceRow>> SqliteCatalog::ListInstancesOfStudy(int64_t study_pk) {
  PHI_WITH_READER(r);
  return QueryAll<InstanceRow>(
      r.db(), kInstancesOfStudy, [&](Stmt& st) { return st.BindInt(1, study_pk); }, &ReadInstance);
}

Result<InstanceRow> SqliteCatalog::GetInstanceBySopToken(const Token& t) {
  PHI_RETURN_IF_ERROR(CheckToken(t, "sop_uid_token"));
  PHI_WITH_READER(r);
  return QueryOne<InstanceRow>(
      r.db(), kInstanceBySop, [&](Stmt& st) { return st.BindBlob(1, t); }, &ReadInstance,
      "instance");
}

Result<ObjectCounts> SqliteCatalog::CountObjects() {
  PHI_WITH_READER(r);
  return QueryOne<ObjectCounts>(
      r.db(), kCountObjects, [](Stmt&) { return Status::Ok(); },
      +[](const Stmt& st) {
        return ObjectCounts{st.Int(0), st.Int(1), st.Int(2), st.Int(3)};
      },
      "counts");
}

Result<std::vector<std::string>> SqliteCatalog::ListAllObjectIds() {
  PHI_WITH_READER(r);
  return QueryAll<std::string>(
      r.db(), kAllObjectIds, [](Stmt&) { return Status::Ok(); },
      +[](const Stmt& st) { return st.Text(0); });
}

Result<std::vector<std::string>> SqliteCatalog::ListPendingObjectIds() {
  PHI_WITH_READER(r);
  return QueryAll<std::string>(
      r.db(), kPendingObjectIds, [](Stmt&) { return Status::Ok(); },
      +[](const Stmt& st) { return st.Text(0); });
}

Result<int64_t> SqliteCatalog::StudyTotalBytes(int64_t study_pk) {
  PHI_WITH_READER(r);
  return QueryOne<int64_t>(
      r.db(), kStudyBytes, [&](Stmt& st) { return st.BindInt(1, study_pk); },
      +[](const Stmt& st) { return st.Int(0); }, "study");
}

Result<std::string> SqliteCatalog::GetStudySourceAe(int64_t study_pk) {
  PHI_WITH_READER(r);
  if (schema_version_ < 4) {  // no column yet: unknown, if the study exists
    return QueryOne<std::string>(
        r.db(), kStudyBytes, [&](Stmt& st) { return st.BindInt(1, study_pk); },
        +[](const Stmt&) { return std::string(); }, "study");
  }
  return QueryOne<std::string>(
      r.db(), kStudySourceAe, [&](Stmt& st) { return st.BindInt(1, study_pk); },
      +[](const Stmt& st) { return st.Text(0); }, "study");
}

Result<std::vector<audit::AuditRecord>> SqliteCatalog::ReadAudit(int64_t after_seq, size_t limit) {
  if (limit == 0 || limit > kMaxCandidates) return Status::InvalidArgument("catalog: bad limit");
  if (schema_version_ < 2) return Status::Unavailable("catalog: no audit table at this version");
  PHI_WITH_READER(r);
  return QueryAll<audit::AuditRecord>(
      r.db(), kReadAudit,
      [&](Stmt& st) -> Status {
        PHI_RETURN_IF_ERROR(st.BindInt(1, after_seq));
        return st.BindInt(2, static_cast<int64_t>(limit));
      },
      &ReadAuditRow);
}

Result<std::vector<std::string>> SqliteCatalog::PragmaOnAllConnectionsForTest(
    const std::string& name) {
  for (char ch : name) {
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '_') {
      return Status::InvalidArgument("bad pragma name");
    }
  }
  std::vector<std::string> out;
  std::string writer_value;
  Job job;
  job.raw = [&](Db& db) -> Status {
    PHI_ASSIGN_OR_RETURN(writer_value, db.QueryText("PRAGMA " + name));
    return Status::Ok();
  };
  PHI_RETURN_IF_ERROR(Enqueue(&job));
  out.push_back(writer_value);
  std::vector<ReaderLease> leases;
  for (size_t i = 0; i < readers_.size(); ++i) {
    PHI_ASSIGN_OR_RETURN(ReaderLease l, AcquireReader());
    PHI_ASSIGN_OR_RETURN(std::string v, l.db().QueryText("PRAGMA " + name));
    out.push_back(v);
    leases.push_back(std::move(l));
  }
  return out;
}

Result<std::vector<WorklistRow>> SqliteCatalog::QueryWorklist(const WorklistFilter& f) {
  PHI_WITH_READER(r);
  return hl7tables::QueryWorklist(r.db(), f);
}

Result<std::vector<ReportRow>> SqliteCatalog::ListReports(const Token& accession_token) {
  PHI_WITH_READER(r);
  return hl7tables::ListReports(r.db(), accession_token);
}

Result<std::vector<Hl7MessageRow>> SqliteCatalog::ListHl7Messages(const Token& patient_id_token,
                                                                  size_t limit) {
  PHI_WITH_READER(r);
  return hl7tables::ListMessages(r.db(), patient_id_token, limit);
}

}  // namespace phi::index
