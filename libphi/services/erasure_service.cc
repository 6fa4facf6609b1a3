#include "libphi/services/erasure_service.h"

#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

#include "libphi/util/log.h"

namespace phi::services {

std::string ErasureCertificate::ToJson() const {
  nlohmann::ordered_json j;
  j["type"] = "phigate-erasure-certificate";
  j["version"] = 1;
  j["audit_seq"] = audit_seq;
  j["study_pk"] = study_pk;
  j["study_key_id"] = study_key_id;
  j["kek_id"] = kek_id;
  j["wrapped_key_sha256"] = wrapped_key_sha256;
  j["objects"] = objects;
  j["bytes"] = bytes;
  j["actor"] = actor;
  j["reason"] = reason;
  j["time"] = time_unix;
  j["method"] = "NIST SP 800-88 cryptographic erase: study key destroyed";
  return j.dump();
}

Result<ErasureCertificate> ErasureService::EraseStudy(const std::string& study_instance_uid,
                                                      const std::string& actor,
                                                      const std::string& reason,
                                                      const std::string& peer) {
  if (reason.empty() || reason.size() > 512) {
    return Status::InvalidArgument("erasure reason must be 1-512 bytes");
  }
  for (unsigned char c : reason) {
    if (c < 0x20 || c == 0x7f) return Status::InvalidArgument("erasure reason has control bytes");
  }
  crypto::Digest d = vault_.IndexToken("StudyInstanceUID", study_instance_uid);
  const index::Token token(reinterpret_cast<const char*>(d.data()), d.size());

  ErasureCertificate cert;
  cert.actor = actor;
  cert.reason = reason;
  cert.time_unix =
      std::chrono::duration_cast<std::chrono::seconds>(env_.Now().time_since_epoch()).count();
  index::DeletedStudy deleted;
  index::Hl7Erased hl7;
  Status st = catalog_.Write([&](index::WriteTxn& txn) -> Status {
    PHI_ASSIGN_OR_RETURN(index::StudyRow study, txn.FindStudyByUidToken(token));
    if (study.legal_hold) return Status::PermissionDenied("study is under legal hold");
    PHI_ASSIGN_OR_RETURN(index::StudyKeyRow key, txn.GetStudyKey(study.key_id));
    PHI_ASSIGN_OR_RETURN(deleted, txn.DeleteStudy(study.study_pk));
    // HL7 orders, reports and messages of this study; the patient's HL7
    // history and patient key with the patient's last study.
    PHI_ASSIGN_OR_RETURN(hl7, txn.EraseHl7OfStudy(study));
    PHI_RETURN_IF_ERROR(txn.DeleteStudyKey(study.key_id));
    cert.study_pk = study.study_pk;
    cert.study_key_id = key.key_id;
    cert.kek_id = key.kek_id;
    cert.wrapped_key_sha256 = vault::KeyVault::Fingerprint({key.key_id, key.kek_id, key.wrapped});
    cert.objects = deleted.num_instances;
    cert.bytes = deleted.total_bytes;
    audit::AuditEvent ev;
    ev.actor = actor;
    ev.action = "erase";
    ev.object = "study:" + std::to_string(study.study_pk) + " key:" + key.key_id;
    ev.outcome = "ok";
    ev.peer = peer;
    ev.detail = cert.ToJson();  // audit_seq is the record's own seq
    PHI_ASSIGN_OR_RETURN(cert.audit_seq, txn.AppendAudit(ev));
    return Status::Ok();
  });
  if (!st.ok()) return st;

  // The key is gone from the catalog; drop it from memory too.
  keys_.Forget(token);
  vault_.ForgetStudyKey(cert.study_key_id);
  for (const std::string& k : hl7.key_ids) vault_.ForgetStudyKey(k);

  // Fold the WAL (which still holds the deleted pages' old images) into the
  // zeroed main file and truncate it. Readers may briefly block a full
  // checkpoint: retry, then report.
  Status cp;
  for (int attempt = 0; attempt < 50; ++attempt) {
    cp = catalog_.Checkpoint();
    if (cp.ok()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (!cp.ok()) {
    PHI_LOG(kError,
            "erasure: WAL checkpoint did not complete; it will at the next erasure or start",
            {{"study_pk", cert.study_pk}, {"status", cp}});
  }

  size_t unlink_failures = 0;
  for (const std::string& id : deleted.object_ids) {
    Status rm = objects_.Remove(id);
    if (!rm.ok() && rm.code() != Code::kNotFound) ++unlink_failures;
  }
  if (unlink_failures > 0) {
    // Harmless for confidentiality (no key opens them); recovery removes them.
    PHI_LOG(kWarning, "erasure: some object files could not be unlinked; recovery will remove them",
            {{"study_pk", cert.study_pk}, {"count", unlink_failures}});
  }
  PHI_LOG(kNotice, "study erased",
          {{"study_pk", cert.study_pk},
           {"audit_seq", cert.audit_seq},
           {"objects", cert.objects},
           {"bytes", cert.bytes},
           {"hl7_messages", hl7.messages},
           {"hl7_orders", hl7.orders},
           {"hl7_reports", hl7.reports},
           {"patient_keys", hl7.key_ids.size()}});
  return cert;
}

}  // namespace phi::services
