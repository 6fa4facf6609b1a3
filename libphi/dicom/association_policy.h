// phi::dicom association policy: who may associate (called AE, calling AE
// allow-list with source networks and TLS certificate binding) and how many
// associations may be open (total and per calling AE).
//
// Matching rules (DicomConfig.allowed_peers):
//  - the called AE title must equal dicom.ae_title, else kCalledAeNotRecognized;
//  - entries whose ae_title equals the calling AE are candidates; only when
//    there is none are "*" entries candidates (so "*" never widens an AE that
//    is configured explicitly, e.g. one bound to a certificate);
//  - a candidate matches when the peer address is in one of its networks
//    (empty networks: any address, TLS listener only; on the plain listener an
//    entry without networks matches only if it is the "*" dev entry), and, when
//    it has certificate_subject, the association is TLS and the client
//    certificate subject (RFC 2253) equals it;
//  - no matching candidate: kCallingAeNotRecognized.
// Thread-safety: AssociationPolicy is immutable after construction (share it
// const, swap a shared_ptr on reload); AssociationLimiter is thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "libphi/config/config.h"

namespace phi::dicom {

struct AssociationRequest {
  std::string called_ae;
  std::string calling_ae;
  std::string peer_ip;  // textual IPv4/IPv6, no port
  bool tls = false;
  std::optional<std::string> client_subject;  // RFC 2253, TLS with a client certificate
};

enum class RejectKind : uint8_t {
  kNone,
  kCalledAeNotRecognized,   // permanent, service-user, reason 7
  kCallingAeNotRecognized,  // permanent, service-user, reason 3
  kLocalLimitExceeded,      // transient, service-provider (presentation), reason 2
};

struct PolicyDecision {
  RejectKind reject = RejectKind::kNone;
  const char* why = "";       // literal, loggable
  uint32_t per_ae_limit = 0;  // for the accepted peer entry
};

// True when textual address `ip` is in `net` (IPv4-mapped IPv6 addresses match
// IPv4 networks). False on unparseable input.
bool AddressInNetwork(const std::string& ip, const config::Network& net);

// Builds a Network from CIDR text ("10.0.0.0/8", "::1", "127.0.0.1/32").
std::optional<config::Network> ParseNetwork(const std::string& text);

class AssociationPolicy {
 public:
  explicit AssociationPolicy(const config::DicomConfig& cfg);
  // rq.tls false means the association arrived on the plain listener.
  PolicyDecision Evaluate(const AssociationRequest& rq) const;

 private:
  std::string ae_title_;
  std::vector<config::DicomPeer> peers_;
  uint32_t default_per_ae_ = 0;
};

// Counts open associations, total and per calling AE.
class AssociationLimiter {
 public:
  AssociationLimiter(uint32_t max_total, uint32_t max_per_ae_default);
  void SetLimits(uint32_t max_total, uint32_t max_per_ae_default);
  // per_ae_limit 0 = the default per-AE limit. False when a limit is reached.
  bool TryAcquire(const std::string& calling_ae, uint32_t per_ae_limit);
  void Release(const std::string& calling_ae);
  uint64_t open() const;

 private:
  mutable std::mutex mu_;
  uint32_t max_total_;                      // guarded by mu_
  uint32_t max_per_ae_;                     // guarded by mu_
  uint64_t total_ = 0;                      // guarded by mu_
  std::map<std::string, uint32_t> per_ae_;  // guarded by mu_
};

}  // namespace phi::dicom
