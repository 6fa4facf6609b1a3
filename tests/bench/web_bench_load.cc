// Loader for tests/bench/web_bench.sh (not a test): opens phigated's storage
// from its config (the daemon must be stopped) and stores, through the real
// IngestService (durable path, 16 writers), N synthetic studies (index
// entries with tiny objects: enough for QIDO) and one real CT study of S
// slices (512x512x16-bit DICOM Part 10, also written to OUTDIR for Orthanc).
// Prints: ct_study=<uid> ct_series=<uid> pid=<a PatientID that exists>.
// usage: phi_web_bench_load CONFIG N S OUTDIR
#include <atomic>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "libphi/config/config.h"
#include "libphi/dicom/part10.h"
#include "libphi/services/storage_stack.h"

using namespace phi;

namespace {
const char* kNames[] = {"JONES",   "BROWN",   "TAYLOR", "WILSON", "DAVIES",   "EVANS",   "THOMAS",
                        "JOHNSON", "ROBERTS", "WALKER", "WRIGHT", "ROBINSON", "THOMPSON"};

std::string CtSlice(const std::string& study, const std::string& series, int i) {
  DcmFileFormat ff;
  DcmDataset* ds = ff.getDataset();
  std::string sop = series + "." + std::to_string(i);
  ds->putAndInsertString(DCM_SOPClassUID, "1.2.840.10008.5.1.4.1.1.2");
  ds->putAndInsertString(DCM_SOPInstanceUID, sop.c_str());
  ds->putAndInsertString(DCM_StudyInstanceUID, study.c_str());
  ds->putAndInsertString(DCM_SeriesInstanceUID, series.c_str());
  ds->putAndInsertString(DCM_PatientName, "SMITH^BENCH");
  ds->putAndInsertString(DCM_PatientID, "BENCH-CT-1");
  ds->putAndInsertString(DCM_PatientBirthDate, "19700101");
  ds->putAndInsertString(DCM_AccessionNumber, "BENCHACC1");
  ds->putAndInsertString(DCM_StudyDate, "20240101");
  ds->putAndInsertString(DCM_Modality, "CT");
  ds->putAndInsertString(DCM_SeriesNumber, "1");
  ds->putAndInsertString(DCM_InstanceNumber, std::to_string(i).c_str());
  ds->putAndInsertUint16(DCM_Rows, 512);
  ds->putAndInsertUint16(DCM_Columns, 512);
  ds->putAndInsertUint16(DCM_SamplesPerPixel, 1);
  ds->putAndInsertString(DCM_PhotometricInterpretation, "MONOCHROME2");
  ds->putAndInsertUint16(DCM_BitsAllocated, 16);
  ds->putAndInsertUint16(DCM_BitsStored, 12);
  ds->putAndInsertUint16(DCM_HighBit, 11);
  ds->putAndInsertUint16(DCM_PixelRepresentation, 0);
  std::vector<Uint16> px(512 * 512);
  uint32_t x = 12345u + static_cast<uint32_t>(i);
  for (auto& p : px) {
    x = x * 1664525u + 1013904223u;
    p = static_cast<Uint16>((x >> 20) & 0x0FFF);
  }
  ds->putAndInsertUint16Array(DCM_PixelData, px.data(), px.size());
  std::vector<std::byte> out;
  dicom::BoundedBufferStream os(&out, 1 << 24);
  ff.transferInit();
  (void)ff.write(os, EXS_LittleEndianExplicit, EET_ExplicitLength, nullptr);
  ff.transferEnd();
  return std::string(reinterpret_cast<const char*>(out.data()), out.size());
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s CONFIG N_STUDIES CT_SLICES OUTDIR\n", argv[0]);
    return 2;
  }
  Env& env = Env::Default();
  auto cfg = config::Load(argv[1], env);
  if (!cfg.ok()) {
    std::fprintf(stderr, "%s\n", cfg.status().ToString().c_str());
    return 1;
  }
  auto stack = services::StorageStack::Open(cfg->keys, cfg->storage, env);
  if (!stack.ok()) {
    std::fprintf(stderr, "%s\n", stack.status().ToString().c_str());
    return 1;
  }
  auto& ingest = (*stack)->ingest();
  const int n = std::atoi(argv[2]), slices = std::atoi(argv[3]);
  std::atomic<int> next{0}, failed{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 16; ++t) {
    ts.emplace_back([&] {
      for (int i = next++; i < n; i = next++) {
        services::InstanceAttributes a;
        a.sop_class_uid = "1.2.840.10008.5.1.4.1.1.7";
        a.transfer_syntax_uid = "1.2.840.10008.1.2.1";
        a.study_instance_uid = "1.2.826.0.1.3680043.9.5555." + std::to_string(i);
        a.series_instance_uid = a.study_instance_uid + ".1";
        a.sop_instance_uid = a.series_instance_uid + ".1";
        // 1 in 1000 patients is a SMITH: PatientName=SMI* matches ~N/1000.
        std::string family = i % 1000 == 7 ? "SMITH" : kNames[i % 13];
        a.patient_name = family + "^P" + std::to_string(i);
        a.patient_id = "PID" + std::to_string(i);
        a.accession_number = "ACC" + std::to_string(i);
        a.patient_birth_date = "19" + std::to_string(40 + i % 60) + "0101";
        a.study_date = "20" + std::to_string(10 + i % 15) + "0601";
        a.modality = i % 3 == 0 ? "MR" : "CT";
        a.series_number = 1;
        a.instance_number = 1;
        std::string bytes(256, 'x');
        auto r = ingest.Store({"bench", "", ""}, a,
                              std::as_bytes(std::span(bytes.data(), bytes.size())));
        if (!r.ok()) failed++;
      }
    });
  }
  for (auto& t : ts) t.join();
  const std::string study = "1.2.826.0.1.3680043.9.6666.1", series = study + ".1";
  std::atomic<int> nexts{1};
  std::vector<std::thread> ct;
  std::string outdir = argv[4];
  for (int t = 0; t < 4; ++t) {
    ct.emplace_back([&] {
      for (int i = nexts++; i <= slices; i = nexts++) {
        std::string bytes = CtSlice(study, series, i);
        std::ofstream(outdir + "/ct" + std::to_string(i) + ".dcm", std::ios::binary) << bytes;
        auto span = std::as_bytes(std::span(bytes.data(), bytes.size()));
        auto a = dicom::ParseInstance(span);
        if (!a.ok() || !ingest.Store({"bench", "", ""}, *a, span).ok()) failed++;
      }
    });
  }
  for (auto& t : ct) t.join();
  std::printf("ct_study=%s ct_series=%s pid=PID%d failed=%d\n", study.c_str(), series.c_str(),
              n / 2, failed.load());
  return failed.load() == 0 ? 0 : 1;
}
