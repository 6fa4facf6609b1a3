// phi::backup file copy: streams a file through SHA-256 (and into a new file),
// in bounded memory, all through Env so tests keep real files and fsync.
// Thread-safety: free functions.
#pragma once

#include <cstdint>
#include <string>

#include "libphi/util/env.h"

namespace phi::backup {

struct CopiedFile {
  uint64_t size = 0;
  std::string sha256;  // lowercase hex
};

// SHA-256 and size of a file.
Result<CopiedFile> HashFile(Env& env, const Path& p);
// Copies src to dst (created, O_EXCL, 0600), fsyncs and closes dst; returns
// the size and SHA-256 of what was written. On error dst is removed.
Result<CopiedFile> CopyFile(Env& env, const Path& src, const Path& dst);

}  // namespace phi::backup
