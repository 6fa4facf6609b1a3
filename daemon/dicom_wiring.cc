#include "daemon/dicom_wiring.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>

#include "libphi/index/catalog.h"
#include "libphi/services/ingest_service.h"
#include "libphi/services/phi_fields.h"

namespace phi::daemon {
namespace {

using json = nlohmann::json;

constexpr size_t kDefaultLimit = 1000;
constexpr size_t kMaxLimit = 10000;

Result<json> ListConflicts(services::StorageStack& stack, const json& args) {
  index::StudyFilter f;
  f.only_conflicts = true;
  f.limit = kDefaultLimit;
  if (auto it = args.find("limit"); it != args.end()) {
    if (!it->is_number_unsigned() || it->get<uint64_t>() == 0) {
      return Status::InvalidArgument("--limit must be a positive number");
    }
    f.limit = std::min<size_t>(it->get<uint64_t>(), kMaxLimit);
  }
  if (auto it = args.find("after"); it != args.end()) {
    if (!it->is_number_unsigned()) return Status::InvalidArgument("--after must be a study_pk");
    f.after_study_pk = it->get<int64_t>();
  }
  PHI_ASSIGN_OR_RETURN(index::StudyCandidates c, stack.catalog().QueryStudies(f));
  json studies = json::array();
  for (const index::StudyRow& row : c.rows) {
    // Only the StudyInstanceUID leaves the sealed set (UIDs are not PHI by
    // project rule); names, IDs and dates stay sealed.
    PHI_ASSIGN_OR_RETURN(
        std::string plain,
        stack.keys().Open(row.key_id, services::PhiAad("study", row.study_uid_token), row.phi));
    auto phi = services::PhiFields::Decode(plain);
    std::fill(plain.begin(), plain.end(), '\0');
    if (!phi.ok()) return phi.status().WithContext("study " + std::to_string(row.study_pk));
    studies.push_back({{"study_pk", row.study_pk},
                       {"study_instance_uid", phi->Get("StudyInstanceUID")},
                       {"num_series", row.num_series},
                       {"num_instances", row.num_instances},
                       {"modalities", row.modalities},
                       {"created_at", row.created_at},
                       {"updated_at", row.updated_at}});
  }
  json out{{"studies", studies}, {"truncated", c.truncated}};
  if (c.truncated && !c.rows.empty()) out["next_after"] = c.rows.back().study_pk;
  return out;
}

}  // namespace

void RegisterIngestCommands(admin::AdminServer& admin, services::StorageStack& stack) {
  admin.Register("conflicts", admin::kReadOnly,
                 [&stack](const json& args, const admin::PeerCred&) -> Result<json> {
                   return ListConflicts(stack, args);
                 });
}

}  // namespace phi::daemon
