// phi::audit CMS signing: detached CMS (RFC 5652) SignedData over a document
// (an erasure certificate's JSON), PEM-encoded, so that a third party verifies
// it with plain OpenSSL and the server certificate alone:
//   openssl cms -verify -binary -inform PEM -in cert.p7s -content cert.json
//       -CAfile ca.pem -purpose any -out /dev/null
// The signer's certificate is embedded; the signature is SHA-256 with the key
// type's default scheme (RSA PKCS#1 v1.5 or ECDSA). Signing time is a signed
// attribute.
// Thread-safety: free functions, thread-safe (OpenSSL 3).
#pragma once

#include <string>
#include <string_view>

#include "libphi/util/status.h"

namespace phi::audit {

// Signs `content` (bytes as given, no MIME canonicalisation: CMS_BINARY).
// cert_pem: the signer certificate (further certificates in the PEM, e.g. a
// chain, are embedded too); key_pem: its unencrypted private key.
// InvalidArgument if either does not parse or the key does not match.
Result<std::string> SignDetachedCmsPem(std::string_view content, std::string_view cert_pem,
                                       std::string_view key_pem);

// Verifies a detached PEM CMS signature over `content` against the CA
// certificates in ca_pem (purpose not checked, like `-purpose any`).
// Corruption if the signature or chain does not verify.
Status VerifyDetachedCmsPem(std::string_view content, std::string_view cms_pem,
                            std::string_view ca_pem);

}  // namespace phi::audit
