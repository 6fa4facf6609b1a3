#include "libphi/services/query_service.h"

#include <cctype>

#include "libphi/objects/phg_format.h"
#include "libphi/services/ingest_service.h"
#include "libphi/services/matching.h"
#include "libphi/util/log.h"

namespace phi::services {
namespace {

bool HasWildcard(std::string_view s) { return s.find_first_of("*?") != std::string_view::npos; }

// "CT,MR" holds `m`.
bool HasModality(std::string_view list, std::string_view m) {
  size_t b = 0;
  while (b <= list.size()) {
    size_t e = list.find(',', b);
    if (e == std::string_view::npos) e = list.size();
    if (list.substr(b, e - b) == m) return true;
    b = e + 1;
  }
  return false;
}

}  // namespace

QueryService::~QueryService() {
  stop_ = true;
  if (warm_.joinable()) warm_.join();
}

Result<PhiFields> QueryService::OpenStudyPhi(const index::StudyRow& row) {
  return OpenPhi(row.key_id, "study", row.study_uid_token, row.phi);
}

Status QueryService::BuildCache() {
  return keys_.cache().Build(
      catalog_, [this](const index::StudyRow& r) { return OpenStudyPhi(r); }, &stop_);
}

void QueryService::StartCacheWarmUp() {
  if (warming_.exchange(true)) return;
  warm_ = std::thread([this] {
    MonotonicTime t0 = std::chrono::steady_clock::now();
    Status s = BuildCache();
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s.ok()) {
      PHI_LOG(kNotice, "study cache ready", {{"studies", keys_.cache().size()}, {"seconds", secs}});
    } else if (!stop_) {
      PHI_LOG(kWarning, "study cache not built; queries decrypt rows", {{"status", s}});
    }
  });
}

std::vector<StudyMatch> QueryService::ScanCache(const StudyQuery& q) {
  std::vector<StudyMatch> out;
  size_t skipped = 0;
  // The pattern's literal prefix, lower-cased: a necessary condition for a
  // match with or without case folding, checked on the compact index first.
  std::string prefix;
  for (char c : q.patient_name) {
    if (c == '*' || c == '?' || prefix.size() == 8) break;
    prefix.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  }
  keys_.cache().Scan(prefix, [&](const StudyCache::View& v) {
    if (!q.modality.empty() && !HasModality(v.row.modalities, q.modality)) return true;
    if (!WildcardMatch(q.patient_name, v.patient_name, q.fold_case)) return true;
    if (!q.patient_id.empty() && !WildcardMatch(q.patient_id, v.patient_id)) return true;
    if (!q.accession_number.empty() && !WildcardMatch(q.accession_number, v.accession_number)) {
      return true;
    }
    if (!q.study_date.empty() && !DateRangeMatch(q.study_date, v.study_date)) return true;
    if (skipped < q.offset) {
      ++skipped;
      return true;
    }
    if (q.rendered_instead_of_phi && !v.rendered.empty()) {
      out.push_back(StudyMatch{v.row, PhiFields(), v.generation, std::string(v.rendered)});
      return out.size() < q.limit;
    }
    Result<PhiFields> phi = PhiFields::Decode(v.encoded);
    if (!phi.ok()) return true;  // encoded by the cache itself: cannot happen
    out.push_back(StudyMatch{v.row, std::move(*phi), v.generation, {}});
    return out.size() < q.limit;
  });
  return out;
}

index::Token QueryService::Token(std::string_view attr, std::string_view value) const {
  crypto::Digest d = vault_.IndexToken(attr, value);
  return index::Token(reinterpret_cast<const char*>(d.data()), d.size());
}

Result<PhiFields> QueryService::OpenPhi(const std::string& key_id, std::string_view level,
                                        const index::Token& token, const index::Blob& box) {
  PHI_ASSIGN_OR_RETURN(std::string plain, keys_.Open(key_id, PhiAad(level, token), box));
  return PhiFields::Decode(plain);
}

Result<std::vector<StudyMatch>> QueryService::FindStudies(const StudyQuery& q) {
  if (q.limit == 0 || q.limit > 10000) return Status::InvalidArgument("limit must be 1..10000");
  if (!IsValidDateRange(q.study_date)) return Status::InvalidArgument("malformed StudyDate range");
  const bool by_token = !q.study_instance_uids.empty() ||
                        (!q.patient_id.empty() && !HasWildcard(q.patient_id)) ||
                        (!q.accession_number.empty() && !HasWildcard(q.accession_number));
  StudyCache& cache = keys_.cache();
  if (!by_token && cache.ready()) {
    // Matching on the cached plaintext is the same matching as below: the
    // year and modality narrowing there is implied by the date range and
    // the modalities column checked here.
    PHI_RETURN_IF_ERROR(
        cache.Sync(catalog_, [this](const index::StudyRow& r) { return OpenStudyPhi(r); }));
    if (cache.ready()) return ScanCache(q);
  }
  index::StudyFilter f;
  for (const std::string& uid : q.study_instance_uids) {
    f.study_uid_tokens.push_back(Token("StudyInstanceUID", uid));
  }
  if (!q.patient_id.empty() && !HasWildcard(q.patient_id)) {
    f.patient_id_token = Token("PatientID", q.patient_id);
  }
  if (!q.accession_number.empty() && !HasWildcard(q.accession_number)) {
    f.accession_token = Token("AccessionNumber", q.accession_number);
  }
  int y0 = 0, y1 = 0;
  if (DateRangeYears(q.study_date, &y0, &y1)) {
    if (y0 > 0) f.year_min = y0;
    if (y1 < 9999) f.year_max = y1;
  }
  if (!q.modality.empty()) f.modality = q.modality;
  f.limit = 1000;

  std::vector<StudyMatch> out;
  size_t skipped = 0;
  for (;;) {
    PHI_ASSIGN_OR_RETURN(index::StudyCandidates page, catalog_.QueryStudies(f));
    for (index::StudyRow& row : page.rows) {
      f.after_study_pk = row.study_pk;
      PHI_ASSIGN_OR_RETURN(PhiFields phi,
                           OpenPhi(row.key_id, "study", row.study_uid_token, row.phi));
      if (!WildcardMatch(q.patient_name, phi.Get("PatientName"), q.fold_case)) continue;
      if (HasWildcard(q.patient_id) && !WildcardMatch(q.patient_id, phi.Get("PatientID"))) continue;
      if (HasWildcard(q.accession_number) &&
          !WildcardMatch(q.accession_number, phi.Get("AccessionNumber"))) {
        continue;
      }
      if (!q.study_date.empty() && !DateRangeMatch(q.study_date, phi.Get("StudyDate"))) continue;
      if (skipped < q.offset) {
        ++skipped;
        continue;
      }
      out.push_back(StudyMatch{std::move(row), std::move(phi), 0, {}});
      if (out.size() >= q.limit) return out;
    }
    if (!page.truncated) break;
  }
  return out;
}

Result<StudyMatch> QueryService::GetStudy(const std::string& study_instance_uid) {
  index::Token t = Token("StudyInstanceUID", study_instance_uid);
  PHI_ASSIGN_OR_RETURN(index::StudyRow row, catalog_.FindStudyByUidToken(t));
  PHI_ASSIGN_OR_RETURN(PhiFields phi, OpenPhi(row.key_id, "study", t, row.phi));
  return StudyMatch{std::move(row), std::move(phi), 0, {}};
}

Result<std::vector<SeriesMatch>> QueryService::ListSeries(const std::string& study_instance_uid) {
  PHI_ASSIGN_OR_RETURN(StudyMatch study, GetStudy(study_instance_uid));
  return ListSeriesOf(study);
}

Result<std::vector<SeriesMatch>> QueryService::ListSeriesOf(const StudyMatch& study) {
  PHI_ASSIGN_OR_RETURN(std::vector<index::SeriesRow> rows, catalog_.ListSeries(study.row.study_pk));
  std::vector<SeriesMatch> out;
  out.reserve(rows.size());
  for (index::SeriesRow& r : rows) {
    PHI_ASSIGN_OR_RETURN(PhiFields phi,
                         OpenPhi(study.row.key_id, "series", r.series_uid_token, r.phi));
    out.push_back(SeriesMatch{std::move(r), std::move(phi)});
  }
  return out;
}

Result<std::vector<InstanceMatch>> QueryService::ListInstances(
    const std::string& study_instance_uid) {
  PHI_ASSIGN_OR_RETURN(StudyMatch study, GetStudy(study_instance_uid));
  return ListInstancesOf(study);
}

Result<std::vector<InstanceMatch>> QueryService::ListInstancesOf(const StudyMatch& study) {
  PHI_ASSIGN_OR_RETURN(std::vector<index::InstanceRow> rows,
                       catalog_.ListInstancesOfStudy(study.row.study_pk));
  std::vector<InstanceMatch> out;
  out.reserve(rows.size());
  for (index::InstanceRow& r : rows) {
    PHI_ASSIGN_OR_RETURN(PhiFields phi,
                         OpenPhi(study.row.key_id, "instance", r.sop_uid_token, r.phi));
    out.push_back(InstanceMatch{std::move(r), std::move(phi)});
  }
  return out;
}

Result<OpenedInstance> QueryService::OpenInstance(const std::string& sop_instance_uid) {
  PHI_ASSIGN_OR_RETURN(index::InstanceRow row,
                       catalog_.GetInstanceBySopToken(Token("SOPInstanceUID", sop_instance_uid)));
  PHI_ASSIGN_OR_RETURN(index::StudyRow study, catalog_.GetStudy(row.study_pk));
  return OpenInstanceOf(study, row);
}

Result<OpenedInstance> QueryService::OpenInstanceOf(const index::StudyRow& study,
                                                    const index::InstanceRow& row) {
  if (row.study_pk != study.study_pk) return Status::InvalidArgument("instance of another study");
  PHI_ASSIGN_OR_RETURN(objects::KeyId key_bytes, objects::phg::ParseId(study.key_id));
  OpenedInstance o;
  PHI_ASSIGN_OR_RETURN(o.cipher, keys_.Cipher(study.key_id));
  PHI_ASSIGN_OR_RETURN(o.reader, objects_.Open(row.object_id, key_bytes, *o.cipher));
  o.row = row;
  return o;
}

void QueryService::AttachRendered(const std::vector<StudyCache::Attachment>& renderings) {
  keys_.cache().Attach(renderings);
}

bool QueryService::CachedHeader(const std::string& object_id, std::string* out) const {
  return keys_.cache().GetHeader(object_id, out);
}

void QueryService::CacheHeader(const index::Token& study_token, const std::string& object_id,
                               std::string_view header) {
  keys_.cache().PutHeader(study_token, object_id, header);
}

}  // namespace phi::services
