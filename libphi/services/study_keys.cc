#include "libphi/services/study_keys.h"

#include "libphi/services/phi_fields.h"

namespace phi::services {

std::string EncodeWrappedKey(const vault::WrappedKey& wk) {
  PhiFields f;
  f.Set("key_id", wk.key_id);
  f.Set("kek_id", wk.kek_id);
  f.Set("wrapped", wk.wrapped);
  return f.Encode();
}

Result<vault::WrappedKey> DecodeWrappedKey(std::string_view blob) {
  PHI_ASSIGN_OR_RETURN(PhiFields f, PhiFields::Decode(blob));
  if (!f.Has("key_id") || !f.Has("kek_id") || !f.Has("wrapped")) {
    return Status::Corruption("wrapped key record: missing field");
  }
  return vault::WrappedKey{f.Get("key_id"), f.Get("kek_id"), f.Get("wrapped")};
}

Status BootstrapDerivationSecret(vault::KeyVault& vault, index::Catalog& catalog) {
  Result<index::Blob> stored = catalog.GetMeta(kDerivationSecretMeta);
  if (stored.ok()) {
    PHI_ASSIGN_OR_RETURN(vault::WrappedKey wk, DecodeWrappedKey(*stored));
    return vault.LoadDerivationSecret(wk).WithContext("derivation secret");
  }
  if (stored.status().code() != Code::kNotFound) return stored.status();
  PHI_ASSIGN_OR_RETURN(vault::WrappedKey wk, vault.CreateDerivationSecret());
  std::string blob = EncodeWrappedKey(wk);
  return catalog.Write([&](index::WriteTxn& txn) -> Status {
    // Another process cannot race us (one daemon per storage root), but be
    // strict: never overwrite an existing secret.
    Result<index::Blob> existing = txn.GetMeta(kDerivationSecretMeta);
    if (existing.ok()) return Status::AlreadyExists("derivation secret appeared concurrently");
    PHI_RETURN_IF_ERROR(txn.PutMeta(kDerivationSecretMeta, blob));
    audit::AuditEvent ev;
    ev.actor = "system";
    ev.action = "create_derivation_secret";
    ev.object = "key:" + wk.key_id;
    ev.outcome = "ok";
    return txn.AppendAudit(ev).status();
  });
}

Result<StudyKeys::Resolved> StudyKeys::Resolve(const index::Token& study_token) {
  std::lock_guard lock(mu_);
  if (auto it = by_token_.find(study_token); it != by_token_.end()) return it->second;
  if (by_token_.size() >= kMaxEntries) {
    // Bounded memory: drop persisted entries (they are found again in the catalog).
    std::erase_if(by_token_, [](const auto& kv) { return !kv.second.unpersisted; });
  }
  Result<index::StudyRow> study = catalog_.FindStudyByUidToken(study_token);
  if (study.ok()) {
    PHI_RETURN_IF_ERROR(Load(study->key_id));
    Resolved r{study->key_id, std::nullopt};
    by_token_[study_token] = r;
    return r;
  }
  if (study.status().code() != Code::kNotFound) return study.status();
  PHI_ASSIGN_OR_RETURN(vault::WrappedKey wk, vault_.CreateStudyKey());
  Resolved r{wk.key_id, wk};
  by_token_[study_token] = r;
  return r;
}

Status StudyKeys::EnsurePersisted(index::WriteTxn& txn, const Resolved& r) {
  if (!r.unpersisted) return Status::Ok();
  Result<index::StudyKeyRow> row = txn.GetStudyKey(r.key_id);
  if (row.ok()) return Status::Ok();
  if (row.status().code() != Code::kNotFound) return row.status();
  index::StudyKeyRow put;
  put.key_id = r.unpersisted->key_id;
  put.kek_id = r.unpersisted->kek_id;
  put.wrapped = r.unpersisted->wrapped;
  return txn.PutStudyKey(put);
}

void StudyKeys::MarkPersisted(const index::Token& study_token) {
  {
    std::lock_guard lock(mu_);
    if (auto it = by_token_.find(study_token); it != by_token_.end()) {
      it->second.unpersisted.reset();
    }
  }
  cache_.Invalidate(study_token);
}

Status StudyKeys::Load(const std::string& key_id) {
  PHI_ASSIGN_OR_RETURN(index::StudyKeyRow row, catalog_.GetStudyKey(key_id));
  return vault_.LoadStudyKey({row.key_id, row.kek_id, row.wrapped});
}

Result<std::unique_ptr<crypto::AesGcm>> StudyKeys::Cipher(const std::string& key_id) {
  Result<std::unique_ptr<crypto::AesGcm>> c = vault_.NewCipher(key_id);
  if (c.ok() || c.status().code() != Code::kNotFound) return c;
  PHI_RETURN_IF_ERROR(Load(key_id));  // evicted from the vault's LRU: reload
  return vault_.NewCipher(key_id);
}

Result<std::string> StudyKeys::Seal(const std::string& key_id, std::string_view aad,
                                    std::string_view plaintext) {
  Result<std::string> box = vault_.SealField(key_id, aad, plaintext);
  if (box.ok() || box.status().code() != Code::kNotFound) return box;
  PHI_RETURN_IF_ERROR(Load(key_id));
  return vault_.SealField(key_id, aad, plaintext);
}

Result<std::string> StudyKeys::Open(const std::string& key_id, std::string_view aad,
                                    std::string_view box) {
  Result<std::string> pt = vault_.OpenField(key_id, aad, box);
  if (pt.ok() || pt.status().code() != Code::kNotFound) return pt;
  PHI_RETURN_IF_ERROR(Load(key_id));
  return vault_.OpenField(key_id, aad, box);
}

void StudyKeys::Forget(const index::Token& study_token) {
  cache_.Erase(study_token);
  std::string key_id;
  {
    std::lock_guard lock(mu_);
    if (auto it = by_token_.find(study_token); it != by_token_.end()) {
      key_id = it->second.key_id;
      by_token_.erase(it);
    }
  }
  if (!key_id.empty()) vault_.ForgetStudyKey(key_id);
}

}  // namespace phi::services
