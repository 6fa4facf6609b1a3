#include "libphi/web/web_metrics.h"

#include <cstdio>

namespace phi::web {

std::string PromLabel(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

void WebMetrics::CountHandshakeFailure(std::string_view reason) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = handshake_failures_.find(reason);
  if (it == handshake_failures_.end()) {
    handshake_failures_.emplace(std::string(reason), 1);
  } else {
    ++it->second;
  }
}

void WebMetrics::ObserveRequest(std::string_view route, int status, double seconds) {
  std::string r = route.empty() ? "-" : std::string(route);
  std::lock_guard<std::mutex> l(mu_);
  ++requests_[{r, status}];
  Histogram& h = latency_[r];
  size_t i = 0;
  while (i < kNumBuckets && seconds > kBuckets[i]) ++i;
  ++h.counts[i];
  h.sum += seconds;
  ++h.count;
}

void WebMetrics::AddStreamedBytes(uint64_t n) {
  std::lock_guard<std::mutex> l(mu_);
  streamed_bytes_ += n;
}

uint64_t WebMetrics::handshake_failures(std::string_view reason) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = handshake_failures_.find(reason);
  return it == handshake_failures_.end() ? 0 : it->second;
}

uint64_t WebMetrics::requests(std::string_view route, int status) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = requests_.find({std::string(route.empty() ? "-" : route), status});
  return it == requests_.end() ? 0 : it->second;
}

std::string WebMetrics::Prometheus() const {
  std::lock_guard<std::mutex> l(mu_);
  std::string o;
  char num[64];
  o += "# HELP phigate_https_tls_handshake_failures_total TLS handshakes refused, by reason.\n";
  o += "# TYPE phigate_https_tls_handshake_failures_total counter\n";
  for (auto& [reason, n] : handshake_failures_) {
    o += "phigate_https_tls_handshake_failures_total{reason=\"" + PromLabel(reason) + "\"} " +
         std::to_string(n) + "\n";
  }
  o += "# HELP phigate_https_requests_total HTTPS requests answered, by route and status.\n";
  o += "# TYPE phigate_https_requests_total counter\n";
  for (auto& [k, n] : requests_) {
    o += "phigate_https_requests_total{route=\"" + PromLabel(k.first) + "\",status=\"" +
         std::to_string(k.second) + "\"} " + std::to_string(n) + "\n";
  }
  o += "# HELP phigate_https_request_duration_seconds Time to the response header (streamed "
       "bodies excluded), by route.\n";
  o += "# TYPE phigate_https_request_duration_seconds histogram\n";
  for (auto& [route, h] : latency_) {
    std::string lbl = "route=\"" + PromLabel(route) + "\"";
    uint64_t cum = 0;
    for (size_t i = 0; i <= kNumBuckets; ++i) {
      cum += h.counts[i];
      std::string le = "+Inf";
      if (i < kNumBuckets) {
        std::snprintf(num, sizeof(num), "%g", kBuckets[i]);
        le = num;
      }
      o += "phigate_https_request_duration_seconds_bucket{" + lbl + ",le=\"" + le + "\"} " +
           std::to_string(cum) + "\n";
    }
    std::snprintf(num, sizeof(num), "%.6f", h.sum);
    o += "phigate_https_request_duration_seconds_sum{" + lbl + "} " + num + "\n";
    o += "phigate_https_request_duration_seconds_count{" + lbl + "} " + std::to_string(h.count) +
         "\n";
  }
  o += "# HELP phigate_https_streamed_bytes_total Body bytes sent by streamed responses.\n";
  o += "# TYPE phigate_https_streamed_bytes_total counter\n";
  o += "phigate_https_streamed_bytes_total " + std::to_string(streamed_bytes_) + "\n";
  return o;
}

}  // namespace phi::web
