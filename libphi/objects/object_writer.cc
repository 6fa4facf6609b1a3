#include "libphi/objects/object_writer.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <cstring>

namespace phi::objects {

Result<std::unique_ptr<PhgEncoder>> PhgEncoder::Create(const phg::Header& header, WritableFile& out,
                                                       crypto::AesGcm& aead) {
  PHI_RETURN_IF_ERROR(phg::ValidateSegmentSize(header.segment_size));
  std::unique_ptr<PhgEncoder> enc(new PhgEncoder(header, out, aead));
  Status s = out.Append(enc->header_bytes_);
  if (!s.ok()) return s;
  enc->stored_size_ = phg::kHeaderSize;
  return enc;
}

PhgEncoder::PhgEncoder(const phg::Header& header, WritableFile& out, crypto::AesGcm& aead)
    : header_bytes_(phg::EncodeHeader(header)),
      base_nonce_(header.base_nonce),
      segment_size_(header.segment_size),
      out_(out),
      aead_(aead),
      buffer_(
          std::make_unique_for_overwrite<std::byte[]>(size_t{header.segment_size} + kTagBytes)) {}

PhgEncoder::~PhgEncoder() {
  // The buffer may hold plaintext of a segment not yet sealed.
  OPENSSL_cleanse(buffer_.get(), fill_);
}

Status PhgEncoder::Fail(Status s) {
  if (error_.ok()) error_ = s;
  OPENSSL_cleanse(buffer_.get(), fill_);
  fill_ = 0;
  return s;
}

Status PhgEncoder::SealAndWrite(std::span<const std::byte> plaintext, bool last) {
  const size_t n = plaintext.size();
  Nonce nonce = phg::SegmentNonce(base_nonce_, next_segment_);
  phg::Aad aad = phg::SegmentAad(header_bytes_, next_segment_, last);
  std::span<std::byte, kTagBytes> tag(buffer_.get() + n, kTagBytes);
  PHI_RETURN_IF_ERROR(
      aead_.Seal(nonce, aad, plaintext, std::span<std::byte>(buffer_.get(), n), tag));
  PHI_RETURN_IF_ERROR(out_.Append(std::span<const std::byte>(buffer_.get(), n + kTagBytes)));
  ++next_segment_;
  stored_size_ += n + kTagBytes;
  return Status::Ok();
}

Status PhgEncoder::Append(std::span<const std::byte> data) {
  if (!error_.ok()) return error_;
  if (finished_) return Status::Internal("phg: Append after Finish");
  while (!data.empty()) {
    // A full segment is never the last one (the last is always shorter), so
    // it can be sealed as soon as it is complete.
    if (fill_ == 0 && data.size() >= segment_size_) {
      // Seal straight from the caller's bytes into the segment buffer: no copy.
      Status s = SealAndWrite(data.first(segment_size_), /*last=*/false);
      if (!s.ok()) return Fail(s);
      data = data.subspan(segment_size_);
      plaintext_size_ += segment_size_;
      continue;
    }
    size_t take = std::min(data.size(), size_t{segment_size_} - fill_);
    std::memcpy(buffer_.get() + fill_, data.data(), take);
    fill_ += take;
    data = data.subspan(take);
    plaintext_size_ += take;
    if (fill_ == segment_size_) {
      Status s = SealAndWrite(std::span<const std::byte>(buffer_.get(), fill_), false);
      if (!s.ok()) return Fail(s);
      fill_ = 0;
    }
  }
  return Status::Ok();
}

Status PhgEncoder::Finish(std::span<const std::byte> tail) {
  if (!error_.ok()) return error_;
  if (finished_) return Status::Internal("phg: Finish called twice");
  if (fill_ == 0 && tail.size() < segment_size_) {
    // Seal the last segment straight from the caller's bytes: no copy.
    plaintext_size_ += tail.size();
    Status s = SealAndWrite(tail, /*last=*/true);
    if (!s.ok()) return Fail(s);
    finished_ = true;
    return Status::Ok();
  }
  PHI_RETURN_IF_ERROR(Append(tail));
  Status s = SealAndWrite(std::span<const std::byte>(buffer_.get(), fill_), /*last=*/true);
  if (!s.ok()) return Fail(s);
  fill_ = 0;
  finished_ = true;
  return Status::Ok();
}

}  // namespace phi::objects
