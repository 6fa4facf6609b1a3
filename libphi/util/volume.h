// phi volume check: is the storage root on a LUKS (dm-crypt) volume?
//
// Owns the start-up check of DESIGN.md "The volume": find the mount holding the
// storage root in <ProcRoot>/self/mountinfo (longest mount-point prefix, octal
// escapes such as "\040" decoded), take its major:minor, and read
// <SysRoot>/dev/block/<maj>:<min>/dm/{uuid,name}. A volume is encrypted iff its
// dm uuid starts with "CRYPT-LUKS" (LUKS1 or LUKS2). phigated never opens LUKS
// itself: it only refuses to run on an unencrypted volume.
// Thread-safety: free functions without shared state; safe from any thread.
#pragma once

#include <cstdint>
#include <string>

#include "libphi/config/config.h"
#include "libphi/util/env.h"
#include "libphi/util/status.h"

namespace phi {

struct VolumeInfo {
  Path storage_root;    // the path that was checked (absolute, normalised)
  Path mount_point;     // mount point of the filesystem holding storage_root
  std::string fs_type;  // "ext4", "xfs", ...
  std::string source;   // mount source as in mountinfo, e.g. "/dev/mapper/phigate"
  uint32_t major = 0;   // st_dev of the mount
  uint32_t minor = 0;
  bool is_dm = false;      // a device-mapper device (dm/ exists in sysfs)
  std::string dm_name;     // dm/name, e.g. "phigate" (empty unless is_dm)
  std::string dm_uuid;     // dm/uuid, e.g. "CRYPT-LUKS2-<uuid>-phigate" (empty unless is_dm)
  bool encrypted = false;  // dm_uuid starts with "CRYPT-LUKS"
  bool required = true;    // storage.require_encrypted_volume (set by EnforceEncryptedVolume)

  // "dm-crypt LUKS2 /dev/mapper/phigate on /var/lib/phigate (ext4)"-style, for messages.
  std::string Describe() const;
  // The dm uuid up to and excluding the volume's own UUID ("CRYPT-LUKS2"), for status.
  std::string DmUuidPrefix() const;
};

// Finds the volume holding storage_root and whether it is LUKS-encrypted.
// Errors: IOError/NotFound when mountinfo is missing or unreadable, Corruption when
// it cannot be parsed, NotFound when no mount contains storage_root.
Result<VolumeInfo> CheckStorageVolume(const Path& storage_root, Env& env);

// Runs CheckStorageVolume on cfg.root and refuses (PermissionDenied naming the
// mount and the device) unless the volume is encrypted
// or cfg.require_encrypted_volume is false, in which case it logs a WARNING (every
// start) and returns OK. `info` (optional) receives what was found.
Status EnforceEncryptedVolume(const config::StorageConfig& cfg, Env& env, VolumeInfo* info);

// Decodes the octal escapes mountinfo uses for space, tab, newline and backslash.
std::string UnescapeMountField(std::string_view s);

}  // namespace phi
