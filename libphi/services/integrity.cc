#include "libphi/services/integrity.h"

#include <set>

#include "libphi/objects/phg_format.h"
#include "libphi/services/ingest_service.h"

namespace phi::services {
namespace {

void Add(IntegrityReport& r, std::string kind, int64_t study_pk, std::string object,
         std::string detail) {
  ++r.problem_count;
  if (r.problems.size() < kMaxListedProblems) {
    r.problems.push_back({std::move(kind), study_pk, std::move(object), std::move(detail)});
  }
}

Status VerifyStudy(index::Catalog& catalog, objects::ObjectStore& objects, StudyKeys& keys,
                   const index::StudyRow& study, IntegrityReport& rep,
                   std::set<std::string>* referenced,
                   const std::function<void(int64_t)>& progress) {
  ++rep.studies;
  const std::string sref = "study:" + std::to_string(study.study_pk);
  if (Result<std::string> p =
          keys.Open(study.key_id, PhiAad("study", study.study_uid_token), study.phi);
      !p.ok()) {
    Add(rep, "phi_unreadable", study.study_pk, sref, p.status().ToString());
  }
  PHI_ASSIGN_OR_RETURN(std::vector<index::SeriesRow> series, catalog.ListSeries(study.study_pk));
  for (const auto& s : series) {
    if (Result<std::string> p =
            keys.Open(study.key_id, PhiAad("series", s.series_uid_token), s.phi);
        !p.ok()) {
      Add(rep, "phi_unreadable", study.study_pk, "series:" + std::to_string(s.series_pk),
          p.status().ToString());
    }
  }
  PHI_ASSIGN_OR_RETURN(std::vector<index::InstanceRow> insts,
                       catalog.ListInstancesOfStudy(study.study_pk));
  int64_t total = 0;
  Result<objects::KeyId> key_bytes = objects::phg::ParseId(study.key_id);
  Result<std::unique_ptr<crypto::AesGcm>> cipher = keys.Cipher(study.key_id);
  for (const auto& i : insts) {
    ++rep.instances;
    total += i.size_bytes;
    if (referenced) referenced->insert(i.object_id);
    const std::string oref = "object:" + i.object_id;
    if (Result<std::string> p = keys.Open(study.key_id, PhiAad("instance", i.sop_uid_token), i.phi);
        !p.ok()) {
      Add(rep, "phi_unreadable", study.study_pk, "instance:" + std::to_string(i.instance_pk),
          p.status().ToString());
    }
    if (!key_bytes.ok() || !cipher.ok()) {
      Add(rep, "object_unreadable", study.study_pk, oref, "study key unavailable");
    } else {
      int64_t n = 0;
      Status s;
      Result<objects::ObjectReaderPtr> reader = objects.Open(i.object_id, *key_bytes, **cipher);
      if (!reader.ok()) {
        s = reader.status();
      } else {
        s = (*reader)->ReadAll([&](std::span<const std::byte> chunk) {
          n += static_cast<int64_t>(chunk.size());
          return Status::Ok();
        });
      }
      if (!s.ok()) {
        Add(rep, "object_unreadable", study.study_pk, oref, s.ToString());
      } else {
        rep.bytes += n;
        if (n != i.size_bytes) {
          Add(rep, "size_mismatch", study.study_pk, oref,
              "catalog says " + std::to_string(i.size_bytes) + " bytes, object has " +
                  std::to_string(n));
        }
      }
    }
    if (progress) progress(rep.instances);
  }
  if (static_cast<int64_t>(insts.size()) != study.num_instances || total != study.total_bytes) {
    Add(rep, "counter_mismatch", study.study_pk, sref,
        "num_instances " + std::to_string(study.num_instances) + " vs " +
            std::to_string(insts.size()) + ", total_bytes " + std::to_string(study.total_bytes) +
            " vs " + std::to_string(total));
  }
  return Status::Ok();
}

}  // namespace

Result<IntegrityReport> VerifyStorage(vault::KeyVault& vault, index::Catalog& catalog,
                                      objects::ObjectStore& objects, StudyKeys& keys,
                                      const std::optional<std::string>& study_instance_uid,
                                      const std::function<void(int64_t)>& progress) {
  IntegrityReport rep;
  if (study_instance_uid) {
    crypto::Digest d = vault.IndexToken("StudyInstanceUID", *study_instance_uid);
    PHI_ASSIGN_OR_RETURN(index::StudyRow study,
                         catalog.FindStudyByUidToken(
                             index::Token(reinterpret_cast<const char*>(d.data()), d.size())));
    PHI_RETURN_IF_ERROR(VerifyStudy(catalog, objects, keys, study, rep, nullptr, progress));
    return rep;
  }
  std::set<std::string> referenced;
  index::StudyFilter f;
  f.limit = 200;
  for (;;) {
    PHI_ASSIGN_OR_RETURN(index::StudyCandidates c, catalog.QueryStudies(f));
    for (const auto& study : c.rows) {
      PHI_RETURN_IF_ERROR(VerifyStudy(catalog, objects, keys, study, rep, &referenced, progress));
    }
    if (!c.truncated || c.rows.empty()) break;
    f.after_study_pk = c.rows.back().study_pk;
  }
  // Files no catalog row points at (recovery removes them at start-up; one
  // found here appeared while running, or recovery could not remove it).
  PHI_ASSIGN_OR_RETURN(std::vector<std::string> on_disk, objects.ListObjectIds());
  for (const auto& id : on_disk) {
    if (referenced.count(id) == 0) Add(rep, "orphan_object", 0, "object:" + id, "no catalog row");
  }
  return rep;
}

}  // namespace phi::services
