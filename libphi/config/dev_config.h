// phi::config dev config: the embedded YAML that scripts/dev-run.sh writes to
// $dev_dir/phigate.yaml (through `phigated --print-dev-config DIR`).
// Everything listens on 127.0.0.1 at the DESIGN.md default ports, both plain
// listeners are on (loopback only), the KEK is a key file in the dev dir and the
// storage root is a plain directory (require_encrypted_volume: false). Dev only.
// Thread-safety: a pure function.
#pragma once

#include <string>

#include "libphi/util/env.h"

namespace phi::config {

// The client certificate subjects (RFC 2253) of the dev PKI, mapped to their roles.
inline constexpr const char* kDevClinicianSubject = "CN=clinician,O=phigate-dev";
inline constexpr const char* kDevShareSubject = "CN=share,O=phigate-dev";
inline constexpr const char* kDevAdminSubject = "CN=admin,O=phigate-dev";
inline constexpr const char* kDevModalitySubject = "CN=modality,O=phigate-dev";

// The dev config for `dev_dir` (made absolute). It expects, under dev_dir:
// storage/ (a directory), kek (mode 0400), pki/{server.pem,server.key,ca.pem,crl.pem}.
std::string DevConfigYaml(const Path& dev_dir);

}  // namespace phi::config
