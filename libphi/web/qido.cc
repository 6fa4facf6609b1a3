#include "libphi/web/qido.h"

#include <cctype>
#include <charconv>

#include "libphi/services/ingest_service.h"
#include "libphi/services/matching.h"

namespace phi::web {
namespace {

struct Key {
  const char* keyword;
  uint32_t tag;
};

// Attributes that can be matched or included.
constexpr Key kKeys[] = {
    {"SpecificCharacterSet", 0x00080005},
    {"StudyDate", 0x00080020},
    {"StudyTime", 0x00080030},
    {"AccessionNumber", 0x00080050},
    {"Modality", 0x00080060},
    {"ModalitiesInStudy", 0x00080061},
    {"ReferringPhysicianName", 0x00080090},
    {"StudyDescription", 0x00081030},
    {"SeriesDescription", 0x0008103E},
    {"SOPClassUID", 0x00080016},
    {"SOPInstanceUID", 0x00080018},
    {"PatientName", 0x00100010},
    {"PatientID", 0x00100020},
    {"IssuerOfPatientID", 0x00100021},
    {"PatientBirthDate", 0x00100030},
    {"PatientSex", 0x00100040},
    {"BodyPartExamined", 0x00180015},
    {"StudyInstanceUID", 0x0020000D},
    {"SeriesInstanceUID", 0x0020000E},
    {"StudyID", 0x00200010},
    {"SeriesNumber", 0x00200011},
    {"InstanceNumber", 0x00200013},
    {"NumberOfStudyRelatedSeries", 0x00201206},
    {"NumberOfStudyRelatedInstances", 0x00201208},
    {"NumberOfSeriesRelatedInstances", 0x00201209},
    {"BurnedInAnnotation", 0x00280301},
    {"TimezoneOffsetFromUTC", 0x00080201},
    {"RetrieveURL", 0x00081190},
    {"AvailableTransferSyntaxUID", 0x00083002},
};

uint32_t TagOf(std::string_view key) {
  for (const Key& k : kKeys) {
    if (key == k.keyword) return k.tag;
  }
  if (key.size() == 8) {
    uint32_t v = 0;
    auto [p, ec] = std::from_chars(key.data(), key.data() + 8, v, 16);
    if (ec == std::errc() && p == key.data() + 8) {
      for (const Key& k : kKeys) {
        if (k.tag == v) return v;
      }
    }
  }
  return 0;
}

Result<size_t> ParseCount(std::string_view v, size_t max) {
  if (v.empty() || v.size() > 9) return Status::InvalidArgument("malformed limit/offset");
  size_t n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc() || p != v.data() + v.size()) {
    return Status::InvalidArgument("malformed limit/offset");
  }
  if (n > max) return Status::InvalidArgument("limit/offset out of range");
  return n;
}

bool SafeText(std::string_view v) {
  if (v.size() > 256) return false;
  for (char c : v) {
    if (static_cast<unsigned char>(c) < 32 || c == '\\') return false;
  }
  return true;
}

Result<std::vector<std::string>> UidList(std::string_view v) {
  std::vector<std::string> out;
  size_t b = 0;
  while (b <= v.size()) {
    size_t e = v.find_first_of(",\\", b);
    if (e == std::string_view::npos) e = v.size();
    std::string_view one = v.substr(b, e - b);
    if (!services::IsValidUid(one)) return Status::InvalidArgument("malformed UID");
    if (out.size() >= kMaxUidList) return Status::InvalidArgument("too many UIDs");
    out.emplace_back(one);
    b = e + 1;
  }
  return out;
}

}  // namespace

uint32_t IncludeFieldTag(std::string_view key) { return TagOf(key); }

Result<QidoRequest> ParseQido(QidoLevel level,
                              const std::vector<std::pair<std::string, std::string>>& query) {
  QidoRequest r;
  std::set<uint32_t> seen;
  if (query.size() > 64) return Status::InvalidArgument("too many query parameters");
  for (const auto& [k, v] : query) {
    if (k == "includefield") {
      size_t b = 0;
      while (b <= v.size()) {
        size_t e = v.find(',', b);
        if (e == std::string::npos) e = v.size();
        std::string_view f = std::string_view(v).substr(b, e - b);
        b = e + 1;
        if (f == "all") {
          r.include_all = true;
          continue;
        }
        uint32_t t = TagOf(f);
        if (t == 0) return Status::InvalidArgument("unknown includefield attribute");
        r.include.insert(t);
      }
      continue;
    }
    if (k == "limit") {
      PHI_ASSIGN_OR_RETURN(r.limit, ParseCount(v, kMaxQidoLimit));
      if (r.limit == 0) return Status::InvalidArgument("limit must be > 0");
      continue;
    }
    if (k == "offset") {
      PHI_ASSIGN_OR_RETURN(r.offset, ParseCount(v, kMaxQidoOffset));
      continue;
    }
    if (k == "fuzzymatching") {
      if (v != "true" && v != "false") return Status::InvalidArgument("malformed fuzzymatching");
      r.fuzzy = v == "true";
      continue;
    }
    uint32_t tag = TagOf(k);
    if (tag == 0) return Status::InvalidArgument("unsupported query key");
    if (!seen.insert(tag).second) return Status::InvalidArgument("duplicate query key");
    if (!SafeText(v)) return Status::InvalidArgument("malformed query value");
    switch (tag) {
      case 0x00100010:
        r.study.patient_name = v;
        r.uses_identity_keys = true;
        break;
      case 0x00100020:
        r.study.patient_id = v;
        r.uses_identity_keys = true;
        break;
      case 0x00080050:
        r.study.accession_number = v;
        r.uses_identity_keys = true;
        break;
      case 0x00080020:
        if (!services::IsValidDateRange(v)) return Status::InvalidArgument("malformed StudyDate");
        r.study.study_date = v;
        break;
      case 0x0020000D: {
        PHI_ASSIGN_OR_RETURN(r.study.study_instance_uids, UidList(v));
        break;
      }
      case 0x00080061:  // ModalitiesInStudy
      case 0x00080060:  // Modality
        if (v.empty() || v.size() > 16) return Status::InvalidArgument("malformed modality");
        for (char c : v) {
          if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') {
            return Status::InvalidArgument("malformed modality");
          }
        }
        if (tag == 0x00080061 || level == QidoLevel::kStudy) {
          r.study.modality = v;
        } else {
          r.modality = v;
        }
        break;
      case 0x0020000E: {
        if (level == QidoLevel::kStudy) return Status::InvalidArgument("key not at this level");
        PHI_ASSIGN_OR_RETURN(r.series_uids, UidList(v));
        break;
      }
      case 0x00080018: {
        if (level != QidoLevel::kInstance) return Status::InvalidArgument("key not at this level");
        PHI_ASSIGN_OR_RETURN(r.sop_instance_uids, UidList(v));
        break;
      }
      case 0x00081030:
        r.study_description = v;
        r.uses_identity_keys = true;
        break;
      default:
        if (!v.empty()) return Status::InvalidArgument("unsupported matching key");
        // An empty value is a return key (PS3.18): include it.
        r.include.insert(tag);
        break;
    }
  }
  return r;
}

}  // namespace phi::web
