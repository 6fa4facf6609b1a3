#include "libphi/services/storage_stack.h"

namespace phi::services {
namespace {

// Object files created ahead by the object store (FsObjectStore "Spare
// files"): one per association of a modality pushing over several, a few more
// for bursts.
constexpr uint32_t kSpareObjectFiles = 8;

}  // namespace

StorageStack::~StorageStack() = default;

audit::MacFn StorageStack::AuditMac() const {
  vault::KeyVault* v = vault_.get();
  return [v](crypto::ByteSpan d) { return v->AuditMac(d); };
}

Result<std::unique_ptr<StorageStack>> StorageStack::Open(const config::KeysConfig& keys,
                                                         const config::StorageConfig& storage,
                                                         Env& env) {
  std::unique_ptr<StorageStack> s(new StorageStack());
  vault::VaultOptions vopts;
  vopts.kek_off_storage_filesystem = storage.require_encrypted_volume;
  PHI_ASSIGN_OR_RETURN(s->vault_, vault::KeyVault::Open(keys, storage.root, env, vopts));
  index::SqliteCatalog::Options copts;
  copts.audit_mac = s->AuditMac();
  PHI_ASSIGN_OR_RETURN(s->catalog_, index::SqliteCatalog::Open(storage.root, env, copts));
  objects::FsObjectStoreOptions oopts;
  oopts.spare_files = kSpareObjectFiles;
  PHI_ASSIGN_OR_RETURN(s->objects_, objects::FsObjectStore::Open(storage.root, env, oopts));
  PHI_RETURN_IF_ERROR(BootstrapDerivationSecret(*s->vault_, *s->catalog_));
  s->gate_ = std::make_unique<RemovalGate>(*s->objects_);
  s->keys_ = std::make_unique<StudyKeys>(*s->vault_, *s->catalog_);
  s->ingest_ = std::make_unique<IngestService>(*s->vault_, *s->catalog_, *s->gate_, *s->keys_,
                                               storage.duplicate_policy, env);
  s->erasure_ =
      std::make_unique<ErasureService>(*s->vault_, *s->catalog_, *s->gate_, *s->keys_, env);
  s->query_ = std::make_unique<QueryService>(*s->vault_, *s->catalog_, *s->objects_, *s->keys_);
  return s;
}

}  // namespace phi::services
