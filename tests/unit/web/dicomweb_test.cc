// DICOMweb routes on a real storage stack (vault, SQLite catalog, encrypted
// objects), driven through the Router as the server does, with real DICOM
// Part 10 instances built by DCMTK. Streamed bodies are pulled to the end.
#include "libphi/web/dicomweb.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcostrmb.h"
#include "libphi/dicom/part10.h"
#include "libphi/web/multipart.h"
#include "libphi/web/qido.h"
#include "libphi/web/url.h"
#include "tests/unit/services/services_fixture.h"

namespace phi::web {
namespace {

using json = nlohmann::json;
using services::testing::ServicesTest;

struct Synth {
  std::string name = "SMITH^JOHN", id = "PID-778899", birth = "19610203", acc = "ACC-55123";
  std::string study_uid = "1.2.826.0.1.3680043.9.7777.1";
  std::string referring = "WELBY^MARCUS", description = "CHEST CT SECRETDESC";
  std::string institution = "SAINT SECRET HOSPITAL";
  bool burned_in = false;
};

// Another patient's study: `name`, and study UID ...7777.<n> (the default is .1).
Synth OtherStudy(std::string name, int n) {
  Synth s;
  s.name = std::move(name);
  s.study_uid = "1.2.826.0.1.3680043.9.7777." + std::to_string(n);
  return s;
}

// A real Part 10 CT instance: 4x4 16-bit pixels, `frames` frames.
std::string MakeInstance(const Synth& s, int series, int instance, int frames = 1) {
  DcmFileFormat ff;
  DcmDataset* ds = ff.getDataset();
  std::string series_uid = s.study_uid + "." + std::to_string(series);
  std::string sop = series_uid + "." + std::to_string(instance);
  ds->putAndInsertString(DCM_SOPClassUID, "1.2.840.10008.5.1.4.1.1.2");
  ds->putAndInsertString(DCM_SOPInstanceUID, sop.c_str());
  ds->putAndInsertString(DCM_StudyInstanceUID, s.study_uid.c_str());
  ds->putAndInsertString(DCM_SeriesInstanceUID, series_uid.c_str());
  ds->putAndInsertString(DCM_FrameOfReferenceUID, (s.study_uid + ".99").c_str());
  ds->putAndInsertString(DCM_PatientName, s.name.c_str());
  ds->putAndInsertString(DCM_PatientID, s.id.c_str());
  ds->putAndInsertString(DCM_PatientBirthDate, s.birth.c_str());
  ds->putAndInsertString(DCM_PatientSex, "F");
  ds->putAndInsertString(DCM_AccessionNumber, s.acc.c_str());
  ds->putAndInsertString(DCM_ReferringPhysicianName, s.referring.c_str());
  ds->putAndInsertString(DCM_StudyDescription, s.description.c_str());
  ds->putAndInsertString(DCM_InstitutionName, s.institution.c_str());
  ds->putAndInsertString(DCM_StudyDate, "20240315");
  ds->putAndInsertString(DCM_StudyTime, "101500");
  ds->putAndInsertString(DCM_Modality, "CT");
  ds->putAndInsertString(DCM_SeriesNumber, std::to_string(series).c_str());
  ds->putAndInsertString(DCM_InstanceNumber, std::to_string(instance).c_str());
  ds->putAndInsertString(DCM_BurnedInAnnotation, s.burned_in ? "YES" : "NO");
  ds->putAndInsertUint16(DCM_Rows, 4);
  ds->putAndInsertUint16(DCM_Columns, 4);
  ds->putAndInsertUint16(DCM_SamplesPerPixel, 1);
  ds->putAndInsertString(DCM_PhotometricInterpretation, "MONOCHROME2");
  ds->putAndInsertUint16(DCM_BitsAllocated, 16);
  ds->putAndInsertUint16(DCM_BitsStored, 16);
  ds->putAndInsertUint16(DCM_HighBit, 15);
  ds->putAndInsertUint16(DCM_PixelRepresentation, 0);
  if (frames > 1) ds->putAndInsertString(DCM_NumberOfFrames, std::to_string(frames).c_str());
  std::vector<Uint16> px(16 * frames);
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<Uint16>(i * 7 + instance);
  ds->putAndInsertUint16Array(DCM_PixelData, px.data(), px.size());
  std::vector<std::byte> out;
  dicom::BoundedBufferStream os(&out, 1 << 24);
  ff.transferInit();
  OFCondition c = ff.write(os, EXS_LittleEndianExplicit, EET_ExplicitLength, nullptr);
  ff.transferEnd();
  EXPECT_TRUE(c.good()) << c.text();
  return std::string(reinterpret_cast<const char*>(out.data()), out.size());
}

class DicomwebTest : public ServicesTest {
 protected:
  void SetUp() override {
    ServicesTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    metrics_ = std::make_shared<WebMetrics>();
    DicomwebDeps deps{*query_, *ingest_, *erasure_, *catalog_, *vault_, env_, metrics_};
    Dicomweb::AddRoutes(router_, deps, options_);
    identity_.subject = "CN=test,O=phigate-dev";
  }

  void StoreSynth(const Synth& s, int series, int instance, int frames = 1) {
    std::string bytes = MakeInstance(s, series, instance, frames);
    auto a = dicom::ParseInstance(services::testing::Bytes(bytes));
    ASSERT_TRUE(a.ok()) << a.status().ToString();
    auto r = ingest_->Store({"test", "", ""}, *a, services::testing::Bytes(bytes));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    stored_[a->sop_instance_uid] = bytes;
  }

  struct Result {
    int status = 0;
    std::string content_type, body;
    HeaderList headers;
    std::optional<uint64_t> content_length;
    std::string Header(std::string_view name) const {
      for (auto& [k, v] : headers) {
        if (k == name) return v;
      }
      return "";
    }
  };

  // Rewrites the study's sealed PHI with a new PatientName, as an ADT
  // update through the HL7 service does.
  void RenamePatient(const services::StudyMatch& study, const std::string& name) {
    services::PhiFields phi = study.phi;
    phi.Set("PatientName", name);
    auto box = keys_->Seal(study.row.key_id, services::PhiAad("study", study.row.study_uid_token),
                           phi.Encode());
    ASSERT_TRUE(box.ok());
    ASSERT_TRUE(catalog_
                    ->Write([&](index::WriteTxn& t) {
                      index::StudyPhiUpdate u;
                      u.patient_id_token = study.row.patient_id_token;
                      u.accession_token = study.row.accession_token;
                      u.study_year = study.row.study_year;
                      u.phi = *box;
                      return t.UpdateStudyPhi(study.row.study_pk, u);
                    })
                    .ok());
  }

  Result Call(Method m, const std::string& target, config::Role role, HeaderList headers = {},
              std::string body = "") {
    Result out;
    auto t = ParseTarget(target);
    EXPECT_TRUE(t.ok()) << target;
    if (!t.ok()) return out;
    Router::Match match = router_.Find(m, t->path);
    if (match.kind != Router::Match::Kind::kFound) {
      out.status = match.kind == Router::Match::Kind::kNotFound ? 404 : 405;
      return out;
    }
    if (!Router::RoleAllowed(*match.route, role)) {
      out.status = 403;
      return out;
    }
    RequestContext ctx;
    ctx.method = m;
    ctx.path = t->path;
    ctx.query = t->query;
    ctx.route = match.route->pattern;
    ctx.params = match.params;
    ctx.headers = std::move(headers);
    ctx.headers.emplace_back("host", "phigate.test:8443");
    ctx.body = std::move(body);
    ctx.identity = &identity_;
    ctx.role = role;
    ctx.peer_address = "127.0.0.1:5555";
    Response r = match.route->handler(ctx);
    out.status = r.status;
    out.content_type = r.content_type;
    out.headers = r.headers;
    out.content_length = r.content_length;
    if (r.chunks) {
      for (;;) {
        auto c = r.chunks();
        EXPECT_TRUE(c.ok()) << c.status().ToString();
        if (!c.ok() || c->empty()) break;
        out.body.append(c->data(), c->size());
      }
    } else {
      out.body = std::move(r.body);
    }
    return out;
  }

  static std::vector<std::string> Parts(const Result& r) {
    auto mt = ParseMediaType(r.content_type);
    EXPECT_TRUE(mt.ok());
    auto parts = ParseMultipart(r.body, mt->Param("boundary"), 100000);
    EXPECT_TRUE(parts.ok()) << parts.status().ToString();
    std::vector<std::string> out;
    if (parts.ok()) {
      for (auto& p : *parts) out.emplace_back(p.body);
    }
    return out;
  }

  static std::string Str(const json& item, const char* tag) {
    if (!item.contains(tag) || !item[tag].contains("Value")) return "";
    const json& v = item[tag]["Value"][0];
    if (v.is_object()) return v.value("Alphabetic", "");
    if (v.is_number()) return std::to_string(v.get<int64_t>());
    return v.get<std::string>();
  }

  size_t AuditCount() {
    auto recs = catalog_->ReadAudit(0, 100000);
    EXPECT_TRUE(recs.ok());
    return recs.ok() ? recs->size() : 0;
  }

  DicomwebOptions options_;
  std::shared_ptr<WebMetrics> metrics_;
  Router router_;
  tls::PeerIdentity identity_;
  std::map<std::string, std::string> stored_;
};

constexpr auto kClin = config::Role::kClinician;
constexpr auto kShare = config::Role::kShare;
constexpr auto kAdmin = config::Role::kAdmin;
constexpr auto kModality = config::Role::kModality;

TEST_F(DicomwebTest, QidoStudiesMatchesAndPages) {
  Synth a;
  Synth b = OtherStudy("JONES^MARY", 2);
  b.id = "PID-1";
  b.acc = "ACC-2";
  StoreSynth(a, 1, 1);
  StoreSynth(b, 1, 1);
  size_t audits = AuditCount();

  Result r = Call(Method::kGet, "/studies?PatientName=smi*", kClin);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.content_type, "application/dicom+json");
  json j = json::parse(r.body);
  ASSERT_EQ(j.size(), 1u);
  EXPECT_EQ(Str(j[0], "00100010"), a.name);
  EXPECT_EQ(Str(j[0], "0020000D"), a.study_uid);
  EXPECT_EQ(Str(j[0], "00201208"), "1");
  EXPECT_EQ(j[0]["00080061"]["Value"][0], "CT");
  EXPECT_EQ(Str(j[0], "00081190"), "https://phigate.test:8443/studies/" + a.study_uid);
  EXPECT_FALSE(j[0].contains("00081030"));  // not asked for
  EXPECT_GT(AuditCount(), audits);          // the disclosure is audited

  r = Call(Method::kGet, "/studies?PatientID=PID-1&includefield=StudyDescription", kClin);
  ASSERT_EQ(r.status, 200);
  j = json::parse(r.body);
  ASSERT_EQ(j.size(), 1u);
  EXPECT_EQ(Str(j[0], "00100010"), b.name);
  EXPECT_TRUE(j[0].contains("00081030"));

  r = Call(Method::kGet, "/studies?AccessionNumber=ACC-55123&StudyDate=20240101-20241231", kClin);
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(json::parse(r.body).size(), 1u);
  r = Call(Method::kGet, "/studies?StudyDate=20250101-", kClin);
  EXPECT_EQ(r.status, 204);
  EXPECT_TRUE(r.body.empty());
  r = Call(Method::kGet,
           "/studies?StudyInstanceUID=" + a.study_uid + "," + b.study_uid + "&limit=1&offset=1",
           kClin);
  ASSERT_EQ(r.status, 200);
  j = json::parse(r.body);
  ASSERT_EQ(j.size(), 1u);
  r = Call(Method::kGet, "/studies?ModalitiesInStudy=MR", kClin);
  EXPECT_EQ(r.status, 204);
  r = Call(Method::kGet, "/studies?fuzzymatching=false&limit=10", kClin);
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(json::parse(r.body).size(), 2u);
}

// One query, one audit record, listing exactly the studies the response
// disclosed (not those matched by nothing, not those left out by limit).
TEST_F(DicomwebTest, QidoAuditRecordListsExactlyTheReturnedStudies) {
  Synth a;
  Synth b = OtherStudy("SMYTHE^ANN", 2);
  Synth c = OtherStudy("JONES^MARY", 3);
  StoreSynth(a, 1, 1);
  StoreSynth(b, 1, 1);
  StoreSynth(c, 1, 1);
  auto pk = [&](const std::string& uid) {
    auto m = query_->GetStudy(uid);
    EXPECT_TRUE(m.ok());
    return m.ok() ? m->row.study_pk : -1;
  };
  auto last_records = [&](size_t before) {
    auto recs = catalog_->ReadAudit(0, 100000);
    EXPECT_TRUE(recs.ok());
    std::vector<audit::AuditRecord> out;
    if (recs.ok()) out.assign(recs->begin() + static_cast<ptrdiff_t>(before), recs->end());
    return out;
  };
  for (bool cached : {false, true}) {  // rows decrypted, then the study cache
    if (cached) {
      ASSERT_TRUE(query_->BuildCache().ok());
    }
    size_t before = AuditCount();
    Result r = Call(Method::kGet, "/studies?PatientName=SM*", kClin);
    ASSERT_EQ(r.status, 200) << r.body;
    json j = json::parse(r.body);
    ASSERT_EQ(j.size(), 2u);
    std::vector<audit::AuditRecord> recs = last_records(before);
    ASSERT_EQ(recs.size(), 1u);
    std::string want = "study:" + std::to_string(pk(Str(j[0], "0020000D"))) +
                       " study:" + std::to_string(pk(Str(j[1], "0020000D")));
    EXPECT_EQ(recs[0].object, want);
    EXPECT_EQ(recs[0].action, "query");
    EXPECT_EQ(recs[0].outcome, "ok");
    EXPECT_EQ(recs[0].actor, "web:CN=test,O=phigate-dev");
    EXPECT_EQ(recs[0].peer, "127.0.0.1:5555");
    EXPECT_EQ(recs[0].detail, "route=/studies;results=2");
    EXPECT_EQ(recs[0].object.find(std::to_string(pk(c.study_uid)) + " "), std::string::npos);

    before = AuditCount();
    r = Call(Method::kGet, "/studies?PatientName=SM*&limit=1&offset=1", kClin);
    ASSERT_EQ(r.status, 200);
    j = json::parse(r.body);
    ASSERT_EQ(j.size(), 1u);
    recs = last_records(before);
    ASSERT_EQ(recs.size(), 1u);
    EXPECT_EQ(recs[0].object, "study:" + std::to_string(pk(Str(j[0], "0020000D"))));

    before = AuditCount();  // nothing disclosed: one record for the request
    r = Call(Method::kGet, "/studies?PatientName=NOBODY*", kClin);
    EXPECT_EQ(r.status, 204);
    recs = last_records(before);
    ASSERT_EQ(recs.size(), 1u);
    EXPECT_EQ(recs[0].object, "request");
    EXPECT_EQ(recs[0].detail, "route=/studies;results=0");
  }
  // Instance level: the studies of the listed instances.
  size_t before = AuditCount();
  Result r = Call(Method::kGet, "/instances?Modality=CT", kClin);
  ASSERT_EQ(r.status, 200);
  std::vector<audit::AuditRecord> recs = last_records(before);
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs[0].object, "study:" + std::to_string(pk(a.study_uid)) +
                                " study:" + std::to_string(pk(b.study_uid)) +
                                " study:" + std::to_string(pk(c.study_uid)));
  auto v = audit::Verify(*catalog_, [&](crypto::ByteSpan in) { return vault_->AuditMac(in); });
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok);
}

// Hostile attribute values come back escaped exactly as the nlohmann tree
// rendered them: the body equals its own canonical re-rendering, and the
// values round-trip.
TEST_F(DicomwebTest, QidoRendersHostileValuesAsNlohmannDid) {
  Synth a;
  a.name = "SMI\\TH^\"Q\"</script>\t";
  a.acc = "A\"\\1";
  a.description = "caf\xC3\xA9 \xE6\x97\xA5\\u0000";  // (a space before \\ would be trimmed: VM)
  StoreSynth(a, 1, 1);
  for (bool cached : {false, true}) {
    if (cached) {
      ASSERT_TRUE(query_->BuildCache().ok());
    }
    Result r = Call(Method::kGet, "/studies?PatientName=SMI*&includefield=all", kClin);
    ASSERT_EQ(r.status, 200) << r.body;
    json j = json::parse(r.body);
    EXPECT_EQ(r.body, j.dump(-1, ' ', false, json::error_handler_t::replace));
    ASSERT_EQ(j.size(), 1u);
    EXPECT_EQ(Str(j[0], "00100010"), a.name);
    EXPECT_EQ(Str(j[0], "00080050"), a.acc);
    EXPECT_EQ(Str(j[0], "00081030"), a.description);
    r = Call(Method::kGet, "/studies/" + a.study_uid + "/series?includefield=all", kClin);
    ASSERT_EQ(r.status, 200);
    EXPECT_EQ(r.body, json::parse(r.body).dump(-1, ' ', false, json::error_handler_t::replace));
    r = Call(Method::kGet, "/studies/" + a.study_uid + "/instances?includefield=all", kClin);
    ASSERT_EQ(r.status, 200);
    EXPECT_EQ(r.body, json::parse(r.body).dump(-1, ' ', false, json::error_handler_t::replace));
  }
}

// Clinician study objects are rendered once per study-cache entry and then
// served from it: byte for byte what the decrypting path renders, with each
// request's own base URL; a patient rename (HL7 reseal) shows at the next
// query; an erased study is no longer listed and its rendering is wiped; a
// share request never gets the clinician rendering.
TEST_F(DicomwebTest, QidoCachedStudyRenderingFollowsRenameAndErasure) {
  Synth a;
  a.name = "SMI\\TH^\"Q\"</script>\t\xC3\xA9\xFF";
  Synth b = OtherStudy("SMYTHE^ANN", 2);
  StoreSynth(a, 1, 1);
  StoreSynth(b, 1, 1);
  StoreSynth(b, 2, 1);
  const std::string path = "/studies?PatientName=SM*";
  Result decrypted = Call(Method::kGet, path, kClin);  // no cache yet: rendered per request
  ASSERT_EQ(decrypted.status, 200) << decrypted.body;
  ASSERT_TRUE(query_->BuildCache().ok());
  Result rendered = Call(Method::kGet, path, kClin);  // renders and attaches
  Result cached = Call(Method::kGet, path, kClin);    // from the attached renderings
  EXPECT_EQ(rendered.body, decrypted.body);
  EXPECT_EQ(cached.body, decrypted.body);
  EXPECT_EQ(cached.body,
            json::parse(cached.body).dump(-1, ' ', false, json::error_handler_t::replace));
  const size_t slots = keys_->cache().SlabForTest().used_slots();
  EXPECT_EQ(Call(Method::kGet, path, kClin).body, decrypted.body);
  EXPECT_EQ(keys_->cache().SlabForTest().used_slots(), slots);  // nothing attached twice
  // The base URL is the request's.
  Result other = Call(Method::kGet, path, kClin, {{"host", "other.example:9443"}});
  ASSERT_EQ(other.status, 200);
  json j = json::parse(other.body);
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(Str(j[1], "00081190"), "https://other.example:9443/studies/" + b.study_uid);
  EXPECT_EQ(Str(j[1], "00201208"), "2");
  // includefield: rendered per request, with the extra attribute.
  j = json::parse(Call(Method::kGet, path + "&includefield=StudyDescription", kClin).body);
  EXPECT_EQ(Str(j[0], "00081030"), a.description);
  // share: de-identified, never the clinician rendering.
  Result share = Call(Method::kGet, "/studies?ModalitiesInStudy=CT", kShare);
  ASSERT_EQ(share.status, 200);
  EXPECT_EQ(share.body.find("SMYTHE"), std::string::npos);
  EXPECT_EQ(share.body.find(b.study_uid), std::string::npos);

  // A rename (as HL7 ADT does it): the next query shows the new name.
  auto study_b = query_->GetStudy(b.study_uid);
  ASSERT_TRUE(study_b.ok());
  RenamePatient(*study_b, "SMALLWOOD^ANN");
  keys_->StudyChanged(study_b->row.study_uid_token);
  j = json::parse(Call(Method::kGet, path, kClin).body);
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(Str(j[1], "00100010"), "SMALLWOOD^ANN");
  EXPECT_EQ(Str(j[0], "00100010"), a.name.substr(0, a.name.size() - 1) + "\xEF\xBF\xBD");
  j = json::parse(Call(Method::kGet, path, kClin).body);  // and from its new rendering
  EXPECT_EQ(Str(j[1], "00100010"), "SMALLWOOD^ANN");
  // A new instance changes the counters.
  StoreSynth(b, 2, 2);
  j = json::parse(Call(Method::kGet, path, kClin).body);
  EXPECT_EQ(Str(j[1], "00201208"), "3");

  // Erasure: no longer listed; no slot keeps its rendering.
  ASSERT_TRUE(erasure_->EraseStudy(b.study_uid, "admin:test", "test").ok());
  Result after = Call(Method::kGet, path, kClin);
  ASSERT_EQ(after.status, 200);
  j = json::parse(after.body);
  ASSERT_EQ(j.size(), 1u);
  EXPECT_EQ(after.body.find(b.study_uid), std::string::npos);
  const services::NoDumpSlab& slab = keys_->cache().SlabForTest();
  EXPECT_EQ(slab.NonZeroFreeBytesForTest(), 0u);
  for (const void* chunk : slab.ChunksForTest()) {
    std::string_view mem(static_cast<const char*>(chunk), services::NoDumpSlab::kChunkBytes);
    EXPECT_EQ(mem.find("SMALLWOOD"), std::string_view::npos);
    EXPECT_EQ(mem.find(b.study_uid), std::string_view::npos);
  }
  ASSERT_TRUE(erasure_->EraseStudy(a.study_uid, "admin:test", "test").ok());
  EXPECT_EQ(Call(Method::kGet, path, kClin).status, 204);
  EXPECT_EQ(slab.used_slots(), 0u);
}

TEST_F(DicomwebTest, QidoBadQueriesAre400WithoutEcho) {
  StoreSynth(Synth{}, 1, 1);
  for (const char* q :
       {"/studies?limit=abc", "/studies?limit=0", "/studies?limit=99999999", "/studies?NoSuchKey=1",
        "/studies?StudyDate=2024-13-01", "/studies?StudyInstanceUID=1..2",
        "/studies?includefield=Bogus", "/studies?PatientName=A&PatientName=B",
        "/studies?fuzzymatching=maybe", "/studies?SOPInstanceUID=1.2", "/studies?Modality=C%2FT"}) {
    Result r = Call(Method::kGet, q, kClin);
    EXPECT_EQ(r.status, 400) << q;
    EXPECT_EQ(r.content_type, "application/problem+json") << q;
    EXPECT_EQ(r.body.find("SMITH"), std::string::npos);
  }
  Result r = Call(Method::kGet, "/studies/1.2.3.4/series", kClin);
  EXPECT_EQ(r.status, 404);
  r = Call(Method::kGet, "/studies", kClin, {{"accept", "text/html"}});
  EXPECT_EQ(r.status, 406);
  r = Call(Method::kGet, "/studies", kClin, {{"accept", "multipart/related; type="}});
  EXPECT_EQ(r.status, 406);
  r = Call(Method::kGet, "/studies", kClin, {{"accept", "garbage"}});
  EXPECT_EQ(r.status, 400);
}

TEST_F(DicomwebTest, SeriesAndInstancesLevels) {
  Synth s;
  StoreSynth(s, 1, 1);
  StoreSynth(s, 1, 2);
  StoreSynth(s, 2, 1);
  Result r = Call(Method::kGet, "/studies/" + s.study_uid + "/series", kClin);
  ASSERT_EQ(r.status, 200);
  json j = json::parse(r.body);
  ASSERT_EQ(j.size(), 2u);
  r = Call(Method::kGet, "/studies/" + s.study_uid + "/series/" + s.study_uid + ".1/instances",
           kClin);
  ASSERT_EQ(r.status, 200);
  j = json::parse(r.body);
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(Str(j[0], "00080018"), s.study_uid + ".1.1");
  EXPECT_EQ(Str(j[1], "00200013"), "2");
  r = Call(Method::kGet, "/series?Modality=CT", kClin);
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(json::parse(r.body).size(), 2u);
  r = Call(Method::kGet, "/instances?SOPInstanceUID=" + s.study_uid + ".2.1", kClin);
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(json::parse(r.body).size(), 1u);
  r = Call(Method::kGet, "/instances?limit=2&offset=2", kClin);
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(json::parse(r.body).size(), 1u);
}

TEST_F(DicomwebTest, WadoStreamsByteIdenticalInstances) {
  Synth s;
  StoreSynth(s, 1, 1);
  StoreSynth(s, 1, 2);
  StoreSynth(s, 2, 1);
  Result r = Call(Method::kGet, "/studies/" + s.study_uid, kClin,
                  {{"accept", "multipart/related; type=\"application/dicom\"; transfer-syntax=*"}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.content_type.find("multipart/related"), std::string::npos);
  std::vector<std::string> parts = Parts(r);
  ASSERT_EQ(parts.size(), 3u);
  std::set<std::string> got(parts.begin(), parts.end()), want;
  for (auto& [uid, bytes] : stored_) want.insert(bytes);
  EXPECT_EQ(got, want);

  r = Call(
      Method::kGet,
      "/studies/" + s.study_uid + "/series/" + s.study_uid + ".1/instances/" + s.study_uid + ".1.2",
      kClin);
  ASSERT_EQ(r.status, 200);
  parts = Parts(r);
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(parts[0], stored_[s.study_uid + ".1.2"]);

  r = Call(Method::kGet, "/studies/" + s.study_uid, kClin, {{"accept", "application/zip"}});
  EXPECT_EQ(r.status, 406);
  r = Call(Method::kGet, "/studies/" + s.study_uid, kClin,
           {{"accept",
             "multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840."
             "10008.1.2.4.50"}});
  EXPECT_EQ(r.status, 406);
  r = Call(Method::kGet, "/studies/1.2.3/series/4.5", kClin);
  EXPECT_EQ(r.status, 404);
}

TEST(MultipartWriterTest, WrittenBodiesParseBackPartByPart) {
  for (size_t n : {0, 1, 3}) {
    SCOPED_TRACE(n);
    std::string body;
    for (size_t k = 0; k < n; ++k) {
      body += PartHead("b0und", k == 0, "application/dicom");
      body += "part " + std::to_string(k) + "\r\n--not-the-boundary";
    }
    body += CloseDelimiter("b0und", n > 0);
    auto parts = ParseMultipart(body, "b0und", 10);
    ASSERT_TRUE(parts.ok()) << parts.status().ToString();
    ASSERT_EQ(parts->size(), n);
    for (size_t k = 0; k < n; ++k) {
      EXPECT_EQ((*parts)[k].body, "part " + std::to_string(k) + "\r\n--not-the-boundary");
      EXPECT_EQ((*parts)[k].Header("content-type"), "application/dicom");
    }
  }
}

TEST(ByteRangeTest, SingleRangesAreHonouredOthersIgnored) {
  using K = ByteRangeDecision::Kind;
  auto d = [](std::optional<std::string_view> f, uint64_t size) {
    ByteRangeDecision r = DecideByteRange(f, size);
    if (r.kind == K::kWhole) return std::string("whole");
    if (r.kind == K::kUnsatisfiable) return std::string("416");
    return std::to_string(r.first) + "-" + std::to_string(r.last);
  };
  EXPECT_EQ(d(std::nullopt, 100), "whole");
  EXPECT_EQ(d("bytes=0-9", 100), "0-9");
  EXPECT_EQ(d(" Bytes=10-10 ", 100), "10-10");
  EXPECT_EQ(d("bytes=90-", 100), "90-99");
  EXPECT_EQ(d("bytes=90-1000", 100), "90-99");  // cut to the end
  EXPECT_EQ(d("bytes=-10", 100), "90-99");
  EXPECT_EQ(d("bytes=-1000", 100), "0-99");
  EXPECT_EQ(d("bytes=100-", 100), "416");
  EXPECT_EQ(d("bytes=-0", 100), "416");
  for (std::string_view bad :
       {"bytes=0-1,5-6", "items=0-9", "bytes=9-3", "bytes=a-9", "bytes=-", "bytes=", "bytes 0-9",
        "bytes=0x1-2", "bytes=1234567890123456789-", "bytes=--5", "bytes=+1-2"}) {
    EXPECT_EQ(d(bad, 100), "whole") << bad;
  }
}

// A single instance goes with a length, a stable ETag and boundary (the same
// bytes every time), and byte ranges of that representation.
TEST_F(DicomwebTest, InstanceRetrievalHasALengthAnETagAndByteRanges) {
  Synth s;
  StoreSynth(s, 1, 1);
  const std::string path =
      "/studies/" + s.study_uid + "/series/" + s.study_uid + ".1/instances/" + s.study_uid + ".1.1";
  Result full = Call(Method::kGet, path, kClin);
  ASSERT_EQ(full.status, 200) << full.body;
  ASSERT_TRUE(full.content_length.has_value());
  EXPECT_EQ(*full.content_length, full.body.size());
  EXPECT_EQ(full.Header("accept-ranges"), "bytes");
  const std::string etag = full.Header("etag");
  ASSERT_EQ(etag.size(), 34u) << etag;
  auto parts = Parts(full);
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(parts[0], stored_[s.study_uid + ".1.1"]);
  Result again = Call(Method::kGet, path, kClin);
  EXPECT_EQ(again.body, full.body);
  EXPECT_EQ(again.Header("etag"), etag);
  const uint64_t n = full.body.size();

  auto range = [&](const std::string& spec, HeaderList extra = {}) {
    extra.emplace_back("range", spec);
    return Call(Method::kGet, path, kClin, extra);
  };
  Result r = range("bytes=10-99");
  ASSERT_EQ(r.status, 206);
  EXPECT_EQ(r.body, full.body.substr(10, 90));
  EXPECT_EQ(*r.content_length, 90u);
  EXPECT_EQ(r.Header("content-range"), "bytes 10-99/" + std::to_string(n));
  EXPECT_EQ(r.content_type, full.content_type);
  r = range("bytes=-50");
  ASSERT_EQ(r.status, 206);
  EXPECT_EQ(r.body, full.body.substr(n - 50));
  // Ranges glued back together give the whole representation.
  r = range("bytes=0-" + std::to_string(n / 3));
  Result rest = range("bytes=" + std::to_string(n / 3 + 1) + "-");
  ASSERT_EQ(rest.status, 206);
  EXPECT_EQ(r.body + rest.body, full.body);
  r = range("bytes=" + std::to_string(n) + "-");
  EXPECT_EQ(r.status, 416);
  EXPECT_EQ(r.Header("content-range"), "bytes */" + std::to_string(n));
  // If-Range: the range only for the current representation.
  r = range("bytes=0-9", {{"if-range", etag}});
  EXPECT_EQ(r.status, 206);
  r = range("bytes=0-9", {{"if-range", "\"0123\""}});
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, full.body);
  r = range("bytes=0-1,5-6");  // several ranges: the whole body
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, full.body);

  // Demographics updated since: another representation, another ETag; its
  // ranges are of the new bytes.
  auto study = query_->GetStudy(s.study_uid);
  ASSERT_TRUE(study.ok());
  RenamePatient(*study, "SMITH^JANE^MARRIED");
  Result renamed = Call(Method::kGet, path, kClin);
  ASSERT_EQ(renamed.status, 200);
  EXPECT_NE(renamed.Header("etag"), etag);
  EXPECT_NE(renamed.body, full.body);
  EXPECT_EQ(*renamed.content_length, renamed.body.size());
  r = range("bytes=100-", {{"if-range", etag}});  // the old validator: everything, new
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, renamed.body);
  r = range("bytes=100-");
  ASSERT_EQ(r.status, 206);
  EXPECT_EQ(r.body, renamed.body.substr(100));

  // Study level: streamed, no length, no ranges.
  r = Call(Method::kGet, "/studies/" + s.study_uid, kClin, {{"range", "bytes=0-9"}});
  EXPECT_EQ(r.status, 200);
  EXPECT_FALSE(r.content_length.has_value());
  EXPECT_EQ(r.Header("accept-ranges"), "none");
}

// A study of many instances: rendered by two workers when cold, in the
// catalog's order, and the same bytes again from the cache.
TEST_F(DicomwebTest, MetadataOfManyInstancesKeepsOrderColdAndWarm) {
  Synth s;
  std::vector<std::string> want;
  for (int se = 1; se <= 2; ++se) {
    for (int in = 1; in <= 12; ++in) {
      StoreSynth(s, se, in);
      want.push_back(s.study_uid + "." + std::to_string(se) + "." + std::to_string(in));
    }
  }
  Result cold = Call(Method::kGet, "/studies/" + s.study_uid + "/metadata", kClin);
  ASSERT_EQ(cold.status, 200) << cold.body;
  json j = json::parse(cold.body);
  ASSERT_EQ(j.size(), want.size());
  std::vector<std::string> got;
  for (auto& item : j) got.push_back(Str(item, "00080018"));
  std::vector<std::string> sorted_got = got, sorted_want = want;
  std::sort(sorted_got.begin(), sorted_got.end());
  std::sort(sorted_want.begin(), sorted_want.end());
  EXPECT_EQ(sorted_got, sorted_want);  // each instance exactly once
  Result warm = Call(Method::kGet, "/studies/" + s.study_uid + "/metadata", kClin);
  ASSERT_EQ(warm.status, 200);
  EXPECT_EQ(warm.body, cold.body);  // same order, same bytes
}

TEST_F(DicomwebTest, DemographicsUpdatedSinceArrivalAreApplied) {
  Synth s;
  StoreSynth(s, 1, 1);
  // An ADT update rewrote the study's sealed PHI (as the HL7 service does).
  auto study = query_->GetStudy(s.study_uid);
  ASSERT_TRUE(study.ok());
  RenamePatient(*study, "SMITH^JANE^MARRIED");
  Result r = Call(Method::kGet, "/studies/" + s.study_uid + "/metadata", kClin);
  ASSERT_EQ(r.status, 200);
  json j = json::parse(r.body);
  EXPECT_EQ(Str(j[0], "00100010"), "SMITH^JANE^MARRIED");
  r = Call(Method::kGet, "/studies/" + s.study_uid, kClin);
  ASSERT_EQ(r.status, 200);
  auto parts = Parts(r);
  ASSERT_EQ(parts.size(), 1u);
  auto attrs = dicom::ParseInstance(services::testing::Bytes(parts[0]));
  ASSERT_TRUE(attrs.ok()) << attrs.status().ToString();
  EXPECT_EQ(attrs->patient_name, "SMITH^JANE^MARRIED");
  EXPECT_EQ(attrs->sop_instance_uid, s.study_uid + ".1.1");
}

TEST_F(DicomwebTest, MetadataAndFrames) {
  Synth s;
  StoreSynth(s, 1, 1, /*frames=*/3);
  Result r = Call(Method::kGet, "/studies/" + s.study_uid + "/metadata", kClin);
  ASSERT_EQ(r.status, 200) << r.body;
  json j = json::parse(r.body);
  ASSERT_EQ(j.size(), 1u);
  EXPECT_EQ(Str(j[0], "00100010"), s.name);
  EXPECT_EQ(Str(j[0], "00080018"), s.study_uid + ".1.1");
  ASSERT_TRUE(j[0].contains("7FE00010"));
  std::string uri = j[0]["7FE00010"]["BulkDataURI"];
  EXPECT_NE(uri.find("/frames/1"), std::string::npos);

  std::string base =
      "/studies/" + s.study_uid + "/series/" + s.study_uid + ".1/instances/" + s.study_uid + ".1.1";
  r = Call(Method::kGet, base + "/frames/2,3", kClin,
           {{"accept", "multipart/related; type=\"application/octet-stream\""}});
  ASSERT_EQ(r.status, 200) << r.body;
  auto parts = Parts(r);
  ASSERT_EQ(parts.size(), 2u);
  ASSERT_EQ(parts[0].size(), 32u);  // 4x4x2 bytes
  // Pixel i of the instance is i*7+1 (little endian); frame 2 starts at pixel 16.
  EXPECT_EQ(static_cast<unsigned char>(parts[0][0]), (16 * 7 + 1) & 0xFF);
  EXPECT_EQ(static_cast<unsigned char>(parts[1][0]), (32 * 7 + 1) & 0xFF);
  EXPECT_EQ(Call(Method::kGet, base + "/frames/4", kClin).status, 404);
  EXPECT_EQ(Call(Method::kGet, base + "/frames/0", kClin).status, 404);
  EXPECT_EQ(Call(Method::kGet, base + "/frames/1,x", kClin).status, 400);
  r = Call(Method::kGet, base + "/metadata", kClin);
  ASSERT_EQ(r.status, 200);
}

// Metadata is rendered from cached headers (no-dump memory): it survives the
// object file going away, follows HL7-style demographic updates, and the
// study's erasure drops it.
TEST_F(DicomwebTest, MetadataFromCacheFollowsDemographicsAndErasure) {
  ASSERT_TRUE(query_->BuildCache().ok());
  Synth s;
  StoreSynth(s, 1, 1);
  const std::string path = "/studies/" + s.study_uid + "/metadata";
  Result first = Call(Method::kGet, path, kClin);
  ASSERT_EQ(first.status, 200) << first.body;
  // Take the object file away: a second request must not need it.
  auto study = query_->GetStudy(s.study_uid);
  ASSERT_TRUE(study.ok());
  auto insts = query_->ListInstancesOf(*study);
  ASSERT_TRUE(insts.ok() && insts->size() == 1);
  const std::string object_id = (*insts)[0].row.object_id;
  std::filesystem::path original;
  std::filesystem::path moved = storage_.path() / "moved.phg";
  for (auto& e : std::filesystem::recursive_directory_iterator(storage_.path() / "objects")) {
    if (e.path().filename().string().find(object_id) == 0) original = e.path();
  }
  ASSERT_FALSE(original.empty());
  std::filesystem::rename(original, moved);
  Result second = Call(Method::kGet, path, kClin);
  ASSERT_EQ(second.status, 200);
  EXPECT_EQ(second.body, first.body);
  // New demographics: re-rendered from the cached header, with the new name.
  RenamePatient(*study, "SMITH^JANE^RENAMED");
  keys_->StudyChanged(study->row.study_uid_token);
  Result third = Call(Method::kGet, path, kClin);
  ASSERT_EQ(third.status, 200);
  EXPECT_EQ(Str(json::parse(third.body)[0], "00100010"), "SMITH^JANE^RENAMED");
  // Erasure: the cached header and renderings go with the study.
  std::filesystem::rename(moved, original);
  ASSERT_TRUE(erasure_->EraseStudy(s.study_uid, "admin:test", "test").ok());
  EXPECT_EQ(Call(Method::kGet, path, kClin).status, 404);
  std::string h;
  EXPECT_FALSE(query_->CachedHeader(object_id, &h));
  EXPECT_EQ(keys_->cache().SlabForTest().used_slots(), 0u);
  EXPECT_EQ(keys_->cache().SlabForTest().NonZeroFreeBytesForTest(), 0u);
}

TEST_F(DicomwebTest, ShareSeesNoOriginalPhiAndNavigatesWithNewUids) {
  Synth s;
  StoreSynth(s, 1, 1);
  StoreSynth(s, 1, 2);
  Synth burned = s;
  burned.burned_in = true;
  StoreSynth(burned, 1, 3);
  const std::vector<std::string> secrets = {s.name,
                                            "SMITH",
                                            s.id,
                                            s.birth,
                                            s.acc,
                                            s.referring,
                                            "SECRETDESC",
                                            s.institution,
                                            s.study_uid,
                                            s.study_uid + ".1",
                                            s.study_uid + ".1.1",
                                            "20240315",
                                            "101500"};
  std::string all;
  auto check = [&](const Result& r, const std::string& what) {
    all += r.body;
    for (auto& h : r.headers) all += h.second;
    for (const auto& sec : secrets) {
      EXPECT_EQ(r.body.find(sec), std::string::npos) << what << " leaks " << sec;
    }
  };
  // Identity matching keys are refused outright.
  EXPECT_EQ(Call(Method::kGet, "/studies?PatientName=SMITH*", kShare).status, 400);
  EXPECT_EQ(Call(Method::kGet, "/studies?PatientID=" + s.id, kShare).status, 400);

  Result r = Call(Method::kGet, "/studies", kShare);
  ASSERT_EQ(r.status, 200);
  check(r, "qido studies");
  json j = json::parse(r.body);
  ASSERT_EQ(j.size(), 1u);
  std::string study = Str(j[0], "0020000D");
  EXPECT_EQ(study.rfind("2.25.", 0), 0u);
  EXPECT_EQ(Str(j[0], "00120062"), "YES");
  EXPECT_EQ(Str(j[0], "00100010"), "");

  r = Call(Method::kGet, "/studies/" + study + "/series", kShare);
  ASSERT_EQ(r.status, 200);
  check(r, "qido series");
  j = json::parse(r.body);
  ASSERT_EQ(j.size(), 1u);
  std::string series = Str(j[0], "0020000E");
  EXPECT_EQ(series.rfind("2.25.", 0), 0u);

  r = Call(Method::kGet, "/studies/" + study + "/series/" + series + "/instances", kShare);
  ASSERT_EQ(r.status, 200);
  check(r, "qido instances");
  j = json::parse(r.body);
  ASSERT_EQ(j.size(), 2u);  // the burned-in instance is withheld
  std::string inst = Str(j[0], "00080018");

  r = Call(Method::kGet, "/studies/" + study + "/metadata", kShare);
  ASSERT_EQ(r.status, 200);
  check(r, "metadata");
  j = json::parse(r.body);
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(Str(j[0], "0020000D"), study);
  EXPECT_EQ(Str(j[0], "00120062"), "YES");

  r = Call(Method::kGet, "/studies/" + study, kShare);
  ASSERT_EQ(r.status, 200);
  check(r, "wado study");
  auto parts = Parts(r);
  ASSERT_EQ(parts.size(), 2u);
  auto attrs = dicom::ParseInstance(services::testing::Bytes(parts[0]));
  ASSERT_TRUE(attrs.ok()) << attrs.status().ToString();
  EXPECT_EQ(attrs->study_instance_uid, study);
  EXPECT_EQ(attrs->series_instance_uid, series);
  EXPECT_TRUE(attrs->patient_name.empty());

  r = Call(Method::kGet, "/studies/" + study + "/series/" + series + "/instances/" + inst, kShare);
  ASSERT_EQ(r.status, 200);
  check(r, "wado instance");
  // Same UID -> same new UID; the original UID is unknown to a share client.
  r = Call(Method::kGet, "/studies", kShare);
  EXPECT_EQ(Str(json::parse(r.body)[0], "0020000D"), study);
  EXPECT_EQ(Call(Method::kGet, "/studies/" + s.study_uid, kShare).status, 404);
  // The burned-in instance cannot be fetched even by a guessed de-id UID.
  services::Deidentifier d(*vault_, {});
  r = Call(Method::kGet,
           "/studies/" + study + "/series/" + series + "/instances/" + d.Uid(s.study_uid + ".1.3"),
           kShare);
  EXPECT_EQ(r.status, 404);
  EXPECT_FALSE(all.empty());
}

TEST_F(DicomwebTest, StowStoresAndReportsPerInstance) {
  Synth s;
  std::string a = MakeInstance(s, 1, 1), b = MakeInstance(s, 1, 2);
  std::string boundary = "xYzBoundary42";
  std::string body = "--" + boundary + "\r\nContent-Type: application/dicom\r\n\r\n" + a +
                     "\r\n--" + boundary + "\r\nContent-Type: application/dicom\r\n\r\n" + b +
                     "\r\n--" + boundary + "\r\nContent-Type: application/dicom\r\n\r\nnot dicom" +
                     "\r\n--" + boundary + "--\r\n";
  HeaderList h = {
      {"content-type", "multipart/related; type=\"application/dicom\"; boundary=" + boundary}};
  EXPECT_EQ(Call(Method::kPost, "/studies", kClin, h, body).status, 403);
  EXPECT_EQ(Call(Method::kPost, "/studies", kShare, h, body).status, 403);
  Result r = Call(Method::kPost, "/studies", kModality, h, body);
  ASSERT_EQ(r.status, 202) << r.body;
  json j = json::parse(r.body);
  EXPECT_EQ(j["00081199"]["Value"].size(), 2u);
  EXPECT_EQ(j["00081198"]["Value"].size(), 1u);
  EXPECT_EQ(j["00081198"]["Value"][0]["00081197"]["Value"][0], 0xC000);
  auto found = query_->ListInstances(s.study_uid);
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(found->size(), 2u);
  // Bad bodies: clean 4xx, nothing stored.
  EXPECT_EQ(Call(Method::kPost, "/studies", kModality, {{"content-type", "application/json"}}, "{}")
                .status,
            415);
  EXPECT_EQ(Call(Method::kPost, "/studies", kModality,
                 {{"content-type", "multipart/related; boundary=zz"}}, "garbage")
                .status,
            400);
  EXPECT_EQ(Call(Method::kPost, "/studies", kModality,
                 {{"content-type", "multipart/related; boundary=zz"}},
                 "--zz\r\nContent-Type: application/dicom\r\n\r\nunterminated")
                .status,
            400);
  // A study in the path must match the instances'.
  r = Call(Method::kPost, "/studies/1.2.3", kAdmin, h, body);
  EXPECT_EQ(r.status, 409);
}

TEST_F(DicomwebTest, DeleteErasesForAdminOnlyAndMetricsExposeCounters) {
  Synth s;
  StoreSynth(s, 1, 1);
  EXPECT_EQ(Call(Method::kDelete, "/studies/" + s.study_uid, kClin).status, 403);
  EXPECT_EQ(Call(Method::kDelete, "/studies/" + s.study_uid, kShare).status, 403);
  Result r = Call(Method::kDelete, "/studies/" + s.study_uid, kAdmin);
  ASSERT_EQ(r.status, 202) << r.body;
  json j = json::parse(r.body);
  EXPECT_GT(j["erasure_certificate"]["audit_seq"].get<int64_t>(), 0);
  EXPECT_EQ(Call(Method::kGet, "/studies", kClin).status, 204);
  EXPECT_EQ(Call(Method::kDelete, "/studies/" + s.study_uid, kAdmin).status, 404);

  metrics_->CountHandshakeFailure("no_certificate");
  metrics_->ObserveRequest("/studies", 200, 0.003);
  EXPECT_EQ(Call(Method::kGet, "/metrics", kClin).status, 403);
  r = Call(Method::kGet, "/metrics", kAdmin);
  ASSERT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("phigate_ingest_total{outcome=\"stored\"} 1"), std::string::npos);
  EXPECT_NE(r.body.find("phigate_https_tls_handshake_failures_total{reason=\"no_certificate\"} 1"),
            std::string::npos);
  EXPECT_NE(r.body.find("phigate_https_request_duration_seconds_bucket{route=\"/studies\",le="
                        "\"0.005\"} 1"),
            std::string::npos);
}

TEST(MultipartTest, ParsesAndBounds) {
  auto p = ParseMultipart("preamble\r\n--b\r\nA: 1\r\n\r\nxx\r\n--b\r\n\r\nyy\r\n--b--", "b", 10);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  ASSERT_EQ(p->size(), 2u);
  EXPECT_EQ((*p)[0].body, "xx");
  EXPECT_EQ((*p)[0].Header("a"), "1");
  EXPECT_EQ((*p)[1].body, "yy");
  EXPECT_EQ(ParseMultipart("--b\r\n\r\nx\r\n--b\r\n\r\ny\r\n--b--", "b", 1).status().code(),
            Code::kResourceExhausted);
  EXPECT_FALSE(ParseMultipart("--b\r\nbad header\r\n\r\nx\r\n--b--", "b", 10).ok());
  EXPECT_FALSE(ParseMultipart("", "b", 10).ok());
  EXPECT_FALSE(ParseMultipart("--b\r\n\r\nx", "b", 10).ok());
  EXPECT_FALSE(ParseMultipart("--b", std::string(71, 'b'), 10).ok());
  auto a = ParseAccept("multipart/related; type=\"application/dicom\"; q=0.5, */*;q=0");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ((*a)[0].Param("type"), "application/dicom");
  EXPECT_DOUBLE_EQ((*a)[0].q, 0.5);
  EXPECT_DOUBLE_EQ((*a)[1].q, 0.0);
  EXPECT_FALSE(ParseAccept("a/b; q=2").ok());
  EXPECT_FALSE(ParseAccept("noslash").ok());
}

TEST(DeidTest, UidAndDateShift) {
  EXPECT_EQ(services::Deidentifier::ShiftDate("20240301", -1), "20240229");
  EXPECT_EQ(services::Deidentifier::ShiftDate("20240101", -366), "20221231");
  EXPECT_EQ(services::Deidentifier::ShiftDate("2024011", -1), "");
  unsigned char zeros[16] = {};
  EXPECT_EQ(services::Uid225FromBytes(zeros), "2.25.0");
  unsigned char ff[16];
  std::fill(std::begin(ff), std::end(ff), 0xFF);
  EXPECT_EQ(services::Uid225FromBytes(ff), "2.25.340282366920938463463374607431768211455");
}

}  // namespace
}  // namespace phi::web
