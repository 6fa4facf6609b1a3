#include "libphi/services/ingest_service.h"

#include "libphi/objects/phg_format.h"
#include "libphi/util/log.h"

namespace phi::services {
namespace {

index::Token TokenOf(const vault::KeyVault& v, std::string_view attr, std::string_view value) {
  crypto::Digest d = v.IndexToken(attr, value);
  return index::Token(reinterpret_cast<const char*>(d.data()), d.size());
}

std::optional<int32_t> YearOf(std::string_view da) {
  if (da.size() < 4) return std::nullopt;
  int32_t y = 0;
  for (size_t i = 0; i < 4; ++i) {
    if (da[i] < '0' || da[i] > '9') return std::nullopt;
    y = y * 10 + (da[i] - '0');
  }
  return y;
}

std::string ShortStatus(const Status& s) { return "error:" + std::string(CodeName(s.code())); }

}  // namespace

bool IsValidUid(std::string_view uid) {
  if (uid.empty() || uid.size() > 64) return false;
  bool component_empty = true;
  for (char c : uid) {
    if (c == '.') {
      if (component_empty) return false;
      component_empty = true;
    } else if (c >= '0' && c <= '9') {
      component_empty = false;
    } else {
      return false;
    }
  }
  return !component_empty;
}

std::string PhiAad(std::string_view level, const index::Token& token) {
  std::string aad(level);
  aad += ':';
  aad += token;
  return aad;
}

PhiFields StudyPhi(const InstanceAttributes& a) {
  PhiFields f;
  f.Set("StudyInstanceUID", a.study_instance_uid);
  f.Set("PatientName", a.patient_name);
  f.Set("PatientID", a.patient_id);
  f.Set("IssuerOfPatientID", a.issuer_of_patient_id);
  f.Set("PatientBirthDate", a.patient_birth_date);
  f.Set("PatientSex", a.patient_sex);
  f.Set("AccessionNumber", a.accession_number);
  f.Set("ReferringPhysicianName", a.referring_physician_name);
  f.Set("StudyDescription", a.study_description);
  f.Set("StudyDate", a.study_date);
  f.Set("StudyTime", a.study_time);
  f.Set("StudyID", a.study_id);
  f.Set("SpecificCharacterSet", a.specific_character_set);
  return f;
}

PhiFields SeriesPhi(const InstanceAttributes& a) {
  PhiFields f;
  f.Set("SeriesInstanceUID", a.series_instance_uid);
  f.Set("SeriesDescription", a.series_description);
  f.Set("BodyPartExamined", a.body_part_examined);
  return f;
}

PhiFields InstancePhi(const InstanceAttributes& a) {
  PhiFields f;
  f.Set("SOPInstanceUID", a.sop_instance_uid);
  f.Set("BurnedInAnnotation", a.burned_in_annotation ? "YES" : "NO");
  return f;
}

IngestService::IngestService(vault::KeyVault& vault, index::Catalog& catalog,
                             objects::ObjectStore& objects, StudyKeys& keys,
                             config::DuplicatePolicy duplicates, Env& env)
    : vault_(vault),
      catalog_(catalog),
      objects_(objects),
      keys_(keys),
      duplicates_(duplicates),
      env_(env) {}

IngestStats IngestService::stats() const {
  IngestStats s;
#define PHI_INGEST_STAT_LOAD(n) s.n = n##_.load();
  PHI_INGEST_STATS(PHI_INGEST_STAT_LOAD)
#undef PHI_INGEST_STAT_LOAD
  return s;
}

void IngestService::UndoPendingRows(const IngestContext& ctx, const index::Token& study_token,
                                    const std::string& object_id, const Status& why) {
  Status undo = catalog_.Write([&](index::WriteTxn& txn) -> Status {
    PHI_ASSIGN_OR_RETURN(bool removed, txn.RemovePendingInstance(object_id));
    if (!removed) return Status::Ok();
    audit::AuditEvent ev;
    ev.actor = ctx.actor;
    ev.action = "store-undone";
    ev.object = "object:" + object_id;
    ev.outcome = ShortStatus(why);
    ev.peer = ctx.peer;
    return txn.AppendAudit(ev).status();
  });
  // Queries may have seen the rows while they were committed: refresh.
  keys_.StudyChanged(study_token);
  if (!undo.ok()) {
    // The row stays pending without its object: start-up recovery removes it.
    PHI_LOG(kError, "could not remove the rows of a failed store; recovery will",
            {{"object_id", log::Safe(object_id)}, {"status", undo}});
  }
}

Result<bool> IngestService::IsStored(const std::string& sop_instance_uid) {
  if (!IsValidUid(sop_instance_uid)) return false;
  Result<index::InstanceRow> row =
      catalog_.GetInstanceBySopToken(TokenOf(vault_, "SOPInstanceUID", sop_instance_uid));
  if (row.ok()) return true;
  if (row.status().code() == Code::kNotFound) return false;
  return row.status();
}

Result<StoreResult> IngestService::Store(const IngestContext& ctx, const InstanceAttributes& a,
                                         std::span<const std::byte> part10) {
  auto refuse = [&](std::string why) -> Status {
    ++refused_;
    return Status::InvalidArgument(std::move(why));
  };
  if (!IsValidUid(a.sop_instance_uid)) return refuse("SOP Instance UID missing or invalid");
  if (!IsValidUid(a.study_instance_uid)) return refuse("Study Instance UID missing or invalid");
  if (!IsValidUid(a.series_instance_uid)) return refuse("Series Instance UID missing or invalid");
  if (!IsValidUid(a.sop_class_uid)) return refuse("SOP Class UID missing or invalid");
  if (part10.empty()) return refuse("empty object");

  const index::Token study_token = TokenOf(vault_, "StudyInstanceUID", a.study_instance_uid);
  const index::Token series_token = TokenOf(vault_, "SeriesInstanceUID", a.series_instance_uid);
  const index::Token sop_token = TokenOf(vault_, "SOPInstanceUID", a.sop_instance_uid);

  // Cheap early answer for a duplicate under keep_first: no object written.
  if (duplicates_ == config::DuplicatePolicy::kKeepFirst) {
    Result<index::InstanceRow> existing = catalog_.GetInstanceBySopToken(sop_token);
    if (existing.ok()) {
      ++duplicates_kept_;
      return StoreResult{StoreOutcome::kDuplicateKept, existing->object_id};
    }
  }

  PHI_ASSIGN_OR_RETURN(StudyKeys::Resolved key, keys_.Resolve(study_token));
  PHI_ASSIGN_OR_RETURN(objects::KeyId key_bytes, objects::phg::ParseId(key.key_id));

  // Seal the PHI of each level with the study key, bound to its row token.
  std::optional<index::Token> pid_token, acc_token;
  if (!a.patient_id.empty()) pid_token = TokenOf(vault_, "PatientID", a.patient_id);
  if (!a.accession_number.empty()) {
    acc_token = TokenOf(vault_, "AccessionNumber", a.accession_number);
  }
  PHI_ASSIGN_OR_RETURN(std::string study_phi,
                       keys_.Seal(key.key_id, PhiAad("study", study_token), StudyPhi(a).Encode()));
  PHI_ASSIGN_OR_RETURN(
      std::string series_phi,
      keys_.Seal(key.key_id, PhiAad("series", series_token), SeriesPhi(a).Encode()));
  PHI_ASSIGN_OR_RETURN(
      std::string instance_phi,
      keys_.Seal(key.key_id, PhiAad("instance", sop_token), InstancePhi(a).Encode()));

  // The object and the catalog rows are made durable in parallel: the rows
  // (flagged pending) commit on the catalog's writer thread while this thread
  // encrypts, fsyncs, renames and syncs the object. The answer waits for
  // both. A crash in between leaves either an object without a row (removed
  // at start-up) or a pending row without its object (never acknowledged;
  // removed at start-up); see RecoverStorage.
  PHI_ASSIGN_OR_RETURN(std::unique_ptr<crypto::AesGcm> cipher, keys_.Cipher(key.key_id));
  PHI_ASSIGN_OR_RETURN(objects::ObjectWriterPtr writer, objects_.NewObject(key_bytes, *cipher));
  const std::string object_id = writer->object_id();

  index::NewStudy ns;
  ns.key_id = key.key_id;
  ns.study_uid_token = study_token;
  ns.patient_id_token = pid_token;
  ns.accession_token = acc_token;
  ns.study_year = YearOf(a.study_date);
  ns.phi = study_phi;
  ns.source_ae = ctx.calling_ae;  // DICOM C-STORE only; STOW-RS: none (retention.h)
  index::NewSeries nse;
  nse.series_uid_token = series_token;
  nse.modality = a.modality.substr(0, 16);
  if (a.series_number != 0) nse.series_number = a.series_number;
  nse.phi = series_phi;
  index::NewInstance ni;
  ni.sop_uid_token = sop_token;
  ni.sop_class_uid = a.sop_class_uid;
  ni.transfer_syntax_uid = a.transfer_syntax_uid;
  if (a.instance_number != 0) ni.instance_number = a.instance_number;
  ni.object_id = object_id;
  ni.size_bytes = static_cast<int64_t>(part10.size());
  ni.phi = instance_phi;

  // The rows of one store. With `replace`, an existing instance with this
  // SOP Instance UID is replaced (its old object id lands in replaced_object);
  // without it, AlreadyExists is returned.
  StoreOutcome outcome = StoreOutcome::kStored;
  std::string replaced_object;
  auto write_rows = [&](index::WriteTxn& txn, bool replace) -> Status {
    outcome = StoreOutcome::kStored;
    replaced_object.clear();
    PHI_RETURN_IF_ERROR(StudyKeys::EnsurePersisted(txn, key));
    bool created = false;
    PHI_ASSIGN_OR_RETURN(int64_t study_pk, txn.UpsertStudy(ns, &created));
    if (!created) {
      PHI_ASSIGN_OR_RETURN(index::StudyRow existing, txn.FindStudyByUidToken(study_token));
      if (existing.key_id != key.key_id) {
        return Status::Internal("study key changed while storing (concurrent erasure?)");
      }
      // Same study, another patient: store, flag for review, never merge silently.
      if (existing.patient_id_token != pid_token) {
        outcome = StoreOutcome::kStoredConflict;
        if (!existing.conflict) {
          index::StudyPhiUpdate u;
          u.patient_id_token = existing.patient_id_token;
          u.accession_token = existing.accession_token;
          u.study_year = existing.study_year;
          u.phi = existing.phi;
          u.conflict = true;
          PHI_RETURN_IF_ERROR(txn.UpdateStudyPhi(study_pk, u));
        }
      }
    }
    nse.study_pk = study_pk;
    PHI_ASSIGN_OR_RETURN(ni.series_pk, txn.UpsertSeries(nse));
    Result<int64_t> inserted = txn.InsertInstance(ni);
    if (!inserted.ok()) {
      if (inserted.status().code() != Code::kAlreadyExists || !replace) return inserted.status();
      PHI_ASSIGN_OR_RETURN(replaced_object, txn.ReplaceInstance(ni));
      if (outcome == StoreOutcome::kStored) outcome = StoreOutcome::kReplaced;
    }
    audit::AuditEvent ev;
    ev.actor = ctx.actor;
    ev.action = outcome == StoreOutcome::kReplaced ? "replace" : "store";
    ev.object = "study:" + std::to_string(study_pk) + " object:" + object_id;
    ev.outcome = outcome == StoreOutcome::kStoredConflict ? "ok:conflict" : "ok";
    ev.peer = ctx.peer;
    return txn.AppendAudit(ev).status();
  };

  // 1. Rows (pending) and object in parallel. Never replaces: dropping the
  //    old instance must wait until the new object is durable.
  ni.pending = true;
  std::future<Status> rows =
      catalog_.WriteAsync([&](index::WriteTxn& txn) { return write_rows(txn, false); });
  Result<objects::ObjectInfo> info = writer->AppendAndFinish(part10);
  Status commit = rows.get();  // the closure's captures stay alive until here
  if (!info.ok()) {
    writer->Abort();
    ++failed_;
    PHI_LOG(kError, "object write failed", {{"status", info.status()}});
    if (commit.ok()) UndoPendingRows(ctx, study_token, object_id, info.status());
    return info.status();
  }

  // 2. An instance with this SOP Instance UID exists: keep it, or replace it
  //    now that the new object is durable (rows not pending: object durable).
  if (commit.code() == Code::kAlreadyExists && duplicates_ == config::DuplicatePolicy::kReplace) {
    ni.pending = false;
    commit = catalog_.Write([&](index::WriteTxn& txn) { return write_rows(txn, true); });
  }
  if (!commit.ok()) {
    // Nothing names the object: remove it (best effort; recovery removes
    // orphans at the next start if this fails).
    (void)objects_.Remove(object_id);
    if (commit.code() == Code::kAlreadyExists) {
      ++duplicates_kept_;
      Result<index::InstanceRow> existing = catalog_.GetInstanceBySopToken(sop_token);
      return StoreResult{StoreOutcome::kDuplicateKept, existing.ok() ? existing->object_id : ""};
    }
    ++failed_;
    PHI_LOG(kError, "catalog commit failed",
            {{"object_id", log::Safe(object_id)},
             {"outcome", log::Safe(ShortStatus(commit))},
             {"status", commit}});
    return commit;
  }
  if (ni.pending) catalog_.ClearPendingLater(object_id);
  keys_.MarkPersisted(study_token);
  if (!replaced_object.empty()) {
    Status rm = objects_.Remove(replaced_object);
    if (!rm.ok()) PHI_LOG(kWarning, "could not unlink replaced object", {{"status", rm}});
  }
  switch (outcome) {
    case StoreOutcome::kStored:
      ++stored_;
      break;
    case StoreOutcome::kReplaced:
      ++replaced_;
      break;
    case StoreOutcome::kStoredConflict:
      ++stored_;
      ++conflicts_;
      PHI_LOG(kWarning, "study stored with a conflicting patient; flagged for review",
              {{"object_id", log::Safe(object_id)}});
      break;
    case StoreOutcome::kDuplicateKept:
      break;
  }
  bytes_ += part10.size();
  return StoreResult{outcome, object_id};
}

}  // namespace phi::services
