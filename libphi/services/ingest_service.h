// phi::services::IngestService: the durable store path behind every edge
// (DESIGN.md, Durability): resolve the study key, encrypt the Part 10 bytes
// into a .phg object (tmp/ -> fsync -> rename -> dir fsync) and, in parallel
// on the catalog's writer thread, one catalog transaction (study key,
// study/series/instance rows with sealed PHI and blind tokens, audit record;
// the instance flagged pending) committed with group commit; only when both
// are durable does Store return. A failure at any step removes the object
// and the rows and returns the error: nothing is acknowledged that is not
// durable, and a crash leaves nothing that recovery does not reconcile.
// Thread-safety: thread-safe; stores run concurrently and share catalog commits.
#pragma once

#include <atomic>
#include <cstdint>

#include "libphi/config/config.h"
#include "libphi/index/catalog.h"
#include "libphi/objects/object_store.h"
#include "libphi/services/ingest.h"
#include "libphi/services/phi_fields.h"
#include "libphi/services/study_keys.h"
#include "libphi/vault/key_vault.h"

namespace phi::services {

#define PHI_INGEST_STATS(X) \
  X(stored)                 \
  X(duplicates_kept)        \
  X(replaced)               \
  X(conflicts)              \
  X(refused)                \
  X(failed)                 \
  X(bytes)

struct IngestStats {
#define PHI_INGEST_STAT_FIELD(n) uint64_t n = 0;
  PHI_INGEST_STATS(PHI_INGEST_STAT_FIELD)
#undef PHI_INGEST_STAT_FIELD
};

// Builds the sealed PHI sets of each level from the instance attributes.
PhiFields StudyPhi(const InstanceAttributes& a);
PhiFields SeriesPhi(const InstanceAttributes& a);
PhiFields InstancePhi(const InstanceAttributes& a);

// AAD that binds a sealed `phi` column to its row's token, so a blob copied
// into another row does not open.
std::string PhiAad(std::string_view level, const index::Token& token);

// Checks a DICOM UID (PS3.5 9.1: 1..64 chars, digits and dots, no empty component).
bool IsValidUid(std::string_view uid);

class IngestService final : public Ingest {
 public:
  IngestService(vault::KeyVault& vault, index::Catalog& catalog, objects::ObjectStore& objects,
                StudyKeys& keys, config::DuplicatePolicy duplicates, Env& env);

  Result<StoreResult> Store(const IngestContext& ctx, const InstanceAttributes& attrs,
                            std::span<const std::byte> part10) override;
  Result<bool> IsStored(const std::string& sop_instance_uid) override;

  IngestStats stats() const;

 private:
  // Removes the pending rows of a store whose object failed (and audits it).
  void UndoPendingRows(const IngestContext& ctx, const index::Token& study_token,
                       const std::string& object_id, const Status& why);

  vault::KeyVault& vault_;
  index::Catalog& catalog_;
  objects::ObjectStore& objects_;
  StudyKeys& keys_;
  const config::DuplicatePolicy duplicates_;
  [[maybe_unused]] Env& env_;  // injected (STYLE.md); the store path reads no clock yet

#define PHI_INGEST_STAT_ATOMIC(n) std::atomic<uint64_t> n##_{0};
  PHI_INGEST_STATS(PHI_INGEST_STAT_ATOMIC)
#undef PHI_INGEST_STAT_ATOMIC
};

}  // namespace phi::services
