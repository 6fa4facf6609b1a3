// phi::web QIDO-RS query parsing (PS3.18 8.3.4): the query parameters of
// /studies, /series, /instances (and their nested forms) into a typed
// request. Matching keys are given by keyword or by tag (ggggeeee); only the
// attributes phigate indexes are accepted, anything else is a 400 (a viewer
// must not believe it filtered on something that was ignored).
// Thread-safety: pure functions. Hostile input: bounded and fuzzed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "libphi/services/query_service.h"
#include "libphi/util/status.h"

namespace phi::web {

enum class QidoLevel : uint8_t { kStudy, kSeries, kInstance };

struct QidoRequest {
  services::StudyQuery study;            // study-level keys; limit/offset are in `limit`/`offset`
  std::string study_description;         // wildcard, "" = any
  std::string modality;                  // series Modality (exact)
  std::vector<std::string> series_uids;  // any of these
  std::vector<std::string> sop_instance_uids;  // any of these
  std::set<uint32_t> include;                  // extra tags asked with includefield
  bool include_all = false;
  size_t limit = 1000;
  size_t offset = 0;
  bool fuzzy = false;
  // A key that matches on patient identity (name, id, birth date,
  // accession, referring physician, description): refused for `share`.
  bool uses_identity_keys = false;
};

inline constexpr size_t kMaxQidoLimit = 10000;
inline constexpr size_t kMaxQidoOffset = 1000000;
inline constexpr size_t kMaxUidList = 1000;

// InvalidArgument (with a fixed, PHI-free message) on unknown keys, bad
// numbers, malformed dates, bad UIDs, duplicate keys.
Result<QidoRequest> ParseQido(QidoLevel level,
                              const std::vector<std::pair<std::string, std::string>>& query);

// The tag of a keyword or "ggggeeee" accepted by includefield; 0 if unknown.
uint32_t IncludeFieldTag(std::string_view key);

}  // namespace phi::web
