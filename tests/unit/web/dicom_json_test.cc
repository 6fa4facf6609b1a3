// Direct DICOM JSON rendering (dicom_json.h) against the nlohmann::json
// rendering it replaced: byte-for-byte equality on hostile strings (quotes,
// backslashes, control characters, every kind of ill-formed UTF-8) and on
// many random byte strings; and the audit object lists of AuditObjects.
#include "libphi/web/dicom_json.h"

#include <gtest/gtest.h>

#include <charconv>
#include <nlohmann/json.hpp>
#include <random>

#include "libphi/web/dicomweb.h"

namespace phi::web {
namespace {

using json = nlohmann::json;

// The JSON-tree rendering (what QIDO used before DicomJsonObject; still
// used for single objects): PutJsonTree / PutJsonTreeInt and this Dump.
std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string Direct(std::string_view s) {
  std::string out;
  AppendJsonString(out, s);
  return out;
}

const std::vector<std::string>& Hostile() {
  static const std::vector<std::string> kCases = {
      "",
      "SMITH^JOHN",
      "quote\"back\\slash/solidus",
      std::string("nul\0in", 6),
      "\b\f\n\r\t\x01\x1f\x7f",
      "</script><script>alert(1)</script>",
      "caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80",  // 2-, 3-, 4-byte sequences
      "\xC3",                                                   // truncated at the end
      "\xE6\x97",                                               // truncated at the end
      "\xF0\x9F\x98",                                           // truncated at the end
      "\x80\xBF",                                               // lone continuation bytes
      "\xC0\xAF\xC1\xBF",                                       // overlong 2-byte
      "\xE0\x80\xAF",                                           // overlong 3-byte
      "\xF0\x80\x80\xAF",                                       // overlong 4-byte
      "\xED\xA0\x80\xED\xBF\xBF",                               // UTF-16 surrogates
      "\xF4\x90\x80\x80",                                       // above U+10FFFF
      "\xF5\x80\x80\x80\xFF\xFE",                               // never valid bytes
      "\xE1\x80\x41",                                           // broken, then ASCII
      "\xE1\x80\xE1\x80\x80",                                   // broken, then valid
      "\xC3\"\xC3\\",                                           // broken before escapes
      "ok\xEF\xBF\xBD\xEF\xBB\xBFok",                           // U+FFFD and a BOM, valid
  };
  return kCases;
}

TEST(DicomJsonTest, StringEscapingEqualsNlohmannOnHostileStrings) {
  for (const std::string& s : Hostile()) {
    EXPECT_EQ(Direct(s), Dump(json(s)))
        << json(s).dump(-1, ' ', true, json::error_handler_t::replace);
  }
}

TEST(DicomJsonTest, StringEscapingEqualsNlohmannOnRandomBytes) {
  std::mt19937 rng(20261126);
  // Bytes drawn mostly from the interesting ranges: ASCII controls and
  // escapes, continuation bytes, every lead byte class.
  const std::vector<uint8_t> pool = {0x00, 0x01, 0x08, 0x09, 0x0A, 0x0C, 0x0D, 0x1F,
                                     0x20, 0x22, 0x41, 0x5C, 0x7F, 0x80, 0x8F, 0x90,
                                     0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0,
                                     0xE1, 0xED, 0xEF, 0xF0, 0xF3, 0xF4, 0xF5, 0xFF};
  std::uniform_int_distribution<size_t> len(0, 24), pick(0, pool.size() - 1), any(0, 255),
      coin(0, 3);
  for (int iter = 0; iter < 50000; ++iter) {
    std::string s(len(rng), '\0');
    for (char& c : s) c = static_cast<char>(coin(rng) == 0 ? any(rng) : pool[pick(rng)]);
    ASSERT_EQ(Direct(s), Dump(json(s))) << "case " << iter;
  }
}

TEST(DicomJsonTest, ObjectEqualsNlohmannRendering) {
  std::mt19937 rng(7);
  const char* tags[] = {"00100010", "00080020", "0020000D", "00201206", "00080005", "00081190",
                        "00100020", "00200011", "00080061", "0008103E", "00120063"};
  const char* vrs[] = {"PN", "DA", "UI", "IS", "CS", "UR", "LO", "US", "UL", "SH", "TM"};
  std::vector<std::string> values = Hostile();
  for (const char* v : {"0", "-0", "12", "-9223372036854775808", "9223372036854775807",
                        "9223372036854775808", "+5", " 5", "5 ", "1.5", "0x10", "007"}) {
    values.emplace_back(v);
  }
  std::uniform_int_distribution<size_t> ntag(0, std::size(tags) - 1), nvr(0, std::size(vrs) - 1),
      nval(0, values.size() - 1), count(0, 14), kind(0, 5);
  std::uniform_int_distribution<int64_t> num(INT64_MIN, INT64_MAX);
  DicomJsonObject o;
  for (int iter = 0; iter < 5000; ++iter) {
    json ref = json::object();
    o.Clear();
    const size_t n = count(rng);
    for (size_t k = 0; k < n; ++k) {  // random order, tags may repeat: the last one wins
      const char* tag = tags[ntag(rng)];
      const char* vr = vrs[nvr(rng)];
      if (kind(rng) == 0) {
        int64_t x = num(rng);
        PutJsonTreeInt(ref, tag, vr, x);
        o.PutInt(tag, vr, x);
      } else {
        const std::string& v = values[nval(rng)];
        PutJsonTree(ref, tag, vr, v);
        o.Put(tag, vr, v);
      }
    }
    std::string out;
    o.AppendTo(out);
    ASSERT_EQ(out, Dump(ref)) << "case " << iter;
  }
}

TEST(DicomJsonTest, StringListsEqualNlohmannRendering) {
  DicomJsonObject o;
  std::string out;
  o.PutStrings("00080061", "CS", {});
  o.AppendTo(out);
  EXPECT_EQ(out, R"({"00080061":{"vr":"CS"}})");
  out.clear();
  o.Clear();
  o.PutStrings("00080061", "CS", {"CT", "M\"R", "\xFF"});
  o.AppendTo(out);
  json ref = json::object();
  ref["00080061"] = {{"vr", "CS"}, {"Value", json::array({"CT", "M\"R", "\xFF"})}};
  EXPECT_EQ(out, Dump(ref));
}

TEST(DicomJsonTest, AuditObjectsListEveryStudyWithinTheBound) {
  EXPECT_TRUE(AuditObjects({}, 1024).empty());
  EXPECT_EQ(AuditObjects({7}, 1024), std::vector<std::string>{"study:7"});
  EXPECT_EQ(AuditObjects({3, 12, 5}, 1024), std::vector<std::string>{"study:3 study:12 study:5"});
  // 20 bytes hold two "study:N" (7 bytes each) and a space, not three.
  EXPECT_EQ(AuditObjects({1, 2, 3, 4, 5}, 20),
            (std::vector<std::string>{"study:1 study:2", "study:3 study:4", "study:5"}));

  std::vector<int64_t> pks;
  for (int64_t pk = 99000; pk < 100000; ++pk) pks.push_back(pk);
  std::vector<std::string> objs = AuditObjects(pks, 1024);
  EXPECT_GT(objs.size(), 1u);
  std::vector<int64_t> back;
  for (const std::string& o : objs) {
    EXPECT_LE(o.size(), 1024u);
    size_t b = 0;
    while (b < o.size()) {
      size_t e = o.find(' ', b);
      if (e == std::string::npos) e = o.size();
      std::string_view one(o.data() + b, e - b);
      ASSERT_EQ(one.substr(0, 6), "study:");
      back.push_back(std::stoll(std::string(one.substr(6))));
      b = e + 1;
    }
  }
  EXPECT_EQ(back, pks);  // every study, once, in order
}

}  // namespace
}  // namespace phi::web
