// The ER7 parser and writer: delimiters, separators, escapes, character sets,
// limits, locations of errors, and the round-trip property on random trees
// and on mutated real-shaped messages.
#include "libphi/hl7/er7.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "tests/support/temp_dir.h"

namespace phi::hl7 {
namespace {

const std::string kAdt =
    "MSH|^~\\&|EPIC|HOSP|PHIGATE|RAD|20240315083000||ADT^A01|MSG1|P|2.3\r"
    "EVN|A01|20240315083000\r"
    "PID|1||PID-4711^^^HOSP^MR~998877^^^SSA^SS||SMITH^JOHN^Q||19600101|M\r"
    "ZPI|a&b^c|x\\F\\y\\S\\z\\T\\w\\R\\v\\E\\u\r";

TEST(Er7, ParsesStructure) {
  ParseError err;
  auto m = Parse(kAdt, &err);
  ASSERT_TRUE(m.ok()) << err.text;
  ASSERT_EQ(m->segments.size(), 4u);
  const Segment& msh = m->segments[0];
  EXPECT_EQ(msh.Get(1), "|");
  EXPECT_EQ(msh.Get(2), "^~\\&");
  EXPECT_EQ(msh.Get(9, 1), "ADT");
  EXPECT_EQ(msh.Get(9, 2), "A01");
  EXPECT_EQ(msh.Get(10), "MSG1");
  EXPECT_EQ(msh.Get(12), "2.3");
  const Segment* pid = m->Find("PID");
  ASSERT_NE(pid, nullptr);
  EXPECT_EQ(pid->Repetitions(3), 2u);
  EXPECT_EQ(pid->Get(3), "PID-4711");
  EXPECT_EQ(pid->Get(3, 4), "HOSP");
  EXPECT_EQ(pid->Get(3, 1, 1, 2), "998877");
  EXPECT_EQ(pid->Get(5, 2), "JOHN");
  EXPECT_EQ(pid->Get(99), "");
  const Segment* z = m->Find("ZPI");  // Z-segments kept
  ASSERT_NE(z, nullptr);
  EXPECT_EQ(z->Get(1, 1, 1), "a");
  EXPECT_EQ(z->Get(1, 1, 2), "b");
  EXPECT_EQ(z->Get(1, 2), "c");
  EXPECT_EQ(z->Get(2), "x|y^z&w~v\\u");
}

TEST(Er7, SegmentSeparatorsCrLfCrLfAreEquivalent) {
  std::string lf = kAdt, crlf;
  for (char& c : lf) {
    if (c == '\r') c = '\n';
  }
  for (char c : kAdt) {
    if (c == '\r') {
      crlf += "\r\n";
    } else {
      crlf += c;
    }
  }
  auto a = Parse(kAdt), b = Parse(lf), c = Parse(crlf);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(*a, *b);
  EXPECT_EQ(*a, *c);
  EXPECT_EQ(Write(*b), kAdt);
}

TEST(Er7, DelimitersComeFromMsh) {
  const std::string msg =
      "MSH#*!%$#LAB#F##20200101##ORU*R01#77#T#2.3\rPID#1##ID1*1*1*ISS##A*B!C*D\r";
  auto m = Parse(msg);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->delims.field, '#');
  EXPECT_EQ(m->delims.component, '*');
  EXPECT_EQ(m->delims.repetition, '!');
  EXPECT_EQ(m->delims.escape, '%');
  EXPECT_EQ(m->delims.subcomponent, '$');
  const Segment* pid = m->Find("PID");
  EXPECT_EQ(pid->Get(3, 4), "ISS");
  EXPECT_EQ(pid->Get(5, 2), "B");
  EXPECT_EQ(pid->Get(5, 1, 1, 2), "C");
  EXPECT_EQ(Write(*m), msg);
}

TEST(Er7, EscapesDecodedAndFormattingPassedThrough) {
  auto m = Parse(
      "MSH|^~\\&|A|B|C|D|1||ORU^R01|1|P|2.5\rOBX|1|FT|x||line1\\.br\\line2 \\H\\bold\\N\\ "
      "\\X41424344\\ \\X0D0A\\ \\Zxy\\ end\r");
  ASSERT_TRUE(m.ok());
  const std::string& v = m->Find("OBX")->Get(5);
  EXPECT_EQ(v, "line1\\.br\\line2 \\H\\bold\\N\\ ABCD \r\n \\Zxy\\ end");
  // Written back: formatting escapes verbatim, CR/LF as hex.
  std::string w = Write(*m);
  EXPECT_NE(w.find("line1\\.br\\line2 \\H\\bold\\N\\ ABCD \\X0D\\\\X0A\\ \\Zxy\\ end"),
            std::string::npos)
      << w;
  auto again = Parse(w);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *m);
}

TEST(Er7, MalformedHexEscapeIsAnError) {
  ParseError err;
  EXPECT_FALSE(Parse("MSH|^~\\&|A|B|C|D|1||ADT^A08|1|P|2.5\rPID|1||\\X4\\\r", &err).ok());
  EXPECT_EQ(err.code, 102);
  EXPECT_EQ(err.segment, "PID");
  EXPECT_EQ(err.sequence, 2u);
  EXPECT_EQ(err.field, 3u);
}

TEST(Er7, Latin1IsConvertedToUtf8AndWrittenBack) {
  std::string msg =
      "MSH|^~\\&|A|B|C|D|1||ADT^A31|1|P|2.3.1||||||8859/1\rPID|1||X||M\xdcLLER^J\xdcRGEN\r";
  auto m = Parse(msg);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->Find("PID")->Get(5), "M\xc3\x9cLLER");
  EXPECT_EQ(Write(*m), msg);
  // Hex escapes in a Latin-1 message are Latin-1 too.
  auto h = Parse("MSH|^~\\&|A|B|C|D|1||ADT^A31|1|P|2.3.1||||||8859/1\rPID|1||\\XE9\\\r");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->Find("PID")->Get(3), "\xc3\xa9");
}

TEST(Er7, Utf8ValidatedAndUnknownCharsetRefused) {
  ParseError err;
  EXPECT_TRUE(
      Parse("MSH|^~\\&|A|B|C|D|1||ADT^A08|1|P|2.5||||||UNICODE UTF-8\rPID|1||\xc3\xa9\r").ok());
  EXPECT_FALSE(
      Parse("MSH|^~\\&|A|B|C|D|1||ADT^A08|1|P|2.5||||||UNICODE UTF-8\rPID|1||\xc3(\r", &err).ok());
  EXPECT_EQ(err.code, 102);
  EXPECT_EQ(err.segment, "PID");
  EXPECT_FALSE(
      Parse("MSH|^~\\&|A|B|C|D|1||ADT^A08|1|P|2.5\rPID|1||\xed\xa0\x80\r").ok());       // surrogate
  EXPECT_FALSE(Parse("MSH|^~\\&|A|B|C|D|1||ADT^A08|1|P|2.5\rPID|1||\xc0\xaf\r").ok());  // overlong
  EXPECT_FALSE(
      Parse("MSH|^~\\&|A|B|C|D|1||ADT^A08|1|P|2.5\rPID|1||\\XFF\\\r").ok());  // hex, bad UTF-8
  EXPECT_FALSE(Parse("MSH|^~\\&|A|B|C|D|1||ADT^A08|1|P|2.5||||||ISO IR87\rPID|1\r", &err).ok());
  EXPECT_EQ(err.code, 103);
  EXPECT_EQ(err.field, 18u);
}

TEST(Er7, StructuralErrors) {
  ParseError err;
  EXPECT_FALSE(Parse("PID|1||X\r", &err).ok());
  EXPECT_EQ(err.code, 100);
  EXPECT_FALSE(Parse("MSH|^^\\&|A|B\r", &err).ok());  // repeated encoding char
  EXPECT_EQ(err.field, 2u);
  EXPECT_FALSE(Parse("MSHA^~\\&|A\r", &err).ok());  // alphanumeric separator
  EXPECT_FALSE(Parse("MSH|^~\\&|A|B|C|D|1||ADT^A08|1|P|2.5\rMSH|^~\\&|A\r", &err).ok());
  EXPECT_EQ(err.sequence, 2u);
  EXPECT_FALSE(Parse("MSH|^~\\&|A|B|C|D|1||ADT^A08|1|P|2.5\rpid|1\r", &err).ok());
  EXPECT_FALSE(Parse("MSH|^~\\&|A|B|C|D|1||ADT^A08|1|P|2.5\rPIDX|1\r", &err).ok());
}

TEST(Er7, LimitsBoundTheWork) {
  ParseError err;
  std::string big = "MSH|^~\\&|A|B|C|D|1||ADT^A08|1|P|2.5\rOBX|1|TX|||" +
                    std::string(10 * 1024 * 1024, 'x') + "\r";
  EXPECT_FALSE(Parse(big, &err).ok());
  EXPECT_EQ(err.segment, "OBX");
  EXPECT_EQ(err.text, "segment too long");
  std::string many = "MSH|^~\\&|A|B|C|D|1||ADT^A08|1|P|2.5\rOBX|" + std::string(500000, '^') + "\r";
  EXPECT_FALSE(Parse(many, &err).ok());
  EXPECT_EQ(err.text, "message too complex");
  ParseLimits few;
  few.max_segments = 3;
  EXPECT_FALSE(Parse(kAdt, &err, few).ok());
  EXPECT_EQ(err.code, 100);
}

// ---- round trip property ----

std::string RandomValue(std::mt19937& rng, bool latin1) {
  static const std::vector<std::string> kAtoms = {"a",
                                                  "Z",
                                                  "0",
                                                  " ",
                                                  "|",
                                                  "^",
                                                  "~",
                                                  "&",
                                                  "\\",
                                                  "\\H\\",
                                                  "\\N\\",
                                                  "\\.br\\",
                                                  "\r",
                                                  "\n",
                                                  "\xc3\xa9",
                                                  "\xe2\x82\xac",
                                                  "\xf0\x9f\x98\x80",
                                                  "\\X",
                                                  "E\\",
                                                  "\\Zab\\",
                                                  "\"\""};
  std::string v;
  int n = std::uniform_int_distribution<int>(0, 6)(rng);
  for (int i = 0; i < n; ++i) {
    std::string a = kAtoms[std::uniform_int_distribution<size_t>(0, kAtoms.size() - 1)(rng)];
    if (latin1 && (a == "\xe2\x82\xac" || a == "\xf0\x9f\x98\x80")) a = "\xc3\xbc";
    v += a;
  }
  return v;
}

Message RandomMessage(std::mt19937& rng) {
  Message m;
  bool latin1 = rng() % 3 == 0;
  if (rng() % 2) m.delims = Delimiters{'#', '*', '!', '%', '$', 0};
  if (rng() % 4 == 0) m.delims.truncation = m.delims.field == '#' ? '@' : '#';
  Segment msh;
  msh.name = "MSH";
  msh.fields.push_back({{{std::string(1, m.delims.field)}}});
  msh.fields.push_back({{{m.delims.EncodingChars()}}});
  for (int f = 3; f <= 18; ++f)
    msh.fields.push_back({{{f == 18 ? (latin1 ? "8859/1" : "") : "x"}}});
  m.segments.push_back(msh);
  int nseg = std::uniform_int_distribution<int>(1, 6)(rng);
  for (int s = 0; s < nseg; ++s) {
    Segment seg;
    seg.name = std::string(1, "PZO"[rng() % 3]) + "X" + std::to_string(rng() % 10);
    int nf = std::uniform_int_distribution<int>(0, 6)(rng);
    for (int f = 0; f < nf; ++f) {
      Field field;
      int nr = std::uniform_int_distribution<int>(1, 3)(rng);
      for (int r = 0; r < nr; ++r) {
        Repetition rep;
        int nc = std::uniform_int_distribution<int>(1, 3)(rng);
        for (int c = 0; c < nc; ++c) {
          Component comp;
          int ns = std::uniform_int_distribution<int>(1, 3)(rng);
          for (int k = 0; k < ns; ++k) comp.push_back(RandomValue(rng, latin1));
          rep.push_back(comp);
        }
        field.push_back(rep);
      }
      seg.fields.push_back(field);
    }
    m.segments.push_back(seg);
  }
  return m;
}

TEST(Er7, RoundTripPropertyOnRandomTrees) {
  std::mt19937 rng(12345);
  for (int i = 0; i < 1500; ++i) {
    Message m = RandomMessage(rng);
    std::string w = Write(m);
    ParseError err;
    auto p = Parse(w, &err);
    ASSERT_TRUE(p.ok()) << "iteration " << i << ": " << err.text;
    if (!(*p == m)) {
      std::string shown;
      for (unsigned char c : w) shown += c == '\r' ? std::string("<CR>") : std::string(1, c);
      FAIL() << "iteration " << i << ": " << shown << "\nrewritten: " << Write(*p);
    }
  }
}

TEST(Er7, RoundTripPropertyOnMutatedCorpus) {
  std::mt19937 rng(777);
  std::vector<std::string> corpus;
  for (const auto& e : std::filesystem::directory_iterator(std::string(PHI_SOURCE_DIR) +
                                                           "/tests/integration/hl7/messages")) {
    corpus.push_back(phi::testing::ReadFile(e.path()));
  }
  ASSERT_GE(corpus.size(), 6u);
  for (const std::string& c : corpus) {
    auto m = Parse(c);
    ASSERT_TRUE(m.ok());
    auto again = Parse(Write(*m));
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(*again, *m);
  }
  const std::string kBytes = "|^~\\&\r\nXZ\x80\xc3\xa9 0";
  int parsed = 0;
  for (int i = 0; i < 4000; ++i) {
    std::string s = corpus[rng() % corpus.size()];
    int muts = 1 + rng() % 4;
    for (int k = 0; k < muts; ++k) {
      size_t pos = rng() % s.size();
      switch (rng() % 3) {
        case 0:
          s[pos] = kBytes[rng() % kBytes.size()];
          break;
        case 1:
          s.insert(pos, 1, kBytes[rng() % kBytes.size()]);
          break;
        default:
          s.erase(pos, 1);
      }
    }
    auto m = Parse(s);
    if (!m.ok()) continue;
    ++parsed;
    auto again = Parse(Write(*m));
    ASSERT_TRUE(again.ok()) << i;
    ASSERT_EQ(*again, *m) << i;
  }
  EXPECT_GT(parsed, 200);
}

}  // namespace
}  // namespace phi::hl7
