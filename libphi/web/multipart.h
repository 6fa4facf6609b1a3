// phi::web multipart/related and media-type helpers for DICOMweb: parse a
// Content-Type / Accept value into type + parameters, and split a
// multipart/related body into parts (RFC 2387 / RFC 2046) with bounds on the
// part count and header size. Parts are views into the body (no copies), so
// parsing a STOW body costs no memory beyond the body itself.
// Thread-safety: pure functions. Hostile input: every length is checked (fuzzed).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "libphi/util/status.h"

namespace phi::web {

struct MediaType {
  std::string type;                                         // lower case, e.g. "multipart/related"
  std::vector<std::pair<std::string, std::string>> params;  // names lower case, values unquoted
  double q = 1.0;
  std::string Param(std::string_view name) const;  // "" when absent
};

// One media type ("type/subtype; a=b; c=\"d\""). InvalidArgument when malformed.
Result<MediaType> ParseMediaType(std::string_view s);
// An Accept header: comma-separated media ranges (quoted commas respected).
// InvalidArgument when any range is malformed or there are more than 64.
Result<std::vector<MediaType>> ParseAccept(std::string_view s);

struct Part {
  std::vector<std::pair<std::string, std::string>> headers;  // names lower case
  std::string_view body;
  std::string_view Header(std::string_view lower_name) const;  // "" when absent
};

inline constexpr size_t kMaxPartHeaderBytes = 8 * 1024;

// Splits a multipart body with `boundary` (1..70 chars). InvalidArgument when
// the delimiters or part headers are malformed, ResourceExhausted beyond
// max_parts parts.
Result<std::vector<Part>> ParseMultipart(std::string_view body, std::string_view boundary,
                                         size_t max_parts);

// A fresh boundary for responses (fixed prefix + counter-free random-looking
// text from `seed`); never occurs in DICOM data by construction of the caller.
std::string MakeBoundary(uint64_t seed);
// Writing a multipart body: the delimiter and header before a part (the first
// part has no CRLF before its delimiter), and the close delimiter after the
// last part (or alone, for a body without parts).
std::string PartHead(std::string_view boundary, bool first, std::string_view content_type);
std::string CloseDelimiter(std::string_view boundary, bool any_part);

// A Range request field (RFC 9110 14.2) for a representation of `size` bytes.
// Only one byte range is honoured: a missing field, another unit, a
// malformed spec or several ranges give kWhole (a server may ignore Range
// and send everything). kUnsatisfiable: the range starts at or past the end
// (416). A suffix "-n" longer than the representation, or a last byte past
// the end, is cut to the representation.
struct ByteRangeDecision {
  enum class Kind { kWhole, kPartial, kUnsatisfiable } kind = Kind::kWhole;
  uint64_t first = 0;  // inclusive, for kPartial
  uint64_t last = 0;   // inclusive, for kPartial
};
ByteRangeDecision DecideByteRange(std::optional<std::string_view> field, uint64_t size);

}  // namespace phi::web
