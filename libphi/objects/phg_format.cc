#include "libphi/objects/phg_format.h"

#include <algorithm>
#include <bit>
#include <cstring>

namespace phi::objects::phg {
namespace {

void PutU16(std::byte* p, uint16_t v) {
  p[0] = std::byte(v >> 8);
  p[1] = std::byte(v);
}
void PutU32(std::byte* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = std::byte(v >> (24 - 8 * i));
}
void PutU64(std::byte* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = std::byte(v >> (56 - 8 * i));
}
uint16_t GetU16(const std::byte* p) {
  return static_cast<uint16_t>((std::to_integer<uint16_t>(p[0]) << 8) |
                               std::to_integer<uint16_t>(p[1]));
}
uint32_t GetU32(const std::byte* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | std::to_integer<uint32_t>(p[i]);
  return v;
}

}  // namespace

Status ValidateSegmentSize(uint32_t segment_size) {
  if (!std::has_single_bit(segment_size) || segment_size < kMinSegmentSize ||
      segment_size > kMaxSegmentSize) {
    return Status::InvalidArgument("segment size must be a power of two in [4 KiB, 16 MiB], got " +
                                   std::to_string(segment_size));
  }
  return Status::Ok();
}

HeaderBytes EncodeHeader(const Header& h) {
  HeaderBytes b{};
  std::copy(kMagic.begin(), kMagic.end(), b.begin() + kMagicOffset);
  PutU16(b.data() + kVersionOffset, h.version);
  PutU16(b.data() + kFlagsOffset, h.flags);
  PutU32(b.data() + kSegmentSizeOffset, h.segment_size);
  std::copy(h.study_key_id.begin(), h.study_key_id.end(), b.begin() + kKeyIdOffset);
  std::copy(h.object_id.begin(), h.object_id.end(), b.begin() + kObjectIdOffset);
  std::copy(h.base_nonce.begin(), h.base_nonce.end(), b.begin() + kBaseNonceOffset);
  PutU32(b.data() + kReservedOffset, 0);
  return b;
}

Result<Header> DecodeHeader(std::span<const std::byte> bytes) {
  if (bytes.size() < kHeaderSize) return Status::Corruption("phg: header truncated");
  const std::byte* p = bytes.data();
  if (!std::equal(kMagic.begin(), kMagic.end(), p + kMagicOffset)) {
    return Status::Corruption("phg: bad magic");
  }
  Header h;
  h.version = GetU16(p + kVersionOffset);
  if (h.version != kFormatVersion) {
    return Status::Corruption("phg: unsupported format version " + std::to_string(h.version));
  }
  h.flags = GetU16(p + kFlagsOffset);
  if (h.flags != 0) return Status::Corruption("phg: unknown header flags");
  h.segment_size = GetU32(p + kSegmentSizeOffset);
  if (!ValidateSegmentSize(h.segment_size).ok()) {
    return Status::Corruption("phg: invalid segment size " + std::to_string(h.segment_size));
  }
  if (GetU32(p + kReservedOffset) != 0) return Status::Corruption("phg: reserved field not zero");
  std::copy_n(p + kKeyIdOffset, kIdBytes, h.study_key_id.begin());
  std::copy_n(p + kObjectIdOffset, kIdBytes, h.object_id.begin());
  std::copy_n(p + kBaseNonceOffset, kNonceBytes, h.base_nonce.begin());
  return h;
}

Nonce SegmentNonce(const Nonce& base, uint64_t index) {
  Nonce n = base;
  std::array<std::byte, 8> ctr;
  PutU64(ctr.data(), index);
  for (size_t i = 0; i < 8; ++i) n[kNonceBytes - 8 + i] ^= ctr[i];
  return n;
}

Aad SegmentAad(const HeaderBytes& header, uint64_t index, bool last) {
  Aad a;
  std::copy(header.begin(), header.end(), a.begin());
  PutU64(a.data() + kHeaderSize, index);
  a[kHeaderSize + 8] = last ? std::byte{1} : std::byte{0};
  return a;
}

uint64_t StoredSize(uint64_t plaintext_size, uint32_t segment_size) {
  uint64_t segments = plaintext_size / segment_size + 1;
  return kHeaderSize + plaintext_size + segments * kTagBytes;
}

Result<uint64_t> PlaintextSizeFromStored(uint64_t stored_size, uint32_t segment_size) {
  if (stored_size < kHeaderSize + kTagBytes) {
    return Status::Corruption("phg: file too short for header and final segment");
  }
  uint64_t body = stored_size - kHeaderSize;
  uint64_t full = uint64_t{segment_size} + kTagBytes;
  uint64_t rem = body % full;
  if (rem < kTagBytes)
    return Status::Corruption("phg: file truncated or extended (no final segment)");
  return (body / full) * segment_size + (rem - kTagBytes);
}

std::string IdToHex(std::span<const std::byte, kIdBytes> id) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s(2 * kIdBytes, '0');
  for (size_t i = 0; i < kIdBytes; ++i) {
    auto v = std::to_integer<unsigned>(id[i]);
    s[2 * i] = kHex[v >> 4];
    s[2 * i + 1] = kHex[v & 0xf];
  }
  return s;
}

Result<std::array<std::byte, kIdBytes>> ParseId(std::string_view hex) {
  if (hex.size() != 2 * kIdBytes)
    return Status::InvalidArgument("object id: not 32 hex characters");
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  std::array<std::byte, kIdBytes> out{};
  for (size_t i = 0; i < kIdBytes; ++i) {
    int hi = nibble(hex[2 * i]);
    int lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return Status::InvalidArgument("object id: not lowercase hex");
    out[i] = std::byte(static_cast<unsigned>(hi << 4 | lo));
  }
  return out;
}

}  // namespace phi::objects::phg
