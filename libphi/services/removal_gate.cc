#include "libphi/services/removal_gate.h"

#include "libphi/util/log.h"

namespace phi::services {

RemovalGate::~RemovalGate() {
  std::vector<std::string> ids;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ids.swap(deferred_);
  }
  for (const auto& id : ids) (void)target_.Remove(id);
}

Status RemovalGate::Remove(std::string_view object_id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (holds_ > 0) {
      deferred_.emplace_back(object_id);
      return Status::Ok();
    }
  }
  return target_.Remove(object_id);
}

void RemovalGate::Acquire() {
  std::lock_guard<std::mutex> lock(mu_);
  ++holds_;
}

void RemovalGate::Release() {
  std::vector<std::string> ids;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (--holds_ > 0) return;
    ids.swap(deferred_);
  }
  size_t failed = 0;
  for (const auto& id : ids) {
    Status s = target_.Remove(id);
    if (!s.ok() && s.code() != Code::kNotFound) ++failed;
  }
  if (!ids.empty()) {
    PHI_LOG(kInfo, "object unlinks held back during a backup done",
            {{"count", ids.size()}, {"failed", failed}});
  }
}

size_t RemovalGate::deferred() const {
  std::lock_guard<std::mutex> lock(mu_);
  return deferred_.size();
}

bool RemovalGate::IsDeferred(std::string_view object_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& id : deferred_) {
    if (id == object_id) return true;
  }
  return false;
}

size_t RemovalGate::holds() const {
  std::lock_guard<std::mutex> lock(mu_);
  return holds_;
}

}  // namespace phi::services
