#include "libphi/services/matching.h"

#include <cctype>
#include <string>

namespace phi::services {
namespace {

size_t Utf8Len(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead >> 5) == 0x6) return 2;
  if ((lead >> 4) == 0xe) return 3;
  if ((lead >> 3) == 0x1e) return 4;
  return 1;
}

bool CharEq(char a, char b, bool fold) {
  if (!fold) return a == b;
  return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
}

bool IsDate(std::string_view d) {
  if (d.size() != 8) return false;
  for (char c : d) {
    if (c < '0' || c > '9') return false;
  }
  int month = (d[4] - '0') * 10 + (d[5] - '0');
  int day = (d[6] - '0') * 10 + (d[7] - '0');
  return month >= 1 && month <= 12 && day >= 1 && day <= 31;
}

int Year(std::string_view d) {
  return (d[0] - '0') * 1000 + (d[1] - '0') * 100 + (d[2] - '0') * 10 + (d[3] - '0');
}

// Splits a range into [lo, hi]; empty sides are unbounded.
bool SplitRange(std::string_view range, std::string_view* lo, std::string_view* hi) {
  size_t dash = range.find('-');
  if (dash == std::string_view::npos) {
    if (!IsDate(range)) return false;
    *lo = *hi = range;
    return true;
  }
  if (range.find('-', dash + 1) != std::string_view::npos) return false;
  *lo = range.substr(0, dash);
  *hi = range.substr(dash + 1);
  if (lo->empty() && hi->empty()) return false;
  if (!lo->empty() && !IsDate(*lo)) return false;
  if (!hi->empty() && !IsDate(*hi)) return false;
  return true;
}

}  // namespace

bool WildcardMatch(std::string_view pattern, std::string_view value, bool fold_case) {
  if (pattern.empty()) return true;  // universal matching (PS3.4 C.2.2.2.3)
  // Iterative matcher with single backtrack point for '*': O(n*m) worst case.
  size_t p = 0, v = 0;
  size_t star = std::string_view::npos, star_v = 0;
  while (v < value.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      star_v = v;
    } else if (p < pattern.size() && pattern[p] == '?') {
      ++p;
      v += Utf8Len(static_cast<unsigned char>(value[v]));
    } else if (p < pattern.size() && CharEq(pattern[p], value[v], fold_case)) {
      ++p;
      ++v;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      star_v += Utf8Len(static_cast<unsigned char>(value[star_v]));
      v = star_v;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size() && v >= value.size();
}

bool IsValidDateRange(std::string_view range) {
  std::string_view lo, hi;
  return range.empty() || SplitRange(range, &lo, &hi);
}

bool DateRangeMatch(std::string_view range, std::string_view date) {
  if (range.empty()) return true;
  std::string_view lo, hi;
  if (!SplitRange(range, &lo, &hi)) return false;
  if (!IsDate(date)) return false;
  if (!lo.empty() && date < lo) return false;
  if (!hi.empty() && date > hi) return false;
  return true;
}

bool DateRangeYears(std::string_view range, int* first_year, int* last_year) {
  std::string_view lo, hi;
  if (range.empty() || !SplitRange(range, &lo, &hi)) return false;
  *first_year = lo.empty() ? 0 : Year(lo);
  *last_year = hi.empty() ? 9999 : Year(hi);
  return true;
}

}  // namespace phi::services
