// phi::services::Hl7Service: applies HL7 v2 events (already parsed and typed
// by the hl7/ edge) to the store, durably: patient demographics updates reach
// the sealed PHI of every stored study of the patient, merges move studies to
// the surviving patient ID, orders become worklist entries, reports are kept
// for their accession. Every accepted message is stored sealed (its text and
// what it changed) in the same catalog transaction as its effects and its
// audit record, so the caller may acknowledge (AA) as soon as Apply returns.
//
// Keys (libphi/index/README.md, "HL7"): HL7 data is sealed under the
// patient's *patient key* (a study_keys row named by patient_keys, looked up
// by the PatientID blind token). Study PHI stays under each study's key.
// Erasing a study deletes the HL7 rows of its accession; erasing a patient's
// last study deletes all of the patient's HL7 rows and destroys the patient key.
//
// Thread-safety: thread-safe; concurrent Apply() calls share group commits.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "libphi/index/catalog.h"
#include "libphi/services/phi_fields.h"
#include "libphi/services/study_keys.h"
#include "libphi/util/env.h"
#include "libphi/vault/key_vault.h"

namespace phi::services {

// Patient identity and demographics (PID). Empty = not sent (left unchanged);
// the HL7 null `""` arrives here as kHl7Null and clears the attribute.
struct PatientDemographics {
  std::string patient_id;  // PID-3.1 (required)
  std::string issuer;      // PID-3.4
  std::string name;        // DICOM PN: FAMILY^GIVEN^MIDDLE^PREFIX^SUFFIX
  std::string birth_date;  // YYYYMMDD
  std::string sex;         // M, F, O, U
};
inline constexpr const char* kHl7Null = "\"\"";

enum class OrderControl { kNew, kCancel, kChange };

// One scheduled procedure step (ORM^O01 ORC+OBR, OMI^O23 ORC+TQ1+OBR+IPC).
struct OrderInfo {
  OrderControl control = OrderControl::kNew;
  std::string accession_number;  // required
  std::string requested_procedure_id;
  std::string requested_procedure_description;
  std::string scheduled_step_id;
  std::string modality;            // not PHI; <= 16 bytes
  std::string scheduled_ae;        // not PHI; <= 16 bytes
  std::string scheduled_datetime;  // YYYYMMDD[HHMM[SS]]
  std::string study_instance_uid;
  std::string referring_physician;  // PN
  std::string placer_order_number;
  std::string filler_order_number;
};

struct ReportInfo {
  std::string accession_number;  // required
  std::string text;              // OBX-5 lines joined with "\n"
  std::string status;            // OBR-25 / OBX-11 (F, P, C, ...)
  std::string observation_datetime;
};

struct Hl7Event {
  enum class Kind { kPatientUpdate, kPatientMerge, kOrder, kReport };
  Kind kind = Kind::kPatientUpdate;
  std::string message_type;  // "ADT^A08" (not PHI)
  std::string raw;           // the message text as received (stored sealed only)
  PatientDemographics patient;
  std::string prior_patient_id;  // kPatientMerge: MRG-1.1
  std::vector<OrderInfo> orders;
  ReportInfo report;
};

struct Hl7Context {
  std::string actor;  // "hl7:CN=..." or "hl7:<sending app>"
  std::string peer;
};

// What one message changed (no PHI: counts only).
struct Hl7Outcome {
  int64_t message_pk = 0;
  int64_t studies_updated = 0;
  int64_t studies_moved = 0;
  int64_t orders_created = 0;
  int64_t orders_changed = 0;
  int64_t orders_cancelled = 0;
  int64_t reports_stored = 0;
  std::string Summary() const;  // "studies_updated=2 ..." (stored sealed and in the audit)
};

struct StoredReport {
  index::ReportRow row;
  PhiFields phi;  // AccessionNumber, ReportText, ResultStatus, ObservationDateTime, PatientID
};

#define PHI_HL7_SERVICE_STATS(X) \
  X(applied)                     \
  X(refused)                     \
  X(failed)

struct Hl7ServiceStats {
#define PHI_HL7_STAT_FIELD(n) uint64_t n = 0;
  PHI_HL7_SERVICE_STATS(PHI_HL7_STAT_FIELD)
#undef PHI_HL7_STAT_FIELD
};

class Hl7Service {
 public:
  Hl7Service(vault::KeyVault& vault, index::Catalog& catalog, StudyKeys& keys, Env& env)
      : vault_(vault), catalog_(catalog), keys_(keys), env_(env) {}

  // Applies the event and stores it, in one durable transaction.
  // InvalidArgument when required data is missing or malformed (nothing stored);
  // other codes for storage failures (nothing stored either).
  Result<Hl7Outcome> Apply(const Hl7Context& ctx, const Hl7Event& ev);

  // The same without blocking: validates and computes the blind tokens on the
  // calling thread, queues the transaction for the catalog's next group
  // commit and returns. `done` gets what Apply() would have returned, once
  // the commit is durable (or failed): on the catalog's writer thread (or
  // the caller's, when refused at once), so it must be quick and must not
  // block; it is called exactly once. Events queued one after the other are
  // applied in that order. The service must outlive the call of `done`.
  using ApplyDone = std::function<void(Result<Hl7Outcome>)>;
  void ApplyAsync(Hl7Context ctx, Hl7Event ev, ApplyDone done);

  // Reports for the study with that StudyInstanceUID (by its accession number),
  // and for an accession number (pending or attached).
  Result<std::vector<StoredReport>> ReportsOfStudy(const std::string& study_instance_uid);
  Result<std::vector<StoredReport>> ReportsOfAccession(const std::string& accession_number);
  // The stored messages of a patient, decrypted (audit / tests): fields
  // "Message", "Effects", "MessageType".
  Result<std::vector<PhiFields>> MessagesOfPatient(const std::string& patient_id, size_t limit);

  Hl7ServiceStats stats() const;

 private:
  index::Token Tok(std::string_view attr, std::string_view value) const;
  Result<std::vector<StoredReport>> OpenReports(const index::Token& acc_token);

  vault::KeyVault& vault_;
  index::Catalog& catalog_;
  StudyKeys& keys_;
  [[maybe_unused]] Env& env_;  // injected (STYLE.md); not read yet
#define PHI_HL7_STAT_ATOMIC(n) std::atomic<uint64_t> n##_{0};
  PHI_HL7_SERVICE_STATS(PHI_HL7_STAT_ATOMIC)
#undef PHI_HL7_STAT_ATOMIC
};

}  // namespace phi::services
