// phi::services::RecoverStorage: start-up reconciliation of the object store
// with the catalog (DESIGN.md, Durability): removes leftovers in tmp/ and
// objects no catalog row names (a crash between rename and commit, or an
// erasure interrupted before its unlinks), removes the pending rows whose
// object never became durable and clears the flag of the others. Reports
// what it did.
// REQUIRES: run before any listener accepts work; skipped by the caller when
// the catalog or the store reports a sticky failure (state unknown).
#pragma once

#include <cstddef>

#include "libphi/index/catalog.h"
#include "libphi/objects/object_store.h"

namespace phi::services {

struct RecoveryReport {
  size_t tmp_removed = 0;
  size_t orphans_removed = 0;
  // Pending rows (committed in parallel with their object) whose object never
  // became durable: the store was never acknowledged; rows removed, audited.
  size_t unacknowledged_rows_removed = 0;
  size_t missing_objects = 0;  // other catalog rows whose object file is absent (reported, kept)
};

Result<RecoveryReport> RecoverStorage(index::Catalog& catalog, objects::ObjectStore& objects);

}  // namespace phi::services
