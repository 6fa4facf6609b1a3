#include "libphi/dicom/part10.h"

#include <cstring>
#include <memory>

#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcistrmb.h"
#include "dcmtk/dcmdata/dcmetinf.h"
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
