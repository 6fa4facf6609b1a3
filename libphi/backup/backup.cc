#include "libphi/backup/backup.h"

#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "libphi/backup/file_copy.h"
#include "libphi/crypto/crypto.h"
#include "libphi/services/study_keys.h"
#include "libphi/util/log.h"

namespace phi::backup {
namespace {

// RAII for the two raw SQLite handles of the backup.
struct SqliteHandle {
  sqlite3* db = nullptr;
  ~SqliteHandle() {
    if (db != nullptr) sqlite3_close_v2(db);
  }
};

Status SqlError(sqlite3* db, int rc, const std::string& what) {
  return Status::IOError(what + ": " + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc)));
}

Status Exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string m = err ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    return Status::IOError(std::string("snapshot: ") + m);
  }
  return Status::Ok();
}

// Copies the live catalog into `dst` in one backup step: one read
// transaction on the source, so one consistent committed state.
Status SnapshotCatalog(const Path& src, const Path& dst) {
  SqliteHandle s, d;
  int rc =
      sqlite3_open_v2(src.c_str(), &s.db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) return SqlError(s.db, rc, "open catalog for backup");
  sqlite3_busy_timeout(s.db, 10000);
  PHI_RETURN_IF_ERROR(Exec(s.db, "PRAGMA query_only=ON"));
  rc = sqlite3_open_v2(dst.c_str(), &d.db,
                       SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) return SqlError(d.db, rc, "create backup catalog");
  ::chmod(dst.c_str(), 0600);
  sqlite3_backup* b = sqlite3_backup_init(d.db, "main", s.db, "main");
  if (b == nullptr) return SqlError(d.db, SQLITE_ERROR, "sqlite3_backup_init");
  for (int attempt = 0;; ++attempt) {
    rc = sqlite3_backup_step(b, -1);
    if (rc == SQLITE_DONE) break;
    if ((rc == SQLITE_BUSY || rc == SQLITE_LOCKED) && attempt < 500) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      continue;
    }
    sqlite3_backup_finish(b);
    return SqlError(d.db, rc, "sqlite3_backup_step");
  }
  rc = sqlite3_backup_finish(b);
  if (rc != SQLITE_OK) return SqlError(d.db, rc, "sqlite3_backup_finish");
  // A self-contained file (no -wal beside it), durable.
  PHI_RETURN_IF_ERROR(Exec(d.db, "PRAGMA journal_mode=DELETE"));
  return Status::Ok();
}

struct SnapshotObject {
  std::string id;
};

struct SnapshotContents {
  std::string storage_id;
  std::set<std::string> kek_ids;
  int64_t studies = 0;
  std::vector<std::string> object_ids;
};

// Reads what the snapshot names, and checks that no instance lacks its study
// key row (the foreign keys say so; a backup checks rather than assumes).
Result<SnapshotContents> ReadSnapshot(const Path& db_path) {
  SqliteHandle h;
  int rc =
      sqlite3_open_v2(db_path.c_str(), &h.db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) return SqlError(h.db, rc, "open snapshot");
  SnapshotContents c;
  auto each = [&](const char* sql, const std::function<Status(sqlite3_stmt*)>& row) -> Status {
    sqlite3_stmt* st = nullptr;
    int r = sqlite3_prepare_v2(h.db, sql, -1, &st, nullptr);
    if (r != SQLITE_OK) return SqlError(h.db, r, "snapshot query");
    Status out;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
      out = row(st);
      if (!out.ok()) break;
    }
    if (out.ok() && r != SQLITE_DONE) out = SqlError(h.db, r, "snapshot query");
    sqlite3_finalize(st);
    return out;
  };
  auto text = [](sqlite3_stmt* st, int col) {
    const unsigned char* p = sqlite3_column_text(st, col);
    return p ? std::string(reinterpret_cast<const char*>(p),
                           static_cast<size_t>(sqlite3_column_bytes(st, col)))
             : std::string();
  };
  PHI_RETURN_IF_ERROR(each("PRAGMA quick_check", [&](sqlite3_stmt* st) -> Status {
    if (text(st, 0) != "ok") return Status::Corruption("snapshot fails quick_check");
    return Status::Ok();
  }));
  PHI_RETURN_IF_ERROR(each("SELECT count(*) FROM studies", [&](sqlite3_stmt* st) -> Status {
    c.studies = sqlite3_column_int64(st, 0);
    return Status::Ok();
  }));
  PHI_RETURN_IF_ERROR(
      each("SELECT i.object_id, k.key_id FROM instances i"
           " LEFT JOIN series se ON se.series_pk = i.series_pk"
           " LEFT JOIN studies s ON s.study_pk = se.study_pk"
           " LEFT JOIN study_keys k ON k.key_id = s.key_id ORDER BY i.object_id",
           [&](sqlite3_stmt* st) -> Status {
             std::string id = text(st, 0);
             if (!IsValidObjectId(id)) return Status::Corruption("snapshot: malformed object id");
             if (sqlite3_column_type(st, 1) == SQLITE_NULL) {
               return Status::Corruption("snapshot: object " + id + " has no study key row");
             }
             c.object_ids.push_back(std::move(id));
             return Status::Ok();
           }));
  PHI_RETURN_IF_ERROR(
      each("SELECT DISTINCT kek_id FROM study_keys", [&](sqlite3_stmt* st) -> Status {
        c.kek_ids.insert(text(st, 0));
        return Status::Ok();
      }));
  PHI_RETURN_IF_ERROR(each("SELECT key, value FROM meta", [&](sqlite3_stmt* st) -> Status {
    std::string key = text(st, 0);
    std::string value(static_cast<const char*>(sqlite3_column_blob(st, 1)),
                      static_cast<size_t>(sqlite3_column_bytes(st, 1)));
    if (key == services::kDerivationSecretMeta) {
      PHI_ASSIGN_OR_RETURN(vault::WrappedKey wk, services::DecodeWrappedKey(value));
      c.kek_ids.insert(wk.kek_id);
    } else if (key == kStorageIdMeta) {
      c.storage_id = value;
    }
    return Status::Ok();
  }));
  if (c.storage_id.empty()) return Status::Corruption("snapshot has no storage id");
  return c;
}

Result<std::string> EnsureStorageId(index::SqliteCatalog& catalog, Env& env) {
  Result<index::Blob> have = catalog.GetMeta(kStorageIdMeta);
  if (have.ok()) return *have;
  if (have.status().code() != Code::kNotFound) return have.status();
  std::array<std::byte, 16> r;
  PHI_RETURN_IF_ERROR(env.RandomBytes(r));
  std::string fresh = crypto::ToHex(r);
  std::string id;
  PHI_RETURN_IF_ERROR(catalog.Write([&](index::WriteTxn& txn) -> Status {
    Result<index::Blob> cur = txn.GetMeta(kStorageIdMeta);
    if (cur.ok()) {
      id = *cur;
      return Status::Ok();
    }
    id = fresh;
    return txn.PutMeta(kStorageIdMeta, fresh);
  }));
  return id;
}

std::string Rfc3339(SystemTime t) {
  std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

bool Inside(const Path& inner, const Path& outer) {
  auto i = inner.begin();
  for (auto o = outer.begin(); o != outer.end(); ++o, ++i) {
    if (o->empty()) continue;  // trailing separator
    if (i == inner.end() || *i != *o) return false;
  }
  return true;
}

Status PrepareDir(const Path& dir) {
  struct stat st;
  if (::lstat(dir.c_str(), &st) != 0) {
    if (errno != ENOENT) return PosixError("stat " + dir.string(), errno);
    if (::mkdir(dir.c_str(), 0700) != 0) {
      return PosixError("create backup directory " + dir.string() +
                            " (its parent must exist and be writable by the phigated user)",
                        errno);
    }
    return Status::Ok();
  }
  if (!S_ISDIR(st.st_mode)) return Status::InvalidArgument(dir.string() + " is not a directory");
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    return Status::PermissionDenied(dir.string() + " is not writable by the phigated user (uid " +
                                    std::to_string(::geteuid()) + ")");
  }
  std::error_code ec;
  if (!std::filesystem::is_empty(dir, ec) || ec) {
    return Status::AlreadyExists(dir.string() +
                                 " is not empty: give a new or empty directory for each backup");
  }
  return Status::Ok();
}

void AuditBackup(index::SqliteCatalog& catalog, const BackupRequest& req, const Status& outcome,
                 const BackupReport& r, int64_t* seq) {
  audit::AuditEvent ev;
  ev.actor = req.actor;
  ev.action = "backup";
  ev.object = "storage";
  ev.outcome = outcome.ok() ? "ok" : "error:" + std::string(CodeName(outcome.code()));
  nlohmann::ordered_json d;
  d["dir"] = req.dir.string();
  d["storage_id"] = r.storage_id;
  d["studies"] = r.studies;
  d["objects"] = r.objects;
  d["object_bytes"] = r.object_bytes;
  d["manifest_sha256"] = r.manifest_sha256;
  d["unlinks_held_back"] = r.unlinks_held_back;
  ev.detail = d.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  Status s = catalog.Write([&](index::WriteTxn& txn) -> Status {
    PHI_ASSIGN_OR_RETURN(*seq, txn.AppendAudit(ev));
    return Status::Ok();
  });
  if (!s.ok()) PHI_LOG(kError, "backup: audit append failed", {{"status", s}});
}

Status Run(index::SqliteCatalog& catalog, objects::FsObjectStore& store,
           services::RemovalGate& gate, Env& env, const BackupRequest& req, BackupReport& rep) {
  PHI_RETURN_IF_ERROR(CheckBackupDir(req.dir, store.root()));
  PHI_RETURN_IF_ERROR(PrepareDir(req.dir));
  PHI_ASSIGN_OR_RETURN(rep.storage_id, EnsureStorageId(catalog, env));

  const size_t deferred_before = gate.deferred();
  services::RemovalGate::Hold hold(gate);
  BackupProgress prog;
  prog.phase = "catalog";
  if (req.progress && !req.progress(prog)) return Status::Unavailable("backup stopped");

  const Path db_dst = req.dir / kCatalogName;
  PHI_RETURN_IF_ERROR(SnapshotCatalog(catalog.path(), db_dst));
  PHI_ASSIGN_OR_RETURN(SnapshotContents snap, ReadSnapshot(db_dst));
  if (snap.storage_id != rep.storage_id) return Status::Internal("storage id changed");
  rep.kek_ids.assign(snap.kek_ids.begin(), snap.kek_ids.end());
  rep.studies = snap.studies;

  Manifest m;
  m.storage_id = rep.storage_id;
  m.created = Rfc3339(env.Now());
  m.kek_ids = rep.kek_ids;
  m.studies = snap.studies;
  PHI_ASSIGN_OR_RETURN(CopiedFile cat, HashFile(env, db_dst));
  rep.catalog_bytes = static_cast<int64_t>(cat.size);
  m.files.push_back({kCatalogName, cat.size, cat.sha256});

  prog.phase = "objects";
  prog.objects_total = static_cast<int64_t>(snap.object_ids.size());
  std::set<Path> dirs;
  for (const std::string& id : snap.object_ids) {
    const std::string rel = ObjectRelPath(id);
    const Path dst = req.dir / rel;
    if (dirs.insert(dst.parent_path()).second) {
      PHI_RETURN_IF_ERROR(env.CreateDirs(dst.parent_path()));
    }
    Result<CopiedFile> c = CopyFile(env, store.ObjectPath(id), dst);
    if (!c.ok()) {
      // The gate keeps every snapshot object on disk; a missing one is damage.
      return c.status().WithContext("object " + id + " named by the catalog snapshot");
    }
    m.files.push_back({rel, c->size, c->sha256});
    ++m.objects;
    m.object_bytes += static_cast<int64_t>(c->size);
    ++prog.objects_done;
    prog.bytes_done = m.object_bytes;
    if (req.progress && !req.progress(prog)) return Status::Unavailable("backup stopped");
  }
  rep.objects = m.objects;
  rep.object_bytes = m.object_bytes;

  // Directories, deepest first, so every entry is durable before MANIFEST.
  prog.phase = "manifest";
  if (req.progress) (void)req.progress(prog);
  std::set<Path> all;
  for (const Path& d : dirs) {
    for (Path p = d; p != req.dir && Inside(p, req.dir); p = p.parent_path()) all.insert(p);
  }
  for (auto it = all.rbegin(); it != all.rend(); ++it) PHI_RETURN_IF_ERROR(env.SyncDir(*it));
  PHI_RETURN_IF_ERROR(env.SyncDir(req.dir));

  const std::string text = SerializeManifest(m);
  rep.manifest_sha256 = text.substr(text.rfind(' ') + 1, 64);
  const Path tmp = req.dir / (std::string(kManifestName) + ".tmp");
  {
    PHI_ASSIGN_OR_RETURN(WritableFilePtr f, env.NewWritableFile(tmp));
    PHI_RETURN_IF_ERROR(
        f->Append(std::span(reinterpret_cast<const std::byte*>(text.data()), text.size())));
    PHI_RETURN_IF_ERROR(f->Sync());
    PHI_RETURN_IF_ERROR(f->Close());
  }
  PHI_RETURN_IF_ERROR(env.RenameFile(tmp, req.dir / kManifestName));
  PHI_RETURN_IF_ERROR(env.SyncDir(req.dir));
  rep.unlinks_held_back =
      static_cast<int64_t>(gate.deferred() - std::min(gate.deferred(), deferred_before));
  return Status::Ok();
}

}  // namespace

Status CheckBackupDir(const Path& dir, const Path& storage_root) {
  if (dir.empty() || !dir.is_absolute()) {
    return Status::InvalidArgument("backup directory must be an absolute path");
  }
  Path norm = dir.lexically_normal();
  if (norm.has_filename() == false && norm != norm.root_path()) norm = norm.parent_path();
  Path plain = dir;
  if (!plain.has_filename() && plain != plain.root_path()) plain = plain.parent_path();
  if (norm != plain) {
    return Status::InvalidArgument("backup directory must be a normalised path (no . or ..)");
  }
  std::error_code ec;
  Path d = std::filesystem::weakly_canonical(norm, ec);
  if (ec) return Status::InvalidArgument("cannot resolve " + dir.string() + ": " + ec.message());
  Path r = std::filesystem::weakly_canonical(storage_root, ec);
  if (ec) r = storage_root.lexically_normal();
  if (Inside(d, r) || Inside(r, d)) {
    return Status::InvalidArgument("backup directory " + dir.string() +
                                   " must not be inside the storage root " + storage_root.string() +
                                   " (nor contain it)");
  }
  return Status::Ok();
}

Result<BackupReport> RunBackup(index::SqliteCatalog& catalog, objects::FsObjectStore& store,
                               services::RemovalGate& gate, Env& env, const BackupRequest& req) {
  BackupReport rep;
  rep.dir = req.dir;
  const auto t0 = env.Monotonic();
  PHI_LOG(kNotice, "backup started", {{"dir", log::Safe(req.dir.string())}});
  Status s = Run(catalog, store, gate, env, req, rep);
  // Audited either way; a refused request (bad DIR) is audited too.
  AuditBackup(catalog, req, s, rep, &rep.audit_seq);
  const double secs = std::chrono::duration<double>(env.Monotonic() - t0).count();
  if (!s.ok()) {
    PHI_LOG(kError, "backup failed; the directory has no MANIFEST (incomplete backup)",
            {{"dir", log::Safe(req.dir.string())}, {"status", s}});
    return s;
  }
  PHI_LOG(kNotice, "backup done",
          {{"dir", log::Safe(req.dir.string())},
           {"studies", rep.studies},
           {"objects", rep.objects},
           {"object_bytes", rep.object_bytes},
           {"catalog_bytes", rep.catalog_bytes},
           {"unlinks_held_back", rep.unlinks_held_back},
           {"seconds", static_cast<int64_t>(secs)}});
  return rep;
}

}  // namespace phi::backup
