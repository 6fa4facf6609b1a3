#include "libphi/services/key_rotation.h"

#include <vector>

#include "libphi/services/study_keys.h"
#include "libphi/util/log.h"

namespace phi::services {

Result<RotationReport> RotateKek(vault::KeyVault& vault, index::Catalog& catalog,
                                 const std::string& actor, size_t batch_size,
                                 const std::function<void(size_t, size_t)>& progress) {
  if (batch_size == 0) return Status::InvalidArgument("batch size must be positive");
  const std::string active = vault.active_kek_id();
  RotationReport report;

  // The derivation secret first: it keys every blind-index token and audit MAC.
  PHI_ASSIGN_OR_RETURN(index::Blob ds_blob, catalog.GetMeta(kDerivationSecretMeta));
  PHI_ASSIGN_OR_RETURN(vault::WrappedKey ds, DecodeWrappedKey(ds_blob));
  if (ds.kek_id != active) {
    PHI_ASSIGN_OR_RETURN(vault::WrappedKey nds, vault.RewrapDerivationSecret(ds));
    std::string enc = EncodeWrappedKey(nds);
    PHI_RETURN_IF_ERROR(catalog.Write([&](index::WriteTxn& txn) -> Status {
      PHI_RETURN_IF_ERROR(txn.PutMeta(kDerivationSecretMeta, enc));
      audit::AuditEvent ev;
      ev.actor = actor;
      ev.action = "rotate_kek";
      ev.object = "key:" + nds.key_id + " kek:" + active;
      ev.outcome = "ok";
      return txn.AppendAudit(ev).status();
    }));
    report.derivation_secret_rewrapped = true;
  }

  std::string after;
  for (;;) {
    PHI_ASSIGN_OR_RETURN(std::vector<index::StudyKeyRow> rows,
                         catalog.ListStudyKeys(after, batch_size));
    if (rows.empty()) break;
    after = rows.back().key_id;
    report.examined += rows.size();
    std::vector<vault::WrappedKey> rewrapped;
    for (const index::StudyKeyRow& row : rows) {
      if (row.kek_id == active) continue;
      PHI_ASSIGN_OR_RETURN(vault::WrappedKey nk,
                           vault.Rewrap({row.key_id, row.kek_id, row.wrapped}));
      rewrapped.push_back(std::move(nk));
    }
    if (!rewrapped.empty()) {
      PHI_RETURN_IF_ERROR(catalog.Write([&](index::WriteTxn& txn) -> Status {
        for (const vault::WrappedKey& k : rewrapped) {
          Status s = txn.UpdateStudyKeyWrap(k.key_id, k.kek_id, k.wrapped);
          // A study erased meanwhile has no key to rewrap any more.
          if (!s.ok() && s.code() != Code::kNotFound) return s;
        }
        audit::AuditEvent ev;
        ev.actor = actor;
        ev.action = "rotate_kek";
        ev.object = "keys:" + std::to_string(rewrapped.size()) + " kek:" + active;
        ev.outcome = "ok";
        return txn.AppendAudit(ev).status();
      }));
      report.rewrapped += rewrapped.size();
      ++report.batches;
    }
    if (progress) progress(report.examined, report.rewrapped);
  }
  PHI_LOG(
      kNotice, "KEK rotation done",
      {{"kek", log::Safe(active)}, {"examined", report.examined}, {"rewrapped", report.rewrapped}});
  return report;
}

}  // namespace phi::services
