// phi::tls::PeerIdentity: who is on the other end of a TLS connection, read
// from the verified client certificate, and its mapping to a config::Role.
// Nothing here is PHI: certificate subjects name staff and devices, not patients.
// Thread-safety: free functions and value types; no shared state.
#pragma once

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <optional>
#include <string>
#include <vector>

#include "libphi/config/config.h"
#include "libphi/util/status.h"

namespace phi::tls {

struct PeerIdentity {
  std::string subject;                 // RFC 2253 ("CN=clinician,O=phigate-dev")
  std::string issuer;                  // RFC 2253
  std::string common_name;             // first CN, or empty
  std::string organization;            // first O, or empty
  std::vector<std::string> org_units;  // every OU
  std::vector<std::string> san_dns;    // subjectAltName dNSName entries
  std::vector<std::string> san_email;  // rfc822Name entries
  std::vector<std::string> san_uri;    // URI entries
  std::string serial;                  // hex, upper case
  std::string sha256_fingerprint;      // hex, lower case, no separators
};

// The identity in `cert`. InvalidArgument when cert is null.
Result<PeerIdentity> IdentityFromCertificate(X509* cert);

// The identity of the peer of `ssl` (after a successful handshake).
// Unauthenticated when the peer sent no certificate or it did not verify.
Result<PeerIdentity> IdentityFromSsl(SSL* ssl);

// First mapping that matches: an exact `subject`, or O (and OU, when set) equal.
// A mapping with neither subject nor organization never matches.
std::optional<config::Role> MapRole(const PeerIdentity& id,
                                    const std::vector<config::RoleMapping>& roles);

}  // namespace phi::tls
