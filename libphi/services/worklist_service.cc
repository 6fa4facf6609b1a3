#include "libphi/services/worklist_service.h"

#include "libphi/services/ingest_service.h"
#include "libphi/services/matching.h"

namespace phi::services {

Result<std::vector<WorklistItem>> WorklistService::Find(const WorklistQuery& q) {
  if (q.limit == 0 || q.limit > 10000)
    return Status::InvalidArgument("worklist: limit out of range");
  if (!q.scheduled_date.empty() && !IsValidDateRange(q.scheduled_date)) {
    return Status::InvalidArgument("worklist: malformed date range");
  }
  auto tok = [&](std::string_view attr, std::string_view v) {
    crypto::Digest d = vault_.IndexToken(attr, v);
    return index::Token(reinterpret_cast<const char*>(d.data()), d.size());
  };
  index::WorklistFilter f;
  if (!q.modality.empty()) f.modality = q.modality;
  if (!q.scheduled_ae.empty()) f.scheduled_ae = q.scheduled_ae;
  if (!q.patient_id.empty()) f.patient_id_token = tok("PatientID", q.patient_id);
  if (!q.accession_number.empty()) f.accession_token = tok("AccessionNumber", q.accession_number);
  f.limit = 1000;
  std::vector<WorklistItem> out;
  for (;;) {
    PHI_ASSIGN_OR_RETURN(std::vector<index::WorklistRow> rows, catalog_.QueryWorklist(f));
    for (index::WorklistRow& r : rows) {
      f.after_order_pk = r.order_pk;
      PHI_ASSIGN_OR_RETURN(std::string pt,
                           keys_.Open(r.key_id, PhiAad("worklist", r.accession_token), r.phi));
      PHI_ASSIGN_OR_RETURN(PhiFields phi, PhiFields::Decode(pt));
      if (!q.patient_name.empty() &&
          !WildcardMatch(q.patient_name, phi.Get("PatientName"), /*fold_case=*/true)) {
        continue;
      }
      if (!q.scheduled_date.empty() &&
          !DateRangeMatch(q.scheduled_date, phi.Get("ScheduledProcedureStepStartDate"))) {
        continue;
      }
      out.push_back({std::move(r), std::move(phi)});
      if (out.size() >= q.limit) return out;
    }
    if (rows.size() < f.limit) break;
  }
  return out;
}

}  // namespace phi::services
