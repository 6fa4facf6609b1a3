#include "libphi/index/sqlite_db.h"

namespace phi::index {

Status SqliteError(int rc, std::string_view what, sqlite3* db) {
  std::string msg = "sqlite: " + std::string(what) + ": ";
  msg += (db != nullptr) ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  msg += " (" + std::to_string(rc) + ")";
  switch (rc) {
    case SQLITE_CONSTRAINT_UNIQUE:
    case SQLITE_CONSTRAINT_PRIMARYKEY:
      return Status::AlreadyExists(std::move(msg));
    case SQLITE_CONSTRAINT_FOREIGNKEY:
    case SQLITE_CONSTRAINT_CHECK:
    case SQLITE_CONSTRAINT_NOTNULL:
      return Status::InvalidArgument(std::move(msg));
    default:
      break;
  }
  switch (rc & 0xff) {
    case SQLITE_FULL:
      return Status::ResourceExhausted(std::move(msg));
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return Status::Unavailable(std::move(msg));
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return Status::Corruption(std::move(msg));
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_PROTOCOL:
      return Status::IOError(std::move(msg));
    case SQLITE_CONSTRAINT:
    case SQLITE_TOOBIG:
    case SQLITE_RANGE:
    case SQLITE_MISMATCH:
      return Status::InvalidArgument(std::move(msg));
    case SQLITE_NOMEM:
      return Status::ResourceExhausted(std::move(msg));
    default:
      return Status::Internal(std::move(msg));
  }
}

Result<std::unique_ptr<Db>> Db::Open(const std::string& path, int flags, const char* vfs) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, flags | SQLITE_OPEN_NOMUTEX, vfs);
  if (rc != SQLITE_OK) {
    Status s = SqliteError(rc, "open " + path, db);
    sqlite3_close_v2(db);
    return s;
  }
  sqlite3_extended_result_codes(db, 1);
  return std::unique_ptr<Db>(new Db(db));
}

Db::~Db() {
  for (auto& [sql, s] : cache_) sqlite3_finalize(s);
  sqlite3_close_v2(db_);
}

Status Db::Exec(std::string_view sql) {
  std::string copy(sql);
  char* err = nullptr;
  int rc = sqlite3_exec(db_, copy.c_str(), nullptr, nullptr, &err);
  sqlite3_free(err);
  if (rc != SQLITE_OK) return SqliteError(rc, "exec", db_);
  return Status::Ok();
}

Result<std::string> Db::QueryText(const std::string& sql) {
  PHI_ASSIGN_OR_RETURN(Stmt st, PrepareOnce(sql));
  PHI_ASSIGN_OR_RETURN(bool row, st.Step());
  std::string out = row ? st.Text(0) : std::string();
  while (row) {  // drain: some pragmas return several rows
    PHI_ASSIGN_OR_RETURN(row, st.Step());
  }
  return out;
}

Result<int64_t> Db::QueryInt(const std::string& sql) {
  PHI_ASSIGN_OR_RETURN(Stmt st, PrepareOnce(sql));
  PHI_ASSIGN_OR_RETURN(bool row, st.Step());
  return row ? st.Int(0) : int64_t{0};
}

Result<Stmt> Db::Prepare(const char* sql) {
  auto it = cache_.find(sql);
  if (it == cache_.end()) {
    sqlite3_stmt* s = nullptr;
    int rc = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr);
    if (rc != SQLITE_OK) return SqliteError(rc, "prepare", db_);
    it = cache_.emplace(sql, s).first;
  }
  return Stmt(db_, it->second);
}

Result<Stmt> Db::PrepareOnce(const std::string& sql) {
  sqlite3_stmt* s = nullptr;
  int rc = sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr);
  if (rc != SQLITE_OK) return SqliteError(rc, "prepare", db_);
  return Stmt(db_, s, /*owned=*/true);
}

Stmt::~Stmt() {
  if (s_ == nullptr) return;
  if (owned_) {
    sqlite3_finalize(s_);
  } else {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
}

Status Stmt::BindInt(int i, int64_t v) {
  int rc = sqlite3_bind_int64(s_, i, v);
  return rc == SQLITE_OK ? Status::Ok() : SqliteError(rc, "bind", db_);
}
Status Stmt::BindText(int i, std::string_view v) {
  int rc = sqlite3_bind_text64(s_, i, v.data(), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
  return rc == SQLITE_OK ? Status::Ok() : SqliteError(rc, "bind", db_);
}
Status Stmt::BindBlob(int i, std::string_view v) {
  // A zero-length blob must still be a BLOB (not NULL): pass a non-null pointer.
  static const char kEmpty = 0;
  int rc = sqlite3_bind_blob64(s_, i, v.empty() ? &kEmpty : v.data(), v.size(), SQLITE_TRANSIENT);
  return rc == SQLITE_OK ? Status::Ok() : SqliteError(rc, "bind", db_);
}
Status Stmt::BindNull(int i) {
  int rc = sqlite3_bind_null(s_, i);
  return rc == SQLITE_OK ? Status::Ok() : SqliteError(rc, "bind", db_);
}
Status Stmt::BindOptInt(int i, const std::optional<int32_t>& v) {
  return v ? BindInt(i, *v) : BindNull(i);
}
Status Stmt::BindOptBlob(int i, const std::optional<std::string>& v) {
  return v ? BindBlob(i, *v) : BindNull(i);
}

Result<bool> Stmt::Step() {
  int rc = sqlite3_step(s_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  // sqlite3_step's rc is the extended code (extended_result_codes is on).
  return SqliteError(rc, "step", db_);
}

Status Stmt::Run() {
  PHI_ASSIGN_OR_RETURN(bool row, Step());
  (void)row;
  return Status::Ok();
}

std::string Stmt::Text(int col) const {
  const unsigned char* p = sqlite3_column_text(s_, col);
  int n = sqlite3_column_bytes(s_, col);
  return p ? std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(n)) : std::string();
}

std::string Stmt::BlobCol(int col) const {
  const void* p = sqlite3_column_blob(s_, col);
  int n = sqlite3_column_bytes(s_, col);
  return p ? std::string(static_cast<const char*>(p), static_cast<size_t>(n)) : std::string();
}

std::optional<int32_t> Stmt::OptInt(int col) const {
  if (IsNull(col)) return std::nullopt;
  return static_cast<int32_t>(sqlite3_column_int64(s_, col));
}

std::optional<std::string> Stmt::OptBlob(int col) const {
  if (IsNull(col)) return std::nullopt;
  return BlobCol(col);
}

}  // namespace phi::index
