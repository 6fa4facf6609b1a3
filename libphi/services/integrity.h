// phi::services integrity: `phigatectl verify [--study UID]`. Reads every
// object of the storage (or of one study) through its study key - every
// AES-GCM segment tag is checked - and checks the catalog against it: the
// study/series/instance PHI decrypts, sizes and counters agree, no object is
// missing, and (whole-storage mode) no object file is unreferenced. Reports
// problems; never changes anything. Problems carry internal ids only (no PHI).
// Thread-safety: a free function over thread-safe services.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "libphi/index/catalog.h"
#include "libphi/objects/object_store.h"
#include "libphi/services/study_keys.h"
#include "libphi/vault/key_vault.h"

namespace phi::services {

struct IntegrityProblem {
  std::string kind;  // "object_unreadable", "size_mismatch", "phi_unreadable",
                     // "counter_mismatch", "orphan_object"
  int64_t study_pk = 0;
  std::string object;  // "object:<id>", "series:<pk>", "instance:<pk>", "study:<pk>"
  std::string detail;  // status text (no PHI)
};

struct IntegrityReport {
  int64_t studies = 0;
  int64_t instances = 0;
  int64_t bytes = 0;  // plaintext bytes read and authenticated
  int64_t problem_count = 0;
  std::vector<IntegrityProblem> problems;  // the first kMaxListedProblems
  bool ok() const { return problem_count == 0; }
};

inline constexpr size_t kMaxListedProblems = 1000;

// progress(done_instances) is called after each instance (may be empty).
Result<IntegrityReport> VerifyStorage(vault::KeyVault& vault, index::Catalog& catalog,
                                      objects::ObjectStore& objects, StudyKeys& keys,
                                      const std::optional<std::string>& study_instance_uid,
                                      const std::function<void(int64_t)>& progress);

}  // namespace phi::services
