// phi::services::PhiFields: the attribute set sealed into an index row's
// `phi` column (encrypted with the study key by the vault). A small
// versioned, length-prefixed encoding; decoding checks every length.
// Thread-safety: value type.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "libphi/util/status.h"

namespace phi::services {

class PhiFields {
 public:
  // Sets (or replaces) a field. Names are DICOM keywords ("PatientName").
  void Set(std::string_view name, std::string_view value);
  // The value, or "" when absent.
  const std::string& Get(std::string_view name) const;
  bool Has(std::string_view name) const;
  const std::vector<std::pair<std::string, std::string>>& items() const { return items_; }

  std::string Encode() const;
  // Corruption on any malformed input; bounded by the input size.
  static Result<PhiFields> Decode(std::string_view bytes);

  bool operator==(const PhiFields&) const = default;

 private:
  std::vector<std::pair<std::string, std::string>> items_;  // sorted by name
};

}  // namespace phi::services
