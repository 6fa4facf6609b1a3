// phi::services::WorklistService: the Modality Worklist entries created by
// HL7 orders (ORM^O01 / OMI^O23), for the DICOM MWL C-FIND SCP and the admin
// tools. The catalog narrows on non-PHI columns (modality, scheduled AE) and
// blind tokens (PatientID, AccessionNumber); this service decrypts each
// candidate with its patient key and matches name / date after decryption.
// Thread-safety: thread-safe.
#pragma once

#include <string>
#include <vector>

#include "libphi/index/catalog.h"
#include "libphi/services/phi_fields.h"
#include "libphi/services/study_keys.h"
#include "libphi/vault/key_vault.h"

namespace phi::services {

struct WorklistQuery {
  std::string modality;          // exact; "" = any
  std::string scheduled_ae;      // exact; "" = any
  std::string patient_id;        // exact (token); "" = any
  std::string accession_number;  // exact (token); "" = any
  std::string patient_name;      // wildcards; "" = any
  std::string scheduled_date;    // DA range on ScheduledProcedureStepStartDate; "" = any
  size_t limit = 100;            // 1..10000
};

// Sealed attribute names of an entry (DICOM keywords).
struct WorklistItem {
  index::WorklistRow row;
  // AccessionNumber, PatientID, IssuerOfPatientID, PatientName, PatientBirthDate,
  // PatientSex, RequestedProcedureID, RequestedProcedureDescription,
  // ScheduledProcedureStepID, ScheduledProcedureStepStartDate,
  // ScheduledProcedureStepStartTime, Modality, ScheduledStationAETitle,
  // StudyInstanceUID, ReferringPhysicianName, PlacerOrderNumber, FillerOrderNumber.
  PhiFields phi;
};

class WorklistService {
 public:
  WorklistService(vault::KeyVault& vault, index::Catalog& catalog, StudyKeys& keys)
      : vault_(vault), catalog_(catalog), keys_(keys) {}

  // InvalidArgument for a bad limit or date range.
  Result<std::vector<WorklistItem>> Find(const WorklistQuery& q);

 private:
  vault::KeyVault& vault_;
  index::Catalog& catalog_;
  StudyKeys& keys_;
};

}  // namespace phi::services
