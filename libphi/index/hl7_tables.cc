#include "libphi/index/hl7_tables.h"

#include <algorithm>
#include <set>

namespace phi::index::hl7tables {
namespace {

constexpr std::string_view kDdl = R"sql(
CREATE TABLE patient_keys (
  patient_id_token BLOB PRIMARY KEY CHECK (length(patient_id_token) = 32),
  key_id           TEXT NOT NULL REFERENCES study_keys(key_id),
  created_at       INTEGER NOT NULL
);
CREATE INDEX patient_keys_key ON patient_keys(key_id);

CREATE TABLE hl7_messages (
  msg_pk           INTEGER PRIMARY KEY,
  key_id           TEXT NOT NULL REFERENCES study_keys(key_id),
  message_type     TEXT NOT NULL,
  patient_id_token BLOB CHECK (patient_id_token IS NULL OR length(patient_id_token) = 32),
  accession_token  BLOB CHECK (accession_token IS NULL OR length(accession_token) = 32),
  received_at      INTEGER NOT NULL,
  sealed           BLOB NOT NULL
);
CREATE INDEX hl7_messages_patient ON hl7_messages(patient_id_token);
CREATE INDEX hl7_messages_accession ON hl7_messages(accession_token);
CREATE INDEX hl7_messages_key ON hl7_messages(key_id);

CREATE TABLE worklist (
  order_pk         INTEGER PRIMARY KEY,
  key_id           TEXT NOT NULL REFERENCES study_keys(key_id),
  accession_token  BLOB NOT NULL UNIQUE CHECK (length(accession_token) = 32),
  patient_id_token BLOB CHECK (patient_id_token IS NULL OR length(patient_id_token) = 32),
  modality         TEXT NOT NULL DEFAULT '',
  scheduled_ae     TEXT NOT NULL DEFAULT '',
  status           TEXT NOT NULL DEFAULT 'SC',
  created_at       INTEGER NOT NULL,
  updated_at       INTEGER NOT NULL,
  phi              BLOB NOT NULL
);
CREATE INDEX worklist_patient ON worklist(patient_id_token);
CREATE INDEX worklist_modality ON worklist(modality, scheduled_ae);
CREATE INDEX worklist_key ON worklist(key_id);

CREATE TABLE reports (
  report_pk        INTEGER PRIMARY KEY,
  key_id           TEXT NOT NULL REFERENCES study_keys(key_id),
  accession_token  BLOB NOT NULL CHECK (length(accession_token) = 32),
  patient_id_token BLOB CHECK (patient_id_token IS NULL OR length(patient_id_token) = 32),
  received_at      INTEGER NOT NULL,
  phi              BLOB NOT NULL
);
CREATE INDEX reports_accession ON reports(accession_token);
CREATE INDEX reports_patient ON reports(patient_id_token);
CREATE INDEX reports_key ON reports(key_id);
)sql";

#define PHI_WL_COLS                                                                       \
  "order_pk, key_id, accession_token, patient_id_token, modality, scheduled_ae, status, " \
  "created_at, updated_at, phi"
#define PHI_REPORT_COLS "report_pk, key_id, accession_token, patient_id_token, received_at, phi"
#define PHI_MSG_COLS \
  "msg_pk, key_id, message_type, patient_id_token, accession_token, received_at, sealed"

constexpr const char* kGetPatientKey =
    "SELECT key_id FROM patient_keys WHERE patient_id_token = ?1";
constexpr const char* kPutPatientKey =
    "INSERT INTO patient_keys(patient_id_token, key_id, created_at) VALUES (?1, ?2, ?3)";
constexpr const char* kInsertMessage =
    "INSERT INTO hl7_messages(key_id, message_type, patient_id_token, accession_token,"
    " received_at, sealed) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
constexpr const char* kFindWl = "SELECT " PHI_WL_COLS " FROM worklist WHERE accession_token = ?1";
constexpr const char* kInsertWl =
    "INSERT INTO worklist(key_id, accession_token, patient_id_token, modality, scheduled_ae,"
    " status, created_at, updated_at, phi) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8)";
constexpr const char* kUpdateWl =
    "UPDATE worklist SET key_id = ?1, patient_id_token = ?3, modality = ?4, scheduled_ae = ?5,"
    " status = ?6, updated_at = ?7, phi = ?8 WHERE accession_token = ?2";
constexpr const char* kDeleteWl = "DELETE FROM worklist WHERE accession_token = ?1";
constexpr const char* kInsertReport =
    "INSERT INTO reports(key_id, accession_token, patient_id_token, received_at, phi)"
    " VALUES (?1, ?2, ?3, ?4, ?5)";
constexpr const char* kListReports =
    "SELECT " PHI_REPORT_COLS " FROM reports WHERE accession_token = ?1 ORDER BY report_pk";
constexpr const char* kListMessages = "SELECT " PHI_MSG_COLS
                                      " FROM hl7_messages WHERE patient_id_token = ?1"
                                      " ORDER BY msg_pk LIMIT ?2";

Status CheckTok(const Token& t) {
  if (t.size() != kTokenBytes) return Status::InvalidArgument("catalog: token must be 32 bytes");
  return Status::Ok();
}
Status CheckOptTok(const std::optional<Token>& t) { return t ? CheckTok(*t) : Status::Ok(); }
Status CheckTxt(const std::string& s, bool required) {
  if ((required && s.empty()) || s.size() > kMaxTextBytes) {
    return Status::InvalidArgument("catalog: text column empty or too long");
  }
  return Status::Ok();
}
Status CheckBlb(const Blob& b) {
  if (b.empty() || b.size() > kMaxBlobBytes) {
    return Status::InvalidArgument("catalog: sealed blob empty or too large");
  }
  return Status::Ok();
}

WorklistRow ReadWl(const Stmt& st) {
  WorklistRow r;
  r.order_pk = st.Int(0);
  r.key_id = st.Text(1);
  r.accession_token = st.BlobCol(2);
  r.patient_id_token = st.OptBlob(3);
  r.modality = st.Text(4);
  r.scheduled_ae = st.Text(5);
  r.status = st.Text(6);
  r.created_at = st.Int(7);
  r.updated_at = st.Int(8);
  r.phi = st.BlobCol(9);
  return r;
}

ReportRow ReadReport(const Stmt& st) {
  ReportRow r;
  r.report_pk = st.Int(0);
  r.key_id = st.Text(1);
  r.accession_token = st.BlobCol(2);
  r.patient_id_token = st.OptBlob(3);
  r.received_at = st.Int(4);
  r.phi = st.BlobCol(5);
  return r;
}

Hl7MessageRow ReadMsg(const Stmt& st) {
  Hl7MessageRow r;
  r.msg_pk = st.Int(0);
  r.key_id = st.Text(1);
  r.message_type = st.Text(2);
  r.patient_id_token = st.OptBlob(3);
  r.accession_token = st.OptBlob(4);
  r.received_at = st.Int(5);
  r.sealed = st.BlobCol(6);
  return r;
}

// Runs a one-off statement binding `tok` to ?1 and collecting column 0 (text).
Status Collect(Db& db, const std::string& sql, const Token& tok, std::set<std::string>* out) {
  PHI_ASSIGN_OR_RETURN(Stmt st, db.PrepareOnce(sql));
  PHI_RETURN_IF_ERROR(st.BindBlob(1, tok));
  for (;;) {
    PHI_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out->insert(st.Text(0));
  }
  return Status::Ok();
}

Result<int64_t> Delete(Db& db, const std::string& sql, const Token& tok) {
  PHI_ASSIGN_OR_RETURN(Stmt st, db.PrepareOnce(sql));
  PHI_RETURN_IF_ERROR(st.BindBlob(1, tok));
  PHI_RETURN_IF_ERROR(st.Run());
  return static_cast<int64_t>(sqlite3_changes(db.raw()));
}

}  // namespace

std::string_view Ddl() { return kDdl; }

Result<std::string> GetPatientKey(Db& db, const Token& pid) {
  PHI_RETURN_IF_ERROR(CheckTok(pid));
  PHI_ASSIGN_OR_RETURN(Stmt st, db.Prepare(kGetPatientKey));
  PHI_RETURN_IF_ERROR(st.BindBlob(1, pid));
  PHI_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return Status::NotFound("catalog: no patient key");
  return st.Text(0);
}

Status PutPatientKey(Db& db, int64_t now, const Token& pid, const std::string& key_id) {
  PHI_RETURN_IF_ERROR(CheckTok(pid));
  PHI_RETURN_IF_ERROR(CheckTxt(key_id, true));
  PHI_ASSIGN_OR_RETURN(Stmt st, db.Prepare(kPutPatientKey));
  PHI_RETURN_IF_ERROR(st.BindBlob(1, pid));
  PHI_RETURN_IF_ERROR(st.BindText(2, key_id));
  PHI_RETURN_IF_ERROR(st.BindInt(3, now));
  return st.Run();
}

Result<std::vector<StudyRow>> ListStudiesOfPatient(Db& db, const Token& pid, size_t limit,
                                                   StudyRow (*read)(const Stmt&),
                                                   const char* study_cols_sql) {
  PHI_RETURN_IF_ERROR(CheckTok(pid));
  if (limit == 0 || limit > 100000) return Status::InvalidArgument("catalog: limit out of range");
  // Built once: Db::Prepare caches statements by the address of their text.
  static const std::string kSql = std::string("SELECT ") + study_cols_sql +
                                  " FROM studies WHERE patient_id_token = ?1"
                                  " ORDER BY study_pk LIMIT ?2";
  PHI_ASSIGN_OR_RETURN(Stmt st, db.Prepare(kSql.c_str()));
  PHI_RETURN_IF_ERROR(st.BindBlob(1, pid));
  PHI_RETURN_IF_ERROR(st.BindInt(2, static_cast<int64_t>(limit)));
  std::vector<StudyRow> out;
  for (;;) {
    PHI_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back(read(st));
  }
  return out;
}

Result<int64_t> InsertMessage(Db& db, int64_t now, const Hl7MessageRow& r) {
  PHI_RETURN_IF_ERROR(CheckTxt(r.key_id, true));
  PHI_RETURN_IF_ERROR(CheckTxt(r.message_type, true));
  PHI_RETURN_IF_ERROR(CheckOptTok(r.patient_id_token));
  PHI_RETURN_IF_ERROR(CheckOptTok(r.accession_token));
  PHI_RETURN_IF_ERROR(CheckBlb(r.sealed));
  PHI_ASSIGN_OR_RETURN(Stmt st, db.Prepare(kInsertMessage));
  PHI_RETURN_IF_ERROR(st.BindText(1, r.key_id));
  PHI_RETURN_IF_ERROR(st.BindText(2, r.message_type));
  PHI_RETURN_IF_ERROR(st.BindOptBlob(3, r.patient_id_token));
  PHI_RETURN_IF_ERROR(st.BindOptBlob(4, r.accession_token));
  PHI_RETURN_IF_ERROR(st.BindInt(5, now));
  PHI_RETURN_IF_ERROR(st.BindBlob(6, r.sealed));
  PHI_RETURN_IF_ERROR(st.Run());
  return static_cast<int64_t>(sqlite3_last_insert_rowid(db.raw()));
}

Result<bool> UpsertWorklist(Db& db, int64_t now, const WorklistRow& r) {
  PHI_RETURN_IF_ERROR(CheckTxt(r.key_id, true));
  PHI_RETURN_IF_ERROR(CheckTok(r.accession_token));
  PHI_RETURN_IF_ERROR(CheckOptTok(r.patient_id_token));
  PHI_RETURN_IF_ERROR(CheckTxt(r.modality, false));
  PHI_RETURN_IF_ERROR(CheckTxt(r.scheduled_ae, false));
  PHI_RETURN_IF_ERROR(CheckTxt(r.status, true));
  PHI_RETURN_IF_ERROR(CheckBlb(r.phi));
  Result<WorklistRow> existing = FindWorklist(db, r.accession_token);
  if (!existing.ok() && existing.status().code() != Code::kNotFound) return existing.status();
  const bool create = !existing.ok();
  PHI_ASSIGN_OR_RETURN(Stmt st, db.Prepare(create ? kInsertWl : kUpdateWl));
  PHI_RETURN_IF_ERROR(st.BindText(1, r.key_id));
  PHI_RETURN_IF_ERROR(st.BindBlob(2, r.accession_token));
  PHI_RETURN_IF_ERROR(st.BindOptBlob(3, r.patient_id_token));
  PHI_RETURN_IF_ERROR(st.BindText(4, r.modality));
  PHI_RETURN_IF_ERROR(st.BindText(5, r.scheduled_ae));
  PHI_RETURN_IF_ERROR(st.BindText(6, r.status));
  PHI_RETURN_IF_ERROR(st.BindInt(7, now));
  PHI_RETURN_IF_ERROR(st.BindBlob(8, r.phi));
  PHI_RETURN_IF_ERROR(st.Run());
  return create;
}

Result<WorklistRow> FindWorklist(Db& db, const Token& accession) {
  PHI_RETURN_IF_ERROR(CheckTok(accession));
  PHI_ASSIGN_OR_RETURN(Stmt st, db.Prepare(kFindWl));
  PHI_RETURN_IF_ERROR(st.BindBlob(1, accession));
  PHI_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return Status::NotFound("catalog: no such worklist entry");
  return ReadWl(st);
}

Status DeleteWorklist(Db& db, const Token& accession) {
  PHI_RETURN_IF_ERROR(CheckTok(accession));
  PHI_ASSIGN_OR_RETURN(Stmt st, db.Prepare(kDeleteWl));
  PHI_RETURN_IF_ERROR(st.BindBlob(1, accession));
  PHI_RETURN_IF_ERROR(st.Run());
  if (sqlite3_changes(db.raw()) == 0) return Status::NotFound("catalog: no such worklist entry");
  return Status::Ok();
}

Result<int64_t> InsertReport(Db& db, int64_t now, const ReportRow& r) {
  PHI_RETURN_IF_ERROR(CheckTxt(r.key_id, true));
  PHI_RETURN_IF_ERROR(CheckTok(r.accession_token));
  PHI_RETURN_IF_ERROR(CheckOptTok(r.patient_id_token));
  PHI_RETURN_IF_ERROR(CheckBlb(r.phi));
  PHI_ASSIGN_OR_RETURN(Stmt st, db.Prepare(kInsertReport));
  PHI_RETURN_IF_ERROR(st.BindText(1, r.key_id));
  PHI_RETURN_IF_ERROR(st.BindBlob(2, r.accession_token));
  PHI_RETURN_IF_ERROR(st.BindOptBlob(3, r.patient_id_token));
  PHI_RETURN_IF_ERROR(st.BindInt(4, now));
  PHI_RETURN_IF_ERROR(st.BindBlob(5, r.phi));
  PHI_RETURN_IF_ERROR(st.Run());
  return static_cast<int64_t>(sqlite3_last_insert_rowid(db.raw()));
}

Status MovePatient(Db& db, const Token& from, const Token& to) {
  PHI_RETURN_IF_ERROR(CheckTok(from));
  PHI_RETURN_IF_ERROR(CheckTok(to));
  if (from == to) return Status::Ok();
  for (const char* table : {"hl7_messages", "worklist", "reports"}) {
    PHI_ASSIGN_OR_RETURN(Stmt st, db.PrepareOnce(std::string("UPDATE ") + table +
                                                 " SET patient_id_token = ?2"
                                                 " WHERE patient_id_token = ?1"));
    PHI_RETURN_IF_ERROR(st.BindBlob(1, from));
    PHI_RETURN_IF_ERROR(st.BindBlob(2, to));
    PHI_RETURN_IF_ERROR(st.Run());
  }
  Result<std::string> to_key = GetPatientKey(db, to);
  if (!to_key.ok() && to_key.status().code() != Code::kNotFound) return to_key.status();
  PHI_ASSIGN_OR_RETURN(
      Stmt st, db.PrepareOnce(to_key.ok() ? "DELETE FROM patient_keys WHERE patient_id_token"
                                            " = ?1 AND ?2 IS NOT NULL"
                                          : "UPDATE patient_keys SET patient_id_token = ?2"
                                            " WHERE patient_id_token = ?1"));
  PHI_RETURN_IF_ERROR(st.BindBlob(1, from));
  PHI_RETURN_IF_ERROR(st.BindBlob(2, to));
  return st.Run();
}

Result<Hl7Erased> EraseOfStudy(Db& db, const StudyRow& erased) {
  Hl7Erased out;
  std::set<std::string> keys;
  auto purge = [&](const char* column, const Token& tok) -> Status {
    const std::string where = std::string(" WHERE ") + column + " = ?1";
    for (const char* table : {"hl7_messages", "worklist", "reports"}) {
      PHI_RETURN_IF_ERROR(
          Collect(db, std::string("SELECT DISTINCT key_id FROM ") + table + where, tok, &keys));
      PHI_ASSIGN_OR_RETURN(int64_t n, Delete(db, std::string("DELETE FROM ") + table + where, tok));
      (std::string_view(table) == "hl7_messages" ? out.messages
       : std::string_view(table) == "worklist"   ? out.orders
                                                 : out.reports) += n;
    }
    return Status::Ok();
  };
  if (erased.accession_token)
    PHI_RETURN_IF_ERROR(purge("accession_token", *erased.accession_token));
  if (erased.patient_id_token) {
    PHI_ASSIGN_OR_RETURN(Stmt st, db.PrepareOnce("SELECT count(*) FROM studies"
                                                 " WHERE patient_id_token = ?1"));
    PHI_RETURN_IF_ERROR(st.BindBlob(1, *erased.patient_id_token));
    PHI_ASSIGN_OR_RETURN(bool row, st.Step());
    if (row && st.Int(0) == 0) {
      PHI_RETURN_IF_ERROR(purge("patient_id_token", *erased.patient_id_token));
      PHI_RETURN_IF_ERROR(Collect(db, "SELECT key_id FROM patient_keys WHERE patient_id_token = ?1",
                                  *erased.patient_id_token, &keys));
      PHI_RETURN_IF_ERROR(Delete(db, "DELETE FROM patient_keys WHERE patient_id_token = ?1",
                                 *erased.patient_id_token)
                              .status());
    }
  }
  // Patient keys no longer used by anything are destroyed (cryptographic erasure).
  for (const std::string& k : keys) {
    PHI_ASSIGN_OR_RETURN(
        Stmt st, db.PrepareOnce("DELETE FROM study_keys WHERE key_id = ?1"
                                " AND NOT EXISTS (SELECT 1 FROM studies WHERE key_id = ?1)"
                                " AND NOT EXISTS (SELECT 1 FROM patient_keys WHERE key_id = ?1)"
                                " AND NOT EXISTS (SELECT 1 FROM hl7_messages WHERE key_id = ?1)"
                                " AND NOT EXISTS (SELECT 1 FROM worklist WHERE key_id = ?1)"
                                " AND NOT EXISTS (SELECT 1 FROM reports WHERE key_id = ?1)"));
    PHI_RETURN_IF_ERROR(st.BindText(1, k));
    PHI_RETURN_IF_ERROR(st.Run());
    if (sqlite3_changes(db.raw()) > 0) out.key_ids.push_back(k);
  }
  return out;
}

Result<std::vector<WorklistRow>> QueryWorklist(Db& db, const WorklistFilter& f) {
  if (f.limit == 0 || f.limit > 100000)
    return Status::InvalidArgument("catalog: limit out of range");
  PHI_RETURN_IF_ERROR(CheckOptTok(f.patient_id_token));
  PHI_RETURN_IF_ERROR(CheckOptTok(f.accession_token));
  std::string sql = "SELECT " PHI_WL_COLS " FROM worklist WHERE order_pk > ?";
  if (f.modality) sql += " AND modality = ?";
  if (f.scheduled_ae) sql += " AND scheduled_ae = ?";
  if (f.patient_id_token) sql += " AND patient_id_token = ?";
  if (f.accession_token) sql += " AND accession_token = ?";
  sql += " ORDER BY order_pk LIMIT ?";
  PHI_ASSIGN_OR_RETURN(Stmt st, db.PrepareOnce(sql));
  int i = 1;
  PHI_RETURN_IF_ERROR(st.BindInt(i++, f.after_order_pk));
  if (f.modality) PHI_RETURN_IF_ERROR(st.BindText(i++, *f.modality));
  if (f.scheduled_ae) PHI_RETURN_IF_ERROR(st.BindText(i++, *f.scheduled_ae));
  if (f.patient_id_token) PHI_RETURN_IF_ERROR(st.BindBlob(i++, *f.patient_id_token));
  if (f.accession_token) PHI_RETURN_IF_ERROR(st.BindBlob(i++, *f.accession_token));
  PHI_RETURN_IF_ERROR(st.BindInt(i++, static_cast<int64_t>(f.limit)));
  std::vector<WorklistRow> out;
  for (;;) {
    PHI_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back(ReadWl(st));
  }
  return out;
}

Result<std::vector<ReportRow>> ListReports(Db& db, const Token& accession) {
  PHI_RETURN_IF_ERROR(CheckTok(accession));
  PHI_ASSIGN_OR_RETURN(Stmt st, db.Prepare(kListReports));
  PHI_RETURN_IF_ERROR(st.BindBlob(1, accession));
  std::vector<ReportRow> out;
  for (;;) {
    PHI_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back(ReadReport(st));
  }
  return out;
}

Result<std::vector<Hl7MessageRow>> ListMessages(Db& db, const Token& pid, size_t limit) {
  PHI_RETURN_IF_ERROR(CheckTok(pid));
  if (limit == 0 || limit > 100000) return Status::InvalidArgument("catalog: limit out of range");
  PHI_ASSIGN_OR_RETURN(Stmt st, db.Prepare(kListMessages));
  PHI_RETURN_IF_ERROR(st.BindBlob(1, pid));
  PHI_RETURN_IF_ERROR(st.BindInt(2, static_cast<int64_t>(limit)));
  std::vector<Hl7MessageRow> out;
  for (;;) {
    PHI_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back(ReadMsg(st));
  }
  return out;
}

}  // namespace phi::index::hl7tables
