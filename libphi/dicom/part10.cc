#include "libphi/dicom/part10.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcistrmb.h"
#include "dcmtk/dcmdata/dcmetinf.h"
#include "dcmtk/dcmdata/dctag.h"
#include "dcmtk/dcmdata/dcxfer.h"

namespace phi::dicom {
namespace {

void PutU16(std::vector<std::byte>& b, uint16_t v) {
  b.push_back(static_cast<std::byte>(v & 0xff));
  b.push_back(static_cast<std::byte>(v >> 8));
}
void PutU32(std::vector<std::byte>& b, uint32_t v) {
  for (int i = 0; i < 4; ++i) b.push_back(static_cast<std::byte>((v >> (8 * i)) & 0xff));
}
void PutBytes(std::vector<std::byte>& b, std::string_view s) {
  for (char c : s) b.push_back(static_cast<std::byte>(c));
}

// One explicit-VR LE element with a 2-byte length (UI, SH, AE, UL).
Status PutShortElement(std::vector<std::byte>& b, uint16_t elem, const char* vr, std::string value,
                       char pad, size_t max_len) {
  if (value.size() > max_len) return Status::InvalidArgument("meta value too long");
  for (char c : value) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) {
      return Status::InvalidArgument("meta value not printable");
    }
  }
  if (value.size() % 2) value.push_back(pad);
  PutU16(b, 0x0002);
  PutU16(b, elem);
  PutBytes(b, vr);
  PutU16(b, static_cast<uint16_t>(value.size()));
  PutBytes(b, value);
  return Status::Ok();
}

std::string Get(DcmItem& item, const DcmTagKey& key) {
  OFString v;
  if (item.findAndGetOFStringArray(key, v).good()) return std::string(v.c_str(), v.length());
  return {};
}

int32_t GetInt(DcmItem& item, const DcmTagKey& key) {
  Sint32 v = 0;
  if (item.findAndGetSint32(key, v).good()) return v;
  return 0;
}

// ---- declared-length pre-scan ------------------------------------------------
//
// DCMTK allocates an element's declared length before reading its value, even
// from a memory stream. A hostile 1 KiB dataset declaring a 4 GiB element would
// make it allocate 4 GiB. So before DCMTK sees the bytes we walk the element
// headers (descending into sequences and items, skipping other values and
// encapsulated fragments) and refuse any declared length larger than the bytes
// that remain. Deflated datasets are inflated first (at most kMaxInflatedBytes:
// beyond that they are refused; deflate is used for small SR-like objects).

constexpr size_t kMaxInflatedBytes = 256u << 20;

Result<std::vector<uint8_t>> Inflate(const uint8_t* p, size_t n, size_t cap) {
  z_stream z{};
  if (inflateInit2(&z, -MAX_WBITS) != Z_OK) return Status::Internal("inflateInit2 failed");
  std::vector<uint8_t> out;
  uint8_t chunk[64 * 1024];
  z.next_in = const_cast<Bytef*>(p);
  z.avail_in = static_cast<uInt>(std::min<size_t>(n, UINT32_MAX));
  int rc = Z_OK;
  while (rc == Z_OK) {
    z.next_out = chunk;
    z.avail_out = sizeof(chunk);
    rc = inflate(&z, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) break;
    size_t got = sizeof(chunk) - z.avail_out;
    if (out.size() + got > cap) {
      inflateEnd(&z);
      return Status::Corruption("deflated dataset too large");
    }
    out.insert(out.end(), chunk, chunk + got);
    if (got == 0 && z.avail_in == 0) break;
  }
  inflateEnd(&z);
  if (rc != Z_STREAM_END && rc != Z_OK) return Status::Corruption("deflated dataset is corrupt");
  return out;
}

uint16_t Rd16(const uint8_t* p, bool le) {
  return le ? static_cast<uint16_t>(p[0] | (p[1] << 8)) : static_cast<uint16_t>((p[0] << 8) | p[1]);
}
uint32_t Rd32(const uint8_t* p, bool le) {
  return le ? (uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) |
               (uint32_t{p[3]} << 24))
            : ((uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) |
               uint32_t{p[3]});
}

bool KnownVr(char a, char b) {
  static const char* const kVrs[] = {"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL",
                                     "IS", "LO", "LT", "OB", "OD", "OF", "OL", "OV", "OW",
                                     "PN", "SH", "SL", "SQ", "SS", "ST", "SV", "TM", "UC",
                                     "UI", "UL", "UN", "UR", "US", "UT", "UV"};
  for (const char* v : kVrs) {
    if (v[0] == a && v[1] == b) return true;
  }
  return false;
}

bool LongLengthVr(char a, char b) {
  static const char* const kLong[] = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ",
                                      "SV", "UC", "UN", "UR", "UT", "UV"};
  for (const char* v : kLong) {
    if (v[0] == a && v[1] == b) return true;
  }
  return false;
}

// Walks [p, p+n). `ts_out`, when given, receives (0002,0010)'s value.
Status ScanLengths(const uint8_t* p, size_t n, bool le, bool explicit_vr, std::string* ts_out) {
  constexpr uint32_t kUndefined = 0xFFFFFFFFu;
  size_t i = 0;
  bool fragments = false;  // inside undefined-length encapsulated pixel data
  while (i < n) {
    if (n - i < 8) return Status::Corruption("truncated element header");
    uint16_t g = Rd16(p + i, le);
    uint16_t e = Rd16(p + i + 2, le);
    if (g == 0xFFFE) {  // item / delimiters: tag + 4-byte length, in every syntax
      uint32_t len = Rd32(p + i + 4, le);
      i += 8;
      if (e == 0xE0DD) {
        fragments = false;
        continue;
      }
      if (e == 0xE00D || len == kUndefined) continue;
      if (len > n - i) return Status::Corruption("item length exceeds the data");
      if (fragments) i += len;  // a fragment: opaque bytes
      continue;                 // a dataset item: its elements follow inline
    }
    uint32_t len;
    bool sq = false;
    bool pixel_like = false;
    if (explicit_vr) {
      char a = static_cast<char>(p[i + 4]), b = static_cast<char>(p[i + 5]);
      // DCMTK's handling of unknown VRs differs from the standard's; refuse them
      // rather than guess where its length field is.
      if (!KnownVr(a, b)) return Status::Corruption("unknown VR");
      if (LongLengthVr(a, b)) {
        if (n - i < 12) return Status::Corruption("truncated element header");
        len = Rd32(p + i + 8, le);
        i += 12;
      } else {
        len = Rd16(p + i + 6, le);
        i += 8;
      }
      sq = (a == 'S' && b == 'Q') || (a == 'U' && b == 'N' && len == kUndefined);
      pixel_like = !sq && len == kUndefined;
    } else {
      len = Rd32(p + i + 4, le);
      i += 8;
      if (len == kUndefined) {
        pixel_like = (g == 0x7FE0 && e == 0x0010);
        sq = !pixel_like;
      } else {
        sq = DcmTag(g, e).getEVR() == EVR_SQ;
      }
    }
    if (len == kUndefined) {
      if (pixel_like) fragments = true;
      continue;  // contents follow inline
    }
    if (len > n - i) return Status::Corruption("element length exceeds the data");
    if (sq) continue;  // descend: items follow inline
    if (ts_out != nullptr && g == 0x0002 && e == 0x0010) {
      if (!ts_out->empty()) return Status::Corruption("duplicate transfer syntax");
      ts_out->assign(reinterpret_cast<const char*>(p + i), len);
      while (!ts_out->empty() && (ts_out->back() == '\0' || ts_out->back() == ' ')) {
        ts_out->pop_back();
      }
    }
    i += len;
  }
  return Status::Ok();
}

// Checks the meta group and the dataset of a Part 10 stream.
Status PreScan(std::span<const std::byte> part10) {
  const auto* p = reinterpret_cast<const uint8_t*>(part10.data());
  size_t n = part10.size();
  if (n < 144 || Rd16(p + 132, true) != 0x0002 || Rd16(p + 134, true) != 0x0000 || p[136] != 'U' ||
      p[137] != 'L' || Rd16(p + 138, true) != 4) {
    return Status::Corruption("no file meta group length");
  }
  uint32_t gl = Rd32(p + 140, true);
  if (gl > n - 144) return Status::Corruption("meta group length exceeds the data");
  std::string ts;
  PHI_RETURN_IF_ERROR(ScanLengths(p + 144, gl, true, true, &ts));
  const uint8_t* ds = p + 144 + gl;
  size_t dn = n - 144 - gl;
  // DCMTK reads group 0002 for as long as it continues, whatever the group
  // length says: make sure both agree on where the dataset starts.
  if (dn >= 2 && Rd16(ds, true) == 0x0002) return Status::Corruption("meta group length mismatch");
  E_TransferSyntax x = DcmXfer(ts.c_str()).getXfer();
  if (ts.empty() || x == EXS_Unknown || ts != DcmXfer(x).getXferID()) {
    return Status::Corruption("unknown transfer syntax");
  }
  if (x == EXS_DeflatedLittleEndianExplicit) {
    PHI_ASSIGN_OR_RETURN(std::vector<uint8_t> inflated, Inflate(ds, dn, kMaxInflatedBytes));
    return ScanLengths(inflated.data(), inflated.size(), true, true, nullptr);
  }
  DcmXfer xf(x);
  return ScanLengths(ds, dn, !xf.isBigEndian(), xf.isExplicitVR(), nullptr);
}

}  // namespace

Result<std::vector<std::byte>> BuildPart10Header(const MetaInfo& meta) {
  if (meta.sop_class_uid.empty() || meta.sop_instance_uid.empty() ||
      meta.transfer_syntax_uid.empty()) {
    return Status::InvalidArgument("meta: empty UID");
  }
  std::vector<std::byte> body;
  // (0002,0001) File Meta Information Version, OB 00\01.
  PutU16(body, 0x0002);
  PutU16(body, 0x0001);
  PutBytes(body, "OB");
  PutU16(body, 0);
  PutU32(body, 2);
  body.push_back(std::byte{0x00});
  body.push_back(std::byte{0x01});
  PHI_RETURN_IF_ERROR(PutShortElement(body, 0x0002, "UI", meta.sop_class_uid, '\0', 64));
  PHI_RETURN_IF_ERROR(PutShortElement(body, 0x0003, "UI", meta.sop_instance_uid, '\0', 64));
  PHI_RETURN_IF_ERROR(PutShortElement(body, 0x0010, "UI", meta.transfer_syntax_uid, '\0', 64));
  PHI_RETURN_IF_ERROR(PutShortElement(body, 0x0012, "UI", kImplementationClassUid, '\0', 64));
  PHI_RETURN_IF_ERROR(PutShortElement(body, 0x0013, "SH", kImplementationVersionName, ' ', 16));
  if (!meta.source_ae.empty()) {
    PHI_RETURN_IF_ERROR(PutShortElement(body, 0x0016, "AE", meta.source_ae, ' ', 16));
  }
  std::vector<std::byte> out(128, std::byte{0});
  PutBytes(out, "DICM");
  PutU16(out, 0x0002);
  PutU16(out, 0x0000);
  PutBytes(out, "UL");
  PutU16(out, 4);
  PutU32(out, static_cast<uint32_t>(body.size()));
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

Result<services::InstanceAttributes> ParseInstance(std::span<const std::byte> part10) {
  if (part10.size() < 132 || std::memcmp(part10.data() + 128, "DICM", 4) != 0) {
    return Status::Corruption("not a DICOM Part 10 stream");
  }
  PHI_RETURN_IF_ERROR(PreScan(part10));
  DcmInputBufferStream in;
  in.setBuffer(part10.data(), static_cast<offile_off_t>(part10.size()));
  in.setEos();
  DcmFileFormat ff;
  ff.transferInit();
  OFCondition cond =
      ff.readUntilTag(in, EXS_Unknown, EGL_noChange, DCM_MaxReadLength, DCM_PixelData);
  ff.transferEnd();
  if (cond.bad()) {
    return Status::Corruption(std::string("dataset does not parse: ") + cond.text());
  }
  DcmMetaInfo* meta = ff.getMetaInfo();
  DcmDataset* ds = ff.getDataset();
  if (meta == nullptr || ds == nullptr) return Status::Corruption("no dataset");

  services::InstanceAttributes a;
  a.transfer_syntax_uid = Get(*meta, DCM_TransferSyntaxUID);
  a.specific_character_set = Get(*ds, DCM_SpecificCharacterSet);
  // Names and other text to UTF-8 honouring (0008,0005); on an unknown
  // character set keep the raw values (and say so in the status text).
  if (!a.specific_character_set.empty() && a.specific_character_set != "ISO_IR 192") {
    OFCondition c = ds->convertToUTF8();
    if (c.bad()) {
      return Status::InvalidArgument(std::string("character set conversion failed: ") + c.text());
    }
  }
  a.sop_class_uid = Get(*ds, DCM_SOPClassUID);
  a.sop_instance_uid = Get(*ds, DCM_SOPInstanceUID);
  a.study_instance_uid = Get(*ds, DCM_StudyInstanceUID);
  a.series_instance_uid = Get(*ds, DCM_SeriesInstanceUID);
  a.patient_name = Get(*ds, DCM_PatientName);
  a.patient_id = Get(*ds, DCM_PatientID);
  a.issuer_of_patient_id = Get(*ds, DCM_IssuerOfPatientID);
  a.patient_birth_date = Get(*ds, DCM_PatientBirthDate);
  a.patient_sex = Get(*ds, DCM_PatientSex);
  a.accession_number = Get(*ds, DCM_AccessionNumber);
  a.referring_physician_name = Get(*ds, DCM_ReferringPhysicianName);
  a.study_description = Get(*ds, DCM_StudyDescription);
  a.study_date = Get(*ds, DCM_StudyDate);
  a.study_time = Get(*ds, DCM_StudyTime);
  a.study_id = Get(*ds, DCM_StudyID);
  a.modality = Get(*ds, DCM_Modality);
  a.series_description = Get(*ds, DCM_SeriesDescription);
  a.body_part_examined = Get(*ds, DCM_BodyPartExamined);
  a.series_number = GetInt(*ds, DCM_SeriesNumber);
  a.instance_number = GetInt(*ds, DCM_InstanceNumber);
  a.burned_in_annotation = Get(*ds, DCM_BurnedInAnnotation) == "YES";
  if (a.sop_class_uid.empty()) return Status::InvalidArgument("missing SOP Class UID");
  if (a.sop_instance_uid.empty()) return Status::InvalidArgument("missing SOP Instance UID");
  if (a.sop_instance_uid.size() > 64 || a.sop_class_uid.size() > 64) {
    return Status::InvalidArgument("UID longer than 64 characters");
  }
  return a;
}

// ---- BoundedBufferConsumer ----

offile_off_t BoundedBufferConsumer::write(const void* buf, offile_off_t buflen) {
  if (buflen <= 0) return 0;
  const auto n = static_cast<uint64_t>(buflen);
  total_ += n;
  if (!overflowed_) {
    if (out_->size() + n > cap_) {
      overflowed_ = true;
      out_->clear();
      out_->shrink_to_fit();
    } else {
      const auto* p = static_cast<const std::byte*>(buf);
      out_->insert(out_->end(), p, p + buflen);
    }
  }
  return buflen;  // always consume, so the exchange completes
}

}  // namespace phi::dicom
