#include "libphi/dicom/part10.h"

#include <gtest/gtest.h>

#include <cstring>
#include <tuple>

#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcistrmb.h"
#include "dcmtk/dcmdata/dcmetinf.h"
#include "dcmtk/dcmdata/dcostrmb.h"
#include "dcmtk/dcmdata/dcuid.h"

namespace phi::dicom {
namespace {

constexpr char kCt[] = UID_CTImageStorage;
constexpr char kUid[] = "1.2.826.0.1.3680043.10.1137.77.1";

// Serialises a dataset in `xfer`, the way it travels in C-STORE data PDVs.
std::vector<std::byte> Encode(DcmDataset& ds, E_TransferSyntax xfer) {
  ds.chooseRepresentation(xfer, nullptr);
  std::vector<char> buf(1 << 20);
  DcmOutputBufferStream out(buf.data(), buf.size());
  ds.transferInit();
  OFCondition c = ds.write(out, xfer, EET_ExplicitLength, nullptr);
  ds.transferEnd();
  EXPECT_TRUE(c.good()) << c.text();
  void* p = nullptr;
  offile_off_t n = 0;
  out.flushBuffer(p, n);
  const auto* b = static_cast<const std::byte*>(p);
  return std::vector<std::byte>(b, b + n);
}

std::vector<std::byte> Part10(DcmDataset& ds, const char* ts_uid, E_TransferSyntax xfer,
                              const std::string& sop_instance = kUid) {
  MetaInfo m{kCt, sop_instance, ts_uid, "CT01"};
  auto h = BuildPart10Header(m);
  EXPECT_TRUE(h.ok()) << h.status().ToString();
  std::vector<std::byte> out = *h;
  auto body = Encode(ds, xfer);
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

void Fill(DcmDataset& ds) {
  ds.putAndInsertString(DCM_SOPClassUID, kCt);
  ds.putAndInsertString(DCM_SOPInstanceUID, kUid);
  ds.putAndInsertString(DCM_StudyInstanceUID, "1.2.3.4");
  ds.putAndInsertString(DCM_SeriesInstanceUID, "1.2.3.4.5");
  ds.putAndInsertString(DCM_PatientID, "PID-1");
  ds.putAndInsertString(DCM_AccessionNumber, "ACC-9");
  ds.putAndInsertString(DCM_Modality, "CT");
  ds.putAndInsertString(DCM_StudyDate, "20240102");
  ds.putAndInsertString(DCM_SeriesNumber, "7");
  ds.putAndInsertString(DCM_InstanceNumber, "12");
}

TEST(Part10Test, HeaderIsReadByDcmtkWithCorrectGroupLength) {
  MetaInfo m{kCt, kUid, UID_LittleEndianExplicitTransferSyntax, "CT01"};
  auto h = BuildPart10Header(m);
  ASSERT_TRUE(h.ok());
  ASSERT_GT(h->size(), 144u);
  EXPECT_EQ(std::memcmp(h->data() + 128, "DICM", 4), 0);
  uint32_t group_len = 0;
  std::memcpy(&group_len, h->data() + 140, 4);  // little-endian host
  EXPECT_EQ(132u + 12u + group_len, h->size());

  DcmDataset ds;
  Fill(ds);
  auto bytes = Part10(ds, UID_LittleEndianExplicitTransferSyntax, EXS_LittleEndianExplicit);
  DcmInputBufferStream in;
  in.setBuffer(bytes.data(), static_cast<offile_off_t>(bytes.size()));
  in.setEos();
  DcmFileFormat ff;
  ff.transferInit();
  ASSERT_TRUE(ff.read(in).good());
  ff.transferEnd();
  OFString v;
  ASSERT_TRUE(ff.getMetaInfo()->findAndGetOFString(DCM_MediaStorageSOPInstanceUID, v).good());
  EXPECT_EQ(v, kUid);
  ASSERT_TRUE(ff.getMetaInfo()->findAndGetOFString(DCM_ImplementationClassUID, v).good());
  EXPECT_EQ(v, kImplementationClassUid);
  ASSERT_TRUE(ff.getMetaInfo()->findAndGetOFString(DCM_SourceApplicationEntityTitle, v).good());
  EXPECT_EQ(v, "CT01");
  Uint32 gl = 0;
  ASSERT_TRUE(ff.getMetaInfo()->findAndGetUint32(DCM_FileMetaInformationGroupLength, gl).good());
  EXPECT_EQ(gl, group_len);
}

TEST(Part10Test, HeaderRejectsHostileValues) {
  EXPECT_FALSE(
      BuildPart10Header({kCt, std::string(65, '1'), UID_LittleEndianExplicitTransferSyntax, "A"})
          .ok());
  EXPECT_FALSE(
      BuildPart10Header({kCt, "1.2\n3", UID_LittleEndianExplicitTransferSyntax, "A"}).ok());
  EXPECT_FALSE(
      BuildPart10Header({kCt, kUid, UID_LittleEndianExplicitTransferSyntax, "SEVENTEEN_CHARS_X"})
          .ok());
  EXPECT_FALSE(BuildPart10Header({kCt, "", UID_LittleEndianExplicitTransferSyntax, "A"}).ok());
}

TEST(Part10Test, ParsesAttributesExplicitAndImplicit) {
  for (auto [uid, xfer] :
       {std::pair{UID_LittleEndianExplicitTransferSyntax, EXS_LittleEndianExplicit},
        std::pair{UID_LittleEndianImplicitTransferSyntax, EXS_LittleEndianImplicit},
        std::pair{UID_BigEndianExplicitTransferSyntax, EXS_BigEndianExplicit}}) {
    DcmDataset ds;
    Fill(ds);
    ds.putAndInsertString(DCM_PatientName, "Doe^John");
    auto bytes = Part10(ds, uid, xfer);
    auto a = ParseInstance(bytes);
    ASSERT_TRUE(a.ok()) << a.status().ToString();
    EXPECT_EQ(a->sop_class_uid, kCt);
    EXPECT_EQ(a->sop_instance_uid, kUid);
    EXPECT_EQ(a->transfer_syntax_uid, uid);
    EXPECT_EQ(a->patient_name, "Doe^John");
    EXPECT_EQ(a->patient_id, "PID-1");
    EXPECT_EQ(a->accession_number, "ACC-9");
    EXPECT_EQ(a->study_instance_uid, "1.2.3.4");
    EXPECT_EQ(a->series_number, 7);
    EXPECT_EQ(a->instance_number, 12);
    EXPECT_EQ(a->study_date, "20240102");
  }
}

TEST(Part10Test, ConvertsLatin1NamesToUtf8) {
  DcmDataset ds;
  Fill(ds);
  ds.putAndInsertString(DCM_SpecificCharacterSet, "ISO_IR 100");
  ds.putAndInsertString(DCM_PatientName, "M\xFCller^J\xF6rg");  // Latin-1 bytes
  auto a =
      ParseInstance(Part10(ds, UID_LittleEndianExplicitTransferSyntax, EXS_LittleEndianExplicit));
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->patient_name, "M\xC3\xBCller^J\xC3\xB6rg");
  EXPECT_EQ(a->specific_character_set, "ISO_IR 100");
}

TEST(Part10Test, KeepsUtf8Names) {
  DcmDataset ds;
  Fill(ds);
  ds.putAndInsertString(DCM_SpecificCharacterSet, "ISO_IR 192");
  ds.putAndInsertString(DCM_PatientName, "\xE5\xB1\xB1\xE7\x94\xB0^\xE5\xA4\xAA\xE9\x83\x8E");
  auto a =
      ParseInstance(Part10(ds, UID_LittleEndianExplicitTransferSyntax, EXS_LittleEndianExplicit));
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->patient_name, "\xE5\xB1\xB1\xE7\x94\xB0^\xE5\xA4\xAA\xE9\x83\x8E");
}

TEST(Part10Test, MissingSopInstanceIsInvalidArgument) {
  DcmDataset ds;
  Fill(ds);
  delete ds.remove(DCM_SOPInstanceUID);
  auto a =
      ParseInstance(Part10(ds, UID_LittleEndianExplicitTransferSyntax, EXS_LittleEndianExplicit));
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), Code::kInvalidArgument);
}

TEST(Part10Test, GarbageIsCorruption) {
  std::vector<std::byte> junk(64, std::byte{0x41});
  EXPECT_EQ(ParseInstance(junk).status().code(), Code::kCorruption);
  // A valid header followed by an element claiming 4 GiB.
  auto h = BuildPart10Header({kCt, kUid, UID_LittleEndianExplicitTransferSyntax, "A"});
  ASSERT_TRUE(h.ok());
  std::vector<std::byte> bad = *h;
  const unsigned char elem[] = {0x08, 0x00, 0x18, 0x00, 'U', 'I', 0xff, 0xff, '1', '.'};
  for (unsigned char c : elem) bad.push_back(std::byte{c});
  auto r = ParseInstance(bad);
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(ParseInstance(std::span<const std::byte>()).status().code() == Code::kCorruption);
}

// Regression (fuzzer): DCMTK allocates an element's declared length up front,
// so a tiny dataset declaring ~4 GiB must be refused before DCMTK reads it.
TEST(Part10Test, HugeDeclaredLengthsAreRefusedBeforeParsing) {
  for (auto [uid, le, explicit_vr] :
       {std::tuple{UID_LittleEndianExplicitTransferSyntax, true, true},
        std::tuple{UID_LittleEndianImplicitTransferSyntax, true, false},
        std::tuple{UID_BigEndianExplicitTransferSyntax, false, true}}) {
    auto h = BuildPart10Header({kCt, kUid, uid, "A"});
    ASSERT_TRUE(h.ok());
    std::vector<std::byte> bad = *h;
    auto put = [&](std::initializer_list<int> bytes) {
      for (int b : bytes) bad.push_back(static_cast<std::byte>(b));
    };
    // (0009,1001) with a 0xF0000000 length, then a few bytes.
    if (le) {
      put({0x09, 0x00, 0x01, 0x10});
    } else {
      put({0x00, 0x09, 0x10, 0x01});
    }
    if (explicit_vr) put({'O', 'B', 0, 0});
    if (le) {
      put({0x00, 0x00, 0x00, 0xF0});
    } else {
      put({0xF0, 0x00, 0x00, 0x00});
    }
    put({1, 2, 3, 4});
    auto r = ParseInstance(bad);
    ASSERT_FALSE(r.ok()) << uid;
    EXPECT_EQ(r.status().code(), Code::kCorruption) << uid;
    EXPECT_NE(r.status().message().find("length"), std::string::npos) << r.status().ToString();
  }
}

TEST(Part10Test, MetaGroupLengthMustMatchDcmtksView) {
  auto h = BuildPart10Header({kCt, kUid, UID_LittleEndianExplicitTransferSyntax, "A"});
  ASSERT_TRUE(h.ok());
  std::vector<std::byte> bad = *h;
  bad[138] = std::byte{0xfd};  // (0002,0000) UL with a 253-byte length field
  EXPECT_EQ(ParseInstance(bad).status().code(), Code::kCorruption);
  bad = *h;
  bad[140] = static_cast<std::byte>(static_cast<uint8_t>(bad[140]) - 8);  // too short
  EXPECT_EQ(ParseInstance(bad).status().code(), Code::kCorruption);
}

TEST(BoundedBufferStreamTest, KeepsBytesUpToCapThenDiscards) {
  std::vector<std::byte> out;
  {
    BoundedBufferStream s(&out, 10);
    s.write("hello", 5);
    s.write("world", 5);
    EXPECT_FALSE(s.overflowed());
    EXPECT_EQ(out.size(), 10u);
    EXPECT_EQ(std::memcmp(out.data(), "helloworld", 10), 0);
    EXPECT_EQ(s.write("!", 1), 1);  // still consumed
    EXPECT_TRUE(s.overflowed());
    EXPECT_TRUE(out.empty());
    EXPECT_EQ(s.total_bytes(), 11u);
  }
}

}  // namespace
}  // namespace phi::dicom
