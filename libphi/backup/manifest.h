// phi::backup manifest: DIR/MANIFEST, the table of contents of one backup and
// its commit point (written last: tmp, fsync, rename, fsync the directory; a
// backup directory without MANIFEST is an incomplete backup).
//
// Text, one item per line, '\n' endings, ASCII only:
//   phigate-backup-manifest 1
//   storage_id <32 hex>                 the storage this came from (meta storage_id)
//   created <YYYY-MM-DDTHH:MM:SSZ>
//   kek_ids <id> [<id>...]              every KEK id that wraps a key in the snapshot
//   studies <n>
//   objects <n>
//   object_bytes <n>
//   file <sha256 hex> <size> <path>     catalog.db first, then objects/ab/cd/<id>.phg
//   ...
//   manifest_sha256 <hex>               SHA-256 of every byte before this line
// Paths are relative to DIR and checked strictly on parse (catalog.db or
// objects/xx/yy/<32 hex>.phg whose fan-out matches the id): a hostile manifest
// cannot name a file outside DIR or the storage root.
// Thread-safety: plain values and pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "libphi/util/status.h"

namespace phi::backup {

inline constexpr int kManifestVersion = 1;
inline constexpr const char* kManifestName = "MANIFEST";
inline constexpr const char* kCatalogName = "catalog.db";
inline constexpr size_t kMaxManifestBytes = size_t{1} << 30;

struct ManifestFile {
  std::string path;  // relative to the backup directory
  uint64_t size = 0;
  std::string sha256;  // 64 lowercase hex
};

struct Manifest {
  int version = kManifestVersion;
  std::string storage_id;
  std::string created;  // UTC, RFC 3339 seconds
  std::vector<std::string> kek_ids;
  int64_t studies = 0;
  int64_t objects = 0;
  int64_t object_bytes = 0;
  std::vector<ManifestFile> files;  // files[0] is catalog.db
};

// The full text, ending with the manifest_sha256 line.
std::string SerializeManifest(const Manifest& m);
// Checks the format, every bound and the self hash. Corruption on any damage
// (naming the line), InvalidArgument for an unsupported version.
Result<Manifest> ParseManifest(std::string_view text);

// "objects/ab/cd/<id>.phg" for an object id (32 lowercase hex).
std::string ObjectRelPath(std::string_view object_id);
bool IsValidObjectId(std::string_view id);
bool IsValidRelPath(std::string_view path);

}  // namespace phi::backup
