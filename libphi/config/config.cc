// phi::config loader: YAML (yaml-cpp) to a validated Config. yaml-cpp throws; every
// exception is caught in this file and turned into a ConfigError.

#include "libphi/config/config.h"

#include <arpa/inet.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <exception>
#include <functional>
#include <map>
#include <set>
#include <utility>

namespace phi::config {

std::string ConfigError::ToString() const {
  std::string out = file.string();
  if (line > 0) out += ":" + std::to_string(line);
  out += ": ";
  if (!key.empty()) out += key + ": ";
  out += message;
  return out;
}

std::string_view TlsProfileName(TlsProfile p) {
  switch (p) {
    case TlsProfile::kBcp195:
      return "bcp195";
    case TlsProfile::kBcp195Nd:
      return "bcp195-nd";
    case TlsProfile::kBcp195Extended:
      return "bcp195-extended";
  }
  return "?";
}

std::string_view DuplicatePolicyName(DuplicatePolicy p) {
  switch (p) {
    case DuplicatePolicy::kKeepFirst:
      return "keep-first";
    case DuplicatePolicy::kReplace:
      return "replace";
  }
  return "?";
}

std::string_view AuditForwardFormatName(AuditForwardFormat f) {
  switch (f) {
    case AuditForwardFormat::kAtna:
      return "atna";
    case AuditForwardFormat::kJsonl:
      return "jsonl";
  }
  return "?";
}

std::string_view RoleName(Role r) {
  switch (r) {
    case Role::kClinician:
      return "clinician";
    case Role::kShare:
      return "share";
    case Role::kAdmin:
      return "admin";
    case Role::kModality:
      return "modality";
  }
  return "?";
}

namespace {

constexpr size_t kMaxConfigBytes = 1 << 20;  // a config file is a few KiB
constexpr size_t kMaxStringBytes = 4096;
constexpr size_t kMaxSocketPath = 107;  // sizeof(sockaddr_un::sun_path) - 1

template <typename E>
using EnumTable = std::vector<std::pair<std::string_view, E>>;

const EnumTable<TlsProfile> kTlsProfiles = {{"bcp195", TlsProfile::kBcp195},
                                            {"bcp195-nd", TlsProfile::kBcp195Nd},
                                            {"bcp195-extended", TlsProfile::kBcp195Extended}};
const EnumTable<DuplicatePolicy> kDuplicatePolicies = {{"keep-first", DuplicatePolicy::kKeepFirst},
                                                       {"replace", DuplicatePolicy::kReplace}};
const EnumTable<Role> kRoles = {{"clinician", Role::kClinician},
                                {"share", Role::kShare},
                                {"admin", Role::kAdmin},
                                {"modality", Role::kModality}};
const EnumTable<AuditForwardFormat> kForwardFormats = {{"atna", AuditForwardFormat::kAtna},
                                                       {"jsonl", AuditForwardFormat::kJsonl}};
const EnumTable<log::Level> kLevels = {
    {"debug", log::Level::kDebug},   {"info", log::Level::kInfo},
    {"notice", log::Level::kNotice}, {"warning", log::Level::kWarning},
    {"error", log::Level::kError},   {"critical", log::Level::kCritical}};
const EnumTable<log::Sink> kSinks = {
    {"auto", log::Sink::kAuto}, {"stderr", log::Sink::kStderr}, {"journal", log::Sink::kJournal}};

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

// The closest candidate within a small edit distance, or "".
std::string Closest(std::string_view word, const std::vector<std::string>& candidates) {
  if (word.size() > 64) return "";
  std::string best;
  size_t best_d = SIZE_MAX;
  size_t limit = std::max<size_t>(1, std::min<size_t>(3, word.size() / 3 + 1));
  for (const auto& c : candidates) {
    size_t d = EditDistance(word, c);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  return best_d <= limit ? best : "";
}

std::string ModeString(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

bool HasControlChars(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
  });
}

bool IsIpLiteral(const std::string& s) {
  unsigned char buf[16];
  return ::inet_pton(AF_INET, s.c_str(), buf) == 1 || ::inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

bool IsWildcard(const std::string& bind) { return bind == "0.0.0.0" || bind == "::"; }

// True when `p` is `root` or lies below it (both made absolute and normalised; symlinks in
// existing parts resolved).
bool IsUnder(const Path& p, const Path& root) {
  std::error_code ec;
  Path cp = std::filesystem::weakly_canonical(p, ec);
  if (ec) cp = p.lexically_normal();
  Path cr = std::filesystem::weakly_canonical(root, ec);
  if (ec) cr = root.lexically_normal();
  auto pi = cp.begin();
  for (auto ri = cr.begin(); ri != cr.end(); ++ri) {
    if (ri->empty()) continue;  // trailing slash
    if (pi == cp.end() || *pi != *ri) return false;
    ++pi;
  }
  return true;
}

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

class Loader;

// One YAML mapping being read: remembers which keys were asked for, so that the
// rest can be reported as unknown (with a "did you mean" hint).
class MapView {
 public:
  struct Entry {
    std::string key;
    YAML::Node value;
    int line = 0;
    bool used = false;
  };

  MapView(Loader& loader, const YAML::Node& node, std::string prefix, int line);
  // The entry for `key`, or nullptr when absent. Declares `key` as known.
  Entry* Get(std::string_view key);
  std::string Dotted(std::string_view key) const {
    return prefix_.empty() ? std::string(key) : prefix_ + "." + std::string(key);
  }
  // Reports every key that was never asked for.
  void Finish();
  bool ok() const { return ok_; }

 private:
  Loader& loader_;
  std::string prefix_;
  std::vector<Entry> entries_;
  std::vector<std::string> known_;
  bool ok_ = true;
};

class Loader {
 public:
  Loader(Path name, Env& env, const LoadOptions& options)
      : name_(std::move(name)), env_(env), options_(options) {}

  static int LineOf(const YAML::Node& n) {
    const YAML::Mark m = n.Mark();
    return m.line >= 0 ? m.line + 1 : 0;
  }

  void Error(int line, std::string key, std::string message) {
    errors_.push_back(ConfigError{name_, line, std::move(key), std::move(message)});
  }

  void Note(const std::string& key, int line) { lines_[key] = line; }
  int Line(const std::string& key) const {
    auto it = lines_.find(key);
    return it == lines_.end() ? 0 : it->second;
  }

  void Run(const std::string& text);
  Config& config() { return config_; }
  std::vector<ConfigError>& errors() { return errors_; }

 private:
  // ---- typed field readers: each reads one key of `m` into *out when present ----
  bool Scalar(MapView::Entry& e, const std::string& key, const char* expected) {
    if (!e.value.IsScalar()) {
      Error(e.line, key, std::string("expected ") + expected);
      return false;
    }
    return true;
  }

  void ReadBool(MapView& m, std::string_view k, bool* out) {
    auto* e = m.Get(k);
    if (e == nullptr) return;
    std::string key = m.Dotted(k);
    Note(key, e->line);
    if (!Scalar(*e, key, "true/false")) return;
    const std::string& s = e->value.Scalar();
    if (s == "true" || s == "True" || s == "TRUE") {
      *out = true;
    } else if (s == "false" || s == "False" || s == "FALSE") {
      *out = false;
    } else {
      Error(e->line, key, "expected true/false");
    }
  }

  template <typename T>
  void ReadUint(MapView& m, std::string_view k, uint64_t min, uint64_t max, T* out) {
    auto* e = m.Get(k);
    if (e == nullptr) return;
    std::string key = m.Dotted(k);
    Note(key, e->line);
    if (!Scalar(*e, key, "an integer")) return;
    std::string_view s = e->value.Scalar();
    std::string range = "must be " + std::to_string(min) + "-" + std::to_string(max);
    bool negative = false;
    if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
      negative = s[0] == '-';
      s.remove_prefix(1);
    }
    if (s.empty() || s.size() > 64 ||
        !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      Error(e->line, key, "expected an integer");
      return;
    }
    uint64_t v = 0;
    bool overflow = false;
    for (char c : s) {
      auto d = static_cast<uint64_t>(c - '0');
      if (v > (UINT64_MAX - d) / 10) {
        overflow = true;
        break;
      }
      v = v * 10 + d;
    }
    if (negative && v != 0) {
      Error(e->line, key, range);
      return;
    }
    if (overflow || v < min || v > max) {
      Error(e->line, key, range);
      return;
    }
    *out = static_cast<T>(v);
  }

  // Strings: any scalar; no control characters; bounded. Returns false when absent or bad.
  bool ReadString(MapView& m, std::string_view k, std::string* out, bool allow_empty = true) {
    auto* e = m.Get(k);
    if (e == nullptr) return false;
    std::string key = m.Dotted(k);
    Note(key, e->line);
    if (!Scalar(*e, key, "a string")) return false;
    const std::string& s = e->value.Scalar();
    if (s.size() > kMaxStringBytes) {
      Error(e->line, key, "too long (max " + std::to_string(kMaxStringBytes) + " bytes)");
      return false;
    }
    if (HasControlChars(s)) {
      Error(e->line, key, "contains control characters");
      return false;
    }
    if (!allow_empty && s.empty()) {
      Error(e->line, key, "must not be empty");
      return false;
    }
    *out = s;
    return true;
  }

  // Paths: absolute, non-empty.
  void ReadPath(MapView& m, std::string_view k, Path* out) {
    std::string s;
    if (!ReadString(m, k, &s, /*allow_empty=*/false)) return;
    if (s[0] != '/') {
      Error(Line(m.Dotted(k)), m.Dotted(k), "must be an absolute path");
      return;
    }
    *out = s;
  }

  template <typename E>
  void ReadEnum(MapView& m, std::string_view k, const EnumTable<E>& table, E* out) {
    std::string s;
    if (!ReadString(m, k, &s)) return;
    ParseEnumValue(s, Line(m.Dotted(k)), m.Dotted(k), table, out);
  }

  template <typename E>
  bool ParseEnumValue(const std::string& s, int line, const std::string& key,
                      const EnumTable<E>& table, E* out) {
    std::vector<std::string> names;
    for (const auto& [name, value] : table) {
      if (s == name) {
        *out = value;
        return true;
      }
      names.emplace_back(name);
    }
    std::string msg = "invalid value '" + s + "'; expected one of ";
    for (size_t i = 0; i < names.size(); ++i) msg += (i ? ", " : "") + names[i];
    std::string hint = Closest(s, names);
    if (!hint.empty()) msg += " (did you mean '" + hint + "'?)";
    Error(line, key, msg);
    return false;
  }

  // Calls f(item, dotted key "a.b[i]", line) for each item of a sequence (null = empty).
  void ForEach(MapView::Entry& e, const std::string& key,
               const std::function<void(const YAML::Node&, const std::string&, int)>& f) {
    if (e.value.IsNull()) return;
    if (!e.value.IsSequence()) {
      Error(e.line, key, "expected a list");
      return;
    }
    size_t i = 0;
    for (const auto& item : e.value) {
      int line = LineOf(item);
      f(item, key + "[" + std::to_string(i) + "]", line > 0 ? line : e.line);
      ++i;
    }
  }

  void ReadNetworks(MapView& m, std::string_view k, std::vector<Network>* out) {
    auto* e = m.Get(k);
    if (e == nullptr) return;
    std::string key = m.Dotted(k);
    Note(key, e->line);
    out->clear();
    ForEach(*e, key, [&](const YAML::Node& item, const std::string& ikey, int line) {
      if (!item.IsScalar()) {
        Error(line, ikey, "expected a network (CIDR), e.g. 10.0.0.0/8");
        return;
      }
      auto net = ParseNetwork(item.Scalar());
      if (!net.ok()) {
        Error(line, ikey, net.status().message());
        return;
      }
      out->push_back(std::move(net).value());
    });
  }

  void ReadListener(MapView& parent, std::string_view k, bool tls, Listener* out);
  void ReadStorage(MapView& top);
  void ReadKeys(MapView& top);
  void ReadTls(MapView& top);
  void ReadDicom(MapView& top);
  void ReadHl7(MapView& top);
  void ReadWeb(MapView& top);
  void ReadAdmin(MapView& top);
  void ReadLogging(MapView& top);
  void ReadLifecycle(MapView& top);
  void ReadAudit(MapView& top);
  void ReadRetention(MapView& top);
  void ReadIntegrity(MapView& top);

  // Opens a sub-section; nullopt when absent (defaults stay).
  std::optional<MapView> Section(MapView& parent, std::string_view k) {
    auto* e = parent.Get(k);
    if (e == nullptr) return std::nullopt;
    std::string key = parent.Dotted(k);
    Note(key, e->line);
    return MapView(*this, e->value, key, e->line);
  }

  // The line of a listener's port, else of the listener section, else 0.
  int LineOfListener(const std::string& name) const {
    int line = Line(name + ".port");
    return line ? line : Line(name);
  }
  void CheckAll();
  void CheckListeners();
  void CheckTlsFiles();
  void CheckKeys();
  void CheckStorage();
  void CheckAdmin();
  void CheckAllowLists();
  void CheckAuditForward();
  // Existence, type and readability; reports and returns false on a problem.
  bool CheckReadableFile(const Path& p, int line, const std::string& key, struct stat* st);

  Path name_;
  [[maybe_unused]] Env& env_;  // kept for file checks through Env
  LoadOptions options_;
  Config config_;
  std::vector<ConfigError> errors_;
  std::map<std::string, int> lines_;
};

MapView::MapView(Loader& loader, const YAML::Node& node, std::string prefix, int line)
    : loader_(loader), prefix_(std::move(prefix)) {
  if (!node.IsDefined() || node.IsNull()) return;
  if (!node.IsMap()) {
    loader_.Error(line, prefix_, "expected a mapping (key: value lines)");
    ok_ = false;
    return;
  }
  std::map<std::string, int> seen;
  for (auto it = node.begin(); it != node.end(); ++it) {
    // Copies: it-> yields a proxy that dies at the end of the expression.
    const YAML::Node k = it->first;
    const YAML::Node v = it->second;
    int kline = Loader::LineOf(k);
    if (!k.IsScalar()) {
      loader_.Error(kline, prefix_, "keys must be plain names");
      continue;
    }
    std::string name = k.Scalar();
    if (auto [prev, inserted] = seen.emplace(name, kline); !inserted) {
      loader_.Error(kline, Dotted(name),
                    "duplicate key (first at line " + std::to_string(prev->second) + ")");
      continue;
    }
    entries_.push_back(Entry{name, v, kline, false});
  }
}

MapView::Entry* MapView::Get(std::string_view key) {
  known_.emplace_back(key);
  for (auto& e : entries_) {
    if (e.key == key) {
      e.used = true;
      return &e;
    }
  }
  return nullptr;
}

void MapView::Finish() {
  for (const auto& e : entries_) {
    if (e.used) continue;
    std::string shown = HasControlChars(e.key) || e.key.size() > 64 ? "?" : e.key;
    std::string msg = "unknown key";
    std::string hint = Closest(e.key, known_);
    if (!hint.empty()) msg += " (did you mean '" + hint + "'?)";
    loader_.Error(e.line, Dotted(shown), msg);
  }
}

void Loader::ReadListener(MapView& parent, std::string_view k, bool tls, Listener* out) {
  auto m = Section(parent, k);
  if (!m) return;
  ReadBool(*m, "enabled", &out->enabled);
  std::string bind;
  if (ReadString(*m, "bind", &bind, false)) {
    if (IsIpLiteral(bind)) {
      out->bind = bind;
    } else {
      Error(Line(m->Dotted("bind")), m->Dotted("bind"),
            "expected an IPv4 or IPv6 address (e.g. 0.0.0.0, ::, 127.0.0.1)");
    }
  }
  ReadUint(*m, "port", 1, 65535, &out->port);
  if (tls) ReadBool(*m, "require_client_cert", &out->require_client_cert);
  m->Finish();
}

void Loader::ReadStorage(MapView& top) {
  auto m = Section(top, "storage");
  if (!m) return;
  auto& s = config_.storage;
  ReadPath(*m, "root", &s.root);
  ReadBool(*m, "require_encrypted_volume", &s.require_encrypted_volume);
  ReadEnum(*m, "duplicate_policy", kDuplicatePolicies, &s.duplicate_policy);
  m->Finish();
}

void Loader::ReadKeys(MapView& top) {
  auto m = Section(top, "keys");
  if (!m) return;
  auto& keys = config_.keys;
  ReadString(*m, "active", &keys.active);
  if (auto* e = m->Get("keks")) {
    std::string key = m->Dotted("keks");
    Note(key, e->line);
    keys.keks.clear();
    ForEach(*e, key, [&](const YAML::Node& item, const std::string& ikey, int line) {
      MapView km(*this, item, ikey, line);
      if (!km.ok()) return;
      if (item.IsNull()) {
        Error(line, ikey, "expected a mapping with id and credential or file");
        return;
      }
      KekConfig kek;
      kek.line = line;
      ReadString(km, "id", &kek.id);
      ReadString(km, "credential", &kek.credential);
      ReadPath(km, "file", &kek.file);
      km.Finish();
      Note(ikey, line);
      keys.keks.push_back(std::move(kek));
    });
  }
  m->Finish();
}

void Loader::ReadTls(MapView& top) {
  auto m = Section(top, "tls");
  if (!m) return;
  auto& t = config_.tls;
  ReadPath(*m, "certificate", &t.certificate);
  ReadPath(*m, "private_key", &t.private_key);
  ReadPath(*m, "ca_bundle", &t.ca_bundle);
  if (auto* e = m->Get("crls")) {
    std::string key = m->Dotted("crls");
    Note(key, e->line);
    t.crls.clear();
    ForEach(*e, key, [&](const YAML::Node& item, const std::string& ikey, int line) {
      Note(ikey, line);
      if (!item.IsScalar() || item.Scalar().empty() || HasControlChars(item.Scalar())) {
        Error(line, ikey, "expected a file path");
        return;
      }
      if (item.Scalar()[0] != '/') {
        Error(line, ikey, "must be an absolute path");
        return;
      }
      t.crls.emplace_back(item.Scalar());
    });
  }
  ReadEnum(*m, "profile", kTlsProfiles, &t.profile);
  m->Finish();
}

// DICOM AE title: 1-16 characters of the default repertoire, no backslash, not all spaces.
bool ValidAeTitle(const std::string& ae) {
  if (ae.empty() || ae.size() > 16) return false;
  if (ae.find_first_not_of(' ') == std::string::npos) return false;
  return std::all_of(ae.begin(), ae.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u >= 0x20 && u < 0x7f && c != '\\';
  });
}

void Loader::ReadDicom(MapView& top) {
  auto m = Section(top, "dicom");
  if (!m) return;
  auto& d = config_.dicom;
  std::string ae;
  if (ReadString(*m, "ae_title", &ae)) {
    if (ValidAeTitle(ae)) {
      d.ae_title = ae;
    } else {
      Error(Line(m->Dotted("ae_title")), m->Dotted("ae_title"),
            "must be 1-16 printable ASCII characters, no backslash, not all spaces");
    }
  }
  ReadListener(*m, "tls", true, &d.tls);
  ReadListener(*m, "plain", false, &d.plain);
  ReadUint(*m, "max_pdu_bytes", 4096, 16777216, &d.max_pdu_bytes);
  ReadUint(*m, "max_associations", 1, 4096, &d.max_associations);
  ReadUint(*m, "max_associations_per_ae", 1, 4096, &d.max_associations_per_ae);
  ReadUint(*m, "acse_timeout_seconds", 1, 3600, &d.acse_timeout_seconds);
  ReadUint(*m, "dimse_timeout_seconds", 1, 86400, &d.dimse_timeout_seconds);
  ReadUint(*m, "network_timeout_seconds", 1, 86400, &d.network_timeout_seconds);
  if (auto* e = m->Get("allowed_peers")) {
    std::string key = m->Dotted("allowed_peers");
    Note(key, e->line);
    d.allowed_peers.clear();
    ForEach(*e, key, [&](const YAML::Node& item, const std::string& ikey, int line) {
      Note(ikey, line);
      MapView pm(*this, item, ikey, line);
      if (!pm.ok()) return;
      DicomPeer peer;
      std::string pae;
      if (ReadString(pm, "ae_title", &pae)) {
        if (pae == "*" || ValidAeTitle(pae)) {
          peer.ae_title = pae;
        } else {
          Error(Line(pm.Dotted("ae_title")), pm.Dotted("ae_title"),
                "must be \"*\" or 1-16 printable ASCII characters, no backslash");
        }
      } else if (Line(pm.Dotted("ae_title")) == 0) {
        Error(line, pm.Dotted("ae_title"), "required");
      }
      ReadNetworks(pm, "networks", &peer.networks);
      if (ReadString(pm, "certificate_subject", &peer.certificate_subject) &&
          !peer.certificate_subject.empty() &&
          peer.certificate_subject.find('=') == std::string::npos) {
        Error(Line(pm.Dotted("certificate_subject")), pm.Dotted("certificate_subject"),
              "expected a distinguished name in RFC 2253 form, e.g. CN=ct01,O=Hospital");
      }
      ReadUint(pm, "max_associations", 0, 4096, &peer.max_associations);
      pm.Finish();
      d.allowed_peers.push_back(std::move(peer));
    });
  }
  m->Finish();
}

void Loader::ReadHl7(MapView& top) {
  auto m = Section(top, "hl7");
  if (!m) return;
  auto& h = config_.hl7;
  ReadListener(*m, "tls", true, &h.tls);
  ReadListener(*m, "plain", false, &h.plain);
  ReadNetworks(*m, "allowed_networks", &h.allowed_networks);
  ReadUint(*m, "max_message_bytes", 1024, 1024ull * 1024 * 1024, &h.max_message_bytes);
  ReadUint(*m, "max_connections", 1, 65535, &h.max_connections);
  ReadUint(*m, "idle_timeout_seconds", 1, 86400, &h.idle_timeout_seconds);
  ReadUint(*m, "read_timeout_seconds", 1, 3600, &h.read_timeout_seconds);
  m->Finish();
}

void Loader::ReadWeb(MapView& top) {
  auto m = Section(top, "web");
  if (!m) return;
  auto& w = config_.web;
  ReadListener(*m, "https", true, &w.https);
  ReadUint(*m, "max_body_bytes", 1024, 64ull * 1024 * 1024 * 1024, &w.max_body_bytes);
  ReadUint(*m, "max_header_bytes", 1024, 1024 * 1024, &w.max_header_bytes);
  ReadUint(*m, "max_connections", 1, 65535, &w.max_connections);
  ReadUint(*m, "header_timeout_seconds", 1, 3600, &w.header_timeout_seconds);
  ReadUint(*m, "body_timeout_seconds", 1, 86400, &w.body_timeout_seconds);
  ReadUint(*m, "idle_timeout_seconds", 1, 86400, &w.idle_timeout_seconds);
  if (auto* e = m->Get("roles")) {
    std::string key = m->Dotted("roles");
    Note(key, e->line);
    w.roles.clear();
    ForEach(*e, key, [&](const YAML::Node& item, const std::string& ikey, int line) {
      Note(ikey, line);
      MapView rm(*this, item, ikey, line);
      if (!rm.ok()) return;
      RoleMapping r;
      ReadString(rm, "subject", &r.subject);
      ReadString(rm, "organization", &r.organization);
      ReadString(rm, "org_unit", &r.org_unit);
      std::string role;
      bool role_ok = false;
      if (ReadString(rm, "role", &role)) {
        role_ok = ParseEnumValue(role, Line(rm.Dotted("role")), rm.Dotted("role"), kRoles, &r.role);
      } else if (Line(rm.Dotted("role")) == 0) {
        Error(line, rm.Dotted("role"), "required (clinician, share, admin or modality)");
      }
      rm.Finish();
      bool by_subject = !r.subject.empty();
      bool by_org = !r.organization.empty() || !r.org_unit.empty();
      if (by_subject && by_org) {
        Error(line, ikey, "set either subject or organization/org_unit, not both");
      } else if (!by_subject && !by_org) {
        Error(line, ikey, "needs a subject or an organization/org_unit to match");
      } else if (by_subject && r.subject.find('=') == std::string::npos) {
        Error(Line(rm.Dotted("subject")), rm.Dotted("subject"),
              "expected a distinguished name in RFC 2253 form, e.g. CN=viewer1,O=Hospital");
      } else if (role_ok) {
        w.roles.push_back(std::move(r));
      }
    });
  }
  m->Finish();
}

void Loader::ReadAdmin(MapView& top) {
  auto m = Section(top, "admin");
  if (!m) return;
  auto& a = config_.admin;
  ReadPath(*m, "socket", &a.socket);
  std::string group;
  if (ReadString(*m, "group", &group, false)) {
    bool ok = group.size() <= 32 && !(group[0] >= '0' && group[0] <= '9') && group[0] != '-' &&
              std::all_of(group.begin(), group.end(), [](char c) { return IsNameChar(c); });
    if (ok) {
      a.group = group;
    } else {
      Error(Line(m->Dotted("group")), m->Dotted("group"), "not a valid group name");
    }
  }
  m->Finish();
}

void Loader::ReadLogging(MapView& top) {
  auto m = Section(top, "logging");
  if (!m) return;
  ReadEnum(*m, "level", kLevels, &config_.logging.level);
  ReadEnum(*m, "sink", kSinks, &config_.logging.sink);
  m->Finish();
}

void Loader::ReadLifecycle(MapView& top) {
  auto m = Section(top, "lifecycle");
  if (!m) return;
  ReadUint(*m, "drain_timeout_seconds", 1, 3600, &config_.lifecycle.drain_timeout_seconds);
  m->Finish();
}

void Loader::ReadAudit(MapView& top) {
  auto m = Section(top, "audit");
  if (!m) return;
  ReadUint(*m, "retention_years", 1, 100, &config_.audit.retention_years);
  if (auto f = Section(*m, "forward")) {
    auto& fw = config_.audit.forward;
    ReadBool(*f, "enabled", &fw.enabled);
    std::string host;
    if (ReadString(*f, "host", &host, false)) {
      if (host.size() <= 253 &&
          (IsIpLiteral(host) || (host.front() != '-' && host.front() != '.' &&
                                 std::all_of(host.begin(), host.end(), [](char c) {
                                   return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                                          (c >= '0' && c <= '9') || c == '.' || c == '-';
                                 })))) {
        fw.host = host;
      } else {
        Error(Line(f->Dotted("host")), f->Dotted("host"),
              "expected a DNS host name or an IP address (the name in the collector's "
              "certificate)");
      }
    }
    ReadUint(*f, "port", 1, 65535, &fw.port);
    ReadPath(*f, "ca", &fw.ca);
    ReadPath(*f, "cert", &fw.cert);
    ReadPath(*f, "key", &fw.key);
    ReadUint(*f, "queue_max", 1, 10000000, &fw.queue_max);
    ReadEnum(*f, "format", kForwardFormats, &fw.format);
    f->Finish();
  }
  m->Finish();
}

const EnumTable<RetentionBasis> kRetentionBases = {{"study_date", RetentionBasis::kStudyDate},
                                                   {"last_access", RetentionBasis::kLastAccess}};

void Loader::ReadRetention(MapView& top) {
  auto m = Section(top, "retention");
  if (!m) return;
  auto& r = config_.retention;
  ReadBool(*m, "enabled", &r.enabled);
  ReadUint(*m, "keep_years", 0, 200, &r.keep_years);
  ReadEnum(*m, "basis", kRetentionBases, &r.basis);
  std::string at;
  if (ReadString(*m, "run_at", &at, false)) {
    bool ok = at.size() == 5 && at[2] == ':' && std::isdigit(static_cast<unsigned char>(at[0])) &&
              std::isdigit(static_cast<unsigned char>(at[1])) &&
              std::isdigit(static_cast<unsigned char>(at[3])) &&
              std::isdigit(static_cast<unsigned char>(at[4]));
    int h = ok ? (at[0] - '0') * 10 + (at[1] - '0') : 0;
    int mi = ok ? (at[3] - '0') * 10 + (at[4] - '0') : 0;
    if (ok && h < 24 && mi < 60) {
      r.run_at_minute = static_cast<uint32_t>(h * 60 + mi);
    } else {
      Error(Line(m->Dotted("run_at")), m->Dotted("run_at"), "expected HH:MM (UTC), e.g. \"02:30\"");
    }
  }
  ReadUint(*m, "batch_size", 1, 10000, &r.batch_size);
  ReadUint(*m, "max_per_run", 1, 1000000, &r.max_per_run);
  if (auto* e = m->Get("rules")) {
    std::string key = m->Dotted("rules");
    Note(key, e->line);
    r.rules.clear();
    ForEach(*e, key, [&](const YAML::Node& item, const std::string& ikey, int line) {
      Note(ikey, line);
      MapView rm(*this, item, ikey, line);
      if (!rm.ok()) return;
      RetentionRule rule;
      const bool has_modality = ReadString(rm, "modality", &rule.modality, false);
      std::string ae;
      const bool has_ae = ReadString(rm, "source_ae", &ae, false);
      if (has_ae) {
        if (ValidAeTitle(ae)) {
          rule.source_ae = ae;
        } else {
          Error(Line(rm.Dotted("source_ae")), rm.Dotted("source_ae"),
                "a calling AE title: 1-16 printable ASCII characters, no backslash");
        }
      }
      if (!has_modality) {
        if (Line(rm.Dotted("modality")) == 0 && Line(rm.Dotted("source_ae")) == 0) {
          Error(line, rm.Dotted("modality"), "required: modality, source_ae, or both");
        }
      } else if (rule.modality.size() > 16 ||
                 !std::all_of(rule.modality.begin(), rule.modality.end(), [](char c) {
                   return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == ' ';
                 })) {
        Error(Line(rm.Dotted("modality")), rm.Dotted("modality"),
              "a DICOM modality code (CS: upper case, digits, _), e.g. MG");
      }
      ReadUint(rm, "keep_years", 0, 200, &rule.keep_years);
      if (Line(rm.Dotted("keep_years")) == 0) Error(line, rm.Dotted("keep_years"), "required");
      rm.Finish();
      r.rules.push_back(std::move(rule));
    });
  }
  m->Finish();
}

void Loader::ReadIntegrity(MapView& top) {
  auto m = Section(top, "integrity");
  if (!m) return;
  if (auto s = Section(*m, "scrub")) {
    auto& sc = config_.integrity.scrub;
    ReadBool(*s, "enabled", &sc.enabled);
    ReadUint(*s, "rate_mb_per_s", 1, 10000, &sc.rate_mb_per_s);
    ReadUint(*s, "interval_hours", 1, 8760, &sc.interval_hours);
    ReadUint(*s, "start_delay_seconds", 0, 604800, &sc.start_delay_seconds);
    s->Finish();
  }
  m->Finish();
}

bool Loader::CheckReadableFile(const Path& p, int line, const std::string& key, struct stat* st) {
  if (::stat(p.c_str(), st) != 0) {
    int err = errno;
    if (err == ENOENT || err == ENOTDIR) {
      Error(line, key, "file not found: " + p.string());
    } else {
      Error(line, key, "cannot stat " + p.string() + ": " + std::strerror(err));
    }
    return false;
  }
  if (!S_ISREG(st->st_mode)) {
    Error(line, key, "not a regular file: " + p.string());
    return false;
  }
  if (::access(p.c_str(), R_OK) != 0) {
    Error(line, key, "not readable: " + p.string() + ": " + std::strerror(errno));
    return false;
  }
  return true;
}

struct NamedListener {
  const char* name;
  const Listener* l;
};

void Loader::CheckListeners() {
  const auto& c = config_;
  const NamedListener all[] = {{"dicom.tls", &c.dicom.tls},
                               {"dicom.plain", &c.dicom.plain},
                               {"hl7.tls", &c.hl7.tls},
                               {"hl7.plain", &c.hl7.plain},
                               {"web.https", &c.web.https}};
  for (size_t i = 0; i < std::size(all); ++i) {
    if (!all[i].l->enabled) continue;
    for (size_t j = 0; j < i; ++j) {
      if (!all[j].l->enabled || all[j].l->port != all[i].l->port) continue;
      const auto& a = all[i].l->bind;
      const auto& b = all[j].l->bind;
      if (a == b || IsWildcard(a) || IsWildcard(b)) {
        // Report where the clash was written: the later listener, unless only the
        // earlier one was set in the file.
        size_t at = i, other = j;
        if (LineOfListener(all[i].name) == 0 && LineOfListener(all[j].name) != 0) {
          at = j;
          other = i;
        }
        Error(LineOfListener(all[at].name), std::string(all[at].name) + ".port",
              "port " + std::to_string(all[at].l->port) + " on " + all[at].l->bind +
                  " is also used by " + all[other].name + " (" + all[other].l->bind + ")");
        break;
      }
    }
  }
  if (!c.web.https.require_client_cert) {
    Error(Line("web.https.require_client_cert"), "web.https.require_client_cert",
          "must be true: the viewer API never serves an unauthenticated peer");
  }
}

void Loader::CheckAllowLists() {
  const auto& d = config_.dicom;
  if (d.max_associations_per_ae > d.max_associations) {
    if (Line("dicom.max_associations_per_ae") != 0 || Line("dicom.max_associations") == 0) {
      Error(Line("dicom.max_associations_per_ae"), "dicom.max_associations_per_ae",
            "must not exceed dicom.max_associations (" + std::to_string(d.max_associations) + ")");
    } else {  // only the total was written: point there
      Error(Line("dicom.max_associations"), "dicom.max_associations",
            "must be at least dicom.max_associations_per_ae (" +
                std::to_string(d.max_associations_per_ae) + ")");
    }
  }
  for (size_t i = 0; i < d.allowed_peers.size(); ++i) {
    std::string key = "dicom.allowed_peers[" + std::to_string(i) + "]";
    if (d.allowed_peers[i].max_associations > d.max_associations) {
      Error(Line(key + ".max_associations"), key + ".max_associations",
            "must not exceed dicom.max_associations (" + std::to_string(d.max_associations) + ")");
    }
  }
  if (d.plain.enabled) {
    bool any = std::any_of(d.allowed_peers.begin(), d.allowed_peers.end(),
                           [](const DicomPeer& p) { return !p.networks.empty(); });
    if (!any) {
      std::string key = "dicom.plain.enabled";
      Error(Line(key), key,
            "the plain listener admits only allowed_peers with networks, and none has any");
    }
  }
  if (config_.hl7.plain.enabled && config_.hl7.allowed_networks.empty()) {
    std::string key = "hl7.plain.enabled";
    Error(Line(key), key, "the plain listener needs hl7.allowed_networks (it is empty)");
  }
}

void Loader::CheckTlsFiles() {
  const auto& c = config_;
  bool any_tls = c.dicom.tls.enabled || c.hl7.tls.enabled || c.web.https.enabled;
  if (!any_tls) return;
  std::vector<std::pair<std::string, Path>> files = {{"tls.certificate", c.tls.certificate},
                                                     {"tls.private_key", c.tls.private_key},
                                                     {"tls.ca_bundle", c.tls.ca_bundle}};
  for (size_t i = 0; i < c.tls.crls.size(); ++i) {
    files.emplace_back("tls.crls[" + std::to_string(i) + "]", c.tls.crls[i]);
  }
  for (const auto& [key, path] : files) {
    int line = Line(key);
    if (path.empty()) {
      Error(line, key, "required when a TLS listener is enabled");
      continue;
    }
    if (!options_.check_files) continue;
    struct stat st;
    CheckReadableFile(path, line, key, &st);
  }
}

void Loader::CheckKeys() {
  const auto& k = config_.keys;
  if (k.keks.empty()) {
    int line = Line("keys.keks");
    Error(line ? line : Line("keys"), "keys.keks", "at least one KEK is required");
    return;
  }
  struct stat root_st;
  bool have_root = options_.check_files && ::stat(config_.storage.root.c_str(), &root_st) == 0;
  std::map<std::string, int> ids;
  for (size_t i = 0; i < k.keks.size(); ++i) {
    const auto& kek = k.keks[i];
    std::string key = "keys.keks[" + std::to_string(i) + "]";
    int line = kek.line ? kek.line : Line("keys.keks");
    if (kek.id.empty()) {
      Error(Line(key + ".id") ? Line(key + ".id") : line, key + ".id", "required, non-empty");
    } else if (kek.id.size() > 64 ||
               !std::all_of(kek.id.begin(), kek.id.end(), [](char c) { return IsNameChar(c); })) {
      Error(Line(key + ".id"), key + ".id", "must be 1-64 characters of A-Z a-z 0-9 . _ -");
    } else if (auto [prev, inserted] = ids.emplace(kek.id, Line(key + ".id")); !inserted) {
      Error(
          Line(key + ".id"), key + ".id",
          "duplicate KEK id '" + kek.id + "' (first at line " + std::to_string(prev->second) + ")");
    }
    bool has_cred = !kek.credential.empty();
    bool has_file = !kek.file.empty();
    if (has_cred == has_file) {
      Error(line, key,
            has_cred ? "set exactly one of credential or file, not both"
                     : "needs a credential (systemd credential name) or a file");
      continue;
    }
    if (has_cred) {
      const auto& cr = kek.credential;
      if (cr == "." || cr == ".." || cr.size() > 255 || cr.find('/') != std::string::npos) {
        Error(Line(key + ".credential"), key + ".credential",
              "must be a plain credential file name (no '/'), e.g. phigate.kek");
      }
      continue;
    }
    if (!options_.check_files) continue;
    std::string fkey = key + ".file";
    int fline = Line(fkey);
    struct stat st;
    if (!CheckReadableFile(kek.file, fline, fkey, &st)) continue;
    if ((st.st_mode & 077) != 0) {
      Error(fline, fkey,
            "mode " + ModeString(st.st_mode) +
                " lets group or others read or write the key; run: chmod 0400 " +
                kek.file.string());
    }
    if (IsUnder(kek.file, config_.storage.root)) {
      Error(fline, fkey,
            "is under storage.root (" + config_.storage.root.string() +
                "); a KEK must never be on the data volume");
    } else if (have_root && config_.storage.require_encrypted_volume &&
               st.st_dev == root_st.st_dev) {
      Error(fline, fkey,
            "is on the same filesystem as storage.root (" + config_.storage.root.string() +
                "); a KEK must never be on the data volume");
    }
  }
  if (k.active.empty()) {
    int line = Line("keys.active");
    Error(line ? line : Line("keys"), "keys.active", "required: the id of the KEK to wrap under");
  } else if (ids.count(k.active) == 0) {
    std::string have;
    for (const auto& [id, l] : ids) have += (have.empty() ? "" : ", ") + id;
    Error(Line("keys.active"), "keys.active",
          "names no configured KEK '" + k.active + "' (configured: " + have + ")");
  }
}

void Loader::CheckStorage() {
  if (!options_.check_files) return;
  const Path& root = config_.storage.root;
  struct stat st;
  if (::stat(root.c_str(), &st) != 0) {
    int err = errno;
    Error(Line("storage.root"), "storage.root",
          err == ENOENT ? "directory not found: " + root.string()
                        : "cannot stat " + root.string() + ": " + std::strerror(err));
  } else if (!S_ISDIR(st.st_mode)) {
    Error(Line("storage.root"), "storage.root", "not a directory: " + root.string());
  }
}

void Loader::CheckAdmin() {
  const Path& sock = config_.admin.socket;
  if (sock.string().size() > kMaxSocketPath) {
    Error(Line("admin.socket"), "admin.socket",
          "too long for a Unix socket (max " + std::to_string(kMaxSocketPath) + " bytes)");
    return;
  }
  if (!options_.check_files) return;
  Path parent = sock.parent_path();
  struct stat st;
  if (::stat(parent.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    Error(Line("admin.socket"), "admin.socket",
          "directory not found: " + parent.string() + " (the socket's directory must exist)");
  }
}

void Loader::CheckAuditForward() {
  const auto& fw = config_.audit.forward;
  const std::string k = "audit.forward";
  auto line_of = [&](const std::string& sub) {
    int l = Line(k + "." + sub);
    return l ? l : Line(k);
  };
  if ((fw.cert.empty()) != (fw.key.empty())) {
    const std::string missing = fw.cert.empty() ? "cert" : "key";
    Error(line_of(fw.cert.empty() ? "key" : "cert"), k + "." + missing,
          "a client certificate needs both cert and key");
  }
  if (!fw.enabled) return;
  if (fw.host.empty())
    Error(line_of("enabled"), k + ".host", "required when forwarding is enabled");
  if (fw.ca.empty()) {
    Error(line_of("enabled"), k + ".ca",
          "required when forwarding is enabled (the CA the collector's certificate chains to)");
  }
  if (!options_.check_files) return;
  for (const auto& [sub, path] :
       {std::pair<const char*, const Path*>{"ca", &fw.ca}, {"cert", &fw.cert}, {"key", &fw.key}}) {
    if (path->empty()) continue;
    struct stat st;
    CheckReadableFile(*path, line_of(sub), k + "." + sub, &st);
  }
}

void Loader::CheckAll() {
  CheckAuditForward();
  CheckListeners();
  CheckAllowLists();
  CheckTlsFiles();
  CheckStorage();
  CheckKeys();
  CheckAdmin();
}

void Loader::Run(const std::string& text) {
  config_.source = name_;
  if (text.find('\0') != std::string::npos) {
    Error(0, "", "contains NUL bytes; not a YAML text file");
    return;
  }
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(text);
  } catch (const YAML::ParserException& e) {
    Error(e.mark.line >= 0 ? e.mark.line + 1 : 0, "", "YAML syntax error: " + e.msg);
    return;
  }
  if (docs.size() > 1) {
    Error(Loader::LineOf(docs[1]), "", "only one YAML document is allowed");
    return;
  }
  YAML::Node root = docs.empty() ? YAML::Node() : docs[0];
  MapView top(*this, root, "", LineOf(root));
  if (!top.ok()) return;
  ReadStorage(top);
  ReadKeys(top);
  ReadTls(top);
  ReadDicom(top);
  ReadHl7(top);
  ReadWeb(top);
  ReadAdmin(top);
  ReadLogging(top);
  ReadLifecycle(top);
  ReadAudit(top);
  ReadRetention(top);
  ReadIntegrity(top);
  top.Finish();
  CheckAll();
}

Result<Config> Finish(Loader& loader, std::vector<ConfigError>* errors) {
  auto& errs = loader.errors();
  std::stable_sort(errs.begin(), errs.end(), [](const ConfigError& a, const ConfigError& b) {
    int la = a.line == 0 ? INT_MAX : a.line;
    int lb = b.line == 0 ? INT_MAX : b.line;
    return la < lb;
  });
  if (errors != nullptr) *errors = errs;
  if (errs.empty()) return std::move(loader.config());
  std::string msg;
  for (const auto& e : errs) {
    if (!msg.empty()) msg += '\n';
    msg += e.ToString();
  }
  return Status::InvalidArgument(msg);
}

}  // namespace

Result<Config> LoadFromString(const std::string& yaml, const Path& name, Env& env,
                              const LoadOptions& options, std::vector<ConfigError>* errors) {
  Loader loader(name, env, options);
  try {
    loader.Run(yaml);
  } catch (const YAML::Exception& e) {
    loader.Error(e.mark.line >= 0 ? e.mark.line + 1 : 0, "", std::string("YAML error: ") + e.msg);
  } catch (const std::exception& e) {
    loader.Error(0, "", std::string("internal error while reading the config: ") + e.what());
  }
  return Finish(loader, errors);
}

Result<Config> LoadFromString(const std::string& yaml, const Path& name, Env& env,
                              std::vector<ConfigError>* errors) {
  return LoadFromString(yaml, name, env, LoadOptions{}, errors);
}

Result<Config> Load(const Path& file, Env& env, const LoadOptions& options,
                    std::vector<ConfigError>* errors) {
  auto text = env.ReadSmallFile(file, kMaxConfigBytes);
  if (!text.ok()) {
    ConfigError e{file, 0, "", "cannot read the config: " + text.status().message()};
    if (errors != nullptr) *errors = {e};
    return Status::InvalidArgument(e.ToString());
  }
  return LoadFromString(*text, file, env, options, errors);
}

Result<Config> Load(const Path& file, Env& env, std::vector<ConfigError>* errors) {
  return Load(file, env, LoadOptions{}, errors);
}

Result<Network> ParseNetwork(const std::string& text) {
  const Status bad = Status::InvalidArgument(
      "invalid network: expected an address or CIDR, e.g. 10.0.0.0/8, 192.168.1.20, fd00::/8");
  if (text.empty() || text.size() > 64) return bad;
  Network net;
  net.text = text;
  std::string addr = text;
  int prefix = -1;
  if (auto slash = text.find('/'); slash != std::string::npos) {
    addr = text.substr(0, slash);
    std::string p = text.substr(slash + 1);
    if (p.empty() || p.size() > 3 ||
        !std::all_of(p.begin(), p.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return bad;
    }
    prefix = std::stoi(p);
  }
  int max_prefix;
  if (::inet_pton(AF_INET, addr.c_str(), net.addr) == 1) {
    max_prefix = 32;
  } else if (::inet_pton(AF_INET6, addr.c_str(), net.addr) == 1) {
    net.v6 = true;
    max_prefix = 128;
  } else {
    return bad;
  }
  if (prefix < 0) prefix = max_prefix;
  if (prefix > max_prefix) {
    return Status::InvalidArgument("invalid network: prefix length must be 0-" +
                                   std::to_string(max_prefix));
  }
  net.prefix_len = static_cast<uint8_t>(prefix);
  // Host bits beyond the prefix must be zero: "10.1.2.3/8" is almost always a typo.
  uint8_t masked[16];
  std::memcpy(masked, net.addr, sizeof masked);
  bool host_bits = false;
  for (int bit = prefix; bit < max_prefix; ++bit) {
    uint8_t m = static_cast<uint8_t>(0x80u >> (bit % 8));
    if (masked[bit / 8] & m) {
      host_bits = true;
      masked[bit / 8] = static_cast<uint8_t>(masked[bit / 8] & ~m);
    }
  }
  if (host_bits) {
    char buf[INET6_ADDRSTRLEN];
    ::inet_ntop(net.v6 ? AF_INET6 : AF_INET, masked, buf, sizeof buf);
    return Status::InvalidArgument("invalid network: host bits set beyond /" +
                                   std::to_string(prefix) + " (did you mean " + buf + "/" +
                                   std::to_string(prefix) + "?)");
  }
  return net;
}

bool NetworkContains(const Network& net, const std::string& addr) {
  if (addr.size() > 64) return false;
  uint8_t a[16] = {};
  bool v6;
  if (::inet_pton(AF_INET, addr.c_str(), a) == 1) {
    v6 = false;
  } else if (::inet_pton(AF_INET6, addr.c_str(), a) == 1) {
    v6 = true;
  } else {
    return false;
  }
  static constexpr uint8_t kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (v6 && !net.v6 && std::memcmp(a, kMappedPrefix, 12) == 0) {
    std::memmove(a, a + 12, 4);  // ::ffff:a.b.c.d -> a.b.c.d
    std::memset(a + 4, 0, 12);
    v6 = false;
  } else if (!v6 && net.v6) {
    std::memmove(a + 12, a, 4);  // a.b.c.d -> ::ffff:a.b.c.d
    std::memcpy(a, kMappedPrefix, 12);
    v6 = true;
  }
  if (v6 != net.v6) return false;
  int max_prefix = net.v6 ? 128 : 32;
  int prefix = std::min<int>(net.prefix_len, max_prefix);
  int full = prefix / 8;
  if (std::memcmp(a, net.addr, static_cast<size_t>(full)) != 0) return false;
  int rest = prefix % 8;
  if (rest == 0) return true;
  auto mask = static_cast<uint8_t>(0xffu << (8 - rest));
  return (a[full] & mask) == (net.addr[full] & mask);
}

}  // namespace phi::config
