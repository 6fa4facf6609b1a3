// ObjectWriter: the streaming write side of an ObjectStore (interface), and
// PhgEncoder: the `.phg` segment encoder every backend uses to produce the
// bytes (phg_format.h). Memory is bounded by one segment buffer.
//
// Thread-safety: neither class is thread-safe; one owner at a time. The
// AesGcm passed in is used exclusively by the encoder for its whole life
// (AesGcm is not thread-safe): REQUIRES the caller not to use it meanwhile.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "libphi/crypto/crypto.h"
#include "libphi/objects/phg_format.h"
#include "libphi/util/env.h"
#include "libphi/util/status.h"

namespace phi::objects {

struct ObjectInfo {
  std::string object_id;        // 32 lowercase hex characters
  uint64_t plaintext_size = 0;  // bytes given to Append
  uint64_t stored_size = 0;     // bytes of the .phg file (header + segments + tags)
};

// A new object being written. Append any number of times, then Finish (the
// object is durable and visible when it returns OK) or Abort (nothing is
// left behind). Destroying an unfinished writer aborts it. After any error
// the writer is failed: further calls return that error and it is aborted.
class ObjectWriter {
 public:
  virtual ~ObjectWriter() = default;
  virtual const std::string& object_id() const = 0;
  virtual Status Append(std::span<const std::byte> data) = 0;
  virtual Result<ObjectInfo> Finish() = 0;
  // Append(tail) then Finish(), where a backend may seal `tail` straight from
  // the caller's bytes instead of copying it into its segment buffer (the
  // common case: a whole object in memory, written at once).
  virtual Result<ObjectInfo> AppendAndFinish(std::span<const std::byte> tail) {
    PHI_RETURN_IF_ERROR(Append(tail));
    return Finish();
  }
  virtual void Abort() = 0;
};
using ObjectWriterPtr = std::unique_ptr<ObjectWriter>;

// Encrypts a plaintext stream into `.phg` bytes appended to a WritableFile:
// the header first, then one Append per segment (ciphertext sealed straight
// into the segment buffer, tag right behind it). Does not Sync or Close.
class PhgEncoder {
 public:
  // REQUIRES: header.segment_size valid (phg::ValidateSegmentSize); `out`
  // and `aead` outlive the encoder.
  static Result<std::unique_ptr<PhgEncoder>> Create(const phg::Header& header, WritableFile& out,
                                                    crypto::AesGcm& aead);
  ~PhgEncoder();
  PhgEncoder(const PhgEncoder&) = delete;
  PhgEncoder& operator=(const PhgEncoder&) = delete;

  Status Append(std::span<const std::byte> data);
  // Seals and writes the final (possibly empty) segment. Call once. With a
  // `tail`, the same as Append(tail) then Finish(), without copying the tail
  // into the segment buffer when nothing is buffered.
  Status Finish(std::span<const std::byte> tail = {});

  uint64_t plaintext_size() const { return plaintext_size_; }
  uint64_t stored_size() const { return stored_size_; }

 private:
  PhgEncoder(const phg::Header& header, WritableFile& out, crypto::AesGcm& aead);
  // Seals `plaintext` (which may be the front of buffer_) into buffer_ and
  // writes ciphertext || tag.
  Status SealAndWrite(std::span<const std::byte> plaintext, bool last);
  Status Fail(Status s);

  const phg::HeaderBytes header_bytes_;
  const Nonce base_nonce_;
  const uint32_t segment_size_;
  WritableFile& out_;
  crypto::AesGcm& aead_;
  // segment_size_ + kTagBytes, not zero-filled. Plaintext only ever lies in
  // [0, fill_) (sealing overwrites it in place), so only that is wiped.
  std::unique_ptr<std::byte[]> buffer_;
  size_t fill_ = 0;  // plaintext bytes buffered
  uint64_t next_segment_ = 0;
  uint64_t plaintext_size_ = 0;
  uint64_t stored_size_ = 0;
  bool finished_ = false;
  Status error_;  // sticky
};

}  // namespace phi::objects
