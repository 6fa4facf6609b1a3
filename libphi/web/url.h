// phi::web URL helpers: a strict percent-decoder and request-target checks.
// Everything here treats its input as hostile: bad escapes, NUL, control
// characters, dot segments (plain or encoded) and encoded slashes are refused.
// Thread-safety: pure functions.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "libphi/util/status.h"

namespace phi::web {

// Decodes %XX (and '+' as space when plus_as_space). InvalidArgument on a
// truncated or non-hex escape, a NUL or any other control character.
Result<std::string> PercentDecode(std::string_view s, bool plus_as_space);

struct Target {
  std::string path;                                        // decoded, starts with '/'
  std::vector<std::pair<std::string, std::string>> query;  // decoded, in order
};

// Splits an origin-form request target. InvalidArgument when it is not
// origin-form, or its path has "." / ".." segments (also encoded), an encoded
// '/' or '\', a backslash, NUL or control characters.
Result<Target> ParseTarget(std::string_view target);

}  // namespace phi::web
