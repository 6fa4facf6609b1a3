// phi::web DICOM JSON model (PS3.18 F.2) rendered straight into a string,
// for the QIDO-RS result lists (hundreds of small objects per response),
// without building a JSON tree per object.
//
// The output is byte for byte what nlohmann::json produced before for the
// same attributes (dump(-1), ensure_ascii off, invalid UTF-8 replaced by
// U+FFFD): members sorted by tag, "Value" before "vr", the same string
// escaping (", \, control characters; each maximal ill-formed UTF-8
// subsequence becomes one U+FFFD), the same numbers. Tests compare the two.
// Values are client-visible PHI: nothing here logs.
// Thread-safety: value types / pure functions.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace phi::web {

// Appends `s` as a quoted JSON string.
void AppendJsonString(std::string& out, std::string_view s);

// The same attribute added to a JSON tree (for the single-object answers:
// metadata, single-study lookups): o[tag] = {"Value":[...],"vr":vr}, with the
// rules of DicomJsonObject::Put below. Tests compare the two renderings.
void PutJsonTree(nlohmann::json& o, const char* tag, const char* vr, std::string_view v);
// o[tag] = {"Value":[n],"vr":vr}.
void PutJsonTreeInt(nlohmann::json& o, const char* tag, const char* vr, int64_t n);

// One DICOM JSON object (a dataset), members added in any order.
class DicomJsonObject {
 public:
  // {"Value":[...],"vr":vr}, or {"vr":vr} when `v` is empty. PN values are
  // {"Alphabetic":v}; IS/US/UL values become a number when `v` is one
  // (an int64 in decimal, nothing else), else the member has no Value.
  // `tag` and `vr` are literals (kept by pointer until AppendTo).
  void Put(const char* tag, const char* vr, std::string_view v);
  // {"Value":[n],"vr":vr}.
  void PutInt(const char* tag, const char* vr, int64_t n);
  // {"Value":["a","b"],"vr":vr}, or {"vr":vr} when `values` is empty.
  void PutStrings(const char* tag, const char* vr, const std::vector<std::string_view>& values);

  // Appends {members...} sorted by tag (a tag put twice: the last one).
  void AppendTo(std::string& out);
  void Clear();

 private:
  struct Member {
    const char* tag;
    size_t begin, end;  // the value in buf_
  };
  std::vector<Member> members_;
  std::string buf_;
};

}  // namespace phi::web
