#include "libphi/services/recovery.h"

#include <algorithm>
#include <unordered_set>

#include "libphi/util/log.h"

namespace phi::services {

Result<RecoveryReport> RecoverStorage(index::Catalog& catalog, objects::ObjectStore& objects) {
  PHI_RETURN_IF_ERROR(catalog.health());
  PHI_RETURN_IF_ERROR(objects.BackgroundError());
  RecoveryReport r;
  PHI_ASSIGN_OR_RETURN(r.tmp_removed, objects.CleanTmp());
  PHI_ASSIGN_OR_RETURN(std::vector<std::string> referenced, catalog.ListAllObjectIds());
  PHI_ASSIGN_OR_RETURN(std::vector<std::string> on_disk, objects.ListObjectIds());
  std::unordered_set<std::string> ref(referenced.begin(), referenced.end());
  std::unordered_set<std::string> disk(on_disk.begin(), on_disk.end());
  for (const std::string& id : on_disk) {
    if (ref.count(id) != 0) continue;
    Status rm = objects.Remove(id);
    if (!rm.ok() && rm.code() != Code::kNotFound) return rm.WithContext("remove orphan object");
    ++r.orphans_removed;
  }
  // Pending rows: committed in parallel with their object. With the object
  // on disk the store completed (it may have been acknowledged): clear the
  // flag. Without it the store never completed and was never acknowledged:
  // remove the rows, and say so in the audit trail.
  PHI_ASSIGN_OR_RETURN(std::vector<std::string> pending, catalog.ListPendingObjectIds());
  std::vector<std::string> complete, incomplete;
  for (std::string& id : pending) (disk.count(id) != 0 ? complete : incomplete).push_back(id);
  std::unordered_set<std::string> removed_rows;
  if (!pending.empty()) {
    PHI_RETURN_IF_ERROR(catalog.Write([&](index::WriteTxn& txn) -> Status {
      removed_rows.clear();
      PHI_RETURN_IF_ERROR(txn.ClearPending(complete));
      for (const std::string& id : incomplete) {
        PHI_ASSIGN_OR_RETURN(bool removed, txn.RemovePendingInstance(id));
        if (!removed) continue;
        removed_rows.insert(id);
        audit::AuditEvent ev;
        ev.actor = "system:recovery";
        ev.action = "store-undone";
        ev.object = "object:" + id;
        ev.outcome = "error:object-never-durable";
        PHI_RETURN_IF_ERROR(txn.AppendAudit(ev).status());
      }
      return Status::Ok();
    }));
  }
  r.unacknowledged_rows_removed = removed_rows.size();
  r.missing_objects = static_cast<size_t>(std::count_if(
      referenced.begin(), referenced.end(),
      [&](const std::string& id) { return disk.count(id) == 0 && removed_rows.count(id) == 0; }));
  PHI_LOG(kNotice, "storage recovery done",
          {{"tmp_removed", r.tmp_removed},
           {"orphans_removed", r.orphans_removed},
           {"unacknowledged_rows_removed", r.unacknowledged_rows_removed},
           {"missing_objects", r.missing_objects}});
  if (r.missing_objects > 0) {
    PHI_LOG(kError, "catalog rows name objects that are missing: run phigatectl verify",
            {{"count", r.missing_objects}});
  }
  return r;
}

}  // namespace phi::services
