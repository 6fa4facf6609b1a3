#include "libphi/dicom/association_policy.h"

#include <arpa/inet.h>

#include <cstring>

namespace phi::dicom {
namespace {

// Parses ip into 16 bytes; v4 addresses (and v4-mapped v6) go in the first 4.
bool ParseIp(const std::string& ip, uint8_t out[16], bool* v6) {
  std::memset(out, 0, 16);
  in_addr a4{};
  if (inet_pton(AF_INET, ip.c_str(), &a4) == 1) {
    std::memcpy(out, &a4, 4);
    *v6 = false;
    return true;
  }
  in6_addr a6{};
  if (inet_pton(AF_INET6, ip.c_str(), &a6) == 1) {
    static const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(a6.s6_addr, kMapped, 12) == 0) {
      std::memcpy(out, a6.s6_addr + 12, 4);
      *v6 = false;
    } else {
      std::memcpy(out, a6.s6_addr, 16);
      *v6 = true;
    }
    return true;
  }
  return false;
}

bool PrefixEqual(const uint8_t* a, const uint8_t* b, unsigned bits) {
  unsigned full = bits / 8;
  if (std::memcmp(a, b, full) != 0) return false;
  unsigned rest = bits % 8;
  if (rest == 0) return true;
  uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (a[full] & mask) == (b[full] & mask);
}

}  // namespace

bool AddressInNetwork(const std::string& ip, const config::Network& net) {
  uint8_t addr[16];
  bool v6 = false;
  if (!ParseIp(ip, addr, &v6)) return false;
  if (v6 != net.v6) return false;
  unsigned max_bits = v6 ? 128 : 32;
  if (net.prefix_len > max_bits) return false;
  return PrefixEqual(addr, net.addr, net.prefix_len);
}

std::optional<config::Network> ParseNetwork(const std::string& text) {
  config::Network n;
  n.text = text;
  std::string ip = text;
  int prefix = -1;
  if (auto slash = text.find('/'); slash != std::string::npos) {
    ip = text.substr(0, slash);
    std::string p = text.substr(slash + 1);
    if (p.empty() || p.size() > 3) return std::nullopt;
    prefix = 0;
    for (char c : p) {
      if (c < '0' || c > '9') return std::nullopt;
      prefix = prefix * 10 + (c - '0');
    }
  }
  bool v6 = false;
  if (!ParseIp(ip, n.addr, &v6)) return std::nullopt;
  n.v6 = v6;
  int max_bits = v6 ? 128 : 32;
  if (prefix < 0) prefix = max_bits;
  if (prefix > max_bits) return std::nullopt;
  n.prefix_len = static_cast<uint8_t>(prefix);
  return n;
}

AssociationPolicy::AssociationPolicy(const config::DicomConfig& cfg)
    : ae_title_(cfg.ae_title),
      peers_(cfg.allowed_peers),
      default_per_ae_(cfg.max_associations_per_ae) {}

PolicyDecision AssociationPolicy::Evaluate(const AssociationRequest& rq) const {
  PolicyDecision d;
  if (rq.called_ae != ae_title_) {
    d.reject = RejectKind::kCalledAeNotRecognized;
    d.why = "called AE title not ours";
    return d;
  }
  bool have_exact = false;
  for (const auto& p : peers_) {
    if (p.ae_title == rq.calling_ae) have_exact = true;
  }
  d.reject = RejectKind::kCallingAeNotRecognized;
  d.why = "calling AE title not allowed";
  for (const auto& p : peers_) {
    bool candidate = have_exact ? (p.ae_title == rq.calling_ae) : (p.ae_title == "*");
    if (!candidate) continue;
    if (p.networks.empty()) {
      if (!rq.tls && p.ae_title != "*") {
        d.why = "plain listener requires networks for this AE";
        continue;
      }
    } else {
      bool in = false;
      for (const auto& n : p.networks) in = in || AddressInNetwork(rq.peer_ip, n);
      if (!in) {
        d.why = "peer address not in the AE's networks";
        continue;
      }
    }
    if (!p.certificate_subject.empty()) {
      if (!rq.tls || !rq.client_subject || *rq.client_subject != p.certificate_subject) {
        d.why = "AE bound to another certificate subject";
        continue;
      }
    }
    d.reject = RejectKind::kNone;
    d.why = "";
    d.per_ae_limit = p.max_associations ? p.max_associations : default_per_ae_;
    return d;
  }
  return d;
}

AssociationLimiter::AssociationLimiter(uint32_t max_total, uint32_t max_per_ae_default)
    : max_total_(max_total), max_per_ae_(max_per_ae_default) {}

void AssociationLimiter::SetLimits(uint32_t max_total, uint32_t max_per_ae_default) {
  std::lock_guard<std::mutex> l(mu_);
  max_total_ = max_total;
  max_per_ae_ = max_per_ae_default;
}

bool AssociationLimiter::TryAcquire(const std::string& calling_ae, uint32_t per_ae_limit) {
  std::lock_guard<std::mutex> l(mu_);
  uint32_t limit = per_ae_limit ? per_ae_limit : max_per_ae_;
  if (total_ >= max_total_) return false;
  uint32_t& n = per_ae_[calling_ae];
  if (n >= limit) {
    if (n == 0) per_ae_.erase(calling_ae);
    return false;
  }
  ++n;
  ++total_;
  return true;
}

void AssociationLimiter::Release(const std::string& calling_ae) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = per_ae_.find(calling_ae);
  if (it == per_ae_.end() || it->second == 0) return;
  if (--it->second == 0) per_ae_.erase(it);
  if (total_ > 0) --total_;
}

uint64_t AssociationLimiter::open() const {
  std::lock_guard<std::mutex> l(mu_);
  return total_;
}

}  // namespace phi::dicom
