// ObjectReader: authenticated, random-access and streaming reads of one
// `.phg` object (phg_format.h) through a RandomAccessFile. Memory is bounded
// by one segment buffer. Only plaintext of segments whose GCM tag verified is
// ever returned; any mismatch is Code::kCorruption.
//
// Open() checks the header against the caller's expected study key id (and
// object id, when given) and authenticates the final segment, so truncation,
// appended bytes and a wrong key are reported before any Read, and
// plaintext_size() is authenticated.
//
// Thread-safety: not thread-safe (one segment buffer, one AesGcm); one owner
// at a time. REQUIRES: the AesGcm is used by no one else while the reader lives.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "libphi/crypto/crypto.h"
#include "libphi/objects/phg_format.h"
#include "libphi/util/env.h"
#include "libphi/util/status.h"

namespace phi::objects {

class ObjectReader {
 public:
  // Receives consecutive plaintext chunks (one segment at most); a non-OK
  // return stops ReadAll with that status. The span is valid only during the call.
  using Sink = std::function<Status(std::span<const std::byte>)>;

  static Result<std::unique_ptr<ObjectReader>> Open(RandomAccessFilePtr file,
                                                    const KeyId& expected_key_id,
                                                    crypto::AesGcm& aead,
                                                    std::optional<ObjectId> expected_object_id);
  ~ObjectReader();
  ObjectReader(const ObjectReader&) = delete;
  ObjectReader& operator=(const ObjectReader&) = delete;

  uint64_t plaintext_size() const { return plaintext_size_; }
  uint64_t stored_size() const { return stored_size_; }
  const phg::Header& header() const { return header_; }

  // Fills `out` with plaintext from `offset`; returns the count, which is
  // short only at the end of the object (0 at or past it). Decrypts only the
  // segments the range touches. On error `out` is wiped.
  Result<size_t> Read(uint64_t offset, std::span<std::byte> out);

  // Streams the whole plaintext, in order, to `sink`.
  Status ReadAll(const Sink& sink);

 private:
  ObjectReader(RandomAccessFilePtr file, const phg::Header& header,
               const phg::HeaderBytes& header_bytes, uint64_t stored_size, uint64_t plaintext_size,
               crypto::AesGcm& aead);
  // Reads and authenticates segment `index` into buffer_; sets cached_.
  Status LoadSegment(uint64_t index);
  uint64_t segment_count() const { return plaintext_size_ / header_.segment_size + 1; }

  RandomAccessFilePtr file_;
  const phg::Header header_;
  const phg::HeaderBytes header_bytes_;
  const uint64_t stored_size_;
  const uint64_t plaintext_size_;
  crypto::AesGcm& aead_;
  // Wipes the plaintext the buffer may hold.
  void Wipe();

  // Segment ciphertext+tag, then plaintext in place; not zero-filled.
  std::unique_ptr<std::byte[]> buffer_;
  size_t plain_hwm_ = 0;            // plaintext only ever lies in [0, plain_hwm_)
  std::optional<uint64_t> cached_;  // segment whose verified plaintext is in buffer_
  size_t cached_len_ = 0;
};

}  // namespace phi::objects
