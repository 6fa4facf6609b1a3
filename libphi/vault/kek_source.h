// phi::vault KEK sources: reading one key-encryption key from a systemd
// credential or a key file, with every check re-done here (config validates
// too, but the vault trusts nothing it did not check itself).
//
// Internal to vault/: only KeyVault calls these, and a KEK never leaves vault/.
// Thread-safety: free functions, no shared state (LoadKek reads
// $CREDENTIALS_DIRECTORY from the environment).
//
// Key file format: exactly 32 raw bytes, or 64 hex digits (either case)
// optionally followed by a single '\n' (so `openssl rand -hex 32 > kek` works).
//
// Checks, each failing with a Status naming the KEK id, the path and the
// reason (never any key byte):
//  - the path is not a symlink and is a regular file;
//  - mode & 077 == 0 (no group or other access: 0400 or 0600);
//  - it is not under the storage root, and not on the storage root's
//    filesystem (st_dev differs): the KEK must never sit on the data volume
//    it protects;
//  - the content has one of the two formats above.
// The same checks apply to systemd credentials (systemd creates them 0400 on
// a private ramfs, so they pass). The storage root must exist (stat-able).
#pragma once

#include <string>

#include "libphi/config/config.h"
#include "libphi/crypto/crypto.h"
#include "libphi/util/env.h"
#include "libphi/util/status.h"

namespace phi::vault {

struct Kek {
  std::string id;
  crypto::SecretBytes key;  // kKeyBytes
};

// Reads the key file at `path` (see the rules above). `what` names the KEK in errors.
// `check_same_fs` false skips only the st_dev rule: for a storage root that is
// not a dedicated volume (storage.require_encrypted_volume: false, dev/tests).
Result<crypto::SecretBytes> ReadKekFile(const Path& path, const Path& storage_root,
                                        std::string_view what, bool check_same_fs = true);

// The KEK described by `cfg`: `credential` (under $CREDENTIALS_DIRECTORY; error if
// that variable is unset) or `file`; exactly one must be set.
Result<Kek> LoadKek(const config::KekConfig& cfg, const Path& storage_root,
                    bool check_same_fs = true);

}  // namespace phi::vault
