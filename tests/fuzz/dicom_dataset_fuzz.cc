// libFuzzer target: hostile bytes through the DICOM edge's dataset parse and
// attribute extraction (phi::dicom::ParseInstance), both as a whole Part 10
// stream and as a dataset behind a valid phigate meta header in one of the
// uncompressed/deflated transfer syntaxes (the first byte picks which).
// Built only with the fuzz preset (clang, -fsanitize=fuzzer).
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/oflog/oflog.h"
#include "libphi/dicom/part10.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const bool kInit = [] {
    OFLog::configure(OFLogger::FATAL_LOG_LEVEL);
    return true;
  }();
  (void)kInit;
  if (size > (1u << 20)) return 0;
  std::span<const std::byte> in(reinterpret_cast<const std::byte*>(data), size);
  (void)phi::dicom::ParseInstance(in);
  if (size == 0) return 0;
  static const char* const kTs[] = {
      UID_LittleEndianExplicitTransferSyntax, UID_LittleEndianImplicitTransferSyntax,
      UID_BigEndianExplicitTransferSyntax, UID_DeflatedExplicitVRLittleEndianTransferSyntax};
  phi::dicom::MetaInfo meta{UID_CTImageStorage, "1.2.3.4", kTs[data[0] % 4], "FUZZ"};
  auto header = phi::dicom::BuildPart10Header(meta);
  if (!header.ok()) __builtin_trap();  // constant input: must always build
  std::vector<std::byte> buf = std::move(header).value();
  buf.insert(buf.end(), in.begin() + 1, in.end());
  auto attrs = phi::dicom::ParseInstance(buf);
  if (attrs.ok() && (attrs->sop_instance_uid.empty() || attrs->sop_class_uid.empty())) {
    __builtin_trap();  // contract: OK implies both UIDs present
  }
  return 0;
}
