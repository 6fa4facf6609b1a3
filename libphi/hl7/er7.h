// phi::hl7 ER7: the HL7 v2 "pipe and hat" encoding, parsed into a small tree
// (message -> segments -> fields -> repetitions -> components ->
// subcomponents) and written back. Hand-written and bounded:
//  - delimiters come from MSH-1/MSH-2 (field, component, repetition, escape,
//    subcomponent; a 5th MSH-2 char, the v2.7 truncation char, is kept);
//  - segments end in CR; LF and CRLF are tolerated;
//  - escapes \F\ \S\ \T\ \R\ \E\ and \Xhh..\ are decoded; formatting escapes
//    (\H\ \N\ \.br\ \Zxx\ \Cxxyy\ \Mxxyyzz\) are kept verbatim in the value
//    and written back verbatim;
//  - MSH-18 "" / ASCII / 8859/1 / UNICODE UTF-8 (also "UTF-8"): values are
//    UTF-8 internally; 8859/1 is converted; other character sets and invalid
//    UTF-8 are refused;
//  - Z-segments are kept like any other segment;
//  - limits: segment length, element count (total tree size) and segment
//    count are capped, so no input can make the parser allocate without bound.
// Errors carry an HL7 table 0357 code and a location; never any content.
// Round trip: Parse(Write(m)) == m for every parsed m.
// Thread-safety: value types and pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "libphi/util/status.h"

namespace phi::hl7 {

struct Delimiters {
  char field = '|';
  char component = '^';
  char repetition = '~';
  char escape = '\\';
  char subcomponent = '&';
  char truncation = 0;                // optional 5th MSH-2 character (v2.7+)
  std::string EncodingChars() const;  // MSH-2
  bool operator==(const Delimiters&) const = default;
};

// Component = subcomponents; Repetition = components; Field = repetitions.
using Component = std::vector<std::string>;
using Repetition = std::vector<Component>;
using Field = std::vector<Repetition>;

struct Segment {
  std::string name;           // "MSH", "PID", "ZDS", ...
  std::vector<Field> fields;  // fields[0] is HL7 field 1 (for MSH: MSH-1 = field separator)
  bool operator==(const Segment&) const = default;

  // 1-based accessors; "" when absent. Get(3) = first repetition, component 1.
  const std::string& Get(size_t field, size_t component = 1, size_t sub = 1, size_t rep = 1) const;
  size_t Repetitions(size_t field) const;
};

struct Message {
  Delimiters delims;
  std::vector<Segment> segments;
  bool operator==(const Message&) const = default;

  const Segment* Find(std::string_view name, size_t nth = 0) const;
  std::vector<const Segment*> FindAll(std::string_view name) const;
};

struct ParseLimits {
  size_t max_segment_bytes = 1 << 20;  // a 10 MB segment is refused
  size_t max_segments = 10000;
  size_t max_elements = 200000;  // fields + repetitions + components + subcomponents
};

// A parse error: an HL7 table 0357 code (100 segment sequence, 101 required
// field missing, 102 data type error, 203 unsupported version / charset) and
// where it was found (segment name, 1-based segment sequence, field).
struct ParseError {
  int code = 102;
  std::string text;  // fixed wording, never message content
  std::string segment;
  size_t sequence = 0;
  size_t field = 0;
};

// Parses a whole message (without MLLP framing). On failure returns
// InvalidArgument and fills *err (if non-null).
Result<Message> Parse(std::string_view er7, ParseError* err = nullptr,
                      const ParseLimits& limits = {});

// Writes a message: segments separated (and terminated) by CR, values escaped,
// always UTF-8 (MSH-18 is written as stored).
std::string Write(const Message& m);

// Escapes / unescapes one value with the given delimiters. Unescape returns
// false on an unterminated or malformed escape. Hex escapes are bytes in the
// message's charset; Latin-1 ones are converted to UTF-8 when `latin1`.
std::string Escape(std::string_view value, const Delimiters& d);
bool Unescape(std::string_view raw, const Delimiters& d, bool latin1, std::string* out);

// True for well-formed UTF-8 (no overlongs, surrogates or values > U+10FFFF).
bool IsValidUtf8(std::string_view s);
// ISO 8859-1 -> UTF-8.
std::string Latin1ToUtf8(std::string_view s);

}  // namespace phi::hl7
