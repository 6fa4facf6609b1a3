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
  r.missing_objects = static_cast<size_t>(
      std::count_if(referenced.begin(), referenced.end(),
                    [&](const std::string& id) { return disk.count(id) == 0; }));
  PHI_LOG(kNotice, "storage recovery done",
          {{"tmp_removed", r.tmp_removed},
           {"orphans_removed", r.orphans_removed},
           {"missing_objects", r.missing_objects}});
  if (r.missing_objects > 0) {
    PHI_LOG(kError, "catalog rows name objects that are missing: run phigatectl verify",
            {{"count", r.missing_objects}});
  }
  return r;
}

}  // namespace phi::services
