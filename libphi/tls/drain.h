// phi::tls::DrainSessions: the graceful-drain sequence shared by the Asio
// fronts (HL7/MLLP and HTTPS): close idle sessions, wait for busy ones until
// the deadline, then force-close what is left and wait briefly for them.
// Session must provide CloseIfIdle() and ForceClose(), both safe to call from
// any thread. Thread-safety: `mu` guards `sessions`; `open` is atomic.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "libphi/util/env.h"

namespace phi::tls {

// Returns false when the deadline passed with sessions still open (they were
// then force-closed).
template <typename Session>
bool DrainSessions(std::mutex& mu, const std::map<uint64_t, std::weak_ptr<Session>>& sessions,
                   const std::atomic<uint64_t>& open, MonotonicTime deadline) {
  auto each = [&](auto fn) {
    std::vector<std::shared_ptr<Session>> live;
    {
      std::lock_guard<std::mutex> g(mu);
      for (const auto& [id, w] : sessions) {
        if (auto s = w.lock()) live.push_back(std::move(s));
      }
    }
    for (auto& s : live) fn(*s);
  };
  auto wait_until = [&](MonotonicTime t) {
    while (open.load() > 0 && std::chrono::steady_clock::now() < t) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  };
  each([](Session& s) { s.CloseIfIdle(); });
  wait_until(deadline);
  if (open.load() == 0) return true;
  each([](Session& s) { s.ForceClose(); });
  wait_until(std::chrono::steady_clock::now() + std::chrono::seconds(3));
  return false;
}

}  // namespace phi::tls
