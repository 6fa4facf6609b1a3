// Small RAII wrappers over the SQLite C API, private to index/: a connection
// (Db) with a per-connection prepared-statement cache, and a Stmt guard that
// resets and unbinds a cached statement when it goes out of scope.
// Errors become phi::Status with SQLite's message (table/column names only,
// never bound values, so they are safe to log).
// Thread-safety: a Db and its statements are used by one thread at a time
// (the writer thread, or the reader that checked it out of the pool).
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "libphi/util/status.h"

namespace phi::index {

// Maps a SQLite result code (extended codes preferred) to a phi::Status.
Status SqliteError(int rc, std::string_view what, sqlite3* db = nullptr);

class Stmt;

class Db {
 public:
  // flags: SQLITE_OPEN_* (SQLITE_OPEN_NOMUTEX is added: one thread at a time).
  // vfs: a registered SQLite VFS name, or nullptr for the default.
  static Result<std::unique_ptr<Db>> Open(const std::string& path, int flags,
                                          const char* vfs = nullptr);
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  sqlite3* raw() const { return db_; }
  // Runs one or more statements with no parameters and no result rows wanted.
  Status Exec(std::string_view sql);
  // Runs a single-value query ("PRAGMA journal_mode") and returns column 0 as text.
  Result<std::string> QueryText(const std::string& sql);
  Result<int64_t> QueryInt(const std::string& sql);
  // The cached prepared statement for sql (prepared on first use), wrapped in
  // a guard. `sql` must be a string with static storage duration.
  Result<Stmt> Prepare(const char* sql);
  // A one-off statement (dynamic SQL), finalized when the guard is destroyed.
  Result<Stmt> PrepareOnce(const std::string& sql);

 private:
  explicit Db(sqlite3* db) : db_(db) {}
  sqlite3* db_;
  std::unordered_map<const char*, sqlite3_stmt*> cache_;
};

// A cached statement in use: Bind*, then Step() until it returns false.
// Resets and clears bindings on destruction so the cache entry is reusable.
class Stmt {
 public:
  Stmt(sqlite3* db, sqlite3_stmt* s, bool owned = false) : db_(db), s_(s), owned_(owned) {}
  ~Stmt();
  Stmt(Stmt&& o) noexcept : db_(o.db_), s_(o.s_), owned_(o.owned_) { o.s_ = nullptr; }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  Stmt& operator=(Stmt&&) = delete;

  // Parameters are 1-based, as in SQLite.
  Status BindInt(int i, int64_t v);
  Status BindText(int i, std::string_view v);
  Status BindBlob(int i, std::string_view v);
  Status BindNull(int i);
  Status BindOptInt(int i, const std::optional<int32_t>& v);
  Status BindOptBlob(int i, const std::optional<std::string>& v);

  // true: a row is available; false: done.
  Result<bool> Step();
  // Step() expecting completion (INSERT/UPDATE/DELETE).
  Status Run();

  bool IsNull(int col) const { return sqlite3_column_type(s_, col) == SQLITE_NULL; }
  int64_t Int(int col) const { return sqlite3_column_int64(s_, col); }
  std::string Text(int col) const;
  std::string BlobCol(int col) const;
  std::optional<int32_t> OptInt(int col) const;
  std::optional<std::string> OptBlob(int col) const;

 private:
  sqlite3* db_;
  sqlite3_stmt* s_;
  bool owned_;
};

}  // namespace phi::index
