// phi::services::StorageStack: the embedded single-node persistence and its
// services, opened in the right order from the config: KeyVault (KEKs) ->
// SqliteCatalog (catalog.db, audit MAC from the vault) -> FsObjectStore ->
// derivation secret -> StudyKeys -> ingest / erasure / query services.
// The daemon, the crash test and the benchmarks share it. A scale-out node
// (PostgreSQL catalog, S3 objects) would be another factory of the same
// services (DESIGN.md, Scale-out).
// Thread-safety: the accessors are thread-safe; the services are.
#pragma once

#include <memory>

#include "libphi/config/config.h"
#include "libphi/index/sqlite_catalog.h"
#include "libphi/objects/fs_object_store.h"
#include "libphi/services/erasure_service.h"
#include "libphi/services/ingest_service.h"
#include "libphi/services/query_service.h"
#include "libphi/services/recovery.h"
#include "libphi/services/removal_gate.h"
#include "libphi/services/study_keys.h"
#include "libphi/vault/key_vault.h"

namespace phi::services {

class StorageStack {
 public:
  // Opens everything. REQUIRES: storage.root exists (the daemon checked the
  // volume). Does not run recovery: call Recover() before accepting work.
  static Result<std::unique_ptr<StorageStack>> Open(const config::KeysConfig& keys,
                                                    const config::StorageConfig& storage, Env& env);
  ~StorageStack();
  StorageStack(const StorageStack&) = delete;
  StorageStack& operator=(const StorageStack&) = delete;

  Result<RecoveryReport> Recover() { return RecoverStorage(*catalog_, *objects_); }
  // The audit MAC function (the vault's), for Verify and exports.
  audit::MacFn AuditMac() const;

  vault::KeyVault& vault() { return *vault_; }
  index::SqliteCatalog& catalog() { return *catalog_; }
  objects::FsObjectStore& objects() { return *objects_; }
  // What ingest and erasure unlink through: a backup holds it (removal_gate.h).
  RemovalGate& removal_gate() { return *gate_; }
  StudyKeys& keys() { return *keys_; }
  IngestService& ingest() { return *ingest_; }
  ErasureService& erasure() { return *erasure_; }
  QueryService& query() { return *query_; }

 private:
  StorageStack() = default;

  // Destroyed in reverse order of declaration: services before what they use.
  std::unique_ptr<vault::KeyVault> vault_;
  std::unique_ptr<index::SqliteCatalog> catalog_;
  std::unique_ptr<objects::FsObjectStore> objects_;
  std::unique_ptr<RemovalGate> gate_;
  std::unique_ptr<StudyKeys> keys_;
  std::unique_ptr<IngestService> ingest_;
  std::unique_ptr<ErasureService> erasure_;
  std::unique_ptr<QueryService> query_;
};

}  // namespace phi::services
