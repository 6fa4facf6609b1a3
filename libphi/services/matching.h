// DICOM attribute matching used by query services after decryption
// (PS3.4 C.2.2.2): wildcard matching with '*' and '?', and date/time range
// matching ("20200101-20201231", "-20201231", "20200101-").
// Thread-safety: pure functions.
#pragma once

#include <string_view>

namespace phi::services {

// True when `value` matches `pattern` with '*' (any run) and '?' (one
// character, UTF-8 aware). An empty pattern or "*" matches anything.
// `fold_case` compares ASCII letters case-insensitively (the site option for
// PatientName; DICOM's default is case-sensitive).
bool WildcardMatch(std::string_view pattern, std::string_view value, bool fold_case = false);

// True when the DICOM DA value `date` (YYYYMMDD) lies in `range`
// ("YYYYMMDD", "A-B", "-B", "A-"). A malformed range matches nothing; an
// empty range matches anything; an empty date matches only an empty range.
bool DateRangeMatch(std::string_view range, std::string_view date);

// Checks a date range's syntax (for the edges to refuse bad queries).
bool IsValidDateRange(std::string_view range);

// The years [first, last] a valid date range can touch, for narrowing on the
// catalog's plaintext study_year column; false when unbounded on both sides.
bool DateRangeYears(std::string_view range, int* first_year, int* last_year);

}  // namespace phi::services
