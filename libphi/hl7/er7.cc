#include "libphi/hl7/er7.h"

#include <algorithm>
#include <cctype>

namespace phi::hl7 {
namespace {

const std::string kEmpty;

bool IsDelimiterChar(char c) {
  unsigned char u = static_cast<unsigned char>(c);
  return u >= 0x21 && u <= 0x7e && !std::isalnum(u);
}

std::string Upper(std::string_view s) {
  std::string r(s);
  for (char& c : r) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return r;
}

enum class Charset { kUtf8, kLatin1 };

int HexVal(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// A formatting escape kept verbatim: H, N, .xx, Zxx, Cxxyy, Mxxyyzz.
bool IsPassThrough(std::string_view seq) {
  if (seq.empty()) return false;
  if (seq == "H" || seq == "N") return true;
  return seq.size() >= 2 && (seq[0] == '.' || seq[0] == 'Z' || seq[0] == 'C' || seq[0] == 'M');
}

// UTF-8 -> ISO 8859-1 (characters above U+00FF become '?').
std::string Utf8ToLatin1(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
      ++i;
    } else if ((c & 0xe0) == 0xc0 && i + 1 < s.size()) {
      unsigned cp = ((c & 0x1fu) << 6) | (static_cast<unsigned char>(s[i + 1]) & 0x3fu);
      out.push_back(cp <= 0xff ? static_cast<char>(cp) : '?');
      i += 2;
    } else {
      out.push_back('?');
      ++i;
      while (i < s.size() && (static_cast<unsigned char>(s[i]) & 0xc0) == 0x80) ++i;
    }
  }
  return out;
}

class Parser {
 public:
  Parser(const ParseLimits& limits, ParseError* err) : limits_(limits), err_(err) {}

  Status Fail(int code, std::string text, std::string_view seg = {}, size_t seq = 0,
              size_t field = 0) {
    if (err_) {
      err_->code = code;
      err_->text = text;
      err_->segment = std::string(seg.substr(0, 3));
      err_->sequence = seq;
      err_->field = field;
    }
    return Status::InvalidArgument("hl7: " + text);
  }

  Result<Message> Run(std::string_view in) {
    Message m;
    if (in.size() < 8 || in.substr(0, 3) != "MSH") {
      return Fail(100, "message does not start with MSH", "MSH", 1, 0);
    }
    Delimiters& d = m.delims;
    d.field = in[3];
    if (!IsDelimiterChar(d.field)) return Fail(102, "bad field separator", "MSH", 1, 1);
    size_t enc_end = in.find(d.field, 4);
    if (enc_end == std::string_view::npos) return Fail(102, "bad encoding characters", "MSH", 1, 2);
    std::string_view enc = in.substr(4, enc_end - 4);
    if (enc.size() < 4 || enc.size() > 5) return Fail(102, "bad encoding characters", "MSH", 1, 2);
    for (size_t a = 0; a < enc.size(); ++a) {
      if (!IsDelimiterChar(enc[a]) || enc[a] == d.field) {
        return Fail(102, "bad encoding characters", "MSH", 1, 2);
      }
      for (size_t b = a + 1; b < enc.size(); ++b) {
        if (enc[a] == enc[b]) return Fail(102, "bad encoding characters", "MSH", 1, 2);
      }
    }
    d.component = enc[0];
    d.repetition = enc[1];
    d.escape = enc[2];
    d.subcomponent = enc[3];
    d.truncation = enc.size() == 5 ? enc[4] : 0;

    // Split into segments (CR, LF or CRLF; blank lines skipped).
    std::vector<std::string_view> segs;
    size_t pos = 0;
    while (pos < in.size()) {
      size_t e = in.find_first_of("\r\n", pos);
      std::string_view s = in.substr(pos, e == std::string_view::npos ? in.size() - pos : e - pos);
      if (s.size() > limits_.max_segment_bytes) {
        return Fail(102, "segment too long", s.substr(0, 3), segs.size() + 1, 0);
      }
      if (!s.empty()) {
        if (segs.size() >= limits_.max_segments) {
          return Fail(100, "too many segments", s.substr(0, 3), segs.size() + 1, 0);
        }
        segs.push_back(s);
      }
      if (e == std::string_view::npos) break;
      pos = e + 1;
    }

    // MSH-18 decides how bytes are read.
    std::string charset;
    {
      std::string_view msh = segs[0];
      size_t field_no = 2;  // the separator at index 3 opens MSH-2
      size_t i = 3;
      while (i < msh.size() && field_no < 18) {
        size_t e = msh.find(d.field, i + 1);
        if (e == std::string_view::npos) {
          i = msh.size();
          break;
        }
        i = e;
        ++field_no;
      }
      if (field_no == 18 && i < msh.size()) {
        std::string_view v = msh.substr(i + 1);
        v = v.substr(0, v.find_first_of(std::string{d.field, d.repetition, d.component}));
        charset = Upper(v);
      }
    }
    if (charset.empty() || charset == "ASCII" || charset == "UNICODE UTF-8" || charset == "UTF-8" ||
        charset == "UNICODE") {
      charset_ = Charset::kUtf8;
    } else if (charset == "8859/1" || charset == "ISO-8859-1" || charset == "ISO_IR 100") {
      charset_ = Charset::kLatin1;
    } else {
      return Fail(103, "unsupported character set (MSH-18)", "MSH", 1, 18);
    }

    for (size_t i = 0; i < segs.size(); ++i) {
      Segment seg;
      PHI_RETURN_IF_ERROR(ParseSegment(segs[i], d, i + 1, i == 0, &seg));
      m.segments.push_back(std::move(seg));
    }
    return m;
  }

 private:
  Status Count(std::string_view seg, size_t seq, size_t field) {
    if (++elements_ > limits_.max_elements) {
      return Fail(102, "message too complex", seg, seq, field);
    }
    return Status::Ok();
  }

  Status Value(std::string_view raw, const Delimiters& d, std::string_view seg, size_t seq,
               size_t field, std::string* out) {
    if (!Unescape(raw, d, charset_ == Charset::kLatin1, out)) {
      return Fail(102, "malformed escape sequence", seg, seq, field);
    }
    if (charset_ == Charset::kUtf8 && !IsValidUtf8(*out)) {
      return Fail(102, "invalid UTF-8", seg, seq, field);
    }
    return Status::Ok();
  }

  Status ParseField(std::string_view raw, const Delimiters& d, std::string_view seg, size_t seq,
                    size_t field_no, Field* f) {
    size_t rb = 0;
    for (;;) {
      size_t re = raw.find(d.repetition, rb);
      std::string_view rep = raw.substr(rb, re == std::string_view::npos ? raw.npos : re - rb);
      PHI_RETURN_IF_ERROR(Count(seg, seq, field_no));
      Repetition& r = f->emplace_back();
      size_t cb = 0;
      for (;;) {
        size_t ce = rep.find(d.component, cb);
        std::string_view comp = rep.substr(cb, ce == std::string_view::npos ? rep.npos : ce - cb);
        PHI_RETURN_IF_ERROR(Count(seg, seq, field_no));
        Component& c = r.emplace_back();
        size_t sb = 0;
        for (;;) {
          size_t se = comp.find(d.subcomponent, sb);
          std::string_view sub =
              comp.substr(sb, se == std::string_view::npos ? comp.npos : se - sb);
          PHI_RETURN_IF_ERROR(Count(seg, seq, field_no));
          PHI_RETURN_IF_ERROR(Value(sub, d, seg, seq, field_no, &c.emplace_back()));
          if (se == std::string_view::npos) break;
          sb = se + 1;
        }
        if (ce == std::string_view::npos) break;
        cb = ce + 1;
      }
      if (re == std::string_view::npos) break;
      rb = re + 1;
    }
    return Status::Ok();
  }

  Status ParseSegment(std::string_view s, const Delimiters& d, size_t seq, bool first,
                      Segment* out) {
    if (s.size() < 3) return Fail(100, "segment name too short", s, seq, 0);
    std::string_view name = s.substr(0, 3);
    for (char c : name) {
      if (!(std::isupper(static_cast<unsigned char>(c)) ||
            std::isdigit(static_cast<unsigned char>(c)))) {
        return Fail(100, "invalid segment name", "", seq, 0);
      }
    }
    if (first != (name == "MSH")) return Fail(100, "MSH must be first and only once", name, seq);
    if (s.size() > 3 && s[3] != d.field) return Fail(100, "invalid segment name", "", seq, 0);
    out->name = std::string(name);
    size_t pos = 4;
    size_t field_no = 1;
    if (first) {
      // MSH-1 and MSH-2 are literal.
      out->fields.push_back(Field{Repetition{Component{std::string(1, d.field)}}});
      std::string enc = d.EncodingChars();
      out->fields.push_back(Field{Repetition{Component{enc}}});
      PHI_RETURN_IF_ERROR(Count(name, seq, 1));
      pos = 4 + enc.size();
      field_no = 3;
      if (pos >= s.size()) return Status::Ok();
      pos += 1;  // the separator after MSH-2
    } else if (s.size() <= 3) {
      return Status::Ok();
    }
    for (;;) {
      size_t e = s.find(d.field, pos);
      std::string_view raw = s.substr(pos, e == std::string_view::npos ? s.npos : e - pos);
      PHI_RETURN_IF_ERROR(Count(name, seq, field_no));
      PHI_RETURN_IF_ERROR(ParseField(raw, d, name, seq, field_no, &out->fields.emplace_back()));
      if (e == std::string_view::npos) break;
      pos = e + 1;
      ++field_no;
    }
    return Status::Ok();
  }

  const ParseLimits& limits_;
  ParseError* err_;
  Charset charset_ = Charset::kUtf8;
  size_t elements_ = 0;
};

}  // namespace

std::string Delimiters::EncodingChars() const {
  std::string s{component, repetition, escape, subcomponent};
  if (truncation != 0) s.push_back(truncation);
  return s;
}

const std::string& Segment::Get(size_t field, size_t component, size_t sub, size_t rep) const {
  if (field == 0 || field > fields.size() || component == 0 || sub == 0 || rep == 0) return kEmpty;
  const Field& f = fields[field - 1];
  if (rep > f.size()) return kEmpty;
  const Repetition& r = f[rep - 1];
  if (component > r.size()) return kEmpty;
  const Component& c = r[component - 1];
  if (sub > c.size()) return kEmpty;
  return c[sub - 1];
}

size_t Segment::Repetitions(size_t field) const {
  if (field == 0 || field > fields.size()) return 0;
  return fields[field - 1].size();
}

const Segment* Message::Find(std::string_view name, size_t nth) const {
  for (const Segment& s : segments) {
    if (s.name == name) {
      if (nth == 0) return &s;
      --nth;
    }
  }
  return nullptr;
}

std::vector<const Segment*> Message::FindAll(std::string_view name) const {
  std::vector<const Segment*> r;
  for (const Segment& s : segments) {
    if (s.name == name) r.push_back(&s);
  }
  return r;
}

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t n = 0;
    uint32_t cp = 0;
    if ((c & 0xe0) == 0xc0) {
      n = 1;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      n = 2;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;
    for (size_t k = 1; k <= n; ++k) {
      unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000)) return false;
    if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += n + 1;
  }
  return true;
}

std::string Latin1ToUtf8(std::string_view s) {
  std::string out;
  out.reserve(s.size() + s.size() / 8);
  for (unsigned char c : s) {
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back(static_cast<char>(0xc0 | (c >> 6)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3f)));
    }
  }
  return out;
}

bool Unescape(std::string_view raw, const Delimiters& d, bool latin1, std::string* out) {
  out->clear();
  auto put = [&](std::string_view bytes) {
    if (latin1) {
      *out += Latin1ToUtf8(bytes);
    } else {
      *out += bytes;
    }
  };
  size_t i = 0;
  while (i < raw.size()) {
    size_t e = raw.find(d.escape, i);
    if (e == std::string_view::npos) {
      put(raw.substr(i));
      break;
    }
    put(raw.substr(i, e - i));
    size_t close = raw.find(d.escape, e + 1);
    if (close == std::string_view::npos) {
      // Unterminated: a literal escape character (lenient, as receivers must be).
      put(raw.substr(e));
      break;
    }
    std::string_view seq = raw.substr(e + 1, close - e - 1);
    if (seq == "F") {
      out->push_back(d.field);
    } else if (seq == "S") {
      out->push_back(d.component);
    } else if (seq == "T") {
      out->push_back(d.subcomponent);
    } else if (seq == "R") {
      out->push_back(d.repetition);
    } else if (seq == "E") {
      out->push_back(d.escape);
    } else if (!seq.empty() && seq[0] == 'X') {
      std::string_view hex = seq.substr(1);
      if (hex.empty() || hex.size() % 2 != 0) return false;
      std::string bytes;
      for (size_t k = 0; k < hex.size(); k += 2) {
        int hi = HexVal(hex[k]), lo = HexVal(hex[k + 1]);
        if (hi < 0 || lo < 0) return false;
        bytes.push_back(static_cast<char>(hi * 16 + lo));
      }
      put(bytes);
    } else {
      // Formatting escapes (\H\ \N\ \.br\ ...) and unknown ones: verbatim.
      out->push_back(d.escape);
      put(seq);
      out->push_back(d.escape);
    }
    i = close + 1;
  }
  return true;
}

std::string Escape(std::string_view v, const Delimiters& d) {
  std::string out;
  out.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    char c = v[i];
    if (c == d.escape) {
      size_t close = v.find(d.escape, i + 1);
      if (close != std::string_view::npos) {
        std::string_view seq = v.substr(i + 1, close - i - 1);
        bool clean = std::none_of(seq.begin(), seq.end(), [&](char x) {
          return x == d.field || x == d.component || x == d.subcomponent || x == d.repetition ||
                 x == '\r' || x == '\n';
        });
        if (clean && IsPassThrough(seq)) {
          out.append(v.substr(i, close - i + 1));
          i = close;
          continue;
        }
      }
      out.push_back(d.escape);
      out.push_back('E');
      out.push_back(d.escape);
    } else if (c == d.field || c == d.component || c == d.subcomponent || c == d.repetition) {
      out.push_back(d.escape);
      out.push_back(c == d.field ? 'F' : c == d.component ? 'S' : c == d.subcomponent ? 'T' : 'R');
      out.push_back(d.escape);
    } else if (c == '\r' || c == '\n') {
      out.push_back(d.escape);
      out += c == '\r' ? "X0D" : "X0A";
      out.push_back(d.escape);
    } else {
      out.push_back(c);
    }
  }
  return out;
}

Result<Message> Parse(std::string_view er7, ParseError* err, const ParseLimits& limits) {
  Parser p(limits, err);
  return p.Run(er7);
}

std::string Write(const Message& m) {
  const Delimiters& d = m.delims;
  bool latin1 = false;
  if (!m.segments.empty()) {
    std::string cs = Upper(m.segments[0].Get(18));
    latin1 = cs == "8859/1" || cs == "ISO-8859-1" || cs == "ISO_IR 100";
  }
  std::string out;
  for (const Segment& s : m.segments) {
    out += s.name;
    size_t first = 0;
    if (s.name == "MSH") {
      out.push_back(d.field);
      out += d.EncodingChars();
      first = 2;
    }
    for (size_t fi = first; fi < s.fields.size(); ++fi) {
      out.push_back(d.field);
      const Field& f = s.fields[fi];
      for (size_t ri = 0; ri < f.size(); ++ri) {
        if (ri > 0) out.push_back(d.repetition);
        for (size_t ci = 0; ci < f[ri].size(); ++ci) {
          if (ci > 0) out.push_back(d.component);
          for (size_t si = 0; si < f[ri][ci].size(); ++si) {
            if (si > 0) out.push_back(d.subcomponent);
            std::string e = Escape(f[ri][ci][si], d);
            out += latin1 ? Utf8ToLatin1(e) : e;
          }
        }
      }
    }
    out.push_back('\r');
  }
  return out;
}

}  // namespace phi::hl7
