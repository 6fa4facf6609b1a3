#include "libphi/services/phi_fields.h"

#include <algorithm>
#include <cstdint>

namespace phi::services {
namespace {

constexpr uint8_t kVersion = 1;
constexpr size_t kMaxNameBytes = 64;

void PutU32(std::string& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8)
    out.push_back(static_cast<char>((v >> shift) & 0xff));
}

bool GetU32(std::string_view& in, uint32_t* v) {
  if (in.size() < 4) return false;
  *v = 0;
  for (int i = 0; i < 4; ++i) *v = (*v << 8) | static_cast<uint8_t>(in[i]);
  in.remove_prefix(4);
  return true;
}

}  // namespace

void PhiFields::Set(std::string_view name, std::string_view value) {
  auto it = std::lower_bound(items_.begin(), items_.end(), name,
                             [](const auto& item, std::string_view n) { return item.first < n; });
  if (it != items_.end() && it->first == name) {
    it->second = std::string(value);
  } else {
    items_.emplace(it, std::string(name), std::string(value));
  }
}

const std::string& PhiFields::Get(std::string_view name) const {
  static const std::string kEmpty;
  auto it = std::lower_bound(items_.begin(), items_.end(), name,
                             [](const auto& item, std::string_view n) { return item.first < n; });
  return (it != items_.end() && it->first == name) ? it->second : kEmpty;
}

bool PhiFields::Has(std::string_view name) const {
  auto it = std::lower_bound(items_.begin(), items_.end(), name,
                             [](const auto& item, std::string_view n) { return item.first < n; });
  return it != items_.end() && it->first == name;
}

std::string PhiFields::Encode() const {
  std::string out;
  out.push_back(static_cast<char>(kVersion));
  for (const auto& [name, value] : items_) {
    PutU32(out, static_cast<uint32_t>(name.size()));
    out += name;
    PutU32(out, static_cast<uint32_t>(value.size()));
    out += value;
  }
  return out;
}

Result<PhiFields> PhiFields::Decode(std::string_view in) {
  if (in.empty() || static_cast<uint8_t>(in[0]) != kVersion) {
    return Status::Corruption("phi fields: unknown version");
  }
  in.remove_prefix(1);
  PhiFields f;
  std::string prev;
  while (!in.empty()) {
    uint32_t n = 0, v = 0;
    if (!GetU32(in, &n) || n == 0 || n > kMaxNameBytes || n > in.size()) {
      return Status::Corruption("phi fields: bad name length");
    }
    std::string name(in.substr(0, n));
    in.remove_prefix(n);
    if (!GetU32(in, &v) || v > in.size()) return Status::Corruption("phi fields: bad value length");
    if (!f.items_.empty() && name <= prev) return Status::Corruption("phi fields: not sorted");
    f.items_.emplace_back(name, std::string(in.substr(0, v)));
    in.remove_prefix(v);
    prev = std::move(name);
  }
  return f;
}

}  // namespace phi::services
