#include "libphi/util/volume.h"

#include <cstdlib>
#include <optional>
#include <string_view>
#include <system_error>
#include <vector>

#include "libphi/util/log.h"

namespace phi {
namespace {

constexpr size_t kMaxMountinfoBytes = 8 * 1024 * 1024;
constexpr size_t kMaxSysfsBytes = 4096;
constexpr std::string_view kLuksPrefix = "CRYPT-LUKS";

struct MountEntry {
  uint32_t major = 0;
  uint32_t minor = 0;
  Path mount_point;
  std::string fs_type;
  std::string source;
};

std::vector<std::string_view> SplitSpaces(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && line[i] == ' ') ++i;
    size_t j = i;
    while (j < line.size() && line[j] != ' ') ++j;
    if (j > i) out.push_back(line.substr(i, j - i));
    i = j;
  }
  return out;
}

bool ParseU32(std::string_view s, uint32_t* out) {
  if (s.empty() || s.size() > 10) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (v > UINT32_MAX) return false;
  *out = static_cast<uint32_t>(v);
  return true;
}

// One mountinfo line (proc(5)):
// 36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue
bool ParseMountLine(std::string_view line, MountEntry* e) {
  auto f = SplitSpaces(line);
  if (f.size() < 7) return false;
  auto mm = f[2];
  size_t colon = mm.find(':');
  if (colon == std::string_view::npos) return false;
  if (!ParseU32(mm.substr(0, colon), &e->major) || !ParseU32(mm.substr(colon + 1), &e->minor)) {
    return false;
  }
  e->mount_point = UnescapeMountField(f[4]);
  if (e->mount_point.empty() || !e->mount_point.is_absolute()) return false;
  size_t sep = 6;
  while (sep < f.size() && f[sep] != "-") ++sep;
  if (sep + 1 >= f.size()) return false;
  e->fs_type = UnescapeMountField(f[sep + 1]);
  e->source = sep + 2 < f.size() ? UnescapeMountField(f[sep + 2]) : std::string();
  return true;
}

// True when `mount` is `path` or one of its ancestors (component-wise).
bool MountContains(const Path& mount, const Path& path) {
  auto m = mount.begin();
  auto p = path.begin();
  for (; m != mount.end(); ++m) {
    if (m->empty()) continue;  // trailing "/" of "/mnt/"
    if (p == path.end() || *m != *p) return false;
    ++p;
  }
  return true;
}

size_t Depth(const Path& p) {
  size_t n = 0;
  for (const auto& c : p) {
    if (!c.empty()) ++n;
  }
  return n;
}

Path NormaliseRoot(const Path& root) {
  std::error_code ec;
  Path abs = root.is_absolute() ? root : std::filesystem::absolute(root, ec);
  if (ec) abs = root;
  // Resolve symlinks of the part that exists, so the mount lookup sees the real path.
  Path canon = std::filesystem::weakly_canonical(abs, ec);
  if (ec || canon.empty()) canon = abs.lexically_normal();
  std::string s = canon.string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return Path(s);
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\0')) s.pop_back();
  return s;
}

}  // namespace

std::string UnescapeMountField(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      char a = s[i + 1], b = s[i + 2], c = s[i + 3];
      if (a >= '0' && a <= '3' && b >= '0' && b <= '7' && c >= '0' && c <= '7') {
        out.push_back(static_cast<char>((a - '0') * 64 + (b - '0') * 8 + (c - '0')));
        i += 3;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

std::string VolumeInfo::Describe() const {
  std::string d = "storage root " + storage_root.string() + " is on mount " + mount_point.string() +
                  " (" + fs_type + ", device " + source + ", " + std::to_string(major) + ":" +
                  std::to_string(minor);
  if (is_dm) {
    d += ", dm name " + (dm_name.empty() ? std::string("?") : dm_name) + ", dm uuid " +
         (dm_uuid.empty() ? std::string("(none)") : DmUuidPrefix());
  } else {
    d += ", not a device-mapper device";
  }
  d += ")";
  return d;
}

std::string VolumeInfo::DmUuidPrefix() const {
  // "CRYPT-LUKS2-<hex uuid>-<name>" -> "CRYPT-LUKS2"; "LVM-<ids>" -> "LVM".
  size_t dash = dm_uuid.find('-');
  if (dash == std::string::npos) return dm_uuid.substr(0, 16);
  if (dm_uuid.compare(0, kLuksPrefix.size(), kLuksPrefix) == 0) {
    size_t second = dm_uuid.find('-', dash + 1);
    return dm_uuid.substr(0, second == std::string::npos ? dm_uuid.size() : second);
  }
  return dm_uuid.substr(0, dash);
}

Result<VolumeInfo> CheckStorageVolume(const Path& storage_root, Env& env) {
  if (storage_root.empty()) return Status::InvalidArgument("storage root is empty");
  const Path mountinfo = env.ProcRoot() / "self" / "mountinfo";
  auto text = env.ReadSmallFile(mountinfo, kMaxMountinfoBytes);
  if (!text.ok()) {
    return text.status().WithContext("cannot read the mount table to check the storage volume");
  }
  VolumeInfo info;
  info.storage_root = NormaliseRoot(storage_root);

  std::optional<MountEntry> best;
  size_t best_depth = 0;
  size_t lines = 0;
  std::string_view all(*text);
  size_t pos = 0;
  while (pos < all.size()) {
    size_t nl = all.find('\n', pos);
    std::string_view line = all.substr(pos, nl == std::string_view::npos ? all.npos : nl - pos);
    pos = nl == std::string_view::npos ? all.size() : nl + 1;
    if (line.empty()) continue;
    ++lines;
    MountEntry e;
    if (!ParseMountLine(line, &e)) {
      return Status::Corruption(mountinfo.string() + ": cannot parse line " +
                                std::to_string(lines));
    }
    if (!MountContains(e.mount_point, info.storage_root)) continue;
    size_t depth = Depth(e.mount_point);
    // Longest prefix wins; on a tie the later line (mounted over the earlier) wins.
    if (!best || depth >= best_depth) {
      best = std::move(e);
      best_depth = depth;
    }
  }
  if (lines == 0) return Status::Corruption(mountinfo.string() + " is empty");
  if (!best) {
    return Status::NotFound("no mount in " + mountinfo.string() + " contains " +
                            info.storage_root.string());
  }
  info.mount_point = best->mount_point;
  info.fs_type = best->fs_type;
  info.source = best->source;
  info.major = best->major;
  info.minor = best->minor;

  const Path dm = env.SysRoot() / "dev" / "block" /
                  (std::to_string(info.major) + ":" + std::to_string(info.minor)) / "dm";
  auto uuid = env.ReadSmallFile(dm / "uuid", kMaxSysfsBytes);
  if (uuid.ok()) {
    info.is_dm = true;
    info.dm_uuid = Trim(*uuid);
    auto name = env.ReadSmallFile(dm / "name", kMaxSysfsBytes);
    if (name.ok()) info.dm_name = Trim(*name);
  } else {
    info.is_dm = env.FileExists(dm);
  }
  info.encrypted = info.dm_uuid.compare(0, kLuksPrefix.size(), kLuksPrefix) == 0;
  return info;
}

Status EnforceEncryptedVolume(const config::StorageConfig& cfg, Env& env, VolumeInfo* out) {
  auto info = CheckStorageVolume(cfg.root, env);
  if (!info.ok()) {
    if (cfg.require_encrypted_volume) {
      return info.status().WithContext("storage.require_encrypted_volume is true");
    }
    PHI_LOG(kWarning,
            "cannot determine the storage volume; continuing because "
            "storage.require_encrypted_volume is false",
            {{"status", info.status()}, {"storage_root", log::Safe(cfg.root.string())}});
    if (out) {
      *out = VolumeInfo{};
      out->storage_root = cfg.root;
      out->required = false;
    }
    return Status::Ok();
  }
  info->required = cfg.require_encrypted_volume;
  if (out) *out = *info;
  if (info->encrypted) {
    PHI_LOG(kInfo, "storage volume is LUKS-encrypted",
            {{"mount", log::Safe(info->mount_point.string())},
             {"device", log::Safe(info->source)},
             {"dm_name", log::Safe(info->dm_name)},
             {"dm_uuid_prefix", log::Safe(info->DmUuidPrefix())}});
    return Status::Ok();
  }
  if (cfg.require_encrypted_volume) {
    return Status::PermissionDenied(
        "refusing to start: " + info->Describe() +
        ", which is not a dm-crypt LUKS volume (dm uuid must start with CRYPT-LUKS); put the "
        "storage root on the LUKS2 volume, or set storage.require_encrypted_volume: false "
        "(development only)");
  }
  PHI_LOG(kWarning, "storage volume is NOT encrypted (storage.require_encrypted_volume: false)",
          {{"mount", log::Safe(info->mount_point.string())},
           {"device", log::Safe(info->source)},
           {"fs_type", log::Safe(info->fs_type)}});
  return Status::Ok();
}

}  // namespace phi
