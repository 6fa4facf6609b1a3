// phi::index::Catalog: the catalog of the storage root - wrapped study keys,
// the index (studies / series / instances), metadata and the audit trail, in
// one database so one transaction covers an object's key, index rows and
// audit record (DESIGN.md "Storage root", "Contracts").
//
// The catalog knows no crypto keys and no DICOM networking:
//  - PHI columns (`phi`) are opaque BLOBs sealed by the vault with the study key;
//  - tokens are 32-byte blind-index BLOBs (HMAC) computed by the vault;
//  - the audit MAC is an injected function (Options::audit_mac).
// Query functions return *candidates* narrowed on non-PHI columns and tokens;
// wildcard and exact date matching happen in the caller after decryption.
// See libphi/index/README.md for the schema and its rationale.
//
// Catalog is the backend-neutral interface (SQLite now, PostgreSQL later,
// DESIGN "Scale-out"). SqliteCatalog is in sqlite_catalog.h.
//
// Thread-safety: every Catalog method is thread-safe. A WriteTxn is only
// valid inside the Write() closure it was passed to, on the writer thread.
// Inside a closure, read through the WriteTxn: the Catalog's read methods use
// the reader pool and do not see the closure's uncommitted writes.
#pragma once

#include <cstdint>
#include <functional>
#include <future>
#include <optional>
#include <string>
#include <vector>

#include "libphi/audit/audit_log.h"
#include "libphi/util/status.h"

namespace phi::index {

// Opaque bytes (sealed PHI, wrapped keys, tokens). std::string for ease of
// interop with crypto::SealBox.
using Blob = std::string;
// A blind-index token: exactly kTokenBytes bytes (InvalidArgument otherwise).
using Token = std::string;
inline constexpr size_t kTokenBytes = 32;
// Upper bound on any PHI blob / wrapped key / meta value accepted (bytes).
inline constexpr size_t kMaxBlobBytes = 1 << 20;
// Upper bound on short text columns (key ids, UIDs, modality, object ids).
inline constexpr size_t kMaxTextBytes = 256;
// instances.flags bit: the row was committed while its object was still being
// made durable (IngestService commits the catalog and publishes the object in
// parallel). Cleared lazily once both are durable (ClearPendingLater); a row
// still pending at start-up whose object is missing was never acknowledged and
// is removed by recovery.
inline constexpr int64_t kInstancePending = 1;

struct StudyKeyRow {
  std::string key_id;
  std::string kek_id;
  Blob wrapped;
  int64_t created_at = 0;  // unix seconds; set by the catalog on insert
};

// A new study (UpsertStudy). The study's PHI is inside `phi`.
struct NewStudy {
  std::string key_id;     // must exist in study_keys
  Token study_uid_token;  // blind index of StudyInstanceUID
  std::optional<Token> patient_id_token;
  std::optional<Token> accession_token;
  std::optional<int32_t> study_year;  // year of StudyDate only (not PHI under Safe Harbor)
  Blob phi;                           // sealed study/patient attributes
  std::string source_ae;              // calling AE title of the first store ("" = none)
};

struct StudyRow {
  int64_t study_pk = 0;
  std::string key_id;
  Token study_uid_token;
  std::optional<Token> patient_id_token;
  std::optional<Token> accession_token;
  std::optional<int32_t> study_year;
  std::string modalities;  // "CT,MR": distinct series modalities, maintained by triggers
  int64_t num_series = 0;
  int64_t num_instances = 0;
  int64_t total_bytes = 0;
  int64_t created_at = 0;  // unix seconds
  int64_t updated_at = 0;
  int64_t last_access_at = 0;
  bool legal_hold = false;
  bool conflict = false;
  Blob phi;
};

// Replaces a study's sealed PHI and tokens (HL7 ADT update, conflict flag).
struct StudyPhiUpdate {
  std::optional<Token> patient_id_token;
  std::optional<Token> accession_token;
  std::optional<int32_t> study_year;
  Blob phi;
  bool conflict = false;
};

struct NewSeries {
  int64_t study_pk = 0;
  Token series_uid_token;
  std::string modality;  // not PHI
  std::optional<int32_t> series_number;
  Blob phi;  // sealed SeriesInstanceUID, SeriesDescription, ...
};

struct SeriesRow {
  int64_t series_pk = 0;
  int64_t study_pk = 0;
  Token series_uid_token;
  std::string modality;
  std::optional<int32_t> series_number;
  int64_t num_instances = 0;
  Blob phi;
};

struct NewInstance {
  int64_t series_pk = 0;
  Token sop_uid_token;
  std::string sop_class_uid;        // not PHI
  std::string transfer_syntax_uid;  // not PHI
  std::optional<int32_t> instance_number;
  std::string object_id;  // objects/ file id (random, never a UID)
  int64_t size_bytes = 0;
  Blob phi;              // sealed SOPInstanceUID, ...
  bool pending = false;  // insert with kInstancePending (object not durable yet)
};

struct InstanceRow {
  int64_t instance_pk = 0;
  int64_t series_pk = 0;
  int64_t study_pk = 0;
  Token sop_uid_token;
  std::string sop_class_uid;
  std::string transfer_syntax_uid;
  std::optional<int32_t> instance_number;
  std::string object_id;
  int64_t size_bytes = 0;
  int64_t stored_at = 0;  // unix seconds
  Blob phi;
};

// What DeleteStudy removed: the erasure certificate's numbers, and the object
// files the caller unlinks after commit + Checkpoint().
struct DeletedStudy {
  int64_t study_pk = 0;
  std::string key_id;
  int64_t num_instances = 0;
  int64_t total_bytes = 0;
  std::vector<std::string> object_ids;
};

// Narrowing on non-PHI columns and tokens; all set fields must match (AND).
struct StudyFilter {
  std::vector<Token> study_uid_tokens;  // any of these (empty = no constraint)
  std::optional<Token> patient_id_token;
  std::optional<Token> accession_token;
  std::optional<int32_t> year_min;  // inclusive
  std::optional<int32_t> year_max;  // inclusive
  // With a year range: also return studies whose year is unknown (no StudyDate),
  // so that the caller decides after decryption. Default: conservative.
  bool include_unknown_year = true;
  std::optional<std::string> modality;     // a series of the study has this modality
  std::optional<int64_t> created_min;      // unix seconds, inclusive
  std::optional<int64_t> created_max;      // inclusive
  std::optional<int64_t> last_access_max;  // unix seconds, inclusive (retention)
  bool exclude_legal_hold = false;         // retention: skip studies under hold
  bool only_conflicts = false;             // studies flagged as patient conflicts
  int64_t after_study_pk = 0;              // paging: only study_pk > this
  size_t limit = 1000;                     // candidate cap (ResourceExhausted-free: see truncated)
};

struct StudyCandidates {
  std::vector<StudyRow> rows;  // ordered by study_pk
  bool truncated = false;      // more rows matched than `limit`
};

struct ObjectCounts {
  int64_t studies = 0;
  int64_t series = 0;
  int64_t instances = 0;
  int64_t total_bytes = 0;
};

// ---- HL7: patient keys, messages, worklist, reports (schema v3; README "HL7") ----

// One accepted HL7 message, sealed (text + what it changed) under a patient key.
struct Hl7MessageRow {
  int64_t msg_pk = 0;
  std::string key_id;        // the patient key (a study_keys row) it is sealed under
  std::string message_type;  // "ADT^A08" (not PHI)
  std::optional<Token> patient_id_token;
  std::optional<Token> accession_token;
  int64_t received_at = 0;  // unix seconds; set by the catalog on insert
  Blob sealed;
};

// A scheduled procedure step (Modality Worklist entry), one per accession.
struct WorklistRow {
  int64_t order_pk = 0;
  std::string key_id;  // the patient key
  Token accession_token;
  std::optional<Token> patient_id_token;
  std::string modality;      // not PHI
  std::string scheduled_ae;  // not PHI
  std::string status;        // "SC" scheduled, "IP" in progress (not PHI)
  int64_t created_at = 0;    // set by the catalog
  int64_t updated_at = 0;
  Blob phi;  // sealed order attributes
};

struct WorklistFilter {
  std::optional<std::string> modality;
  std::optional<std::string> scheduled_ae;
  std::optional<Token> patient_id_token;
  std::optional<Token> accession_token;
  int64_t after_order_pk = 0;
  size_t limit = 1000;  // 1..100000
};

// A report (ORU) for an accession; attached to the study with that accession
// token when there is one, pending otherwise.
struct ReportRow {
  int64_t report_pk = 0;
  std::string key_id;  // the patient key
  Token accession_token;
  std::optional<Token> patient_id_token;
  int64_t received_at = 0;  // set by the catalog
  Blob phi;
};

// What EraseHl7OfStudy removed.
struct Hl7Erased {
  int64_t messages = 0;
  int64_t orders = 0;
  int64_t reports = 0;
  std::vector<std::string> key_ids;  // patient keys deleted from study_keys
};

// The typed operations of one write transaction (no SQL outside index/).
// Valid only inside the Write() closure. Each closure runs in its own
// SAVEPOINT: returning a non-OK Status rolls back everything it did.
class WriteTxn {
 public:
  virtual ~WriteTxn() = default;

  // study keys
  virtual Status PutStudyKey(const StudyKeyRow& row) = 0;  // AlreadyExists on duplicate id
  virtual Status UpdateStudyKeyWrap(const std::string& key_id, const std::string& kek_id,
                                    const Blob& wrapped) = 0;    // KEK rotation
  virtual Status DeleteStudyKey(const std::string& key_id) = 0;  // NotFound; fails if in use
  virtual Result<StudyKeyRow> GetStudyKey(const std::string& key_id) = 0;

  // studies: returns the study_pk of the study with that uid token, inserting
  // it when absent (the existing row is left untouched; see UpdateStudyPhi).
  virtual Result<int64_t> UpsertStudy(const NewStudy& s, bool* created = nullptr) = 0;
  virtual Result<StudyRow> FindStudyByUidToken(const Token& study_uid_token) = 0;
  virtual Status UpdateStudyPhi(int64_t study_pk, const StudyPhiUpdate& u) = 0;
  virtual Status SetLegalHold(int64_t study_pk, bool hold) = 0;
  virtual Status TouchStudy(int64_t study_pk) = 0;  // last_access_at = now
  // Deletes the study, its series and instances (cascade); not its key.
  virtual Result<DeletedStudy> DeleteStudy(int64_t study_pk) = 0;

  // series: find-or-insert by uid token. InvalidArgument if the existing
  // series belongs to another study.
  virtual Result<int64_t> UpsertSeries(const NewSeries& s, bool* created = nullptr) = 0;

  // instances. Counters (series/study num_instances, total_bytes) are
  // maintained by triggers in the same transaction.
  virtual Result<int64_t> InsertInstance(const NewInstance& i) = 0;  // AlreadyExists on dup sop
  // Replaces the instance with the same sop token; returns the old object_id
  // (to unlink after commit). NotFound if absent.
  virtual Result<std::string> ReplaceInstance(const NewInstance& i) = 0;
  virtual Result<InstanceRow> FindInstanceBySopToken(const Token& sop_uid_token) = 0;
  // Clears kInstancePending on the instances with these object ids (absent
  // ids and rows already clear are ignored).
  virtual Status ClearPending(const std::vector<std::string>& object_ids) = 0;
  // Deletes the instance naming object_id if it is still pending, and its
  // series and study if that leaves them empty (a store whose object never
  // became durable). Returns false, changing nothing, if there is no such
  // pending row.
  virtual Result<bool> RemovePendingInstance(const std::string& object_id) = 0;

  // metadata (small values: wrapped derivation secret, instance id, ...)
  virtual Status PutMeta(const std::string& key, const Blob& value) = 0;
  virtual Result<Blob> GetMeta(const std::string& key) = 0;  // NotFound

  // Appends an audit record; seq, prev_hash and mac are computed here, in
  // this transaction. Returns the record's seq.
  virtual Result<int64_t> AppendAudit(const audit::AuditEvent& ev) = 0;

  // HL7 (schema v3). Patient keys: the key under which a patient's HL7 data
  // is sealed, by PatientID token (its wrapped key is a study_keys row).
  virtual Result<std::string> GetPatientKey(const Token& patient_id_token) = 0;  // NotFound
  virtual Status PutPatientKey(const Token& patient_id_token, const std::string& key_id) = 0;
  // Studies with that PatientID token, by study_pk, at most limit.
  virtual Result<std::vector<StudyRow>> ListStudiesOfPatient(const Token& patient_id_token,
                                                             size_t limit) = 0;
  virtual Result<int64_t> InsertHl7Message(const Hl7MessageRow& r) = 0;
  // Inserts or replaces the entry of r.accession_token; true when created.
  virtual Result<bool> UpsertWorklist(const WorklistRow& r) = 0;
  virtual Result<WorklistRow> FindWorklist(const Token& accession_token) = 0;  // NotFound
  virtual Status DeleteWorklist(const Token& accession_token) = 0;             // NotFound
  virtual Result<int64_t> InsertReport(const ReportRow& r) = 0;
  // Patient merge: messages, worklist entries and reports of `from` move to
  // `to`; from's patient key becomes to's when `to` has none.
  virtual Status MovePatientHl7(const Token& from, const Token& to) = 0;
  // Erasure of `erased` (already deleted by DeleteStudy, same transaction):
  // deletes the HL7 rows of its accession and, when no study of its patient
  // remains, every HL7 row and the patient key of that patient.
  virtual Result<Hl7Erased> EraseHl7OfStudy(const StudyRow& erased) = 0;

  // Audit retention (services/retention.h): deletes the audit rows with
  // seq <= through_seq and stores `anchor` (audit::EncodeAnchor of the last
  // deleted row) under audit::kAnchorMetaKey, in this transaction, so the
  // remaining chain still verifies. PermissionDenied, deleting nothing, if
  // any of those rows has time_us >= min_keep_time_us (younger than the
  // retention). Returns the number of rows deleted.
  virtual Result<int64_t> PruneAudit(int64_t through_seq, int64_t min_keep_time_us,
                                     const Blob& anchor) {
    (void)through_seq;
    (void)min_keep_time_us;
    (void)anchor;
    return Status::Internal("catalog: audit pruning is not supported by this backend");
  }
};

class Catalog : public audit::AuditReader {
 public:
  ~Catalog() override = default;

  // Runs fn in a write transaction; returns fn's Status, or the commit's.
  // Blocks until durable (committed with synchronous=FULL). Do not call from
  // inside a closure (returns Internal).
  virtual Status Write(std::function<Status(WriteTxn&)> fn) = 0;
  // The same, returning at once: the future yields what Write() would have
  // returned, once the closure's group commit is durable (or failed). Lets a
  // caller overlap the commit with other I/O (IngestService).
  virtual std::future<Status> WriteAsync(std::function<Status(WriteTxn&)> fn) = 0;
  // The same, completed by a callback instead of a future: `done` receives
  // what Write() would have returned, once the closure's group commit is
  // durable (or failed). It runs on the writer thread (or on the caller's
  // thread when the write is refused at once, e.g. sticky failure), so it
  // must be quick, must not throw and must not call Write(): hand the result
  // to your own executor. Lets an event-driven caller (the HL7 edge) resume
  // without a thread blocked on a future. The default runs Write() inline.
  virtual void WriteThen(std::function<Status(WriteTxn&)> fn, std::function<void(Status)> done) {
    done(Write(std::move(fn)));
  }
  // Queues ClearPending(object_id) for the next group commit (or an idle
  // flush within about a second). Losing it in a crash is harmless: recovery
  // clears pending rows whose object exists.
  virtual void ClearPendingLater(std::string object_id) = 0;
  // OK, or the sticky error after which every write fails until reopened.
  virtual Status health() const = 0;
  // Folds the WAL into the main file and truncates it (erasure contract).
  virtual Status Checkpoint() = 0;

  virtual Result<StudyKeyRow> GetStudyKey(const std::string& key_id) = 0;
  // Keys with key_id > after, ascending, at most limit (KEK rotation batches).
  virtual Result<std::vector<StudyKeyRow>> ListStudyKeys(const std::string& after,
                                                         size_t limit) = 0;
  virtual Result<Blob> GetMeta(const std::string& key) = 0;
  virtual Result<StudyRow> FindStudyByUidToken(const Token& study_uid_token) = 0;
  virtual Result<StudyRow> GetStudy(int64_t study_pk) = 0;
  virtual Result<StudyCandidates> QueryStudies(const StudyFilter& f) = 0;
  virtual Result<std::vector<SeriesRow>> ListSeries(int64_t study_pk) = 0;
  virtual Result<std::vector<InstanceRow>> ListInstancesOfSeries(int64_t series_pk) = 0;
  virtual Result<std::vector<InstanceRow>> ListInstancesOfStudy(int64_t study_pk) = 0;
  virtual Result<InstanceRow> GetInstanceBySopToken(const Token& sop_uid_token) = 0;
  virtual Result<ObjectCounts> CountObjects() = 0;
  // Every object id referenced by an instance (start-up orphan recovery).
  virtual Result<std::vector<std::string>> ListAllObjectIds() = 0;
  // Object ids of the instances still flagged kInstancePending (recovery).
  virtual Result<std::vector<std::string>> ListPendingObjectIds() = 0;
  virtual Result<int64_t> StudyTotalBytes(int64_t study_pk) = 0;
  // The calling AE title that first stored the study (NewStudy::source_ae),
  // "" when unknown (stored before schema v4, or created by STOW-RS).
  // NotFound if there is no such study.
  virtual Result<std::string> GetStudySourceAe(int64_t study_pk) {
    (void)study_pk;
    return std::string();
  }

  // HL7 (schema v3).
  virtual Result<std::vector<WorklistRow>> QueryWorklist(const WorklistFilter& f) = 0;
  virtual Result<std::vector<ReportRow>> ListReports(const Token& accession_token) = 0;
  virtual Result<std::vector<Hl7MessageRow>> ListHl7Messages(const Token& patient_id_token,
                                                             size_t limit) = 0;
};

}  // namespace phi::index
