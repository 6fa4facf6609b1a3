#include "libphi/objects/object_reader.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <cstring>

namespace phi::objects {

Result<std::unique_ptr<ObjectReader>> ObjectReader::Open(
    RandomAccessFilePtr file, const KeyId& expected_key_id, crypto::AesGcm& aead,
    std::optional<ObjectId> expected_object_id) {
  if (file == nullptr) return Status::InvalidArgument("ObjectReader: null file");
  PHI_ASSIGN_OR_RETURN(uint64_t stored_size, file->Size());
  phg::HeaderBytes hb{};
  PHI_ASSIGN_OR_RETURN(size_t got, file->Read(0, hb));
  if (got != hb.size()) return Status::Corruption("phg: header truncated");
  PHI_ASSIGN_OR_RETURN(phg::Header h, phg::DecodeHeader(hb));
  if (!crypto::ConstantTimeEqual(h.study_key_id, expected_key_id)) {
    return Status::Corruption("phg: object " + phg::IdToHex(h.object_id) +
                              " belongs to study key " + phg::IdToHex(h.study_key_id) +
                              ", expected " + phg::IdToHex(expected_key_id));
  }
  if (expected_object_id.has_value() && h.object_id != *expected_object_id) {
    return Status::Corruption("phg: header object id " + phg::IdToHex(h.object_id) +
                              " does not match file name " + phg::IdToHex(*expected_object_id));
  }
  PHI_ASSIGN_OR_RETURN(uint64_t plaintext_size,
                       phg::PlaintextSizeFromStored(stored_size, h.segment_size));
  std::unique_ptr<ObjectReader> r(
      new ObjectReader(std::move(file), h, hb, stored_size, plaintext_size, aead));
  // Authenticate the final segment now: this proves the length (truncation,
  // appended data) and the key before any caller sees a byte.
  PHI_RETURN_IF_ERROR(r->LoadSegment(r->segment_count() - 1));
  return r;
}

ObjectReader::ObjectReader(RandomAccessFilePtr file, const phg::Header& header,
                           const phg::HeaderBytes& header_bytes, uint64_t stored_size,
                           uint64_t plaintext_size, crypto::AesGcm& aead)
    : file_(std::move(file)),
      header_(header),
      header_bytes_(header_bytes),
      stored_size_(stored_size),
      plaintext_size_(plaintext_size),
      aead_(aead),
      buffer_(
          std::make_unique_for_overwrite<std::byte[]>(size_t{header.segment_size} + kTagBytes)) {}

ObjectReader::~ObjectReader() { Wipe(); }

void ObjectReader::Wipe() {
  OPENSSL_cleanse(buffer_.get(), plain_hwm_);
  plain_hwm_ = 0;
}

Status ObjectReader::LoadSegment(uint64_t index) {
  if (cached_ == index) return Status::Ok();
  cached_.reset();
  const uint64_t count = segment_count();
  if (index >= count) return Status::Internal("phg: segment index out of range");
  const bool last = index + 1 == count;
  const size_t len = last ? static_cast<size_t>(plaintext_size_ % header_.segment_size)
                          : size_t{header_.segment_size};
  const uint64_t pos = phg::kHeaderSize + index * (uint64_t{header_.segment_size} + kTagBytes);
  std::span<std::byte> seg(buffer_.get(), len + kTagBytes);
  PHI_ASSIGN_OR_RETURN(size_t got, file_->Read(pos, seg));
  if (got != seg.size()) {
    // The file shrank after Open.
    Wipe();
    return Status::Corruption("phg: segment " + std::to_string(index) + " truncated");
  }
  Nonce nonce = phg::SegmentNonce(header_.base_nonce, index);
  phg::Aad aad = phg::SegmentAad(header_bytes_, index, last);
  std::span<const std::byte, kTagBytes> tag(buffer_.get() + len, kTagBytes);
  plain_hwm_ = std::max(plain_hwm_, len);  // plaintext lands in [0, len)
  Status s = aead_.Open(nonce, aad, seg.first(len), tag, std::span<std::byte>(buffer_.get(), len));
  if (!s.ok()) {
    Wipe();
    return Status::Corruption("phg: object " + phg::IdToHex(header_.object_id) + " segment " +
                              std::to_string(index) + " failed authentication");
  }
  cached_ = index;
  cached_len_ = len;
  return Status::Ok();
}

Result<size_t> ObjectReader::Read(uint64_t offset, std::span<std::byte> out) {
  if (offset >= plaintext_size_ || out.empty()) return size_t{0};
  const uint64_t want = std::min<uint64_t>(out.size(), plaintext_size_ - offset);
  const uint64_t seg = header_.segment_size;
  size_t done = 0;
  while (done < want) {
    const uint64_t at = offset + done;
    Status s = LoadSegment(at / seg);
    if (!s.ok()) {
      OPENSSL_cleanse(out.data(), out.size());
      return s;
    }
    const size_t in_seg = static_cast<size_t>(at % seg);
    const size_t n = std::min<size_t>(cached_len_ - in_seg, static_cast<size_t>(want - done));
    std::memcpy(out.data() + done, buffer_.get() + in_seg, n);
    done += n;
  }
  return done;
}

Status ObjectReader::ReadAll(const Sink& sink) {
  const uint64_t count = segment_count();
  for (uint64_t i = 0; i < count; ++i) {
    PHI_RETURN_IF_ERROR(LoadSegment(i));
    if (cached_len_ > 0) {
      PHI_RETURN_IF_ERROR(sink(std::span<const std::byte>(buffer_.get(), cached_len_)));
    }
  }
  return Status::Ok();
}

}  // namespace phi::objects
