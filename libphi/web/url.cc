#include "libphi/web/url.h"

namespace phi::web {
namespace {
int HexVal(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

Result<std::string> PercentDecode(std::string_view s, bool plus_as_space) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '%') {
      if (i + 2 >= s.size()) {
        return Status::InvalidArgument("url: truncated escape");
      }
      int hi = HexVal(s[i + 1]), lo = HexVal(s[i + 2]);
      if (hi < 0 || lo < 0) return Status::InvalidArgument("url: bad escape");
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
    } else if (c == '+' && plus_as_space) {
      c = ' ';
    }
    unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return Status::InvalidArgument("url: control character");
    out.push_back(c);
  }
  return out;
}

Result<Target> ParseTarget(std::string_view target) {
  if (target.empty() || target[0] != '/') {
    return Status::InvalidArgument("url: not an origin-form target");
  }
  size_t q = target.find('?');
  std::string_view raw_path = target.substr(0, q);
  size_t hash = raw_path.find('#');
  if (hash != std::string_view::npos) return Status::InvalidArgument("url: fragment");
  Target t;
  // Check segment by segment, before and after decoding.
  size_t b = 1;
  t.path = "/";
  while (b <= raw_path.size()) {
    size_t e = raw_path.find('/', b);
    if (e == std::string_view::npos) e = raw_path.size();
    std::string_view raw_seg = raw_path.substr(b, e - b);
    PHI_ASSIGN_OR_RETURN(std::string seg, PercentDecode(raw_seg, false));
    if (seg == "." || seg == ".." || seg.find('/') != std::string::npos ||
        seg.find('\\') != std::string::npos) {
      return Status::InvalidArgument("url: path traversal");
    }
    t.path += seg;
    if (e < raw_path.size()) t.path += '/';
    b = e + 1;
  }
  if (q != std::string_view::npos) {
    std::string_view qs = target.substr(q + 1);
    size_t p = 0;
    while (p <= qs.size() && !qs.empty()) {
      size_t amp = qs.find('&', p);
      if (amp == std::string_view::npos) amp = qs.size();
      std::string_view kv = qs.substr(p, amp - p);
      if (!kv.empty()) {
        size_t eq = kv.find('=');
        PHI_ASSIGN_OR_RETURN(std::string k, PercentDecode(kv.substr(0, eq), true));
        std::string v;
        if (eq != std::string_view::npos) {
          PHI_ASSIGN_OR_RETURN(v, PercentDecode(kv.substr(eq + 1), true));
        }
        t.query.emplace_back(std::move(k), std::move(v));
      }
      p = amp + 1;
    }
  }
  return t;
}

}  // namespace phi::web
