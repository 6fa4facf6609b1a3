// phi::dicom Part 10 helpers: the File Meta Information phigate writes in
// front of a received dataset, a bounded in-memory DcmOutputStream for
// DIMSE_receiveDataSetInFile, and the parse that turns Part 10 bytes into
// services::InstanceAttributes (names converted to UTF-8).
// Thread-safety: free functions are thread-safe; a BoundedBufferStream has
// one owner at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmdata/dcostrma.h"
#include "libphi/services/ingest.h"
#include "libphi/util/status.h"

namespace phi::dicom {

// phigate's Implementation Class UID (a 2.25 UUID-derived UID) and version name.
inline constexpr char kImplementationClassUid[] = "2.25.231558164397102876543913097385114871953";
inline constexpr char kImplementationVersionName[] = "PHIGATE_010";

struct MetaInfo {
  std::string sop_class_uid;        // (0002,0002) from the C-STORE request
  std::string sop_instance_uid;     // (0002,0003) from the C-STORE request
  std::string transfer_syntax_uid;  // (0002,0010) the presentation context's
  std::string source_ae;            // (0002,0016) calling AE title
};

// 128-byte zero preamble, "DICM", then group 0002 in Explicit VR Little Endian
// with a correct (0002,0000) group length. InvalidArgument on over-long or
// non-printable values.
Result<std::vector<std::byte>> BuildPart10Header(const MetaInfo& meta);

// Parses Part 10 bytes (stops at Pixel Data) and returns the attributes the
// index needs, strings in UTF-8. Corruption when the bytes do not parse;
// InvalidArgument when SOP Class or SOP Instance UID is missing.
// Never reads outside `part10`; safe on hostile input (fuzzed).
Result<services::InstanceAttributes> ParseInstance(std::span<const std::byte> part10);

// The consumer behind BoundedBufferStream: appends into a vector, keeping at
// most `cap` bytes; beyond that it discards (so the DIMSE exchange can finish
// and be answered with a failure status) and remembers it overflowed.
class BoundedBufferConsumer : public DcmConsumer {
 public:
  BoundedBufferConsumer(std::vector<std::byte>* out, uint64_t cap) : out_(out), cap_(cap) {}
  OFBool good() const override { return OFTrue; }
  OFCondition status() const override { return EC_Normal; }
  OFBool isFlushed() const override { return OFTrue; }
  offile_off_t avail() const override { return offile_off_t{1} << 30; }
  offile_off_t write(const void* buf, offile_off_t buflen) override;
  void flush() override {}
  bool overflowed() const { return overflowed_; }
  uint64_t total_bytes() const { return total_; }

 private:
  std::vector<std::byte>* out_;
  uint64_t cap_;
  bool overflowed_ = false;
  uint64_t total_ = 0;
};

namespace internal {
struct ConsumerHolder {
  ConsumerHolder(std::vector<std::byte>* out, uint64_t cap) : consumer(out, cap) {}
  BoundedBufferConsumer consumer;
};
}  // namespace internal

// A DcmOutputStream over a BoundedBufferConsumer, for DIMSE_receiveDataSetInFile:
// the dataset bytes arrive exactly as sent (no parse, no transcoding).
class BoundedBufferStream : private internal::ConsumerHolder, public DcmOutputStream {
 public:
  BoundedBufferStream(std::vector<std::byte>* out, uint64_t cap)
      : internal::ConsumerHolder(out, cap), DcmOutputStream(&consumer) {}
  bool overflowed() const { return consumer.overflowed(); }
  uint64_t total_bytes() const { return consumer.total_bytes(); }
};

}  // namespace phi::dicom
