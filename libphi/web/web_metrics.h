// phi::web::WebMetrics: counters of the HTTPS front for GET /metrics -
// requests by route pattern and status, request latency histograms by route
// pattern, TLS handshake failures by (PHI-free) reason, bytes streamed.
// Labels are route patterns and fixed reasons, never request data.
// Thread-safety: thread-safe (one mutex; updates are a few map operations).
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

namespace phi::web {

class WebMetrics {
 public:
  void CountHandshakeFailure(std::string_view reason);
  // `route` is the matched pattern ("" when none matched).
  void ObserveRequest(std::string_view route, int status, double seconds);
  void AddStreamedBytes(uint64_t n);

  uint64_t handshake_failures(std::string_view reason) const;
  uint64_t requests(std::string_view route, int status) const;

  // Prometheus text exposition (0.0.4) of everything above.
  std::string Prometheus() const;

  static constexpr double kBuckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                        0.1,   0.25,   0.5,   1,    2.5,   10};
  static constexpr size_t kNumBuckets = sizeof(kBuckets) / sizeof(kBuckets[0]);

 private:
  struct Histogram {
    uint64_t counts[kNumBuckets + 1] = {};  // last: +Inf
    double sum = 0;
    uint64_t count = 0;
  };
  mutable std::mutex mu_;
  std::map<std::string, uint64_t, std::less<>> handshake_failures_;  // guarded by mu_
  std::map<std::pair<std::string, int>, uint64_t> requests_;         // guarded by mu_
  std::map<std::string, Histogram, std::less<>> latency_;            // guarded by mu_
  uint64_t streamed_bytes_ = 0;                                      // guarded by mu_
};

// Escapes a Prometheus label value (backslash, quote, newline).
std::string PromLabel(std::string_view v);

}  // namespace phi::web
