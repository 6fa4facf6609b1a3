#include "libphi/web/multipart.h"

#include <cctype>
#include <cstdio>

namespace phi::web {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string Lower(std::string_view s) {
  std::string r(s);
  for (char& c : r) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return r;
}

bool IsTokenChar(char c) {
  if (static_cast<unsigned char>(c) <= 32 || static_cast<unsigned char>(c) >= 127) return false;
  return std::string_view("()<>@,;:\\\"/[]?={}").find(c) == std::string_view::npos;
}

bool IsToken(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!IsTokenChar(c)) return false;
  }
  return true;
}

// Splits on `sep` outside double quotes.
std::vector<std::string_view> SplitUnquoted(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  bool quoted = false;
  size_t b = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (quoted && c == '\\' && i + 1 < s.size()) {
      ++i;
    } else if (c == '"') {
      quoted = !quoted;
    } else if (c == sep && !quoted) {
      out.push_back(s.substr(b, i - b));
      b = i + 1;
    }
  }
  out.push_back(s.substr(b));
  return out;
}

}  // namespace

std::string MediaType::Param(std::string_view name) const {
  for (auto& [k, v] : params) {
    if (k == name) return v;
  }
  return "";
}

Result<MediaType> ParseMediaType(std::string_view s) {
  if (s.size() > 1024) return Status::InvalidArgument("media type too long");
  std::vector<std::string_view> pieces = SplitUnquoted(s, ';');
  MediaType mt;
  std::string_view t = Trim(pieces[0]);
  size_t slash = t.find('/');
  if (slash == std::string_view::npos || !IsToken(t.substr(0, slash)) ||
      !IsToken(t.substr(slash + 1))) {
    return Status::InvalidArgument("malformed media type");
  }
  mt.type = Lower(t);
  for (size_t i = 1; i < pieces.size(); ++i) {
    std::string_view p = Trim(pieces[i]);
    if (p.empty()) continue;
    size_t eq = p.find('=');
    if (eq == std::string_view::npos) return Status::InvalidArgument("malformed parameter");
    std::string_view name = Trim(p.substr(0, eq));
    std::string_view value = Trim(p.substr(eq + 1));
    if (!IsToken(name)) return Status::InvalidArgument("malformed parameter name");
    std::string v;
    if (!value.empty() && value.front() == '"') {
      if (value.size() < 2 || value.back() != '"') {
        return Status::InvalidArgument("unterminated quoted string");
      }
      value = value.substr(1, value.size() - 2);
      for (size_t j = 0; j < value.size(); ++j) {
        if (value[j] == '\\' && j + 1 < value.size()) ++j;
        v += value[j];
      }
    } else {
      v = std::string(value);
    }
    for (char c : v) {
      if (static_cast<unsigned char>(c) < 32 || c == 127) {
        return Status::InvalidArgument("control character in parameter");
      }
    }
    std::string lname = Lower(name);
    if (lname == "q") {
      if (v.empty() || v.size() > 5) return Status::InvalidArgument("malformed q");
      char* end = nullptr;
      double q = std::strtod(v.c_str(), &end);
      if (end != v.c_str() + v.size() || q < 0 || q > 1) {
        return Status::InvalidArgument("malformed q");
      }
      mt.q = q;
      continue;
    }
    if (mt.params.size() >= 16) return Status::InvalidArgument("too many parameters");
    mt.params.emplace_back(std::move(lname), std::move(v));
  }
  return mt;
}

Result<std::vector<MediaType>> ParseAccept(std::string_view s) {
  if (s.size() > 4096) return Status::InvalidArgument("Accept too long");
  std::vector<MediaType> out;
  for (std::string_view r : SplitUnquoted(s, ',')) {
    if (Trim(r).empty()) continue;
    if (out.size() >= 64) return Status::InvalidArgument("too many media ranges");
    PHI_ASSIGN_OR_RETURN(MediaType mt, ParseMediaType(r));
    out.push_back(std::move(mt));
  }
  if (out.empty()) return Status::InvalidArgument("empty Accept");
  return out;
}

std::string_view Part::Header(std::string_view lower_name) const {
  for (auto& [k, v] : headers) {
    if (k == lower_name) return v;
  }
  return {};
}

Result<std::vector<Part>> ParseMultipart(std::string_view body, std::string_view boundary,
                                         size_t max_parts) {
  if (boundary.empty() || boundary.size() > 70) {
    return Status::InvalidArgument("multipart boundary missing or longer than 70");
  }
  const std::string delim = "--" + std::string(boundary);
  // The first delimiter: at the start, or after a preamble ending in CRLF.
  size_t pos;
  if (body.substr(0, delim.size()) == delim) {
    pos = 0;
  } else {
    size_t f = body.find("\r\n" + delim);
    if (f == std::string_view::npos) return Status::InvalidArgument("no multipart delimiter");
    pos = f + 2;
  }
  const std::string next_delim = "\r\n" + delim;
  std::vector<Part> parts;
  for (;;) {
    pos += delim.size();
    if (body.substr(pos, 2) == "--") return parts;  // close delimiter
    // Transport padding, then CRLF.
    while (pos < body.size() && (body[pos] == ' ' || body[pos] == '\t')) ++pos;
    if (body.substr(pos, 2) != "\r\n") return Status::InvalidArgument("malformed delimiter line");
    pos += 2;
    if (parts.size() >= max_parts) return Status::ResourceExhausted("too many multipart parts");
    Part part;
    // Headers, up to an empty line.
    size_t hdr_end = body.find("\r\n\r\n", pos);
    size_t hdr_len;
    if (body.substr(pos, 2) == "\r\n") {
      hdr_len = 0;
      hdr_end = pos;
    } else {
      if (hdr_end == std::string_view::npos) return Status::InvalidArgument("part headers");
      hdr_len = hdr_end - pos;
    }
    if (hdr_len > kMaxPartHeaderBytes) return Status::InvalidArgument("part headers too long");
    std::string_view hdrs = body.substr(pos, hdr_len);
    size_t hb = 0;
    while (hb < hdrs.size()) {
      size_t e = hdrs.find("\r\n", hb);
      if (e == std::string_view::npos) e = hdrs.size();
      std::string_view line = hdrs.substr(hb, e - hb);
      hb = e + 2;
      size_t colon = line.find(':');
      if (colon == std::string_view::npos || !IsToken(line.substr(0, colon))) {
        return Status::InvalidArgument("malformed part header");
      }
      if (part.headers.size() >= 32) return Status::InvalidArgument("too many part headers");
      part.headers.emplace_back(Lower(line.substr(0, colon)),
                                std::string(Trim(line.substr(colon + 1))));
    }
    pos = hdr_len == 0 ? hdr_end + 2 : hdr_end + 4;
    size_t end = body.find(next_delim, pos);
    if (end == std::string_view::npos) return Status::InvalidArgument("unterminated part");
    part.body = body.substr(pos, end - pos);
    parts.push_back(std::move(part));
    pos = end + 2;
  }
}

std::string MakeBoundary(uint64_t seed) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "phigate-%016llx-b0undary",
                static_cast<unsigned long long>(seed * 0x9E3779B97F4A7C15ull + 0x51ed27));
  return buf;
}

std::string PartHead(std::string_view boundary, bool first, std::string_view content_type) {
  std::string h(first ? "--" : "\r\n--");
  h.append(boundary).append("\r\nContent-Type: ").append(content_type).append("\r\n\r\n");
  return h;
}

std::string CloseDelimiter(std::string_view boundary, bool any_part) {
  std::string c(any_part ? "\r\n--" : "--");
  c.append(boundary).append("--\r\n");
  return c;
}

namespace {
// Decimal digits only, at most 18 of them (no overflow); nullopt otherwise.
std::optional<uint64_t> RangeNumber(std::string_view s) {
  if (s.empty() || s.size() > 18) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v;
}
}  // namespace

ByteRangeDecision DecideByteRange(std::optional<std::string_view> field, uint64_t size) {
  using Kind = ByteRangeDecision::Kind;
  ByteRangeDecision whole;
  if (!field) return whole;
  std::string_view f = Trim(*field);
  constexpr std::string_view kUnit = "bytes=";
  if (f.size() < kUnit.size()) return whole;
  for (size_t i = 0; i < kUnit.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(f[i])) != kUnit[i]) return whole;
  }
  f.remove_prefix(kUnit.size());
  const size_t dash = f.find('-');
  if (dash == std::string_view::npos || f.find(',') != std::string_view::npos) return whole;
  const std::string_view a = f.substr(0, dash), b = f.substr(dash + 1);
  ByteRangeDecision d;
  if (a.empty()) {  // suffix: the last n bytes
    std::optional<uint64_t> n = RangeNumber(b);
    if (!n) return whole;
    if (*n == 0 || size == 0) return {Kind::kUnsatisfiable, 0, 0};
    d.first = *n >= size ? 0 : size - *n;
    d.last = size - 1;
  } else {
    std::optional<uint64_t> first = RangeNumber(a);
    if (!first) return whole;
    std::optional<uint64_t> last = b.empty() ? std::optional<uint64_t>(UINT64_MAX) : RangeNumber(b);
    if (!last || *last < *first) return whole;
    if (*first >= size) return {Kind::kUnsatisfiable, 0, 0};
    d.first = *first;
    d.last = std::min(*last, size - 1);
  }
  d.kind = Kind::kPartial;
  return d;
}

}  // namespace phi::web
