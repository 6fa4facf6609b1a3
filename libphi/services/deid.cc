#include "libphi/services/deid.h"

#include <array>
#include <cstdio>
#include <ctime>
#include <vector>

#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcitem.h"
#include "dcmtk/dcmdata/dcsequen.h"
#include "dcmtk/dcmdata/dcvrui.h"

namespace phi::services {
namespace {

enum class Action : uint8_t { kRemove, kEmpty, kUid, kDate };

struct Rule {
  uint16_t group, element;
  Action action;
};

// PS3.15 Table E.1-1, Basic Profile column, for the attributes phigate meets
// in practice. kDate: Z/D/X dates, shifted under modified_dates, else emptied.
constexpr Rule kRules[] = {
    {0x0008, 0x0014, Action::kUid},     // InstanceCreatorUID
    {0x0008, 0x0018, Action::kUid},     // SOPInstanceUID
    {0x0008, 0x0020, Action::kDate},    // StudyDate
    {0x0008, 0x0021, Action::kDate},    // SeriesDate
    {0x0008, 0x0022, Action::kDate},    // AcquisitionDate
    {0x0008, 0x0023, Action::kDate},    // ContentDate
    {0x0008, 0x0024, Action::kRemove},  // OverlayDate
    {0x0008, 0x0025, Action::kRemove},  // CurveDate
    {0x0008, 0x002A, Action::kRemove},  // AcquisitionDateTime
    {0x0008, 0x0030, Action::kEmpty},   // StudyTime
    {0x0008, 0x0031, Action::kRemove},  // SeriesTime
    {0x0008, 0x0032, Action::kRemove},  // AcquisitionTime
    {0x0008, 0x0033, Action::kEmpty},   // ContentTime
    {0x0008, 0x0050, Action::kEmpty},   // AccessionNumber
    {0x0008, 0x0080, Action::kRemove},  // InstitutionName
    {0x0008, 0x0081, Action::kRemove},  // InstitutionAddress
    {0x0008, 0x0082, Action::kRemove},  // InstitutionCodeSequence
    {0x0008, 0x0090, Action::kEmpty},   // ReferringPhysicianName
    {0x0008, 0x0092, Action::kRemove},  // ReferringPhysicianAddress
    {0x0008, 0x0094, Action::kRemove},  // ReferringPhysicianTelephoneNumbers
    {0x0008, 0x0096, Action::kRemove},  // ReferringPhysicianIdentificationSequence
    {0x0008, 0x1010, Action::kRemove},  // StationName
    {0x0008, 0x1030, Action::kRemove},  // StudyDescription
    {0x0008, 0x103E, Action::kRemove},  // SeriesDescription
    {0x0008, 0x1040, Action::kRemove},  // InstitutionalDepartmentName
    {0x0008, 0x1048, Action::kRemove},  // PhysiciansOfRecord
    {0x0008, 0x1050, Action::kRemove},  // PerformingPhysicianName
    {0x0008, 0x1060, Action::kRemove},  // NameOfPhysiciansReadingStudy
    {0x0008, 0x1070, Action::kRemove},  // OperatorsName
    {0x0008, 0x1080, Action::kRemove},  // AdmittingDiagnosesDescription
    {0x0008, 0x1084, Action::kRemove},  // AdmittingDiagnosesCodeSequence
    {0x0008, 0x1110, Action::kRemove},  // ReferencedStudySequence
    {0x0008, 0x1111, Action::kRemove},  // ReferencedPerformedProcedureStepSequence
    {0x0008, 0x1120, Action::kRemove},  // ReferencedPatientSequence
    {0x0008, 0x1140, Action::kRemove},  // ReferencedImageSequence
    {0x0008, 0x1155, Action::kUid},     // ReferencedSOPInstanceUID
    {0x0008, 0x2111, Action::kRemove},  // DerivationDescription
    {0x0010, 0x0010, Action::kEmpty},   // PatientName
    {0x0010, 0x0020, Action::kEmpty},   // PatientID
    {0x0010, 0x0021, Action::kRemove},  // IssuerOfPatientID
    {0x0010, 0x0030, Action::kEmpty},   // PatientBirthDate
    {0x0010, 0x0032, Action::kRemove},  // PatientBirthTime
    {0x0010, 0x0040, Action::kEmpty},   // PatientSex
    {0x0010, 0x0050, Action::kRemove},  // PatientInsurancePlanCodeSequence
    {0x0010, 0x1000, Action::kRemove},  // OtherPatientIDs
    {0x0010, 0x1001, Action::kRemove},  // OtherPatientNames
    {0x0010, 0x1002, Action::kRemove},  // OtherPatientIDsSequence
    {0x0010, 0x1005, Action::kRemove},  // PatientBirthName
    {0x0010, 0x1010, Action::kRemove},  // PatientAge
    {0x0010, 0x1020, Action::kRemove},  // PatientSize
    {0x0010, 0x1030, Action::kRemove},  // PatientWeight
    {0x0010, 0x1040, Action::kRemove},  // PatientAddress
    {0x0010, 0x1060, Action::kRemove},  // PatientMotherBirthName
    {0x0010, 0x1080, Action::kRemove},  // MilitaryRank
    {0x0010, 0x1081, Action::kRemove},  // BranchOfService
    {0x0010, 0x1090, Action::kRemove},  // MedicalRecordLocator
    {0x0010, 0x2000, Action::kRemove},  // MedicalAlerts
    {0x0010, 0x2110, Action::kRemove},  // Allergies
    {0x0010, 0x2154, Action::kRemove},  // PatientTelephoneNumbers
    {0x0010, 0x2160, Action::kRemove},  // EthnicGroup
    {0x0010, 0x2180, Action::kRemove},  // Occupation
    {0x0010, 0x21A0, Action::kRemove},  // SmokingStatus
    {0x0010, 0x21B0, Action::kRemove},  // AdditionalPatientHistory
    {0x0010, 0x21C0, Action::kRemove},  // PregnancyStatus
    {0x0010, 0x21F0, Action::kRemove},  // PatientReligiousPreference
    {0x0010, 0x2203, Action::kRemove},  // PatientSexNeutered
    {0x0010, 0x4000, Action::kRemove},  // PatientComments
    {0x0018, 0x1000, Action::kRemove},  // DeviceSerialNumber
    {0x0018, 0x1030, Action::kRemove},  // ProtocolName
    {0x0018, 0x700A, Action::kRemove},  // DetectorID
    {0x0020, 0x000D, Action::kUid},     // StudyInstanceUID
    {0x0020, 0x000E, Action::kUid},     // SeriesInstanceUID
    {0x0020, 0x0010, Action::kEmpty},   // StudyID
    {0x0020, 0x0052, Action::kUid},     // FrameOfReferenceUID
    {0x0020, 0x0200, Action::kUid},     // SynchronizationFrameOfReferenceUID
    {0x0020, 0x4000, Action::kRemove},  // ImageComments
    {0x0032, 0x1032, Action::kRemove},  // RequestingPhysician
    {0x0032, 0x1060, Action::kRemove},  // RequestedProcedureDescription
    {0x0032, 0x4000, Action::kRemove},  // StudyComments
    {0x0038, 0x0010, Action::kRemove},  // AdmissionID
    {0x0040, 0x0244, Action::kRemove},  // PerformedProcedureStepStartDate
    {0x0040, 0x0253, Action::kRemove},  // PerformedProcedureStepID
    {0x0040, 0x0254, Action::kRemove},  // PerformedProcedureStepDescription
    {0x0040, 0x0275, Action::kRemove},  // RequestAttributesSequence
    {0x0040, 0x1001, Action::kRemove},  // RequestedProcedureID
    {0x0040, 0x2016, Action::kRemove},  // PlacerOrderNumberImagingServiceRequest
    {0x0040, 0x2017, Action::kRemove},  // FillerOrderNumberImagingServiceRequest
    {0x0040, 0xA124, Action::kUid},     // UID
    {0x0040, 0xA730, Action::kRemove},  // ContentSequence
    {0x0088, 0x0140, Action::kUid},     // StorageMediaFileSetUID
    {0x3006, 0x0024, Action::kUid},     // ReferencedFrameOfReferenceUID
    {0x0400, 0x0561, Action::kRemove},  // OriginalAttributesSequence
};

const Rule* FindRule(const DcmTagKey& k) {
  for (const Rule& r : kRules) {
    if (r.group == k.getGroup() && r.element == k.getElement()) return &r;
  }
  return nullptr;
}

bool ValidDate(std::string_view da, int* y, int* m, int* d) {
  if (da.size() != 8) return false;
  for (char c : da) {
    if (c < '0' || c > '9') return false;
  }
  *y = std::stoi(std::string(da.substr(0, 4)));
  *m = std::stoi(std::string(da.substr(4, 2)));
  *d = std::stoi(std::string(da.substr(6, 2)));
  return *m >= 1 && *m <= 12 && *d >= 1 && *d <= 31;
}

// Days since 1970-01-01 of a civil date (H. Hinnant's algorithm) and back.
int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

void CivilFromDays(int64_t z, int64_t* y, unsigned* m, unsigned* d) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t yy = static_cast<int64_t>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = yy + (*m <= 2);
}

}  // namespace

std::string Uid225FromBytes(const unsigned char* bytes16) {
  // 128-bit big-endian to decimal by repeated division by 10.
  std::array<unsigned char, 16> n;
  for (size_t i = 0; i < 16; ++i) n[i] = bytes16[i];
  std::string digits;
  bool nonzero = true;
  while (nonzero) {
    unsigned rem = 0;
    nonzero = false;
    for (auto& b : n) {
      unsigned cur = rem * 256 + b;
      b = static_cast<unsigned char>(cur / 10);
      rem = cur % 10;
      if (b != 0) nonzero = true;
    }
    digits.push_back(static_cast<char>('0' + rem));
  }
  return "2.25." + std::string(digits.rbegin(), digits.rend());
}

std::string Deidentifier::Uid(std::string_view uid) const {
  crypto::Digest d = vault_.IndexToken("deid-uid", uid);
  return Uid225FromBytes(reinterpret_cast<const unsigned char*>(d.data()));
}

int Deidentifier::DateShiftDays(std::string_view patient_key) const {
  if (!options_.modified_dates) return 0;
  crypto::Digest d = vault_.IndexToken("deid-date-shift", patient_key);
  uint32_t v = (static_cast<uint32_t>(d[0]) << 8) | static_cast<uint32_t>(d[1]);
  return -static_cast<int>(v % 3650) - 1;
}

std::string Deidentifier::ShiftDate(std::string_view da, int days) {
  int y, m, d;
  if (!ValidDate(da, &y, &m, &d)) return "";
  int64_t z = DaysFromCivil(y, static_cast<unsigned>(m), static_cast<unsigned>(d)) + days;
  int64_t ny;
  unsigned nm, nd;
  CivilFromDays(z, &ny, &nm, &nd);
  if (ny < 1 || ny > 9999) return "";
  char buf[16];
  std::snprintf(buf, sizeof(buf), "%04d%02u%02u", static_cast<int>(ny), nm, nd);
  return buf;
}

std::string Deidentifier::Date(std::string_view da, std::string_view patient_key) const {
  if (!options_.modified_dates) return "";
  return ShiftDate(da, DateShiftDays(patient_key));
}

namespace {

Status ApplyItem(const Deidentifier& deid, DcmItem& item, int shift, int depth) {
  if (depth > 16) return Status::InvalidArgument("deid: sequences nested too deep");
  std::vector<DcmTagKey> remove;
  for (unsigned long i = 0; i < item.card(); ++i) {
    DcmElement* e = item.getElement(i);
    if (e == nullptr) continue;
    DcmTagKey k = e->getTag().getXTag();
    if (k.isPrivate() || (k.getGroup() & 0xFF00) == 0x5000) {  // private, curves
      remove.push_back(k);
      continue;
    }
    const Rule* r = FindRule(k);
    if (r != nullptr) {
      switch (r->action) {
        case Action::kRemove:
          remove.push_back(k);
          continue;
        case Action::kEmpty:
          e->clear();
          continue;
        case Action::kUid: {
          OFString v;
          if (e->getOFStringArray(v).good() && !v.empty()) {
            std::string out;
            std::string_view all(v.c_str(), v.size());
            size_t b = 0;
            while (b <= all.size()) {  // multi-valued UI: map each value
              size_t s = all.find('\\', b);
              if (s == std::string_view::npos) s = all.size();
              std::string_view one = all.substr(b, s - b);
              while (!one.empty() && (one.back() == ' ' || one.back() == '\0'))
                one.remove_suffix(1);
              if (!out.empty()) out += '\\';
              if (!one.empty()) out += deid.Uid(one);
              b = s + 1;
            }
            e->putString(out.c_str());
          }
          continue;
        }
        case Action::kDate: {
          OFString v;
          std::string shifted;
          if (shift != 0 && e->getOFString(v, 0).good()) {
            shifted = Deidentifier::ShiftDate(std::string_view(v.c_str(), v.size()), shift);
          }
          if (shifted.empty()) {
            e->clear();
          } else {
            e->putString(shifted.c_str());
          }
          continue;
        }
      }
    }
    if (e->ident() == EVR_SQ) {
      auto* sq = static_cast<DcmSequenceOfItems*>(e);
      for (unsigned long j = 0; j < sq->card(); ++j) {
        DcmItem* child = sq->getItem(j);
        if (child != nullptr) PHI_RETURN_IF_ERROR(ApplyItem(deid, *child, shift, depth + 1));
      }
    }
  }
  for (const DcmTagKey& k : remove) {
    delete item.remove(k);
  }
  return Status::Ok();
}

}  // namespace

Status Deidentifier::Apply(DcmItem& dataset, std::string_view patient_key) const {
  PHI_RETURN_IF_ERROR(ApplyItem(*this, dataset, DateShiftDays(patient_key), 0));
  // Overlay/curve comments and other free text in repeating groups 60xx.
  std::vector<DcmTagKey> remove;
  for (unsigned long i = 0; i < dataset.card(); ++i) {
    DcmElement* e = dataset.getElement(i);
    if (e == nullptr) continue;
    DcmTagKey k = e->getTag().getXTag();
    if ((k.getGroup() & 0xFF00) == 0x6000 && k.getElement() == 0x4000) remove.push_back(k);
  }
  for (const DcmTagKey& k : remove) delete dataset.remove(k);
  dataset.putAndInsertString(DCM_PatientIdentityRemoved, "YES");
  dataset.putAndInsertString(DCM_DeidentificationMethod, std::string(method()).c_str());
  delete dataset.remove(DCM_DeidentificationMethodCodeSequence);
  auto add_code = [&](const char* value) {
    DcmItem* it = nullptr;
    if (dataset.findOrCreateSequenceItem(DCM_DeidentificationMethodCodeSequence, it, -2).good() &&
        it != nullptr) {
      it->putAndInsertString(DCM_CodeValue, value);
      it->putAndInsertString(DCM_CodingSchemeDesignator, "DCM");
      it->putAndInsertString(DCM_CodeMeaning,
                             std::string(value) == "113100"
                                 ? "Basic Application Confidentiality Profile"
                                 : "Retain Longitudinal With Modified Dates Option");
    }
  };
  add_code("113100");
  if (options_.modified_dates) add_code("113107");
  return Status::Ok();
}

}  // namespace phi::services
