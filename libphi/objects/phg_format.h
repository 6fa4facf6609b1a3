// The `.phg` encrypted object format: constants, the fixed header, and the
// per-segment nonce and AAD derivation. libphi/objects/README.md describes the
// format in prose; this file is the normative layout.
//
//   header (kHeaderSize = 64 bytes, big-endian fields)
//     magic          8   "PHGOBJ\r\n"
//     version        u16 kFormatVersion
//     flags          u16 must be 0 (no flags defined yet)
//     segment_size   u32 power of two in [kMinSegmentSize, kMaxSegmentSize]
//     study_key_id   16
//     object_id      16
//     base_nonce     12  random per object
//     reserved       u32 must be 0
//   body: segments 0..n-1, each = ciphertext || 16-byte GCM tag.
//     Segments 0..n-2 hold exactly segment_size plaintext bytes; the last one
//     holds 0..segment_size-1 bytes (so a plaintext of k*segment_size bytes
//     ends with an empty segment). There is always at least one segment.
//     nonce(i) = base_nonce with its last 8 bytes XOR big-endian u64 i
//     aad(i)   = header bytes || u64 i (big-endian) || u8 last (1 or 0)
//
// Thread-safety: constants and pure functions only.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "libphi/util/status.h"

namespace phi::objects {

inline constexpr size_t kIdBytes = 16;
inline constexpr size_t kNonceBytes = 12;
inline constexpr size_t kTagBytes = 16;

using KeyId = std::array<std::byte, kIdBytes>;     // study key id
using ObjectId = std::array<std::byte, kIdBytes>;  // random object id
using Nonce = std::array<std::byte, kNonceBytes>;

namespace phg {

inline constexpr std::array<std::byte, 8> kMagic = {std::byte{'P'},  std::byte{'H'}, std::byte{'G'},
                                                    std::byte{'O'},  std::byte{'B'}, std::byte{'J'},
                                                    std::byte{'\r'}, std::byte{'\n'}};
inline constexpr uint16_t kFormatVersion = 1;
inline constexpr uint32_t kMinSegmentSize = 4 * 1024;
inline constexpr uint32_t kMaxSegmentSize = 16 * 1024 * 1024;
inline constexpr uint32_t kDefaultSegmentSize = 1024 * 1024;

// Byte offsets inside the header.
inline constexpr size_t kMagicOffset = 0;
inline constexpr size_t kVersionOffset = 8;
inline constexpr size_t kFlagsOffset = 10;
inline constexpr size_t kSegmentSizeOffset = 12;
inline constexpr size_t kKeyIdOffset = 16;
inline constexpr size_t kObjectIdOffset = 32;
inline constexpr size_t kBaseNonceOffset = 48;
inline constexpr size_t kReservedOffset = 60;
inline constexpr size_t kHeaderSize = 64;

// AAD of one segment: header || u64 index || u8 last flag.
inline constexpr size_t kAadSize = kHeaderSize + 8 + 1;

using HeaderBytes = std::array<std::byte, kHeaderSize>;
using Aad = std::array<std::byte, kAadSize>;

struct Header {
  uint16_t version = kFormatVersion;
  uint16_t flags = 0;
  uint32_t segment_size = kDefaultSegmentSize;
  KeyId study_key_id{};
  ObjectId object_id{};
  Nonce base_nonce{};
};

// OK iff segment_size is a power of two in [kMinSegmentSize, kMaxSegmentSize].
Status ValidateSegmentSize(uint32_t segment_size);

// REQUIRES: ValidateSegmentSize(h.segment_size).ok().
HeaderBytes EncodeHeader(const Header& h);

// Parses and validates (magic, version, flags, segment size, reserved).
// Corruption on any mismatch. Fields are authenticated only later, by the
// segment tags (the header is part of every segment's AAD).
Result<Header> DecodeHeader(std::span<const std::byte> bytes);

Nonce SegmentNonce(const Nonce& base, uint64_t index);
Aad SegmentAad(const HeaderBytes& header, uint64_t index, bool last);

// Size on disk of an object holding `plaintext_size` bytes.
uint64_t StoredSize(uint64_t plaintext_size, uint32_t segment_size);

// Inverse of StoredSize: the plaintext size implied by a file of
// `stored_size` bytes, or Corruption if no plaintext size gives that size.
Result<uint64_t> PlaintextSizeFromStored(uint64_t stored_size, uint32_t segment_size);

// Lowercase hex of an id (32 characters) and its inverse. ParseId accepts
// exactly 32 lowercase hex characters (so an id can never be a path).
std::string IdToHex(std::span<const std::byte, kIdBytes> id);
Result<std::array<std::byte, kIdBytes>> ParseId(std::string_view hex);

}  // namespace phg
}  // namespace phi::objects
