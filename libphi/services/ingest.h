// phi::services::Ingest: the one way any edge (DICOM C-STORE, DICOMweb
// STOW-RS) stores an instance. The edge parses its protocol and the dataset
// and hands over the Part 10 bytes plus the attributes the index needs; the
// service encrypts, writes durably, indexes, audits, and returns only once
// everything is committed (DESIGN.md, Durability).
// Thread-safety: implementations are thread-safe; call from any worker.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "libphi/util/status.h"

namespace phi::services {

// Who is storing, for policy and audit (never PHI).
struct IngestContext {
  std::string actor;       // "dicom:AE_TITLE", "web:CN=...,O=...", ...
  std::string peer;        // "10.1.2.3:51234"
  std::string calling_ae;  // DICOM only
};

// Attributes read by the edge from the dataset. Strings are as in the dataset
// (already converted to UTF-8 by the edge). PHI: handle accordingly.
struct InstanceAttributes {
  std::string sop_class_uid;
  std::string sop_instance_uid;
  std::string transfer_syntax_uid;
  std::string study_instance_uid;
  std::string series_instance_uid;
  // patient
  std::string patient_name;
  std::string patient_id;
  std::string issuer_of_patient_id;
  std::string patient_birth_date;
  std::string patient_sex;
  // study
  std::string accession_number;
  std::string referring_physician_name;
  std::string study_description;
  std::string study_date;  // YYYYMMDD
  std::string study_time;
  std::string study_id;
  // series / instance
  std::string modality;
  std::string series_description;
  std::string body_part_examined;
  int32_t series_number = 0;
  int32_t instance_number = 0;
  std::string specific_character_set;
  bool burned_in_annotation = false;
};

enum class StoreOutcome : uint8_t {
  kStored,          // new instance, durable
  kDuplicateKept,   // same SOP Instance UID already stored; policy keep_first
  kReplaced,        // same SOP Instance UID replaced; policy replace
  kStoredConflict,  // stored, but the study's patient differs: flagged for review
};

struct StoreResult {
  StoreOutcome outcome = StoreOutcome::kStored;
  std::string object_id;  // internal id, loggable
};

class Ingest {
 public:
  virtual ~Ingest() = default;
  // Stores one DICOM Part 10 file (preamble + meta header + dataset, exactly as
  // received). Returns only after the object and its catalog rows are durable.
  // InvalidArgument for unusable attributes (e.g. missing SOP Instance UID),
  // ResourceExhausted when the disk is full, Unavailable after a sticky failure.
  virtual Result<StoreResult> Store(const IngestContext& ctx, const InstanceAttributes& attrs,
                                    std::span<const std::byte> part10) = 0;
  // True when that SOP Instance UID is durably stored (Storage Commitment).
  virtual Result<bool> IsStored(const std::string& sop_instance_uid) = 0;
};

}  // namespace phi::services
