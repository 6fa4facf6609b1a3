#include "libphi/backup/manifest.h"

#include <charconv>
#include <set>

#include "libphi/crypto/crypto.h"

namespace phi::backup {
namespace {

bool IsHex(std::string_view s, size_t n) {
  if (s.size() != n) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

bool IsKekId(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.';
    if (!ok) return false;
  }
  return true;
}

bool ParseU64(std::string_view s, uint64_t* out) {
  if (s.empty() || s.size() > 19) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size();
}

std::vector<std::string_view> Split(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i <= line.size()) {
    size_t j = line.find(' ', i);
    if (j == std::string_view::npos) j = line.size();
    out.push_back(line.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

}  // namespace

bool IsValidObjectId(std::string_view id) { return IsHex(id, 32); }

std::string ObjectRelPath(std::string_view id) {
  return "objects/" + std::string(id.substr(0, 2)) + "/" + std::string(id.substr(2, 2)) + "/" +
         std::string(id) + ".phg";
}

bool IsValidRelPath(std::string_view p) {
  if (p == kCatalogName) return true;
  // objects/ab/cd/<32 hex>.phg
  constexpr size_t kLen = 8 + 3 + 3 + 32 + 4;
  if (p.size() != kLen || p.substr(0, 8) != "objects/" || p.substr(kLen - 4) != ".phg") {
    return false;
  }
  std::string_view id = p.substr(14, 32);
  return IsValidObjectId(id) && p == ObjectRelPath(id);
}

std::string SerializeManifest(const Manifest& m) {
  std::string t;
  t += "phigate-backup-manifest " + std::to_string(m.version) + "\n";
  t += "storage_id " + m.storage_id + "\n";
  t += "created " + m.created + "\n";
  t += "kek_ids";
  for (const auto& k : m.kek_ids) t += " " + k;
  t += "\n";
  t += "studies " + std::to_string(m.studies) + "\n";
  t += "objects " + std::to_string(m.objects) + "\n";
  t += "object_bytes " + std::to_string(m.object_bytes) + "\n";
  for (const auto& f : m.files) {
    t += "file " + f.sha256 + " " + std::to_string(f.size) + " " + f.path + "\n";
  }
  crypto::Digest d =
      crypto::Sha256(crypto::ByteSpan(reinterpret_cast<const std::byte*>(t.data()), t.size()));
  t += "manifest_sha256 " + crypto::ToHex(d) + "\n";
  return t;
}

Result<Manifest> ParseManifest(std::string_view text) {
  if (text.size() > kMaxManifestBytes) return Status::Corruption("MANIFEST is too large");
  // The self hash first: anything else is only trusted once it matches.
  if (text.empty() || text.back() != '\n') {
    return Status::Corruption("MANIFEST is truncated (no final newline)");
  }
  size_t last = text.rfind('\n', text.size() - 2);
  size_t body_len = last == std::string_view::npos ? 0 : last + 1;
  std::string_view tail = text.substr(body_len, text.size() - body_len - 1);
  if (tail.substr(0, 16) != "manifest_sha256 " || !IsHex(tail.substr(16), 64)) {
    return Status::Corruption("MANIFEST has no manifest_sha256 line: incomplete or damaged");
  }
  crypto::Digest d =
      crypto::Sha256(crypto::ByteSpan(reinterpret_cast<const std::byte*>(text.data()), body_len));
  if (crypto::ToHex(d) != tail.substr(16)) {
    return Status::Corruption("MANIFEST does not match its manifest_sha256: it was changed");
  }

  Manifest m;
  std::set<std::string_view> paths;
  std::string_view body = text.substr(0, body_len);
  size_t lineno = 0;
  size_t pos = 0;
  int seen = 0;  // bit per header field
  auto bad = [&](const std::string& why) {
    return Status::Corruption("MANIFEST line " + std::to_string(lineno) + ": " + why);
  };
  while (pos < body.size()) {
    size_t nl = body.find('\n', pos);
    std::string_view line = body.substr(pos, nl - pos);
    pos = nl + 1;
    ++lineno;
    if (line.size() > 4096) return bad("line too long");
    for (char c : line) {
      if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) {
        return bad("non-printable byte");
      }
    }
    std::vector<std::string_view> w = Split(line);
    uint64_t n = 0;
    if (lineno == 1) {
      if (w.size() != 2 || w[0] != "phigate-backup-manifest") return bad("not a phigate backup");
      if (!ParseU64(w[1], &n)) return bad("bad version");
      if (n != static_cast<uint64_t>(kManifestVersion)) {
        return Status::InvalidArgument("MANIFEST format version " + std::string(w[1]) +
                                       " is not supported (this build reads " +
                                       std::to_string(kManifestVersion) + ")");
      }
      continue;
    }
    if (w[0] == "storage_id" && w.size() == 2 && IsHex(w[1], 32) && !(seen & 1)) {
      m.storage_id = w[1];
      seen |= 1;
    } else if (w[0] == "created" && w.size() == 2 && w[1].size() == 20 && !(seen & 2)) {
      m.created = w[1];
      seen |= 2;
    } else if (w[0] == "kek_ids" && !(seen & 4)) {
      for (size_t i = 1; i < w.size(); ++i) {
        if (!IsKekId(w[i])) return bad("bad KEK id");
        m.kek_ids.emplace_back(w[i]);
      }
      seen |= 4;
    } else if ((w[0] == "studies" || w[0] == "objects" || w[0] == "object_bytes") &&
               w.size() == 2 && ParseU64(w[1], &n) && n <= (uint64_t{1} << 62)) {
      int bit = w[0] == "studies" ? 8 : w[0] == "objects" ? 16 : 32;
      if (seen & bit) return bad("duplicate " + std::string(w[0]));
      seen |= bit;
      (w[0] == "studies"   ? m.studies
       : w[0] == "objects" ? m.objects
                           : m.object_bytes) = static_cast<int64_t>(n);
    } else if (w[0] == "file" && w.size() == 4) {
      ManifestFile f;
      if (!IsHex(w[1], 64)) return bad("bad SHA-256");
      if (!ParseU64(w[2], &f.size)) return bad("bad size");
      if (!IsValidRelPath(w[3])) return bad("bad path");
      if (m.files.empty() != (w[3] == kCatalogName)) {
        return bad("catalog.db must be the first file, and only once");
      }
      if (!paths.insert(w[3]).second) return bad("file listed twice");
      f.sha256 = w[1];
      f.path = w[3];
      m.files.push_back(std::move(f));
    } else {
      return bad("unexpected line");
    }
  }
  if (lineno == 0 || seen != 63) return Status::Corruption("MANIFEST misses header lines");
  if (m.files.empty()) return Status::Corruption("MANIFEST lists no catalog.db");
  if (static_cast<int64_t>(m.files.size()) - 1 != m.objects) {
    return Status::Corruption("MANIFEST lists " + std::to_string(m.files.size() - 1) +
                              " object files but says objects " + std::to_string(m.objects));
  }
  return m;
}

}  // namespace phi::backup
