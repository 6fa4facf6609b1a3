#include "libphi/services/hl7_service.h"

#include <openssl/crypto.h>

#include <future>
#include <memory>
#include <optional>

#include "libphi/services/ingest_service.h"
#include "libphi/util/log.h"

namespace phi::services {
namespace {

constexpr size_t kMaxIdBytes = 64;
constexpr size_t kMaxShortBytes = 16;        // DICOM CS/AE
constexpr size_t kMaxRecordBytes = 1000000;  // sealed record (catalog cap is 1 MiB)
constexpr size_t kMaxStudiesPerPatient = 10000;
// Messages move between patients on merge: their AAD is not bound to a token
// (SealField still binds the box to its key id).
constexpr std::string_view kMessageAad = "hl7msg:v1";

bool CleanText(std::string_view s, size_t max, bool required) {
  if (s.size() > max || (required && s.empty())) return false;
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return false;
  }
  return true;
}

// Sets `name` from an HL7 value: empty = unchanged, "" (HL7 null) = cleared.
bool ApplyValue(PhiFields& f, const char* name, const std::string& v) {
  if (v.empty()) return false;
  std::string nv = v == kHl7Null ? "" : v;
  if (f.Has(name) && f.Get(name) == nv) return false;
  f.Set(name, nv);
  return true;
}

bool ApplyDemographics(PhiFields& f, const PatientDemographics& p) {
  bool changed = false;
  changed |= ApplyValue(f, "PatientName", p.name);
  changed |= ApplyValue(f, "PatientBirthDate", p.birth_date);
  changed |= ApplyValue(f, "PatientSex", p.sex);
  changed |= ApplyValue(f, "IssuerOfPatientID", p.issuer);
  return changed;
}

std::string_view KindName(Hl7Event::Kind k) {
  switch (k) {
    case Hl7Event::Kind::kPatientUpdate:
      return "patient_update";
    case Hl7Event::Kind::kPatientMerge:
      return "patient_merge";
    case Hl7Event::Kind::kOrder:
      return "order";
    case Hl7Event::Kind::kReport:
      return "report";
  }
  return "?";
}

Status Validate(const Hl7Event& ev) {
  if (!CleanText(ev.message_type, 32, true)) {
    return Status::InvalidArgument("hl7: message type missing or malformed");
  }
  if (!CleanText(ev.patient.patient_id, kMaxIdBytes, true)) {
    return Status::InvalidArgument("hl7: patient ID (PID-3) missing or malformed");
  }
  for (const std::string* s :
       {&ev.patient.issuer, &ev.patient.name, &ev.patient.birth_date, &ev.patient.sex}) {
    if (!CleanText(*s, 256, false)) return Status::InvalidArgument("hl7: patient field malformed");
  }
  if (ev.raw.empty() || ev.raw.size() > kMaxRecordBytes - 4096) {
    return Status::InvalidArgument("hl7: message too large to store");
  }
  switch (ev.kind) {
    case Hl7Event::Kind::kPatientUpdate:
      break;
    case Hl7Event::Kind::kPatientMerge:
      if (!CleanText(ev.prior_patient_id, kMaxIdBytes, true)) {
        return Status::InvalidArgument("hl7: prior patient ID (MRG-1) missing or malformed");
      }
      if (ev.prior_patient_id == ev.patient.patient_id) {
        return Status::InvalidArgument("hl7: merge of a patient ID into itself");
      }
      break;
    case Hl7Event::Kind::kOrder:
      if (ev.orders.empty()) return Status::InvalidArgument("hl7: order without ORC/OBR");
      for (const OrderInfo& o : ev.orders) {
        if (!CleanText(o.accession_number, kMaxIdBytes, true)) {
          return Status::InvalidArgument("hl7: accession number missing or malformed");
        }
        if (!CleanText(o.modality, kMaxShortBytes, false) ||
            !CleanText(o.scheduled_ae, kMaxShortBytes, false)) {
          return Status::InvalidArgument("hl7: modality or AE title malformed");
        }
      }
      break;
    case Hl7Event::Kind::kReport:
      if (!CleanText(ev.report.accession_number, kMaxIdBytes, true)) {
        return Status::InvalidArgument("hl7: accession number missing or malformed");
      }
      if (ev.report.text.size() > kMaxRecordBytes / 2) {
        return Status::InvalidArgument("hl7: report too large to store");
      }
      break;
  }
  return Status::Ok();
}

// Vault operations with a key that may be evicted or created in this batch:
// reload it through the transaction (which sees the batch's rows).
class TxnKeys {
 public:
  TxnKeys(vault::KeyVault& v, index::WriteTxn& txn) : v_(v), txn_(txn) {}

  Result<std::string> Seal(const std::string& key_id, std::string_view aad, std::string_view pt) {
    Result<std::string> r = v_.SealField(key_id, aad, pt);
    if (r.ok() || r.status().code() != Code::kNotFound) return r;
    PHI_RETURN_IF_ERROR(Load(key_id));
    return v_.SealField(key_id, aad, pt);
  }
  Result<std::string> Open(const std::string& key_id, std::string_view aad, std::string_view box) {
    Result<std::string> r = v_.OpenField(key_id, aad, box);
    if (r.ok() || r.status().code() != Code::kNotFound) return r;
    PHI_RETURN_IF_ERROR(Load(key_id));
    return v_.OpenField(key_id, aad, box);
  }
  // The patient's key, created (and stored in this transaction) on first use.
  Result<std::string> PatientKey(const index::Token& pid) {
    Result<std::string> k = txn_.GetPatientKey(pid);
    if (k.ok() || k.status().code() != Code::kNotFound) return k;
    PHI_ASSIGN_OR_RETURN(vault::WrappedKey wk, v_.CreateStudyKey());
    index::StudyKeyRow row;
    row.key_id = wk.key_id;
    row.kek_id = wk.kek_id;
    row.wrapped = wk.wrapped;
    PHI_RETURN_IF_ERROR(txn_.PutStudyKey(row));
    PHI_RETURN_IF_ERROR(txn_.PutPatientKey(pid, wk.key_id));
    return wk.key_id;
  }

 private:
  Status Load(const std::string& key_id) {
    PHI_ASSIGN_OR_RETURN(index::StudyKeyRow row, txn_.GetStudyKey(key_id));
    return v_.LoadStudyKey({row.key_id, row.kek_id, row.wrapped});
  }
  vault::KeyVault& v_;
  index::WriteTxn& txn_;
};

PhiFields OrderPhi(const OrderInfo& o, const PatientDemographics& p) {
  PhiFields f;
  f.Set("AccessionNumber", o.accession_number);
  f.Set("PatientID", p.patient_id);
  f.Set("IssuerOfPatientID", p.issuer == kHl7Null ? "" : p.issuer);
  f.Set("PatientName", p.name == kHl7Null ? "" : p.name);
  f.Set("PatientBirthDate", p.birth_date == kHl7Null ? "" : p.birth_date);
  f.Set("PatientSex", p.sex == kHl7Null ? "" : p.sex);
  f.Set("RequestedProcedureID", o.requested_procedure_id);
  f.Set("RequestedProcedureDescription", o.requested_procedure_description);
  f.Set("ScheduledProcedureStepID", o.scheduled_step_id);
  f.Set("ScheduledProcedureStepStartDate", o.scheduled_datetime.substr(0, 8));
  f.Set("ScheduledProcedureStepStartTime",
        o.scheduled_datetime.size() > 8 ? o.scheduled_datetime.substr(8, 6) : "");
  f.Set("Modality", o.modality);
  f.Set("ScheduledStationAETitle", o.scheduled_ae);
  f.Set("StudyInstanceUID", o.study_instance_uid);
  f.Set("ReferringPhysicianName", o.referring_physician);
  f.Set("PlacerOrderNumber", o.placer_order_number);
  f.Set("FillerOrderNumber", o.filler_order_number);
  return f;
}

}  // namespace

std::string Hl7Outcome::Summary() const {
  return "studies_updated=" + std::to_string(studies_updated) +
         " studies_moved=" + std::to_string(studies_moved) +
         " orders_created=" + std::to_string(orders_created) +
         " orders_changed=" + std::to_string(orders_changed) +
         " orders_cancelled=" + std::to_string(orders_cancelled) +
         " reports_stored=" + std::to_string(reports_stored);
}

Hl7ServiceStats Hl7Service::stats() const {
  Hl7ServiceStats s;
#define PHI_HL7_STAT_LOAD(n) s.n = n##_.load();
  PHI_HL7_SERVICE_STATS(PHI_HL7_STAT_LOAD)
#undef PHI_HL7_STAT_LOAD
  return s;
}

index::Token Hl7Service::Tok(std::string_view attr, std::string_view value) const {
  crypto::Digest d = vault_.IndexToken(attr, value);
  return index::Token(reinterpret_cast<const char*>(d.data()), d.size());
}

namespace {

// One event on its way through the writer: what the closure needs and what
// it produces, shared by the closure and its completion.
struct ApplyState {
  Hl7Context ctx;
  Hl7Event ev;
  index::Token pid;
  std::optional<index::Token> prior, msg_acc, report_acc;
  std::vector<index::Token> order_acc;
  Hl7Outcome out;
  std::vector<index::Token> resealed;  // studies whose sealed PHI this message replaced
  ~ApplyState() {
    // The message text is PHI: do not leave it in freed heap memory.
    if (!ev.raw.empty()) OPENSSL_cleanse(ev.raw.data(), ev.raw.size());
  }
};

}  // namespace

Result<Hl7Outcome> Hl7Service::Apply(const Hl7Context& ctx, const Hl7Event& ev) {
  std::promise<Result<Hl7Outcome>> p;
  std::future<Result<Hl7Outcome>> f = p.get_future();
  ApplyAsync(ctx, ev, [&p](Result<Hl7Outcome> r) { p.set_value(std::move(r)); });
  return f.get();
}

void Hl7Service::ApplyAsync(Hl7Context ctx, Hl7Event event, ApplyDone done) {
  if (Status v = Validate(event); !v.ok()) {
    ++refused_;
    done(std::move(v));
    return;
  }
  auto st = std::make_shared<ApplyState>();
  st->ctx = std::move(ctx);
  st->ev = std::move(event);
  const Hl7Event& ev = st->ev;
  st->pid = Tok("PatientID", ev.patient.patient_id);
  if (ev.kind == Hl7Event::Kind::kPatientMerge) st->prior = Tok("PatientID", ev.prior_patient_id);
  for (const OrderInfo& o : ev.orders) {
    st->order_acc.push_back(Tok("AccessionNumber", o.accession_number));
  }
  if (ev.kind == Hl7Event::Kind::kOrder && ev.orders.size() == 1) st->msg_acc = st->order_acc[0];
  if (ev.kind == Hl7Event::Kind::kReport) {
    st->report_acc = Tok("AccessionNumber", ev.report.accession_number);
    st->msg_acc = st->report_acc;
  }

  auto closure = [this, st](index::WriteTxn& txn) -> Status {
    const Hl7Event& ev = st->ev;
    const Hl7Context& ctx = st->ctx;
    const index::Token& pid = st->pid;
    const std::optional<index::Token>& prior = st->prior;
    const std::optional<index::Token>& msg_acc = st->msg_acc;
    const std::optional<index::Token>& report_acc = st->report_acc;
    const std::vector<index::Token>& order_acc = st->order_acc;
    Hl7Outcome& out = st->out;
    std::vector<index::Token>& resealed = st->resealed;
    out = Hl7Outcome{};
    resealed.clear();
    TxnKeys keys(vault_, txn);
    PHI_ASSIGN_OR_RETURN(std::string patient_key, keys.PatientKey(pid));

    auto reseal_studies = [&](const index::Token& of, bool move) -> Status {
      PHI_ASSIGN_OR_RETURN(std::vector<index::StudyRow> studies,
                           txn.ListStudiesOfPatient(of, kMaxStudiesPerPatient));
      for (const index::StudyRow& s : studies) {
        const std::string aad = PhiAad("study", s.study_uid_token);
        PHI_ASSIGN_OR_RETURN(std::string pt, keys.Open(s.key_id, aad, s.phi));
        PHI_ASSIGN_OR_RETURN(PhiFields f, PhiFields::Decode(pt));
        bool changed = ApplyDemographics(f, ev.patient);
        if (move) {
          f.Set("PatientID", ev.patient.patient_id);
          changed = true;
        }
        if (!changed) continue;
        index::StudyPhiUpdate u;
        u.patient_id_token = move ? std::optional<index::Token>(pid) : s.patient_id_token;
        u.accession_token = s.accession_token;
        u.study_year = s.study_year;
        u.conflict = s.conflict;
        PHI_ASSIGN_OR_RETURN(u.phi, keys.Seal(s.key_id, aad, f.Encode()));
        PHI_RETURN_IF_ERROR(txn.UpdateStudyPhi(s.study_pk, u));
        resealed.push_back(s.study_uid_token);
        ++(move ? out.studies_moved : out.studies_updated);
      }
      return Status::Ok();
    };

    switch (ev.kind) {
      case Hl7Event::Kind::kPatientUpdate:
        PHI_RETURN_IF_ERROR(reseal_studies(pid, false));
        break;
      case Hl7Event::Kind::kPatientMerge:
        PHI_RETURN_IF_ERROR(reseal_studies(*prior, true));
        PHI_RETURN_IF_ERROR(reseal_studies(pid, false));
        PHI_RETURN_IF_ERROR(txn.MovePatientHl7(*prior, pid));
        break;
      case Hl7Event::Kind::kOrder:
        for (size_t i = 0; i < ev.orders.size(); ++i) {
          const OrderInfo& o = ev.orders[i];
          if (o.control == OrderControl::kCancel) {
            Status d = txn.DeleteWorklist(order_acc[i]);
            if (d.ok()) {
              ++out.orders_cancelled;
            } else if (d.code() != Code::kNotFound) {
              return d;  // an unknown order: already cancelled or never seen
            }
            continue;
          }
          index::WorklistRow w;
          w.key_id = patient_key;
          w.accession_token = order_acc[i];
          w.patient_id_token = pid;
          w.modality = o.modality;
          w.scheduled_ae = o.scheduled_ae;
          w.status = "SC";
          PHI_ASSIGN_OR_RETURN(w.phi, keys.Seal(patient_key, PhiAad("worklist", order_acc[i]),
                                                OrderPhi(o, ev.patient).Encode()));
          PHI_ASSIGN_OR_RETURN(bool created, txn.UpsertWorklist(w));
          ++(created ? out.orders_created : out.orders_changed);
        }
        break;
      case Hl7Event::Kind::kReport: {
        PhiFields f;
        f.Set("AccessionNumber", ev.report.accession_number);
        f.Set("PatientID", ev.patient.patient_id);
        f.Set("ReportText", ev.report.text);
        f.Set("ResultStatus", ev.report.status);
        f.Set("ObservationDateTime", ev.report.observation_datetime);
        index::ReportRow r;
        r.key_id = patient_key;
        r.accession_token = *report_acc;
        r.patient_id_token = pid;
        PHI_ASSIGN_OR_RETURN(r.phi,
                             keys.Seal(patient_key, PhiAad("report", *report_acc), f.Encode()));
        PHI_RETURN_IF_ERROR(txn.InsertReport(r).status());
        ++out.reports_stored;
        break;
      }
    }

    // The message itself, with what it changed, sealed under the patient key.
    PhiFields m;
    m.Set("MessageType", ev.message_type);
    m.Set("Message", ev.raw);
    m.Set("Effects", out.Summary());
    index::Hl7MessageRow row;
    row.key_id = patient_key;
    row.message_type = ev.message_type;
    row.patient_id_token = pid;
    row.accession_token = msg_acc;
    PHI_ASSIGN_OR_RETURN(row.sealed, keys.Seal(patient_key, kMessageAad, m.Encode()));
    PHI_ASSIGN_OR_RETURN(out.message_pk, txn.InsertHl7Message(row));

    audit::AuditEvent a;
    a.actor = ctx.actor;
    a.action = "hl7_" + std::string(KindName(ev.kind));
    a.object = "hl7msg:" + std::to_string(out.message_pk) + " key:" + patient_key;
    a.outcome = "ok";
    a.peer = ctx.peer;
    a.detail = ev.message_type + " " + out.Summary();
    return txn.AppendAudit(a).status();
  };
  // Runs on the writer thread: only counters, cache invalidation and `done`.
  auto then = [this, st, done = std::move(done)](Status s) {
    if (!s.ok()) {
      if (s.code() == Code::kInvalidArgument) {
        ++refused_;
      } else {
        ++failed_;
        PHI_LOG(kError, "hl7 message not stored", {{"status", s}});
      }
      done(std::move(s));
      return;
    }
    for (const index::Token& t : st->resealed) keys_.StudyChanged(t);  // before the ack
    ++applied_;
    done(st->out);
  };
  catalog_.WriteThen(std::move(closure), std::move(then));
}

Result<std::vector<StoredReport>> Hl7Service::OpenReports(const index::Token& acc) {
  PHI_ASSIGN_OR_RETURN(std::vector<index::ReportRow> rows, catalog_.ListReports(acc));
  std::vector<StoredReport> out;
  for (index::ReportRow& r : rows) {
    PHI_ASSIGN_OR_RETURN(std::string pt, keys_.Open(r.key_id, PhiAad("report", acc), r.phi));
    PHI_ASSIGN_OR_RETURN(PhiFields f, PhiFields::Decode(pt));
    out.push_back({std::move(r), std::move(f)});
  }
  return out;
}

Result<std::vector<StoredReport>> Hl7Service::ReportsOfStudy(const std::string& study_uid) {
  PHI_ASSIGN_OR_RETURN(index::StudyRow s,
                       catalog_.FindStudyByUidToken(Tok("StudyInstanceUID", study_uid)));
  if (!s.accession_token) return std::vector<StoredReport>{};
  return OpenReports(*s.accession_token);
}

Result<std::vector<StoredReport>> Hl7Service::ReportsOfAccession(const std::string& accession) {
  return OpenReports(Tok("AccessionNumber", accession));
}

Result<std::vector<PhiFields>> Hl7Service::MessagesOfPatient(const std::string& patient_id,
                                                             size_t limit) {
  const index::Token pid = Tok("PatientID", patient_id);
  PHI_ASSIGN_OR_RETURN(std::vector<index::Hl7MessageRow> rows,
                       catalog_.ListHl7Messages(pid, limit));
  std::vector<PhiFields> out;
  for (const index::Hl7MessageRow& r : rows) {
    PHI_ASSIGN_OR_RETURN(std::string pt, keys_.Open(r.key_id, kMessageAad, r.sealed));
    PHI_ASSIGN_OR_RETURN(PhiFields f, PhiFields::Decode(pt));
    out.push_back(std::move(f));
  }
  return out;
}

}  // namespace phi::services
