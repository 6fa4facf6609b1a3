#include "libphi/web/dicomweb.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <system_error>
#include <thread>
#include <unordered_map>

#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcistrmb.h"
#include "dcmtk/dcmdata/dcjson.h"
#include "dcmtk/dcmdata/dcmetinf.h"
#include "dcmtk/dcmdata/dcpixel.h"
#include "dcmtk/dcmdata/dcpixseq.h"
#include "dcmtk/dcmdata/dcpxitem.h"
#include "dcmtk/dcmdata/dcxfer.h"
#include "libphi/dicom/part10.h"
#include "libphi/services/matching.h"
#include "libphi/services/no_dump_slab.h"
#include "libphi/util/log.h"
#include "libphi/web/dicom_json.h"
#include "libphi/web/multipart.h"
#include "libphi/web/qido.h"
#include "libphi/web/read_ahead.h"

namespace phi::web {

using json = nlohmann::json;
using config::Role;

namespace {

constexpr char kDicomJson[] = "application/dicom+json";
constexpr size_t kHeaderChunk = 64 * 1024;
// Metadata of at least this many instances is rendered by two workers.
constexpr size_t kParallelMetadataMin = 16;

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

Response StatusResponse(const Status& s) {
  switch (s.code()) {
    case Code::kNotFound:
      return Response::Problem(404, "Not Found");
    case Code::kInvalidArgument:
      return Response::Problem(400, "Bad Request");
    case Code::kPermissionDenied:
      return Response::Problem(403, "Forbidden");
    case Code::kResourceExhausted:
      return Response::Problem(413, "Content Too Large");
    case Code::kUnavailable:
      return Response::Problem(503, "Service Unavailable");
    default:
      return Response::Problem(500, "Internal Server Error");
  }
}

std::string Outcome(const Status& s) {
  if (s.ok()) return "ok";
  return "error:" + std::string(CodeName(s.code()));
}

// ---- DICOM JSON model helpers

bool Wants(const QidoRequest* q, uint32_t tag) {
  return q != nullptr && (q->include_all || q->include.count(tag) > 0);
}

std::string PatientKey(const services::PhiFields& study) {
  const std::string& id = study.Get("PatientID");
  if (id.empty()) return "uid:" + study.Get("StudyInstanceUID");
  return study.Get("IssuerOfPatientID") + "|" + id;
}

// ---- Accept negotiation

// Whether `accept` (absent = anything) admits one of `types` (lower case).
// For multipart/related, `part_type` must match the range's type parameter
// (when given) and the transfer-syntax parameter must be absent, "*" or in `ts`.
Result<bool> AcceptsMultipart(const RequestContext& ctx, std::string_view part_type,
                              const std::vector<std::string>& ts) {
  auto h = ctx.Header("accept");
  if (!h) return true;
  PHI_ASSIGN_OR_RETURN(std::vector<MediaType> ranges, ParseAccept(*h));
  for (const MediaType& m : ranges) {
    if (m.q <= 0) continue;
    if (m.type == "*/*" || m.type == "multipart/*") return true;
    if (m.type != "multipart/related") continue;
    std::string type = m.Param("type");
    if (!type.empty() && type != part_type) continue;
    std::string want = m.Param("transfer-syntax");
    if (!want.empty() && want != "*" &&
        !std::all_of(ts.begin(), ts.end(), [&](const std::string& t) { return t == want; })) {
      continue;
    }
    return true;
  }
  return false;
}

Result<bool> AcceptsJson(const RequestContext& ctx) {
  auto h = ctx.Header("accept");
  if (!h) return true;
  PHI_ASSIGN_OR_RETURN(std::vector<MediaType> ranges, ParseAccept(*h));
  for (const MediaType& m : ranges) {
    if (m.q <= 0) continue;
    if (m.type == "*/*" || m.type == "application/*" || m.type == kDicomJson ||
        m.type == "application/json") {
      return true;
    }
  }
  return false;
}

// ---- reading stored instances with DCMTK

void Wipe(std::string& s) {
  if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
  std::string().swap(s);
}

// Bytes kept after the last one DCMTK consumed when it stopped at Pixel Data:
// the element's tag, VR and length (at most 12 bytes) so that the header
// bytes parse to the same stop on their own.
constexpr size_t kStopSlack = 16;

// Parses the stored instance's header (up to Pixel Data) feeding DCMTK one
// chunk at a time: memory is the header, not the object. With `prefix`, also
// returns the Part 10 bytes the header was parsed from (for the header cache;
// empty when the header is larger than the cache takes).
Status ParseHeader(objects::ObjectReader& r, DcmFileFormat& ff, std::string* prefix = nullptr) {
  DcmInputBufferStream in;
  std::vector<char> chunk(kHeaderChunk);
  std::string fed;
  uint64_t off = 0;
  const uint64_t size = r.plaintext_size();
  ff.transferInit();
  OFCondition cond = EC_Normal;
  for (;;) {
    PHI_ASSIGN_OR_RETURN(
        size_t n, r.Read(off, std::span<std::byte>(reinterpret_cast<std::byte*>(chunk.data()),
                                                   chunk.size())));
    off += n;
    if (prefix != nullptr && fed.size() < services::NoDumpSlab::kMaxValueBytes) {
      fed.append(chunk.data(), n);
    }
    in.setBuffer(chunk.data(), static_cast<offile_off_t>(n));
    if (off >= size) in.setEos();
    cond = ff.readUntilTag(in, EXS_Unknown, EGL_noChange, DCM_MaxReadLength, DCM_PixelData);
    in.releaseBuffer();
    if (cond == EC_StreamNotifyClient && off < size && n > 0) continue;
    break;
  }
  ff.transferEnd();
  OPENSSL_cleanse(chunk.data(), chunk.size());
  if (cond.bad()) {
    Wipe(fed);
    return Status::Corruption(std::string("stored instance header: ") + cond.text());
  }
  if (prefix != nullptr) {
    const uint64_t used = std::min<uint64_t>(static_cast<uint64_t>(in.tell()) + kStopSlack, off);
    if (used <= fed.size() && used <= services::NoDumpSlab::kMaxValueBytes) {
      prefix->assign(fed.data(), used);
    }
    Wipe(fed);
  }
  return Status::Ok();
}

// Parses header bytes cached by ParseHeader (up to Pixel Data).
Status ParseHeaderBytes(const std::string& bytes, DcmFileFormat& ff) {
  DcmInputBufferStream in;
  in.setBuffer(bytes.data(), static_cast<offile_off_t>(bytes.size()));
  in.setEos();
  ff.transferInit();
  OFCondition cond =
      ff.readUntilTag(in, EXS_Unknown, EGL_noChange, DCM_MaxReadLength, DCM_PixelData);
  ff.transferEnd();
  in.releaseBuffer();
  if (cond.bad()) return Status::Corruption(std::string("cached header: ") + cond.text());
  return Status::Ok();
}

Result<std::string> ReadWhole(objects::ObjectReader& r, uint64_t cap) {
  if (r.plaintext_size() > cap) return Status::ResourceExhausted("instance too large to rewrite");
  std::string out(r.plaintext_size(), '\0');
  PHI_ASSIGN_OR_RETURN(
      size_t n,
      r.Read(0, std::span<std::byte>(reinterpret_cast<std::byte*>(out.data()), out.size())));
  if (n != out.size()) return Status::Corruption("short read of stored instance");
  return out;
}

Status ParseWhole(const std::string& bytes, DcmFileFormat& ff) {
  DcmInputBufferStream in;
  in.setBuffer(bytes.data(), static_cast<offile_off_t>(bytes.size()));
  in.setEos();
  ff.transferInit();
  OFCondition cond = ff.read(in, EXS_Unknown, EGL_noChange, DCM_MaxReadLength);
  ff.transferEnd();
  if (cond.bad()) return Status::Corruption(std::string("stored instance: ") + cond.text());
  return Status::Ok();
}

Result<std::string> Serialize(DcmFileFormat& ff, uint64_t cap) {
  std::vector<std::byte> out;
  dicom::BoundedBufferStream os(&out, cap);
  E_TransferSyntax x = ff.getDataset()->getOriginalXfer();
  if (x == EXS_Unknown) x = EXS_LittleEndianExplicit;
  ff.transferInit();
  OFCondition cond = ff.write(os, x, EET_ExplicitLength, nullptr);
  ff.transferEnd();
  if (cond.bad()) return Status::Internal(std::string("rewrite: ") + cond.text());
  if (os.overflowed()) return Status::ResourceExhausted("rewritten instance too large");
  return std::string(reinterpret_cast<const char*>(out.data()), out.size());
}

std::string GetStr(DcmItem& ds, const DcmTagKey& k) {
  OFString v;
  if (ds.findAndGetOFStringArray(k, v).good()) return std::string(v.c_str(), v.size());
  return "";
}

// The study's sealed Patient module (the truth, updated by HL7 ADT).
const std::pair<const char*, DcmTagKey> kPatientModule[] = {
    {"PatientName", DCM_PatientName},
    {"PatientID", DCM_PatientID},
    {"IssuerOfPatientID", DCM_IssuerOfPatientID},
    {"PatientBirthDate", DCM_PatientBirthDate},
    {"PatientSex", DCM_PatientSex},
};

// True when the header's Patient module differs from the study's.
bool DemographicsDiffer(DcmDataset& ds, const services::PhiFields& study) {
  std::string cs = GetStr(ds, DCM_SpecificCharacterSet);
  if (!cs.empty() && cs != "ISO_IR 192" && ds.convertToUTF8().bad()) return true;
  for (auto& [name, tag] : kPatientModule) {
    if (GetStr(ds, tag) != study.Get(name)) return true;
  }
  return false;
}

Status ApplyDemographics(DcmDataset& ds, const services::PhiFields& study) {
  std::string cs = GetStr(ds, DCM_SpecificCharacterSet);
  if (!cs.empty() && cs != "ISO_IR 192" && ds.convertToUTF8().bad()) {
    return Status::Internal("character set conversion failed");
  }
  bool non_ascii = false;
  for (auto& [name, tag] : kPatientModule) {
    const std::string& v = study.Get(name);
    for (unsigned char c : v) non_ascii |= c >= 0x80;
    if (v.empty() && !ds.tagExists(tag)) continue;
    ds.putAndInsertString(tag, v.c_str());
  }
  if (non_ascii) ds.putAndInsertString(DCM_SpecificCharacterSet, "ISO_IR 192");
  return Status::Ok();
}

class BulkUriFormat : public DcmJsonFormatCompact {
 public:
  BulkUriFormat() : DcmJsonFormatCompact(OFFalse) {}
};

// ---- share UID map (de-identified -> original)

class UidMap {
 public:
  void Note(const std::string& deid, const std::string& real) {
    std::lock_guard<std::mutex> l(mu_);
    if (map_.size() >= kMax) map_.clear();
    map_.emplace(deid, real);
  }
  std::optional<std::string> Real(const std::string& deid) const {
    std::lock_guard<std::mutex> l(mu_);
    auto it = map_.find(deid);
    if (it == map_.end()) return std::nullopt;
    return it->second;
  }

 private:
  static constexpr size_t kMax = 1 << 20;
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::string> map_;  // guarded by mu_
};

std::vector<std::string> SplitFrames(std::string_view s, bool* ok) {
  std::vector<std::string> out;
  *ok = true;
  size_t b = 0;
  while (b <= s.size()) {
    size_t e = s.find(',', b);
    if (e == std::string_view::npos) e = s.size();
    std::string_view f = s.substr(b, e - b);
    if (f.empty() || f.size() > 9 || out.size() >= 10000 ||
        !std::all_of(f.begin(), f.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      *ok = false;
      return {};
    }
    out.emplace_back(f);
    b = e + 1;
  }
  return out;
}

std::string FrameMediaType(const std::string& ts) {
  static const std::pair<const char*, const char*> kTypes[] = {
      {"1.2.840.10008.1.2.4.50", "image/jpeg"},   {"1.2.840.10008.1.2.4.51", "image/jpeg"},
      {"1.2.840.10008.1.2.4.57", "image/jpeg"},   {"1.2.840.10008.1.2.4.70", "image/jpeg"},
      {"1.2.840.10008.1.2.4.80", "image/jls"},    {"1.2.840.10008.1.2.4.81", "image/jls"},
      {"1.2.840.10008.1.2.4.90", "image/jp2"},    {"1.2.840.10008.1.2.4.91", "image/jp2"},
      {"1.2.840.10008.1.2.5", "image/dicom-rle"},
  };
  for (auto& [t, m] : kTypes) {
    if (ts == t) return m;
  }
  return "application/octet-stream";
}

}  // namespace

std::vector<std::string> AuditObjects(const std::vector<int64_t>& study_pks, size_t max_bytes) {
  std::vector<std::string> out;
  std::string cur;
  for (int64_t pk : study_pks) {
    std::string one = "study:" + std::to_string(pk);
    if (!cur.empty() && cur.size() + 1 + one.size() > max_bytes) {
      out.push_back(std::move(cur));
      cur.clear();
    }
    if (!cur.empty()) cur += ' ';
    cur += one;
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

struct Dicomweb::Impl : std::enable_shared_from_this<Dicomweb::Impl> {
  Impl(DicomwebDeps d, DicomwebOptions o)
      : deps(d), options(o), deid(d.vault, o.deid), boundary_seed(0) {}

  DicomwebDeps deps;
  DicomwebOptions options;
  services::Deidentifier deid;
  UidMap uids;
  std::atomic<uint64_t> boundary_seed;

  static bool Share(const RequestContext& ctx) { return ctx.role == Role::kShare; }
  static std::string Actor(const RequestContext& ctx) { return "web:" + ctx.identity->subject; }

  std::string Boundary() {
    uint64_t r = 0;
    (void)deps.env.RandomBytes(std::as_writable_bytes(std::span<uint64_t>(&r, 1)));
    return MakeBoundary(r ^ boundary_seed.fetch_add(1));
  }

  std::string ShownUid(const RequestContext& ctx, const std::string& real) {
    if (!Share(ctx)) return real;
    std::string d = deid.Uid(real);
    uids.Note(d, real);
    return d;
  }

  std::string BaseUrl(const RequestContext& ctx) const {
    auto h = ctx.Header("host");
    std::string host = h ? std::string(*h) : "localhost";
    // A Host header is client data: keep only what a host[:port] may hold.
    for (char c : host) {
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != ':' &&
          c != '[' && c != ']') {
        return "https://localhost";
      }
    }
    return "https://" + host;
  }

  // Audits the request: one record whose object lists every study it
  // disclosed ("study:<pk> study:<pk> ..."; AuditObjects), more only when
  // the list is longer than an audit object holds; one "request" record
  // when it touched none. Committed (group commit) before the response.
  Status Audit(const RequestContext& ctx, std::string_view action,
               const std::vector<int64_t>& study_pks, const std::string& outcome,
               const std::string& detail = "") {
    audit::AuditEvent base;
    base.actor = Actor(ctx);
    base.action = std::string(action);
    base.outcome = outcome;
    base.peer = ctx.peer_address;
    base.detail = "route=" + ctx.route + (detail.empty() ? "" : ";" + detail);
    std::vector<std::string> objects = AuditObjects(study_pks, audit::kMaxShortField);
    if (objects.empty()) objects.emplace_back("request");
    return deps.catalog.Write([&](index::WriteTxn& txn) -> Status {
      for (size_t k = 0; k < objects.size(); ++k) {
        audit::AuditEvent e = base;
        e.object = objects[k];
        if (objects.size() > 1) {
          e.detail += ";part=" + std::to_string(k + 1) + "/" + std::to_string(objects.size());
        }
        PHI_RETURN_IF_ERROR(txn.AppendAudit(e).status());
      }
      return Status::Ok();
    });
  }

  Response Fail(const RequestContext& ctx, std::string_view action, const Status& s) {
    (void)Audit(ctx, action, {}, Outcome(s));
    return StatusResponse(s);
  }

  // ---- resolving path UIDs (share: de-identified -> original)

  Result<std::string> RealStudyUid(const RequestContext& ctx, const std::string& uid) {
    if (!services::IsValidUid(uid)) return Status::InvalidArgument("malformed UID");
    if (!Share(ctx)) return uid;
    if (auto r = uids.Real(uid)) return *r;
    // Not seen since start: walk the catalog computing de-identified UIDs.
    services::StudyQuery q;
    q.limit = 10000;
    for (;;) {
      PHI_ASSIGN_OR_RETURN(std::vector<services::StudyMatch> page, deps.query.FindStudies(q));
      for (auto& m : page) {
        const std::string& real = m.phi.Get("StudyInstanceUID");
        std::string d = deid.Uid(real);
        uids.Note(d, real);
        if (d == uid) return real;
      }
      if (page.size() < q.limit) break;
      q.offset += page.size();
    }
    return Status::NotFound("unknown study");
  }

  Result<services::StudyMatch> ResolveStudy(const RequestContext& ctx) {
    PHI_ASSIGN_OR_RETURN(std::string real, RealStudyUid(ctx, ctx.params.at("study")));
    return deps.query.GetStudy(real);
  }

  bool ShownEquals(const RequestContext& ctx, const std::string& real, const std::string& shown) {
    return Share(ctx) ? deid.Uid(real) == shown : real == shown;
  }

  // Instances of the study, narrowed to a series / instance from the path;
  // for share, BurnedInAnnotation=YES instances are withheld. Also returns
  // the series rows (for series UIDs).
  Result<std::vector<services::InstanceMatch>> PathInstances(
      const RequestContext& ctx, const services::StudyMatch& study,
      std::vector<services::SeriesMatch>* series_out) {
    const std::string real_study = study.phi.Get("StudyInstanceUID");
    PHI_ASSIGN_OR_RETURN(std::vector<services::SeriesMatch> series, deps.query.ListSeriesOf(study));
    std::optional<int64_t> series_pk;
    auto sp = ctx.params.find("series");
    if (sp != ctx.params.end()) {
      if (!services::IsValidUid(sp->second)) return Status::InvalidArgument("malformed UID");
      for (auto& s : series) {
        if (ShownEquals(ctx, s.phi.Get("SeriesInstanceUID"), sp->second)) {
          series_pk = s.row.series_pk;
        }
      }
      if (!series_pk) return Status::NotFound("unknown series");
    }
    auto ip = ctx.params.find("instance");
    if (ip != ctx.params.end() && !services::IsValidUid(ip->second)) {
      return Status::InvalidArgument("malformed UID");
    }
    PHI_ASSIGN_OR_RETURN(std::vector<services::InstanceMatch> all,
                         deps.query.ListInstancesOf(study));
    std::vector<services::InstanceMatch> out;
    for (auto& i : all) {
      if (series_pk && i.row.series_pk != *series_pk) continue;
      if (ip != ctx.params.end() && !ShownEquals(ctx, i.phi.Get("SOPInstanceUID"), ip->second)) {
        continue;
      }
      if (Share(ctx) && i.phi.Get("BurnedInAnnotation") == "YES") continue;
      out.push_back(std::move(i));
    }
    if (out.empty() && (ip != ctx.params.end() || series_pk)) {
      return Status::NotFound("unknown instance");
    }
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
      if (a.row.series_pk != b.row.series_pk) return a.row.series_pk < b.row.series_pk;
      return a.row.instance_number.value_or(0) < b.row.instance_number.value_or(0);
    });
    if (series_out) *series_out = std::move(series);
    return out;
  }

  // ---- JSON for QIDO (rendered directly: dicom_json.h)

  void StudyJson(const RequestContext& ctx, const services::StudyMatch& m, const QidoRequest* q,
                 const std::string& base_url, DicomJsonObject& o, std::string& out) {
    const services::PhiFields& p = m.phi;
    const bool share = Share(ctx);
    o.Clear();
    std::string uid = ShownUid(ctx, p.Get("StudyInstanceUID"));
    if (share) {
      o.Put("00080005", "CS", "ISO_IR 192");
      o.Put("00080020", "DA", deid.Date(p.Get("StudyDate"), PatientKey(p)));
      o.Put("00080030", "TM", "");
      o.Put("00080050", "SH", "");
      o.Put("00080090", "PN", "");
      o.Put("00100010", "PN", "");
      o.Put("00100020", "LO", "");
      o.Put("00100030", "DA", "");
      o.Put("00100040", "CS", "");
      o.Put("00200010", "SH", "");
      o.Put("00120062", "CS", "YES");
      o.Put("00120063", "LO", deid.method());
    } else {
      o.Put("00080005", "CS", "ISO_IR 192");
      o.Put("00080020", "DA", p.Get("StudyDate"));
      o.Put("00080030", "TM", p.Get("StudyTime"));
      o.Put("00080050", "SH", p.Get("AccessionNumber"));
      o.Put("00080090", "PN", p.Get("ReferringPhysicianName"));
      o.Put("00100010", "PN", p.Get("PatientName"));
      o.Put("00100020", "LO", p.Get("PatientID"));
      o.Put("00100030", "DA", p.Get("PatientBirthDate"));
      o.Put("00100040", "CS", p.Get("PatientSex"));
      o.Put("00200010", "SH", p.Get("StudyID"));
      if (Wants(q, 0x00081030)) o.Put("00081030", "LO", p.Get("StudyDescription"));
      if (Wants(q, 0x00100021)) o.Put("00100021", "LO", p.Get("IssuerOfPatientID"));
    }
    std::vector<std::string_view> mods;
    std::string_view ms(m.row.modalities);
    size_t b = 0;
    while (b < ms.size()) {
      size_t e = ms.find(',', b);
      if (e == std::string_view::npos) e = ms.size();
      if (e > b) mods.push_back(ms.substr(b, e - b));
      b = e + 1;
    }
    o.PutStrings("00080061", "CS", mods);
    o.Put("0020000D", "UI", uid);
    o.PutInt("00201206", "IS", m.row.num_series);
    o.PutInt("00201208", "IS", m.row.num_instances);
    o.Put("00081190", "UR", base_url + "/studies/" + uid);
    o.AppendTo(out);
  }

  // The cached form of a study's QIDO object (clinician, default fields): 4
  // bytes (little endian) giving where the base URL goes, then StudyJson's
  // rendering with an empty base URL. The base URL (BaseUrl: "https://" and
  // host characters that JSON never escapes) is the only part of the object
  // that depends on the request, and it opens the RetrieveURL string.
  static constexpr std::string_view kRetrieveUrlOpen = "\"00081190\":{\"Value\":[\"";

  bool RenderStudyJsonForCache(const RequestContext& ctx, const services::StudyMatch& m,
                               const QidoRequest* q, DicomJsonObject& o, std::string* out) {
    std::string json;
    StudyJson(ctx, m, q, "", o, json);
    // Member names are never inside a value: a value's quotes are escaped.
    const size_t at = json.find(kRetrieveUrlOpen);
    if (at == std::string::npos || json.size() > UINT32_MAX) return false;
    const auto pos = static_cast<uint32_t>(at + kRetrieveUrlOpen.size());
    out->clear();
    out->reserve(4 + json.size());
    for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((pos >> (8 * i)) & 0xFF));
    out->append(json);
    OPENSSL_cleanse(json.data(), json.size());
    return true;
  }

  static bool AppendCachedStudyJson(std::string_view cached, const std::string& base_url,
                                    std::string& out) {
    if (cached.size() < 4) return false;
    uint32_t pos = 0;
    for (int i = 0; i < 4; ++i) pos |= uint32_t{static_cast<unsigned char>(cached[i])} << (8 * i);
    std::string_view json = cached.substr(4);
    if (pos > json.size()) return false;
    out.append(json.substr(0, pos));
    out.append(base_url);
    out.append(json.substr(pos));
    return true;
  }

  void SeriesJson(const RequestContext& ctx, const std::string& study_uid_shown,
                  const services::SeriesMatch& s, const QidoRequest* q, const std::string& base_url,
                  DicomJsonObject& o, std::string& out) {
    o.Clear();
    std::string uid = ShownUid(ctx, s.phi.Get("SeriesInstanceUID"));
    o.Put("00080060", "CS", s.row.modality);
    o.Put("0020000D", "UI", study_uid_shown);
    o.Put("0020000E", "UI", uid);
    if (s.row.series_number) {
      o.PutInt("00200011", "IS", *s.row.series_number);
    } else {
      o.Put("00200011", "IS", "");
    }
    o.PutInt("00201209", "IS", s.row.num_instances);
    if (!Share(ctx)) {
      if (Wants(q, 0x0008103E)) o.Put("0008103E", "LO", s.phi.Get("SeriesDescription"));
    }
    if (Wants(q, 0x00180015)) o.Put("00180015", "CS", s.phi.Get("BodyPartExamined"));
    o.Put("00081190", "UR", base_url + "/studies/" + study_uid_shown + "/series/" + uid);
    o.AppendTo(out);
  }

  void InstanceJson(const RequestContext& ctx, const std::string& study_uid_shown,
                    const std::string& series_uid_shown, const services::InstanceMatch& i,
                    const QidoRequest* q, const std::string& base_url, DicomJsonObject& o,
                    std::string& out) {
    o.Clear();
    std::string uid = ShownUid(ctx, i.phi.Get("SOPInstanceUID"));
    o.Put("00080016", "UI", i.row.sop_class_uid);
    o.Put("00080018", "UI", uid);
    o.Put("0020000D", "UI", study_uid_shown);
    o.Put("0020000E", "UI", series_uid_shown);
    if (i.row.instance_number) {
      o.PutInt("00200013", "IS", *i.row.instance_number);
    } else {
      o.Put("00200013", "IS", "");
    }
    if (Wants(q, 0x00083002)) o.Put("00083002", "UI", i.row.transfer_syntax_uid);
    if (Wants(q, 0x00280301)) o.Put("00280301", "CS", i.phi.Get("BurnedInAnnotation"));
    o.Put("00081190", "UR",
          base_url + "/studies/" + study_uid_shown + "/series/" + series_uid_shown + "/instances/" +
              uid);
    o.AppendTo(out);
  }

  // A DICOM JSON array of `count` objects rendered into `items` (comma
  // separated); 204 when there are none.
  static Response JsonArray(size_t count, const std::string& items) {
    Response r;
    r.content_type = kDicomJson;
    if (count == 0) {
      r.status = 204;
      return r;
    }
    r.status = 200;
    r.body.reserve(items.size() + 2);
    r.body += '[';
    r.body += items;
    r.body += ']';
    return r;
  }

  // ---- QIDO

  Response Qido(const RequestContext& ctx, QidoLevel level) {
    auto accept = AcceptsJson(ctx);
    if (!accept.ok()) return Fail(ctx, "query", Status::InvalidArgument("bad Accept"));
    if (!*accept) return Response::Problem(406, "Not Acceptable");
    auto parsed = ParseQido(level, ctx.query);
    if (!parsed.ok()) return Fail(ctx, "query", parsed.status());
    QidoRequest& q = *parsed;
    if (Share(ctx)) {
      if (q.uses_identity_keys) {
        return Fail(ctx, "query", Status::InvalidArgument("identity keys not allowed"));
      }
      if (!q.study.study_date.empty() && !deid.options().modified_dates) {
        return Fail(ctx, "query", Status::InvalidArgument("dates not available"));
      }
      if (!q.study.study_date.empty()) {
        // Shifted dates differ per patient: the range cannot be mapped back.
        return Fail(ctx, "query", Status::InvalidArgument("date matching not available"));
      }
      for (auto& u : q.study.study_instance_uids) {
        auto r = RealStudyUid(ctx, u);
        if (r.ok()) {
          u = *r;
        } else {
          u = "0";  // matches nothing
        }
      }
    }
    QidoOut out;
    std::vector<int64_t> pks;
    Status s = RunQido(ctx, level, q, &out, &pks);
    if (!s.ok()) return Fail(ctx, "query", s);
    if (Status a = Audit(ctx, "query", pks, "ok", "results=" + std::to_string(out.count));
        !a.ok()) {
      return StatusResponse(a);
    }
    if (out.count == 0) return JsonArray(0, "");
    out.items += ']';
    Response r;
    r.content_type = kDicomJson;
    r.status = 200;
    r.body = std::move(out.items);
    return r;
  }

  // The rendered result objects of a QIDO request.
  struct QidoOut {
    size_t count = 0;
    std::string items = "[";  // '[' and the objects, comma separated
    DicomJsonObject obj;
    std::string& Next() {
      if (count++ > 0) items += ',';
      return items;
    }
  };

  Status RunQido(const RequestContext& ctx, QidoLevel level, QidoRequest& q, QidoOut* out,
                 std::vector<int64_t>* pks) {
    const std::string base_url = BaseUrl(ctx);
    const bool nested_study = ctx.params.count("study") > 0;
    if (auto it = ctx.params.find("series"); it != ctx.params.end()) {
      if (!services::IsValidUid(it->second)) return Status::InvalidArgument("malformed UID");
      q.series_uids = {it->second};
    }
    // Study objects the study cache may keep rendered (clinician, default
    // fields: the same bytes for every such request but the base URL).
    const bool cacheable = level == QidoLevel::kStudy && !Share(ctx) && !Wants(&q, 0x00081030) &&
                           !Wants(&q, 0x00100021);
    // Studies in scope.
    std::vector<services::StudyMatch> studies;
    if (nested_study) {
      PHI_ASSIGN_OR_RETURN(services::StudyMatch m, ResolveStudy(ctx));
      studies.push_back(std::move(m));
    } else {
      services::StudyQuery sq = q.study;
      if (level == QidoLevel::kStudy && q.study_description.empty()) {
        sq.offset = q.offset;
        sq.limit = q.limit;
        sq.rendered_instead_of_phi = cacheable;
      } else {
        sq.offset = 0;
        sq.limit = kMaxQidoLimit;
      }
      PHI_ASSIGN_OR_RETURN(studies, deps.query.FindStudies(sq));
      if (!q.study_description.empty()) {
        std::vector<services::StudyMatch> kept;
        for (auto& m : studies) {
          if (services::WildcardMatch(q.study_description, m.phi.Get("StudyDescription"), true)) {
            kept.push_back(std::move(m));
          }
        }
        studies = std::move(kept);
        if (level == QidoLevel::kStudy) {
          if (q.offset >= studies.size()) {
            studies.clear();
          } else {
            studies.erase(studies.begin(), studies.begin() + static_cast<ptrdiff_t>(q.offset));
          }
          if (studies.size() > q.limit) studies.resize(q.limit);
        }
      }
    }
    if (level == QidoLevel::kStudy) {
      out->items.reserve(studies.size() * 700);  // a study object is ~650 bytes
      std::vector<services::StudyCache::Attachment> fresh;
      for (auto& m : studies) {
        if (!m.rendered.empty()) {
          if (!AppendCachedStudyJson(m.rendered, base_url, out->Next())) {
            return Status::Internal("bad cached study rendering");
          }
        } else if (cacheable && m.cache_generation != 0) {
          services::StudyCache::Attachment a{m.row.study_pk, m.cache_generation, {}};
          if (RenderStudyJsonForCache(ctx, m, &q, out->obj, &a.bytes) &&
              AppendCachedStudyJson(a.bytes, base_url, out->Next())) {
            fresh.push_back(std::move(a));
          } else {
            StudyJson(ctx, m, &q, base_url, out->obj, out->Next());
          }
        } else {
          StudyJson(ctx, m, &q, base_url, out->obj, out->Next());
        }
        pks->push_back(m.row.study_pk);
      }
      deps.query.AttachRendered(fresh);
      for (auto& a : fresh) OPENSSL_cleanse(a.bytes.data(), a.bytes.size());
      return Status::Ok();
    }
    size_t skipped = 0;
    for (auto& m : studies) {
      if (out->count >= q.limit) break;
      const std::string real_study = m.phi.Get("StudyInstanceUID");
      std::string study_shown = ShownUid(ctx, real_study);
      PHI_ASSIGN_OR_RETURN(std::vector<services::SeriesMatch> series,
                           deps.query.ListSeries(real_study));
      std::unordered_map<int64_t, const services::SeriesMatch*> kept;
      for (auto& s : series) {
        if (!q.modality.empty() && s.row.modality != q.modality) continue;
        if (!q.series_uids.empty() &&
            std::none_of(q.series_uids.begin(), q.series_uids.end(), [&](const std::string& u) {
              return ShownEquals(ctx, s.phi.Get("SeriesInstanceUID"), u);
            })) {
          continue;
        }
        kept.emplace(s.row.series_pk, &s);
      }
      bool any = false;
      if (level == QidoLevel::kSeries) {
        for (auto& s : series) {
          if (!kept.count(s.row.series_pk)) continue;
          if (skipped < q.offset) {
            ++skipped;
            continue;
          }
          if (out->count >= q.limit) break;
          SeriesJson(ctx, study_shown, s, &q, base_url, out->obj, out->Next());
          any = true;
        }
      } else {
        if (kept.empty()) continue;
        PHI_ASSIGN_OR_RETURN(std::vector<services::InstanceMatch> insts,
                             deps.query.ListInstances(real_study));
        std::sort(insts.begin(), insts.end(), [](const auto& a, const auto& b) {
          if (a.row.series_pk != b.row.series_pk) return a.row.series_pk < b.row.series_pk;
          return a.row.instance_number.value_or(0) < b.row.instance_number.value_or(0);
        });
        for (auto& i : insts) {
          auto it = kept.find(i.row.series_pk);
          if (it == kept.end()) continue;
          if (Share(ctx) && i.phi.Get("BurnedInAnnotation") == "YES") continue;
          if (!q.sop_instance_uids.empty() &&
              std::none_of(q.sop_instance_uids.begin(), q.sop_instance_uids.end(),
                           [&](const std::string& u) {
                             return ShownEquals(ctx, i.phi.Get("SOPInstanceUID"), u);
                           })) {
            continue;
          }
          if (skipped < q.offset) {
            ++skipped;
            continue;
          }
          if (out->count >= q.limit) break;
          std::string series_shown = ShownUid(ctx, it->second->phi.Get("SeriesInstanceUID"));
          InstanceJson(ctx, study_shown, series_shown, i, &q, base_url, out->obj, out->Next());
          any = true;
        }
      }
      if (any) pks->push_back(m.row.study_pk);
    }
    return Status::Ok();
  }

  // ---- WADO: instances (streamed)

  // Prepares one instance for sending: the raw stored bytes when they can go
  // as they are, else a rewritten copy (share: de-identified; clinician:
  // demographics updated).
  struct Prepared {
    std::optional<services::OpenedInstance> raw;
    std::string rewritten;
  };

  // `decided`: the demographics verdict for the whole study, once known. A
  // study without a patient conflict holds one patient in all its instances
  // (ingest flags any difference), so the first instance's header decides.
  Result<Prepared> Prepare(bool share, const services::StudyMatch& study,
                           const services::InstanceMatch& inst, std::optional<bool>* decided) {
    Prepared p;
    PHI_ASSIGN_OR_RETURN(services::OpenedInstance o,
                         deps.query.OpenInstanceOf(study.row, inst.row));
    bool rewrite = share;
    if (!share && options.apply_demographic_updates) {
      if (decided != nullptr && decided->has_value()) {
        rewrite = **decided;
      } else {
        DcmFileFormat hdr;
        PHI_RETURN_IF_ERROR(ParseHeader(*o.reader, hdr));
        rewrite = DemographicsDiffer(*hdr.getDataset(), study.phi);
        if (decided != nullptr && !study.row.conflict) *decided = rewrite;
      }
    }
    if (!rewrite) {
      p.raw = std::move(o);
      return p;
    }
    PHI_ASSIGN_OR_RETURN(std::string bytes, ReadWhole(*o.reader, options.max_rewrite_bytes));
    DcmFileFormat ff;
    PHI_RETURN_IF_ERROR(ParseWhole(bytes, ff));
    std::string().swap(bytes);
    DcmDataset& ds = *ff.getDataset();
    if (share) {
      PHI_RETURN_IF_ERROR(deid.Apply(ds, PatientKey(study.phi)));
      std::string sop = GetStr(ds, DCM_SOPInstanceUID);
      ff.getMetaInfo()->putAndInsertString(DCM_MediaStorageSOPInstanceUID, sop.c_str());
    } else {
      PHI_RETURN_IF_ERROR(ApplyDemographics(ds, study.phi));
    }
    PHI_ASSIGN_OR_RETURN(p.rewritten, Serialize(ff, options.max_rewrite_bytes + (1 << 20)));
    return p;
  }

  struct StreamState {
    std::shared_ptr<Impl> impl;
    bool share = false;
    services::StudyMatch study;
    std::vector<services::InstanceMatch> items;
    size_t next = 0;
    std::string boundary;
    std::string pending;  // part headers / rewritten bytes / closing delimiter
    size_t pending_off = 0;
    std::optional<services::OpenedInstance> cur;
    uint64_t off = 0;
    bool closed = false;
    std::optional<bool> decided;  // demographics verdict for the study

    Result<size_t> Pull(std::span<char> buf) {
      size_t w = 0;
      while (w < buf.size()) {
        if (pending_off < pending.size()) {
          size_t n = std::min(buf.size() - w, pending.size() - pending_off);
          std::memcpy(buf.data() + w, pending.data() + pending_off, n);
          pending_off += n;
          w += n;
          continue;
        }
        if (!pending.empty()) {
          std::string().swap(pending);
          pending_off = 0;
        }
        if (cur) {
          PHI_ASSIGN_OR_RETURN(size_t n,
                               cur->reader->Read(off, std::as_writable_bytes(buf.subspan(w))));
          off += n;
          w += n;
          if (n == 0 || off >= cur->reader->plaintext_size()) cur.reset();
          continue;
        }
        if (next < items.size()) {
          PHI_ASSIGN_OR_RETURN(Prepared p, impl->Prepare(share, study, items[next], &decided));
          std::string head = PartHead(boundary, next == 0, "application/dicom");
          ++next;
          if (p.raw) {
            pending = std::move(head);
            cur = std::move(p.raw);
            off = 0;
          } else {
            pending = std::move(head) + p.rewritten;
          }
          continue;
        }
        if (!closed) {
          closed = true;
          pending = CloseDelimiter(boundary, !items.empty());
          continue;
        }
        break;
      }
      return w;
    }
  };

  Response Retrieve(const RequestContext& ctx) {
    auto study = ResolveStudy(ctx);
    if (!study.ok()) return Fail(ctx, "retrieve", study.status());
    auto insts = PathInstances(ctx, *study, nullptr);
    if (!insts.ok()) return Fail(ctx, "retrieve", insts.status());
    if (insts->empty()) return Fail(ctx, "retrieve", Status::NotFound("no instances"));
    std::vector<std::string> ts;
    for (auto& i : *insts) ts.push_back(i.row.transfer_syntax_uid);
    auto ok = AcceptsMultipart(ctx, "application/dicom", ts);
    if (!ok.ok()) return Fail(ctx, "retrieve", Status::InvalidArgument("bad Accept"));
    if (!*ok) {
      (void)Audit(ctx, "retrieve", {study->row.study_pk}, "error:not_acceptable");
      return Response::Problem(406, "Not Acceptable");
    }
    if (ctx.params.count("instance") != 0 && insts->size() == 1) {
      return RetrieveInstance(ctx, *study, insts->front());
    }
    if (Status a = Audit(ctx, "retrieve", {study->row.study_pk}, "ok",
                         "instances=" + std::to_string(insts->size()));
        !a.ok()) {
      return StatusResponse(a);
    }
    auto st = std::make_shared<StreamState>();
    st->impl = shared_from_this();
    st->share = Share(ctx);
    st->study = std::move(*study);
    st->items = std::move(*insts);
    st->boundary = Boundary();
    Response r;
    r.status = 200;
    r.content_type = "multipart/related; type=\"application/dicom\"; boundary=" + st->boundary;
    // Study and series bodies are streamed with a fresh boundary and no length;
    // a single instance (RetrieveInstance) can be fetched in byte ranges.
    r.headers.emplace_back("accept-ranges", "none");
    // Decrypting runs a chunk ahead on its own thread while this connection's
    // io thread encrypts and sends (bounded: see read_ahead.h).
    // Its buffers go to the connection as they are (ReadAheadChunks: no copy).
    r.chunks = ReadAheadChunks([st](std::span<char> buf) { return st->Pull(buf); });
    return r;
  }

  // ---- WADO: one instance (a length, an ETag, byte ranges)

  // The one-part multipart/related representation of an instance. Its
  // boundary and ETag come from a keyed digest of what is sent (the stored
  // object's id, or the rewritten bytes), so the same request gives the same
  // bytes and a client can resume it (Range, If-Range). The boundary cannot
  // occur in the object: nobody can compute it without the vault's index key.
  struct InstanceBody {
    std::string head, tail;
    std::optional<services::OpenedInstance> raw;
    std::string rewritten;  // clinician: PHI, wiped with the body
    ~InstanceBody() { Wipe(rewritten); }
    uint64_t body_size() const {
      return raw ? raw->reader->plaintext_size() : uint64_t{rewritten.size()};
    }
    uint64_t size() const { return head.size() + body_size() + tail.size(); }
    // Fills `buf` from byte `pos` of the representation (short at its end).
    Result<size_t> Read(uint64_t pos, std::span<char> buf) {
      size_t w = 0;
      auto copy = [&](std::string_view from, uint64_t at) {
        const size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size() - w, from.size() - at));
        std::memcpy(buf.data() + w, from.data() + at, n);
        w += n;
      };
      while (w < buf.size()) {
        uint64_t p = pos + w;
        if (p < head.size()) {
          copy(head, p);
          continue;
        }
        p -= head.size();
        const uint64_t body = body_size();
        if (p < body) {
          if (!raw) {
            copy(rewritten, p);
            continue;
          }
          const size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size() - w, body - p));
          PHI_ASSIGN_OR_RETURN(size_t n,
                               raw->reader->Read(p, std::as_writable_bytes(buf.subspan(w, want))));
          if (n == 0) return Status::Corruption("object shorter than its size");
          w += n;
          continue;
        }
        p -= body;
        if (p >= tail.size()) break;
        copy(tail, p);
      }
      return w;
    }
  };

  Response RetrieveInstance(const RequestContext& ctx, const services::StudyMatch& study,
                            const services::InstanceMatch& inst) {
    auto prepared = Prepare(Share(ctx), study, inst, nullptr);
    if (!prepared.ok()) return Fail(ctx, "retrieve", prepared.status());
    auto body = std::make_shared<InstanceBody>();
    crypto::Digest d;
    if (prepared->raw) {
      d = deps.vault.IndexToken("phigate-wado-instance-raw-v1", inst.row.object_id);
      body->raw = std::move(prepared->raw);
    } else {
      body->rewritten = std::move(prepared->rewritten);
      d = deps.vault.IndexToken("phigate-wado-instance-rewritten-v1", body->rewritten);
    }
    const std::string hex = crypto::ToHex(d);
    const std::string etag = "\"" + hex.substr(0, 32) + "\"";
    const std::string boundary = "phigate-" + hex.substr(32, 32);
    body->head = PartHead(boundary, true, "application/dicom");
    body->tail = CloseDelimiter(boundary, true);
    const uint64_t size = body->size();

    // If-Range with another validator: the client's copy is stale, send it all.
    std::optional<std::string_view> range = ctx.Header("range");
    if (auto if_range = ctx.Header("if-range"); if_range && *if_range != etag) range.reset();
    const ByteRangeDecision rd = DecideByteRange(range, size);
    if (rd.kind == ByteRangeDecision::Kind::kUnsatisfiable) {
      (void)Audit(ctx, "retrieve", {study.row.study_pk}, "error:range_not_satisfiable");
      Response p = Response::Problem(416, "Range Not Satisfiable");
      p.headers.emplace_back("content-range", "bytes */" + std::to_string(size));
      return p;
    }
    const bool partial = rd.kind == ByteRangeDecision::Kind::kPartial;
    const uint64_t first = partial ? rd.first : 0;
    const uint64_t end = partial ? rd.last + 1 : size;
    if (Status a = Audit(ctx, "retrieve", {study.row.study_pk}, "ok",
                         partial ? "instances=1 range" : "instances=1");
        !a.ok()) {
      return StatusResponse(a);
    }
    Response r;
    r.status = partial ? 206 : 200;
    r.content_type = "multipart/related; type=\"application/dicom\"; boundary=" + boundary;
    r.headers.emplace_back("etag", etag);
    r.headers.emplace_back("accept-ranges", "bytes");
    if (partial) {
      r.headers.emplace_back("content-range", "bytes " + std::to_string(first) + "-" +
                                                  std::to_string(end - 1) + "/" +
                                                  std::to_string(size));
    }
    r.content_length = end - first;
    r.chunks = ReadAheadChunks([body, pos = first, end](std::span<char> buf) mutable {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), end - pos));
      Result<size_t> got = n == 0 ? Result<size_t>(size_t{0}) : body->Read(pos, buf.first(n));
      if (got.ok()) pos += *got;
      return got;
    });
    return r;
  }

  // ---- WADO: metadata

  // The instance's header (up to Pixel Data), from the header cache or, on a
  // miss, from the object (which is then cached).
  Status InstanceHeader(const services::StudyMatch& study, const services::InstanceMatch& inst,
                        DcmFileFormat& ff) {
    std::string hdr;
    if (deps.query.CachedHeader(inst.row.object_id, &hdr)) {
      Status s = ParseHeaderBytes(hdr, ff);
      Wipe(hdr);
      if (s.ok()) return s;
      ff.clear();  // should not happen (checked when cached): read the object
    }
    PHI_ASSIGN_OR_RETURN(services::OpenedInstance o,
                         deps.query.OpenInstanceOf(study.row, inst.row));
    PHI_RETURN_IF_ERROR(ParseHeader(*o.reader, ff, &hdr));
    if (!hdr.empty()) {
      DcmFileFormat check;
      if (ParseHeaderBytes(hdr, check).ok()) {
        deps.query.CacheHeader(study.row.study_uid_token, inst.row.object_id, hdr);
      }
      Wipe(hdr);
    }
    return Status::Ok();
  }

  // The header cache key of an instance's clinician metadata JSON: it depends
  // on the object (immutable) and on the demographics applied to it, bound by
  // a keyed digest (no PHI in the key).
  std::string MetadataKey(const services::StudyMatch& study, const services::InstanceMatch& inst) {
    std::string demo = options.apply_demographic_updates ? "1" : "0";
    for (auto& [name, tag] : kPatientModule) {
      (void)tag;
      const std::string& v = study.phi.Get(name);
      demo += std::to_string(v.size()) + ":" + v;
    }
    crypto::Digest d = deps.vault.IndexToken("phigate-metadata-json-v1", demo);
    Wipe(demo);
    static const char* kHex = "0123456789abcdef";
    std::string key = "json:" + inst.row.object_id + ":";
    for (std::byte b : d) {
      key += kHex[std::to_integer<unsigned>(b) >> 4];
      key += kHex[std::to_integer<unsigned>(b) & 0xf];
    }
    return key;
  }

  Result<std::string> InstanceMetadata(const RequestContext& ctx, const services::StudyMatch& study,
                                       const services::InstanceMatch& inst,
                                       const std::string& study_shown,
                                       const std::string& series_shown, bool* parsed = nullptr) {
    const bool share = Share(ctx);
    // Clinician metadata is cached as rendered: "1" or "0" (has Rows) + the
    // JSON members; the per-request BulkDataURI is appended below.
    std::string key, body;
    bool has_rows = false;
    if (!share) {
      key = MetadataKey(study, inst);
      std::string cached;
      if (deps.query.CachedHeader(key, &cached) && !cached.empty()) {
        has_rows = cached[0] == '1';
        body.assign(cached, 1);
        Wipe(cached);
      }  // else: render below, then cache under `key`
    }
    if (body.empty()) {
      if (parsed != nullptr) *parsed = true;
      DcmFileFormat ff;
      PHI_RETURN_IF_ERROR(InstanceHeader(study, inst, ff));
      DcmDataset& ds = *ff.getDataset();
      std::string cs = GetStr(ds, DCM_SpecificCharacterSet);
      if (!cs.empty() && cs != "ISO_IR 192" && ds.convertToUTF8().bad()) {
        return Status::Internal("character set conversion failed");
      }
      if (share) {
        PHI_RETURN_IF_ERROR(deid.Apply(ds, PatientKey(study.phi)));
      } else if (options.apply_demographic_updates) {
        PHI_RETURN_IF_ERROR(ApplyDemographics(ds, study.phi));
      }
      BulkUriFormat fmt;
      std::ostringstream os;
      OFCondition c = ds.writeJsonExt(os, fmt, OFFalse, OFFalse);
      if (c.bad()) return Status::Internal(std::string("json: ") + c.text());
      body = os.str();
      has_rows = ds.tagExists(DCM_Rows);
      if (!share && !body.empty()) {
        std::string v = (has_rows ? "1" : "0") + body;
        deps.query.CacheHeader(study.row.study_uid_token, key, v);
        Wipe(v);
      }
    }
    if (has_rows) {
      std::string uri = BaseUrl(ctx) + "/studies/" + study_shown + "/series/" + series_shown +
                        "/instances/" + ShownUid(ctx, inst.phi.Get("SOPInstanceUID")) + "/frames/1";
      if (!body.empty()) body += ",";
      body += "\"7FE00010\":{\"vr\":\"OW\",\"BulkDataURI\":" + json(uri).dump() + "}";
    }
    return "{" + body + "}";
  }

  Response Metadata(const RequestContext& ctx) {
    auto accept = AcceptsJson(ctx);
    if (!accept.ok()) return Fail(ctx, "retrieve", Status::InvalidArgument("bad Accept"));
    if (!*accept) return Response::Problem(406, "Not Acceptable");
    auto study = ResolveStudy(ctx);
    if (!study.ok()) return Fail(ctx, "retrieve", study.status());
    std::vector<services::SeriesMatch> series;
    auto insts = PathInstances(ctx, *study, &series);
    if (!insts.ok()) return Fail(ctx, "retrieve", insts.status());
    std::unordered_map<int64_t, std::string> series_shown;
    for (auto& s : series)
      series_shown[s.row.series_pk] = ShownUid(ctx, s.phi.Get("SeriesInstanceUID"));
    std::string study_shown = ShownUid(ctx, study->phi.Get("StudyInstanceUID"));
    // Each instance's JSON, cached or parsed from its object. A study not
    // seen since start decrypts every object whole (~0.8 ms per CT slice):
    // when the first instance had to be parsed, a second worker halves the
    // wait for a viewer opening the study (a cached study needs no thread).
    for (auto& i : *insts) series_shown.try_emplace(i.row.series_pk);  // read-only below
    std::vector<std::optional<Result<std::string>>> jsons(insts->size());
    auto one = [&](size_t k, bool* parsed) {
      const auto& i = (*insts)[k];
      jsons[k] =
          InstanceMetadata(ctx, *study, i, study_shown, series_shown.at(i.row.series_pk), parsed);
    };
    bool cold = false;
    if (!insts->empty()) one(0, &cold);
    std::atomic<size_t> next{1};
    auto work = [&] {
      for (size_t k; (k = next.fetch_add(1)) < insts->size();) one(k, nullptr);
    };
    std::thread helper;
    if (cold && insts->size() >= kParallelMetadataMin && std::thread::hardware_concurrency() > 1) {
      try {
        helper = std::thread(work);
      } catch (const std::system_error&) {
        // No thread to be had (tasks limit): this one does it all.
      }
    }
    work();
    if (helper.joinable()) helper.join();
    std::string body = "[";
    for (size_t k = 0; k < jsons.size(); ++k) {
      if (!jsons[k]->ok()) return Fail(ctx, "retrieve", jsons[k]->status());
      if (k > 0) body += ",";
      body += **jsons[k];
    }
    body += "]";
    if (Status a = Audit(ctx, "retrieve_metadata", {study->row.study_pk}, "ok",
                         "instances=" + std::to_string(insts->size()));
        !a.ok()) {
      return StatusResponse(a);
    }
    if (insts->empty()) return JsonArray(0, "");
    Response r = Response::Json(200, std::move(body));
    r.content_type = kDicomJson;
    return r;
  }

  // ---- WADO: frames

  Response Frames(const RequestContext& ctx) {
    bool ok_list = false;
    std::vector<std::string> frames = SplitFrames(ctx.params.at("frames"), &ok_list);
    if (!ok_list) return Fail(ctx, "retrieve", Status::InvalidArgument("bad frame list"));
    auto study = ResolveStudy(ctx);
    if (!study.ok()) return Fail(ctx, "retrieve", study.status());
    auto insts = PathInstances(ctx, *study, nullptr);
    if (!insts.ok()) return Fail(ctx, "retrieve", insts.status());
    if (insts->size() != 1) return Fail(ctx, "retrieve", Status::NotFound("no instance"));
    auto& inst = insts->front();
    const std::string ts = inst.row.transfer_syntax_uid;
    DcmXfer xfer(ts.c_str());
    const bool encapsulated = xfer.isEncapsulated();
    std::string part_type = encapsulated ? FrameMediaType(ts) : "application/octet-stream";
    auto acc = AcceptsMultipart(ctx, part_type, {ts});
    if (!acc.ok()) return Fail(ctx, "retrieve", Status::InvalidArgument("bad Accept"));
    if (!*acc && encapsulated) {
      // "application/octet-stream; transfer-syntax=<ts>" is also acceptable.
      acc = AcceptsMultipart(ctx, "application/octet-stream", {ts});
      if (acc.ok() && *acc) part_type = "application/octet-stream";
    }
    if (!acc.ok() || !*acc) return Response::Problem(406, "Not Acceptable");

    auto opened = deps.query.OpenInstance(inst.phi.Get("SOPInstanceUID"));
    if (!opened.ok()) return Fail(ctx, "retrieve", opened.status());
    auto bytes = ReadWhole(*opened->reader, options.max_rewrite_bytes);
    if (!bytes.ok()) return Fail(ctx, "retrieve", bytes.status());
    DcmFileFormat ff;
    if (Status s = ParseWhole(*bytes, ff); !s.ok()) return Fail(ctx, "retrieve", s);
    std::string().swap(*bytes);
    DcmDataset& ds = *ff.getDataset();
    Sint32 nframes = 1;
    if (ds.findAndGetSint32(DCM_NumberOfFrames, nframes).bad() || nframes < 1) nframes = 1;
    DcmElement* el = nullptr;
    if (ds.findAndGetElement(DCM_PixelData, el).bad() || el == nullptr) {
      return Fail(ctx, "retrieve", Status::NotFound("no pixel data"));
    }
    auto* px = static_cast<DcmPixelData*>(el);
    std::vector<std::string_view> out_frames;
    std::vector<std::string> owned;  // multi-fragment frames, concatenated
    if (!encapsulated) {
      Uint16 rows = 0, cols = 0, spp = 1, bits = 0;
      ds.findAndGetUint16(DCM_Rows, rows);
      ds.findAndGetUint16(DCM_Columns, cols);
      ds.findAndGetUint16(DCM_SamplesPerPixel, spp);
      ds.findAndGetUint16(DCM_BitsAllocated, bits);
      uint64_t frame_bytes = uint64_t{rows} * cols * spp * bits / 8;
      Uint8* data = nullptr;
      if (px->getUint8Array(data).bad() || data == nullptr || frame_bytes == 0) {
        return Fail(ctx, "retrieve", Status::NotFound("no pixel data"));
      }
      uint64_t total = px->getLength();
      for (const std::string& f : frames) {
        uint64_t k = std::stoull(f);
        if (k < 1 || k > static_cast<uint64_t>(nframes) || k * frame_bytes > total) {
          return Fail(ctx, "retrieve", Status::NotFound("no such frame"));
        }
        out_frames.emplace_back(reinterpret_cast<const char*>(data) + (k - 1) * frame_bytes,
                                frame_bytes);
      }
    } else {
      DcmPixelSequence* seq = nullptr;
      if (px->getEncapsulatedRepresentation(xfer.getXfer(), nullptr, seq).bad() || seq == nullptr) {
        return Fail(ctx, "retrieve", Status::NotFound("no pixel data"));
      }
      unsigned long nfrag = seq->card();  // item 0: basic offset table
      for (const std::string& f : frames) {
        uint64_t k = std::stoull(f);
        if (k < 1 || k > static_cast<uint64_t>(nframes)) {
          return Fail(ctx, "retrieve", Status::NotFound("no such frame"));
        }
        if (nfrag >= 1 && nfrag - 1 == static_cast<unsigned long>(nframes)) {
          DcmPixelItem* item = nullptr;
          Uint8* d = nullptr;
          if (seq->getItem(item, k).bad() || item->getUint8Array(d).bad()) {
            return Fail(ctx, "retrieve", Status::Corruption("bad fragment"));
          }
          out_frames.emplace_back(reinterpret_cast<const char*>(d), item->getLength());
        } else if (nframes == 1) {
          std::string all;
          for (unsigned long j = 1; j < nfrag; ++j) {
            DcmPixelItem* item = nullptr;
            Uint8* d = nullptr;
            if (seq->getItem(item, j).bad() || item->getUint8Array(d).bad()) {
              return Fail(ctx, "retrieve", Status::Corruption("bad fragment"));
            }
            all.append(reinterpret_cast<const char*>(d), item->getLength());
          }
          owned.push_back(std::move(all));
          out_frames.emplace_back(owned.back());
        } else {
          return Response::Problem(406, "Not Acceptable");  // fragments do not map to frames
        }
      }
    }
    if (Status a = Audit(ctx, "retrieve_frames", {study->row.study_pk}, "ok"); !a.ok()) {
      return StatusResponse(a);
    }
    std::string boundary = Boundary();
    std::string ctype = part_type;
    if (encapsulated || part_type != "application/octet-stream") {
      ctype += "; transfer-syntax=" + ts;
    }
    std::string body;
    for (size_t k = 0; k < out_frames.size(); ++k) {
      body += PartHead(boundary, k == 0, ctype);
      body.append(out_frames[k]);
    }
    body += CloseDelimiter(boundary, true);
    Response r;
    r.status = 200;
    r.content_type = "multipart/related; type=\"" + part_type + "\"; boundary=" + boundary;
    r.body = std::move(body);
    return r;
  }

  // ---- STOW

  Response Stow(const RequestContext& ctx) {
    auto ct = ctx.Header("content-type");
    if (!ct) return Fail(ctx, "store", Status::InvalidArgument("no content type"));
    auto mt = ParseMediaType(*ct);
    if (!mt.ok()) return Fail(ctx, "store", Status::InvalidArgument("bad content type"));
    if (mt->type != "multipart/related") {
      (void)Audit(ctx, "store", {}, "error:unsupported_media_type");
      return Response::Problem(415, "Unsupported Media Type");
    }
    std::string type = mt->Param("type");
    if (!type.empty() && type != "application/dicom") {
      (void)Audit(ctx, "store", {}, "error:unsupported_media_type");
      return Response::Problem(415, "Unsupported Media Type");
    }
    auto parts = ParseMultipart(ctx.body, mt->Param("boundary"), options.max_stow_parts);
    if (!parts.ok()) return Fail(ctx, "store", parts.status());
    if (parts->empty()) return Fail(ctx, "store", Status::InvalidArgument("no parts"));
    std::optional<std::string> want_study;
    if (ctx.params.count("study")) {
      if (!services::IsValidUid(ctx.params.at("study"))) {
        return Fail(ctx, "store", Status::InvalidArgument("malformed UID"));
      }
      want_study = ctx.params.at("study");
    }
    services::IngestContext ictx;
    ictx.actor = Actor(ctx);
    ictx.peer = ctx.peer_address;
    json ok_seq = json::array(), failed_seq = json::array();
    std::string study_url;
    for (const Part& p : *parts) {
      std::string_view pct = p.Header("content-type");
      auto pmt = ParseMediaType(pct.empty() ? "application/dicom" : pct);
      services::InstanceAttributes attrs;
      uint16_t failure = 0;
      if (!pmt.ok() || pmt->type != "application/dicom") {
        failure = 0xC000;  // cannot understand
      } else {
        auto span = std::as_bytes(std::span<const char>(p.body.data(), p.body.size()));
        auto a = dicom::ParseInstance(span);
        if (!a.ok()) {
          failure = 0xC000;
        } else {
          attrs = std::move(*a);
          if (want_study && attrs.study_instance_uid != *want_study) {
            failure = 0xA900;  // does not match the study in the path
          } else {
            auto st = deps.ingest.Store(ictx, attrs, span);
            if (!st.ok()) {
              failure = st.status().code() == Code::kResourceExhausted ? 0xA700 : 0x0110;
            }
          }
        }
      }
      json item = json::object();
      if (!attrs.sop_class_uid.empty()) PutJsonTree(item, "00081150", "UI", attrs.sop_class_uid);
      if (!attrs.sop_instance_uid.empty())
        PutJsonTree(item, "00081155", "UI", attrs.sop_instance_uid);
      if (failure != 0) {
        PutJsonTreeInt(item, "00081197", "US", failure);
        failed_seq.push_back(std::move(item));
      } else {
        std::string base = BaseUrl(ctx) + "/studies/" + attrs.study_instance_uid;
        study_url = base;
        PutJsonTree(
            item, "00081190", "UR",
            base + "/series/" + attrs.series_instance_uid + "/instances/" + attrs.sop_instance_uid);
        ok_seq.push_back(std::move(item));
      }
    }
    json out = json::object();
    if (!study_url.empty()) PutJsonTree(out, "00081190", "UR", study_url);
    if (!ok_seq.empty()) out["00081199"] = {{"vr", "SQ"}, {"Value", ok_seq}};
    if (!failed_seq.empty()) out["00081198"] = {{"vr", "SQ"}, {"Value", failed_seq}};
    int status = failed_seq.empty() ? 200 : (ok_seq.empty() ? 409 : 202);
    (void)Audit(
        ctx, "store_request", {}, status == 200 ? "ok" : "partial",
        "stored=" + std::to_string(ok_seq.size()) + ";failed=" + std::to_string(failed_seq.size()));
    Response r = Response::Json(status, Dump(json::array({out}).at(0)));
    r.content_type = kDicomJson;
    return r;
  }

  // ---- DELETE, metrics

  Response Delete(const RequestContext& ctx) {
    const std::string& uid = ctx.params.at("study");
    if (!services::IsValidUid(uid)) return Fail(ctx, "erase", Status::InvalidArgument("uid"));
    auto cert = deps.erasure.EraseStudy(uid, Actor(ctx), "DICOMweb DELETE", ctx.peer_address);
    if (!cert.ok()) {
      if (cert.status().code() == Code::kPermissionDenied) {
        (void)Audit(ctx, "erase", {}, "denied:legal_hold");
        return Response::Problem(409, "Conflict");
      }
      return Fail(ctx, "erase", cert.status());
    }
    json body = {{"erasure_certificate",
                  {{"audit_seq", cert->audit_seq},
                   {"study_key_id", cert->study_key_id},
                   {"objects", cert->objects},
                   {"bytes", cert->bytes}}}};
    Response r = Response::Json(202, Dump(body));
    r.headers.emplace_back("x-erasure-certificate", "audit-seq=" + std::to_string(cert->audit_seq));
    return r;
  }

  Response Metrics(const RequestContext&) {
    std::string o;
    services::IngestStats st = deps.ingest.stats();
    o += "# HELP phigate_ingest_total Instances handled by the ingest service, by outcome.\n";
    o += "# TYPE phigate_ingest_total counter\n";
#define PHI_PROM_INGEST(n)                                                          \
  if (std::string_view(#n) != "bytes") {                                            \
    o += "phigate_ingest_total{outcome=\"" #n "\"} " + std::to_string(st.n) + "\n"; \
  }
    PHI_INGEST_STATS(PHI_PROM_INGEST)
#undef PHI_PROM_INGEST
    o += "# HELP phigate_ingest_bytes_total Bytes of instances stored.\n";
    o += "# TYPE phigate_ingest_bytes_total counter\n";
    o += "phigate_ingest_bytes_total " + std::to_string(st.bytes) + "\n";
    if (auto c = deps.catalog.CountObjects(); c.ok()) {
      o += "# HELP phigate_catalog_objects Objects in the catalog, by level.\n";
      o += "# TYPE phigate_catalog_objects gauge\n";
      o += "phigate_catalog_objects{level=\"study\"} " + std::to_string(c->studies) + "\n";
      o += "phigate_catalog_objects{level=\"series\"} " + std::to_string(c->series) + "\n";
      o += "phigate_catalog_objects{level=\"instance\"} " + std::to_string(c->instances) + "\n";
      o += "# HELP phigate_catalog_bytes Bytes of stored instances.\n";
      o += "# TYPE phigate_catalog_bytes gauge\n";
      o += "phigate_catalog_bytes " + std::to_string(c->total_bytes) + "\n";
    }
    o += "# HELP phigate_catalog_healthy 1 when the catalog accepts writes.\n";
    o += "# TYPE phigate_catalog_healthy gauge\n";
    o += std::string("phigate_catalog_healthy ") + (deps.catalog.health().ok() ? "1" : "0") + "\n";
    if (deps.metrics) o += deps.metrics->Prometheus();
    Response r;
    r.status = 200;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = std::move(o);
    return r;
  }
};

std::shared_ptr<Dicomweb> Dicomweb::AddRoutes(Router& router, DicomwebDeps deps,
                                              DicomwebOptions options) {
  auto impl = std::make_shared<Impl>(deps, options);
  std::vector<Role> readers = {Role::kClinician, Role::kShare};
  std::vector<Role> storers = {Role::kModality, Role::kAdmin};
  auto add = [&](Method m, const char* pattern, std::vector<Role> roles,
                 Response (Impl::*fn)(const RequestContext&)) {
    router.Add(m, pattern, std::move(roles),
               [self = impl, fn](const RequestContext& ctx) { return ((*self).*fn)(ctx); });
  };
  auto qido = [&](const char* pattern, QidoLevel level) {
    router.Add(Method::kGet, pattern, readers,
               [self = impl, level](const RequestContext& ctx) { return self->Qido(ctx, level); });
  };
  qido("/studies", QidoLevel::kStudy);
  qido("/series", QidoLevel::kSeries);
  qido("/instances", QidoLevel::kInstance);
  qido("/studies/{study}/series", QidoLevel::kSeries);
  qido("/studies/{study}/instances", QidoLevel::kInstance);
  qido("/studies/{study}/series/{series}/instances", QidoLevel::kInstance);
  add(Method::kGet, "/studies/{study}", readers, &Impl::Retrieve);
  add(Method::kGet, "/studies/{study}/series/{series}", readers, &Impl::Retrieve);
  add(Method::kGet, "/studies/{study}/series/{series}/instances/{instance}", readers,
      &Impl::Retrieve);
  add(Method::kGet, "/studies/{study}/metadata", readers, &Impl::Metadata);
  add(Method::kGet, "/studies/{study}/series/{series}/metadata", readers, &Impl::Metadata);
  add(Method::kGet, "/studies/{study}/series/{series}/instances/{instance}/metadata", readers,
      &Impl::Metadata);
  add(Method::kGet, "/studies/{study}/series/{series}/instances/{instance}/frames/{frames}",
      readers, &Impl::Frames);
  add(Method::kPost, "/studies", storers, &Impl::Stow);
  add(Method::kPost, "/studies/{study}", storers, &Impl::Stow);
  add(Method::kDelete, "/studies/{study}", {Role::kAdmin}, &Impl::Delete);
  add(Method::kGet, "/metrics", {Role::kAdmin}, &Impl::Metrics);
  return std::shared_ptr<Dicomweb>(new Dicomweb(std::move(impl)));
}

}  // namespace phi::web
