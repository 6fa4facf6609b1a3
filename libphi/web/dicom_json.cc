#include "libphi/web/dicom_json.h"

#include <algorithm>
#include <charconv>
#include <cstring>

namespace phi::web {

namespace {

constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD

// The length of the well-formed UTF-8 sequence (Unicode Table 3-7) starting
// at s[i], or 0 when s[i] does not start one; then *bad is how many bytes
// form the maximal ill-formed subpart to replace by one U+FFFD (at least 1).
size_t Utf8Sequence(std::string_view s, size_t i, size_t* bad) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  size_t len = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // the range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    *bad = 1;
    return 0;
  }
  for (size_t k = 1; k < len; ++k) {
    if (i + k >= s.size()) {
      *bad = k;  // truncated at the end
      return 0;
    }
    const auto b = static_cast<unsigned char>(s[i + k]);
    const unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (b < l || b > h) {
      *bad = k;  // the offending byte is read again as a new start
      return 0;
    }
  }
  return len;
}

}  // namespace

void AppendJsonString(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.reserve(out.size() + s.size() + 2);
  out += '"';
  size_t i = 0;
  while (i < s.size()) {
    // The common case: a run of printable ASCII copied at once.
    size_t j = i;
    while (j < s.size()) {
      const auto c = static_cast<unsigned char>(s[j]);
      if (c < 0x20 || c >= 0x80 || c == '"' || c == '\\') break;
      ++j;
    }
    out.append(s.data() + i, j - i);
    i = j;
    if (i >= s.size()) break;
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      switch (c) {
        case '"':
          out += "\\\"";
          break;
        case '\\':
          out += "\\\\";
          break;
        case '\b':
          out += "\\b";
          break;
        case '\t':
          out += "\\t";
          break;
        case '\n':
          out += "\\n";
          break;
        case '\f':
          out += "\\f";
          break;
        case '\r':
          out += "\\r";
          break;
        default:  // other control characters
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 0xF];
          break;
      }
      ++i;
      continue;
    }
    size_t bad = 0;
    const size_t n = Utf8Sequence(s, i, &bad);
    if (n > 0) {
      out.append(s.data() + i, n);
      i += n;
    } else {
      out += kReplacement;
      i += bad;
    }
  }
  out += '"';
}

void DicomJsonObject::Put(const char* tag, const char* vr, std::string_view v) {
  const size_t begin = buf_.size();
  std::string_view svr(vr);
  bool has_value = !v.empty();
  int64_t n = 0;
  if (has_value && (svr == "IS" || svr == "US" || svr == "UL")) {
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    has_value = ec == std::errc() && p == v.data() + v.size();
    if (has_value) {
      PutInt(tag, vr, n);
      return;
    }
  }
  buf_ += '{';
  if (has_value) {
    if (svr == "PN") {
      buf_ += "\"Value\":[{\"Alphabetic\":";
      AppendJsonString(buf_, v);
      buf_ += "}],";
    } else {
      buf_ += "\"Value\":[";
      AppendJsonString(buf_, v);
      buf_ += "],";
    }
  }
  buf_ += "\"vr\":";
  AppendJsonString(buf_, svr);
  buf_ += '}';
  members_.push_back({tag, begin, buf_.size()});
}

void DicomJsonObject::PutInt(const char* tag, const char* vr, int64_t n) {
  const size_t begin = buf_.size();
  char digits[24];
  auto [p, ec] = std::to_chars(digits, digits + sizeof(digits), n);
  (void)ec;  // 24 bytes always hold an int64
  buf_ += "{\"Value\":[";
  buf_.append(digits, p);
  buf_ += "],\"vr\":";
  AppendJsonString(buf_, vr);
  buf_ += '}';
  members_.push_back({tag, begin, buf_.size()});
}

void DicomJsonObject::PutStrings(const char* tag, const char* vr,
                                 const std::vector<std::string_view>& values) {
  const size_t begin = buf_.size();
  buf_ += '{';
  if (!values.empty()) {
    buf_ += "\"Value\":[";
    for (size_t k = 0; k < values.size(); ++k) {
      if (k > 0) buf_ += ',';
      AppendJsonString(buf_, values[k]);
    }
    buf_ += "],";
  }
  buf_ += "\"vr\":";
  AppendJsonString(buf_, vr);
  buf_ += '}';
  members_.push_back({tag, begin, buf_.size()});
}

void DicomJsonObject::AppendTo(std::string& out) {
  // Sorted by tag as std::map<std::string> orders keys (bytewise); stable,
  // so that of a tag put twice the last one is kept below.
  std::stable_sort(members_.begin(), members_.end(),
                   [](const Member& a, const Member& b) { return std::strcmp(a.tag, b.tag) < 0; });
  out += '{';
  bool first = true;
  for (size_t k = 0; k < members_.size(); ++k) {
    if (k + 1 < members_.size() && std::strcmp(members_[k].tag, members_[k + 1].tag) == 0) {
      continue;
    }
    const Member& m = members_[k];
    if (!first) out += ',';
    first = false;
    AppendJsonString(out, m.tag);
    out += ':';
    out.append(buf_, m.begin, m.end - m.begin);
  }
  out += '}';
}

void DicomJsonObject::Clear() {
  members_.clear();
  buf_.clear();
}

void PutJsonTree(nlohmann::json& o, const char* tag, const char* vr, std::string_view v) {
  nlohmann::json a = {{"vr", vr}};
  std::string_view svr(vr);
  if (!v.empty()) {
    if (svr == "PN") {
      a["Value"] = nlohmann::json::array({nlohmann::json{{"Alphabetic", std::string(v)}}});
    } else if (svr == "IS" || svr == "US" || svr == "UL") {
      int64_t n = 0;
      auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
      if (ec == std::errc() && p == v.data() + v.size()) a["Value"] = nlohmann::json::array({n});
    } else {
      a["Value"] = nlohmann::json::array({std::string(v)});
    }
  }
  o[tag] = std::move(a);
}

void PutJsonTreeInt(nlohmann::json& o, const char* tag, const char* vr, int64_t n) {
  o[tag] = {{"vr", vr}, {"Value", nlohmann::json::array({n})}};
}

}  // namespace phi::web
