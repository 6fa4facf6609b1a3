#include "daemon/dicom_wiring.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>

#include "libphi/index/catalog.h"
#include "libphi/services/ingest_service.h"
#include "libphi/services/phi_fields.h"
#include "libphi/util/log.h"

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

// Audit fields are bounded (audit::kMaxShortField); peer-controlled text is cut.
std::string Cut(std::string s, size_t max = 256) {
  if (s.size() > max) s.resize(max);
  return s;
}

}  // namespace

dicom::DicomServerOptions DicomOptions(services::StorageStack& stack) {
  dicom::DicomServerOptions opts;
  opts.audit = [&stack](const dicom::AssociationEvent& e) {
    using Kind = dicom::AssociationEvent::Kind;
    audit::AuditEvent ev;
    switch (e.kind) {
      case Kind::kRejected:
        ev.action = "dicom_associate";
        ev.outcome = "denied";
        break;
      case Kind::kTlsFailed:
        ev.action = "login_failure";
        ev.outcome = "denied";
        break;
      case Kind::kAborted:
        ev.action = "dicom_abort";
        ev.outcome = "error:aborted";
        break;
      default:
        return;  // accepted/released: logged; stores: audited by ingest
    }
    ev.actor = Cut("dicom:" + (e.calling_ae.empty() ? std::string("?") : e.calling_ae) +
                   (e.client_subject.empty() ? "" : " " + e.client_subject));
    ev.object =
        Cut("listener:" + e.listener + (e.called_ae.empty() ? "" : " called:" + e.called_ae));
    ev.peer = Cut(e.peer);
    ev.detail = Cut(e.reason, 1024);
    Status s = stack.catalog().Write(
        [&](index::WriteTxn& txn) -> Status { return txn.AppendAudit(ev).status(); });
    if (!s.ok()) PHI_LOG(kError, "dicom audit append failed", {{"status", s}});
  };
  return opts;
}

void RegisterIngestCommands(admin::AdminServer& admin, services::StorageStack& stack) {
  admin.Register("conflicts", admin::kReadOnly,
                 [&stack](const json& args, const admin::PeerCred&) -> Result<json> {
                   return ListConflicts(stack, args);
                 });
}

}  // namespace phi::daemon
