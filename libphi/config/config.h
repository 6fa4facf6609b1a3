// phi::config: the typed, validated configuration of phigated.
//
// One YAML file (conf/phigate.yaml is the annotated default). Load() turns it
// into a Config or returns every problem found, each naming the file, the
// line and the dotted key ("phigate.yaml:42: dicom.plain.port: must be 1-65535").
// Defaults live in one place: the member initialisers below.
// Thread-safety: Config is a plain value; copy it or share it const.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "libphi/util/env.h"
#include "libphi/util/log.h"
#include "libphi/util/status.h"

namespace phi::config {

// An IPv4 or IPv6 network in CIDR form ("10.0.0.0/8", "::1/128", "127.0.0.1").
struct Network {
  std::string text;  // as written, for messages and status output
  bool v6 = false;
  uint8_t addr[16] = {};   // network address, v4 in the first 4 bytes
  uint8_t prefix_len = 0;  // 0..32 or 0..128

  bool operator==(const Network&) const = default;
};

enum class TlsProfile : uint8_t { kBcp195, kBcp195Nd, kBcp195Extended };

// The server's TLS material, shared by every TLS listener.
struct TlsConfig {
  Path certificate = "/etc/phigate/tls/server.pem";  // PEM server certificate (chain)
  Path private_key = "/etc/phigate/tls/server.key";  // PEM private key
  Path ca_bundle = "/etc/phigate/tls/ca.pem";  // PEM CAs that client certificates must chain to
  std::vector<Path> crls;  // PEM CRLs; checked for the whole chain when non-empty
  TlsProfile profile = TlsProfile::kBcp195;

  bool operator==(const TlsConfig&) const = default;
};

struct Listener {
  bool enabled = false;
  std::string bind = "0.0.0.0";
  uint16_t port = 0;
  bool require_client_cert = true;  // TLS listeners only

  bool operator==(const Listener&) const = default;
};

enum class DuplicatePolicy : uint8_t { kKeepFirst, kReplace };

struct StorageConfig {
  Path root = "/var/lib/phigate";
  bool require_encrypted_volume = true;
  DuplicatePolicy duplicate_policy = DuplicatePolicy::kKeepFirst;

  bool operator==(const StorageConfig&) const = default;
};

// One key-encryption key: from a systemd credential or a key file.
struct KekConfig {
  std::string id;          // stable name, bound into every wrapped key's AAD
  std::string credential;  // name under $CREDENTIALS_DIRECTORY, or empty
  Path file;               // key file path (mode 0400, not on the storage volume), or empty
  int line = 0;            // line in the config file, for later error messages

  bool operator==(const KekConfig&) const = default;
};

// Default: one KEK from the systemd credential "phigate.kek" (LoadCredentialEncrypted=).
struct KeysConfig {
  std::string active = "kek-1";  // id of the KEK new study keys are wrapped under
  std::vector<KekConfig> keks = {KekConfig{"kek-1", "phigate.kek", {}, 0}};

  bool operator==(const KeysConfig&) const = default;
};

// A DICOM peer allowed to associate.
struct DicomPeer {
  std::string ae_title;             // calling AE title ("*" matches any: dev only)
  std::vector<Network> networks;    // source networks; empty = any (TLS only)
  std::string certificate_subject;  // bind the AE to this client cert subject DN
  uint32_t max_associations = 0;    // 0 = the global per-AE limit

  bool operator==(const DicomPeer&) const = default;
};

struct DicomConfig {
  std::string ae_title = "PHIGATE";
  Listener tls{true, "0.0.0.0", 2762, true};
  Listener plain{false, "0.0.0.0", 11112, false};
  uint32_t max_pdu_bytes = 131072;
  uint32_t max_associations = 32;
  uint32_t max_associations_per_ae = 8;
  uint32_t acse_timeout_seconds = 30;
  uint32_t dimse_timeout_seconds = 60;
  uint32_t network_timeout_seconds = 60;
  std::vector<DicomPeer> allowed_peers;

  bool operator==(const DicomConfig&) const = default;
};

struct Hl7Config {
  Listener tls{true, "0.0.0.0", 2576, true};
  Listener plain{false, "0.0.0.0", 2575, false};
  std::vector<Network> allowed_networks;  // for the plain listener
  uint64_t max_message_bytes = 16ull * 1024 * 1024;
  uint32_t max_connections = 64;
  uint32_t idle_timeout_seconds = 600;
  uint32_t read_timeout_seconds = 30;

  bool operator==(const Hl7Config&) const = default;
};

enum class Role : uint8_t { kClinician, kShare, kAdmin, kModality };

// Maps a client certificate to a role: an exact subject DN, or O/OU patterns.
struct RoleMapping {
  std::string subject;       // exact DN in RFC 2253 form, or empty
  std::string organization;  // O= must equal this, when set
  std::string org_unit;      // OU= must equal this, when set
  Role role = Role::kClinician;

  bool operator==(const RoleMapping&) const = default;
};

struct WebConfig {
  Listener https{true, "0.0.0.0", 8443, true};
  uint64_t max_body_bytes = 512ull * 1024 * 1024;
  uint32_t max_header_bytes = 16 * 1024;
  uint32_t max_connections = 256;
  uint32_t header_timeout_seconds = 10;
  uint32_t body_timeout_seconds = 120;
  uint32_t idle_timeout_seconds = 60;
  std::vector<RoleMapping> roles;

  bool operator==(const WebConfig&) const = default;
};

struct AdminConfig {
  Path socket = "/run/phigate/admin.sock";
  std::string group = "phigate-admin";

  bool operator==(const AdminConfig&) const = default;
};

struct LoggingConfig {
  log::Level level = log::Level::kInfo;
  log::Sink sink = log::Sink::kAuto;

  bool operator==(const LoggingConfig&) const = default;
};

struct LifecycleConfig {
  uint32_t drain_timeout_seconds = 30;

  bool operator==(const LifecycleConfig&) const = default;
};

// Live forwarding of audit records to a syslog-over-TLS collector (RFC 5425;
// libphi/audit/syslog_forwarder.h). Off by default.
enum class AuditForwardFormat : uint8_t { kAtna, kJsonl };

struct AuditForwardConfig {
  bool enabled = false;
  std::string host;            // collector host name or IP; its certificate must name it
  uint16_t port = 6514;        // RFC 5425 port
  Path ca;                     // PEM CAs the collector's certificate must chain to
  Path cert;                   // PEM client certificate (chain), optional (with key)
  Path key;                    // PEM client private key, optional (with cert)
  uint32_t queue_max = 10000;  // records at most behind; older ones are dropped (counted)
  AuditForwardFormat format = AuditForwardFormat::kAtna;

  bool operator==(const AuditForwardConfig&) const = default;
};

struct AuditConfig {
  uint32_t retention_years = 6;
  AuditForwardConfig forward;

  bool operator==(const AuditConfig&) const = default;
};

// Study retention (services/retention.h): studies are erased N years after
// their StudyDate (or their last access), per modality if configured, by a
// scheduler at a time of day, in bounded batches. Legal hold always wins.
enum class RetentionBasis { kStudyDate, kLastAccess };

// A rule matches on modality, on source AE, or on both (then both must match).
struct RetentionRule {
  std::string modality;     // a series of the study has this modality (e.g. "MG"), or ""
  uint32_t keep_years = 0;  // 0 = keep forever
  std::string source_ae;    // the calling AE title that first stored the study, or ""

  bool operator==(const RetentionRule&) const = default;
};

struct RetentionConfig {
  bool enabled = false;     // the scheduler erases due studies only when true
  uint32_t keep_years = 0;  // default for every study; 0 = keep forever
  RetentionBasis basis = RetentionBasis::kStudyDate;
  std::vector<RetentionRule> rules;  // matching rules: the longest keep wins; none: keep_years
  uint32_t run_at_minute = 150;      // minutes after 00:00 UTC ("02:30")
  uint32_t batch_size = 100;         // studies erased per batch
  uint32_t max_per_run = 10000;      // studies erased per daily run at most

  bool operator==(const RetentionConfig&) const = default;
};

// Background scrub (services/integrity.h): a daemon thread re-reads every
// object (every AES-GCM tag) and checks the catalog like `phigatectl verify`,
// at a bounded rate, and reports problems (log + audit); it never modifies.
struct ScrubConfig {
  bool enabled = true;
  uint32_t rate_mb_per_s = 20;         // read budget in MiB/s (1-10000)
  uint32_t interval_hours = 168;       // from the end of one pass to the start of the next
  uint32_t start_delay_seconds = 600;  // the first pass starts this long after start-up

  bool operator==(const ScrubConfig&) const = default;
};

struct IntegrityConfig {
  ScrubConfig scrub;

  bool operator==(const IntegrityConfig&) const = default;
};

struct Config {
  Path source;  // the file this was loaded from
  StorageConfig storage;
  KeysConfig keys;
  TlsConfig tls;
  DicomConfig dicom;
  Hl7Config hl7;
  WebConfig web;
  AdminConfig admin;
  LoggingConfig logging;
  LifecycleConfig lifecycle;
  AuditConfig audit;
  RetentionConfig retention;
  IntegrityConfig integrity;

  bool operator==(const Config&) const = default;
};

// One problem found in a config file.
struct ConfigError {
  Path file;
  int line = 0;     // 1-based; 0 when the problem has no single line
  std::string key;  // dotted path, e.g. "dicom.plain.port"
  std::string message;
  std::string ToString() const;  // "file:line: key: message"
};

// How much Load() checks beyond the text itself.
struct LoadOptions {
  // When false, skip every check that looks at the filesystem: TLS files, KEK files (existence,
  // mode, volume), storage.root and the admin socket's directory. For linting a config away from
  // the machine it is meant for (and for the test of the shipped default).
  bool check_files = true;
};

// Parses and validates. On failure returns InvalidArgument whose message is every
// ConfigError's ToString(), one per line; `errors`, when given, receives them.
Result<Config> Load(const Path& file, Env& env, std::vector<ConfigError>* errors = nullptr);

// The same for YAML text (tests, the embedded dev default); `name` is used in errors.
Result<Config> LoadFromString(const std::string& yaml, const Path& name, Env& env,
                              std::vector<ConfigError>* errors = nullptr);

// The same with explicit options.
Result<Config> Load(const Path& file, Env& env, const LoadOptions& options,
                    std::vector<ConfigError>* errors = nullptr);
Result<Config> LoadFromString(const std::string& yaml, const Path& name, Env& env,
                              const LoadOptions& options,
                              std::vector<ConfigError>* errors = nullptr);

// Names as written in the YAML ("bcp195-nd", "keep-first", "clinician"), for status output.
std::string_view TlsProfileName(TlsProfile p);
std::string_view DuplicatePolicyName(DuplicatePolicy p);
std::string_view RoleName(Role r);
std::string_view AuditForwardFormatName(AuditForwardFormat f);

// Parses "10.0.0.0/8", "::1/128" or a bare address (a /32 or /128 host network).
// Fails (InvalidArgument, message without the input) on bad syntax, a prefix out of range, or
// host bits set beyond the prefix.
Result<Network> ParseNetwork(const std::string& text);

// True when `addr` (textual IPv4/IPv6) is in `net`. An IPv4-mapped IPv6 address
// (::ffff:a.b.c.d, as seen on dual-stack sockets) matches IPv4 networks. Unparsable
// addresses (including scoped "fe80::1%eth0") are in no network.
bool NetworkContains(const Network& net, const std::string& addr);

}  // namespace phi::config
