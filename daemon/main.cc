// phigated: the composition root (STYLE.md "Composition root").
//
// Owns the process lifecycle: options, config, signals (blocked in every thread,
// handled here on the main thread with sigtimedwait), sd_notify READY/STATUS/
// WATCHDOG/RELOADING/STOPPING, the storage-root checks, and the construction and
// destruction order of every component. Only this file knows concrete types.
// Thread-safety: main thread only, except the admin "status" handler, which reads
// the shared DaemonState under its mutex.
#include <grp.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "daemon/audit_wiring.h"
#include "daemon/dicom_wiring.h"
#include "daemon/hl7_wiring.h"
#include "daemon/web_wiring.h"
#include "libphi/admin/admin_server.h"
#include "libphi/audit/audit_log.h"
#include "libphi/backup/restore.h"
#include "libphi/config/config.h"
#include "libphi/config/dev_config.h"
#include "libphi/config/server.h"
#include "libphi/dicom/dicom_server.h"
#include "libphi/hl7/ack.h"
#include "libphi/hl7/hl7_server.h"
#include "libphi/services/ingest.h"
#include "libphi/services/integrity.h"
#include "libphi/services/key_rotation.h"
#include "libphi/services/storage_stack.h"
#include "libphi/tls/asio_runner.h"
#include "libphi/tls/tls_context_provider.h"
#include "libphi/util/env.h"
#include "libphi/util/log.h"
#include "libphi/util/status.h"
#include "libphi/util/volume.h"
#include "libphi/vault/key_vault.h"
#include "libphi/web/router.h"
#include "libphi/web/web_server.h"

#ifndef PHI_VERSION
#define PHI_VERSION "0.0.0"
#endif

namespace phi::daemon {
namespace {

using nlohmann::json;

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

struct Options {
  std::string config = "/etc/phigate/phigate.yaml";
  std::string check_config;
  std::string print_dev_config;
  std::string log_level;
  std::string restore;
};

// What the admin "status" command reports; written by the main thread, read by
// admin connection threads.
struct DaemonState {
  std::mutex mu;
  config::Config cfg;                        // GUARDED_BY(mu)
  VolumeInfo volume;                         // GUARDED_BY(mu)
  std::vector<std::string> warnings;         // GUARDED_BY(mu)
  log::Level log_level = log::Level::kInfo;  // GUARDED_BY(mu)
  Path config_file;
  MonotonicTime started;
  std::vector<Server*> servers;             // set before the admin socket starts; immutable after
  services::StorageStack* stack = nullptr;  // set before the admin socket starts
  std::function<json()> integrity_status;   // set before the admin socket starts
  audit::SyslogForwarder* forwarder = nullptr;  // set before the admin socket starts
};

// One clear line on stderr (and the journal when we run under systemd).
void Fatal(std::string_view what) {
  std::fprintf(stderr, "phigated: %.*s\n", static_cast<int>(what.size()), what.data());
  if (std::getenv("JOURNAL_STREAM") != nullptr) {
    PHI_LOG(kCritical, "startup failed", {{"reason", log::Safe(what)}});
  }
}

std::string ErrorText(const config::ConfigError& e) { return e.ToString(); }
Result<config::Config> LoadConfig(const Path& file, Env& env,
                                  std::vector<config::ConfigError>* errors) {
  return config::Load(file, env, errors);
}

// TLS material of every enabled TLS listener loads (certificate, key, CA, CRLs).
Status CheckTls(const config::Config& cfg, Env& env) {
  bool any = cfg.dicom.tls.enabled || cfg.hl7.tls.enabled || cfg.web.https.enabled;
  if (!any) return Status::Ok();
  auto ctx = tls::BuildServerContext(cfg.tls, /*require_client_cert=*/true, env);
  if (!ctx.ok()) return ctx.status().WithContext("tls");
  return Status::Ok();
}

// Every configured KEK loads and passes the vault's checks (mode, location, size).
Status CheckKeks(const config::Config& cfg, Env& env) {
  vault::VaultOptions opts;
  opts.kek_off_storage_filesystem = cfg.storage.require_encrypted_volume;
  return vault::KeyVault::Open(cfg.keys, cfg.storage.root, env, opts).status();
}

int CheckConfig(const Path& file, Env& env) {
  std::vector<config::ConfigError> errors;
  auto cfg = LoadConfig(file, env, &errors);
  if (!cfg.ok()) {
    if (errors.empty()) {
      std::fprintf(stderr, "%s\n", cfg.status().ToString().c_str());
    }
    for (const auto& e : errors) std::fprintf(stderr, "%s\n", ErrorText(e).c_str());
    return kExitFailure;
  }
  bool ok = true;
  for (Status s : {CheckTls(*cfg, env), CheckKeks(*cfg, env)}) {
    if (!s.ok()) {
      std::fprintf(stderr, "%s: %s\n", file.c_str(), s.ToString().c_str());
      ok = false;
    }
  }
  if (!ok) return kExitFailure;
  std::printf("configuration OK\n");
  return kExitOk;
}

// The storage root exists, is a directory on an acceptable volume, is writable by
// us, and has tmp/ and objects/ (mode 0700).
Status PrepareStorage(const config::StorageConfig& st, Env& env, VolumeInfo* volume) {
  struct stat sb;
  if (::stat(st.root.c_str(), &sb) != 0) {
    return PosixError("storage root " + st.root.string(), errno);
  }
  if (!S_ISDIR(sb.st_mode)) {
    return Status::InvalidArgument("storage root " + st.root.string() + " is not a directory");
  }
  PHI_RETURN_IF_ERROR(EnforceEncryptedVolume(st, env, volume));

  // A real write, not access(2): catches read-only mounts and full quotas too.
  std::array<std::byte, 8> rnd;
  PHI_RETURN_IF_ERROR(env.RandomBytes(rnd));
  char name[64];
  std::snprintf(name, sizeof name, ".write-probe-%02x%02x%02x%02x", static_cast<int>(rnd[0]),
                static_cast<int>(rnd[1]), static_cast<int>(rnd[2]), static_cast<int>(rnd[3]));
  Path probe = st.root / name;
  {
    auto f = env.NewWritableFile(probe);
    if (!f.ok()) {
      return f.status().WithContext("storage root " + st.root.string() +
                                    " is not writable by uid " + std::to_string(::geteuid()));
    }
    Status s = (*f)->Sync();
    Status c = (*f)->Close();
    (void)env.RemoveFile(probe);
    PHI_RETURN_IF_ERROR(s.WithContext("storage root " + st.root.string() + " cannot be synced"));
    PHI_RETURN_IF_ERROR(c);
  }
  for (const char* sub : {"tmp", "objects"}) {
    Path d = st.root / sub;
    PHI_RETURN_IF_ERROR(env.CreateDirs(d));
    if (::chmod(d.c_str(), 0700) != 0) return PosixError("chmod 0700 " + d.string(), errno);
  }
  return Status::Ok();
}

std::string PortOf(const std::string& address) {
  size_t c = address.rfind(':');
  return c == std::string::npos ? address : address.substr(c + 1);
}

std::string StatusLine(const std::vector<Server*>& servers, const VolumeInfo& v) {
  std::string s = "listening:";
  for (Server* srv : servers) {
    for (const auto& l : srv->Listeners()) {
      if (l.state != "listening" || l.name == "admin") continue;
      s += " " + l.name + ":" + PortOf(l.address);
    }
  }
  if (s == "listening:") s += " admin only";
  s += "; storage encrypted=";
  s += v.encrypted ? "yes" : "no";
  return s;
}

void Notify(const std::string& msg) {
  if (sd_notify(0, msg.c_str()) < 0) {
    PHI_LOG(kWarning, "sd_notify failed");
  }
}

// Appends an audit record for a daemon-level event (config reload, refused
// admin peer). Failures are logged: the event itself already happened.
void AuditEvent(services::StorageStack* stack, std::string actor, std::string action,
                std::string object, std::string outcome, std::string peer = "") {
  if (stack == nullptr) return;
  audit::AuditEvent ev;
  ev.actor = std::move(actor);
  ev.action = std::move(action);
  ev.object = std::move(object);
  ev.outcome = std::move(outcome);
  ev.peer = std::move(peer);
  Status s = stack->catalog().Write(
      [&](index::WriteTxn& txn) -> Status { return txn.AppendAudit(ev).status(); });
  if (!s.ok()) PHI_LOG(kError, "audit append failed", {{"status", s}});
}

json StatusJson(DaemonState& state, Env& env) {
  json listeners = json::array();
  for (Server* srv : state.servers) {
    for (const auto& l : srv->Listeners()) {
      listeners.push_back({{"name", l.name},
                           {"address", l.address},
                           {"tls", l.tls},
                           {"state", l.state},
                           {"open_connections", l.open_connections},
                           {"accepted_total", l.accepted_total},
                           {"refused_total", l.refused_total}});
    }
  }
  json counts = nullptr;
  if (state.stack != nullptr) {
    if (auto c = state.stack->catalog().CountObjects(); c.ok()) {
      counts = {{"studies", c->studies},
                {"series", c->series},
                {"instances", c->instances},
                {"bytes", c->total_bytes}};
    }
  }
  std::lock_guard<std::mutex> lock(state.mu);
  const auto& v = state.volume;
  json disk = nullptr;
  if (auto d = env.GetDiskSpace(state.cfg.storage.root); d.ok()) {
    disk = {{"total_bytes", d->total_bytes}, {"available_bytes", d->available_bytes}};
  }
  auto uptime =
      std::chrono::duration_cast<std::chrono::seconds>(env.Monotonic() - state.started).count();
  return json{
      {"version", PHI_VERSION},
      {"pid", ::getpid()},
      {"uptime_seconds", uptime},
      {"config_file", state.config_file.string()},
      {"listeners", listeners},
      {"storage",
       {{"root", state.cfg.storage.root.string()},
        {"volume",
         {{"encrypted", v.encrypted},
          {"required", state.cfg.storage.require_encrypted_volume},
          {"device", v.source},
          {"mount_point", v.mount_point.string()},
          {"fs_type", v.fs_type},
          {"dm_name", v.dm_name},
          {"dm_uuid_prefix", v.DmUuidPrefix()}}},
        {"disk", disk}}},
      {"counts", counts},
      {"integrity", state.integrity_status ? state.integrity_status() : json(nullptr)},
      {"audit_forward",
       state.forwarder != nullptr ? AuditForwardStatusJson(*state.forwarder) : json(nullptr)},
      {"log_level", std::string(log::LevelName(state.log_level))},
      {"warnings", state.warnings},
  };
}

std::string AdminActor(const admin::PeerCred& peer) {
  return "admin:uid=" + std::to_string(peer.uid);
}

Result<std::string> StringArg(const json& args, const char* name) {
  auto it = args.find(name);
  if (it == args.end() || !it->is_string() || it->get<std::string>().empty()) {
    return Status::InvalidArgument(std::string("--") + name + " is required");
  }
  return it->get<std::string>();
}

// The admin commands over the storage services (erase, rotate-kek, audit verify).
void RegisterStorageCommands(admin::AdminServer& admin, services::StorageStack& stack) {
  admin.Register("erase", admin::kDestructive,
                 [&stack](const json& args, const admin::PeerCred& peer) -> Result<json> {
                   PHI_ASSIGN_OR_RETURN(std::string uid, StringArg(args, "study"));
                   PHI_ASSIGN_OR_RETURN(std::string reason, StringArg(args, "reason"));
                   PHI_ASSIGN_OR_RETURN(services::ErasureCertificate cert,
                                        stack.erasure().EraseStudy(uid, AdminActor(peer), reason));
                   return json::parse(cert.ToJson());
                 });
  admin.Register(
      "rotate-kek", admin::kDestructive,
      [&stack](const json& args, const admin::PeerCred& peer) -> Result<json> {
        size_t batch = 256;
        if (auto it = args.find("batch"); it != args.end() && it->is_number_unsigned()) {
          batch = std::clamp<size_t>(it->get<size_t>(), 1, 10000);
        }
        PHI_ASSIGN_OR_RETURN(
            services::RotationReport r,
            services::RotateKek(stack.vault(), stack.catalog(), AdminActor(peer), batch,
                                [](size_t examined, size_t rewrapped) {
                                  PHI_LOG(kInfo, "rotate-kek progress",
                                          {{"examined", examined}, {"rewrapped", rewrapped}});
                                }));
        return json{{"active_kek", stack.vault().active_kek_id()},
                    {"examined", r.examined},
                    {"rewrapped", r.rewrapped},
                    {"batches", r.batches},
                    {"derivation_secret_rewrapped", r.derivation_secret_rewrapped}};
      });
  admin.Register("audit verify", admin::kReadOnly,
                 [&stack](const json&, const admin::PeerCred&) -> Result<json> {
                   PHI_ASSIGN_OR_RETURN(audit::VerifyReport r,
                                        audit::Verify(stack.catalog(), stack.AuditMac()));
                   return json{{"ok", r.ok},
                               {"records", r.count},
                               {"last_seq", r.last_seq},
                               {"broken_seq", r.broken_seq},
                               {"reason", std::string(audit::BreakReasonName(r.reason))}};
                 });
}

std::vector<std::string> Warnings(const config::Config& cfg, const VolumeInfo& v,
                                  const std::vector<Server*>& servers) {
  std::vector<std::string> w;
  // Enabled in the config but not (yet) built into this phigated.
  std::vector<std::string> have;
  for (Server* s : servers) {
    for (const auto& l : s->Listeners()) have.push_back(l.name);
  }
  auto want = [&](bool enabled, const char* name) {
    if (enabled && std::find(have.begin(), have.end(), name) == have.end()) {
      w.push_back(std::string("listener ") + name +
                  " is enabled in the config but not available in this build");
    }
  };
  want(cfg.dicom.tls.enabled, "dicom-tls");
  want(cfg.dicom.plain.enabled, "dicom");
  want(cfg.hl7.tls.enabled, "hl7-tls");
  want(cfg.hl7.plain.enabled, "hl7");
  want(cfg.web.https.enabled, "https");
  if (!v.encrypted) {
    w.push_back(cfg.storage.require_encrypted_volume
                    ? "storage volume is not encrypted"
                    : "storage volume is not encrypted (storage.require_encrypted_volume: false)");
  }
  return w;
}

// phigated --restore DIR: offline restore of a backup onto the EMPTY storage
// root of the config (libphi/backup/restore.h), then the normal start-up
// checks: open the storage with the configured KEKs, recovery, verify every
// object, verify the audit chain; append a "restore" audit record. Exit 0
// only if all of it passed.
int RunRestore(const Options& opts) {
  Env& env = Env::Default();
  log::Init(log::Sink::kStderr, log::Level::kNotice);
  std::vector<config::ConfigError> errors;
  auto loaded = LoadConfig(opts.config, env, &errors);
  if (!loaded.ok()) {
    if (errors.empty()) Fatal(loaded.status().ToString());
    for (const auto& e : errors) Fatal(ErrorText(e));
    return kExitFailure;
  }
  const config::Config cfg = std::move(loaded).value();
  const Path dir = Path(opts.restore);
  if (!dir.is_absolute()) {
    Fatal("--restore needs an absolute backup directory");
    return kExitUsage;
  }
  VolumeInfo volume;
  if (Status s = PrepareStorage(cfg.storage, env, &volume); !s.ok()) {
    Fatal(s.ToString());
    return kExitFailure;
  }
  auto lock = backup::StorageLock::Acquire(cfg.storage.root);
  if (!lock.ok()) {
    Fatal(lock.status().ToString());
    return kExitFailure;
  }
  std::vector<std::string> kek_ids;
  for (const auto& k : cfg.keys.keks) kek_ids.push_back(k.id);
  std::printf("checking %s (MANIFEST and the SHA-256 of every file)...\n", dir.c_str());
  std::fflush(stdout);
  auto restored = backup::RestoreBackup(env, dir, cfg.storage.root, kek_ids);
  if (!restored.ok()) {
    Fatal(restored.status().ToString());
    return kExitFailure;
  }
  std::printf("restored %lld objects (%lld bytes) and catalog.db of storage %s, backup of %s\n",
              static_cast<long long>(restored->objects),
              static_cast<long long>(restored->object_bytes), restored->storage_id.c_str(),
              restored->created.c_str());
  auto opened = services::StorageStack::Open(cfg.keys, cfg.storage, env);
  if (!opened.ok()) {
    Fatal(opened.status().WithContext("open the restored storage").ToString());
    return kExitFailure;
  }
  std::unique_ptr<services::StorageStack> stack = std::move(opened).value();
  if (auto rec = stack->Recover(); !rec.ok()) {
    Fatal(rec.status().WithContext("storage recovery").ToString());
    return kExitFailure;
  }
  auto rep = services::VerifyStorage(stack->vault(), stack->catalog(), stack->objects(),
                                     stack->keys(), services::VerifyOptions{});
  if (!rep.ok()) {
    Fatal(rep.status().WithContext("verify").ToString());
    return kExitFailure;
  }
  auto chain = audit::Verify(stack->catalog(), stack->AuditMac());
  if (!chain.ok()) {
    Fatal(chain.status().WithContext("audit verify").ToString());
    return kExitFailure;
  }
  const bool ok = rep->ok() && chain->ok && rep->instances == restored->objects;
  std::printf("verify: %lld studies, %lld instances, %lld bytes authenticated, %lld problems\n",
              static_cast<long long>(rep->studies), static_cast<long long>(rep->instances),
              static_cast<long long>(rep->bytes), static_cast<long long>(rep->problem_count));
  for (const auto& p : rep->problems) {
    std::printf("  %s %s (study_pk %lld): %s\n", p.kind.c_str(), p.object.c_str(),
                static_cast<long long>(p.study_pk), p.detail.c_str());
  }
  std::printf("audit chain %s: %lld records\n", chain->ok ? "OK" : "BROKEN",
              static_cast<long long>(chain->count));
  audit::AuditEvent ev;
  ev.actor = "restore:uid=" + std::to_string(::getuid());
  ev.action = "restore";
  ev.object = "storage";
  ev.outcome = ok ? "ok" : "error:verify";
  json d{{"dir", dir.string()},
         {"storage_id", restored->storage_id},
         {"backup_created", restored->created},
         {"objects", restored->objects},
         {"verified_instances", rep->instances},
         {"problems", rep->problem_count},
         {"audit_chain_ok", chain->ok}};
  ev.detail = d.dump();
  Status s = stack->catalog().Write(
      [&](index::WriteTxn& txn) -> Status { return txn.AppendAudit(ev).status(); });
  if (!s.ok()) Fatal(s.WithContext("audit the restore").ToString());
  std::printf("%s\n", ok && s.ok() ? "restore OK: start phigated on this storage root"
                                   : "restore FAILED the checks above");
  return ok && s.ok() ? kExitOk : kExitFailure;
}

int Run(const Options& opts, sigset_t sigs) {
  Env& env = Env::Default();
  log::Level cli_level = log::Level::kInfo;
  bool have_cli_level = !opts.log_level.empty();
  if (have_cli_level && !log::ParseLevel(opts.log_level, &cli_level)) {
    std::fprintf(stderr, "phigated: --log-level: unknown level '%s'\n", opts.log_level.c_str());
    return kExitUsage;
  }
  log::Init(log::Sink::kAuto, have_cli_level ? cli_level : log::Level::kInfo);

  // 1. Config.
  const Path config_file = opts.config;
  std::vector<config::ConfigError> errors;
  auto loaded = LoadConfig(config_file, env, &errors);
  if (!loaded.ok()) {
    if (errors.empty()) Fatal(loaded.status().ToString());
    for (const auto& e : errors) Fatal(ErrorText(e));
    return kExitFailure;
  }
  config::Config cfg = std::move(loaded).value();
  log::Level level = have_cli_level ? cli_level : cfg.logging.level;
  log::Init(cfg.logging.sink, level);
  PHI_LOG(kInfo, "phigated starting",
          {{"version", log::Safe(PHI_VERSION)}, {"config", log::Safe(config_file.string())}});

  // 2. TLS material (the KEKs are loaded by the vault with the storage below).
  if (Status s = CheckTls(cfg, env); !s.ok()) {
    Fatal(s.ToString());
    return kExitFailure;
  }

  // 3. Storage: volume check, then the root itself.
  DaemonState state;
  state.config_file = config_file;
  state.started = env.Monotonic();
  VolumeInfo volume;
  if (Status s = PrepareStorage(cfg.storage, env, &volume); !s.ok()) {
    Fatal(s.ToString());
    return kExitFailure;
  }
  // One phigated (or one restore) per storage root, for our whole lifetime.
  auto storage_lock = backup::StorageLock::Acquire(cfg.storage.root);
  if (!storage_lock.ok()) {
    Fatal(storage_lock.status().ToString());
    return kExitFailure;
  }
  // The vault (KEKs), the catalog, the object store, the services; then
  // recovery, before any listener accepts work.
  auto opened = services::StorageStack::Open(cfg.keys, cfg.storage, env);
  if (!opened.ok()) {
    Fatal(opened.status().ToString());
    return kExitFailure;
  }
  std::unique_ptr<services::StorageStack> stack = std::move(opened).value();
  if (auto rec = stack->Recover(); !rec.ok()) {
    Fatal(rec.status().WithContext("storage recovery").ToString());
    return kExitFailure;
  }
  state.stack = stack.get();
  // Decrypted study attributes for wildcard queries, built in the background
  // (queries decrypt rows until it is ready); libphi/services/study_cache.h.
  stack->query().StartCacheWarmUp();

  {
    std::lock_guard<std::mutex> lock(state.mu);
    state.cfg = cfg;
    state.volume = volume;
    state.log_level = level;
  }

  // 4. Edges. Everything they use is declared before `servers`, so it outlives them.
  tls::AsioRunner runner;  // HL7 and HTTPS: one io_context, one thread per core
  std::unique_ptr<tls::TlsContextProvider> hl7_tls, web_tls;
  std::unique_ptr<daemon::Hl7Wiring> hl7_wiring = daemon::WireHl7(*stack, env);
  std::vector<std::unique_ptr<Server>> servers;
  auto add = [&](auto created) -> bool {
    if (!created.ok()) {
      Fatal(created.status().ToString());
      return false;
    }
    servers.push_back(std::move(created).value());
    return true;
  };
  if (!add(dicom::DicomServer::Create(cfg.dicom, cfg.tls, stack->ingest(), env,
                                      DicomOptions(*stack))))
    return kExitFailure;
  if (cfg.hl7.tls.enabled || cfg.hl7.plain.enabled) {
    if (cfg.hl7.tls.enabled) {
      auto p = tls::TlsContextProvider::Create(cfg.tls, cfg.hl7.tls.require_client_cert, env);
      if (!p.ok()) {
        Fatal(p.status().WithContext("hl7-tls").ToString());
        return kExitFailure;
      }
      hl7_tls = std::move(p).value();
    }
    if (!add(hl7::Hl7Server::Create(cfg.hl7, hl7_tls.get(), runner, hl7_wiring->handler()))) {
      return kExitFailure;
    }
  }
  if (cfg.web.https.enabled) {
    auto p = tls::TlsContextProvider::Create(cfg.tls, cfg.web.https.require_client_cert, env);
    if (!p.ok()) {
      Fatal(p.status().WithContext("https").ToString());
      return kExitFailure;
    }
    web_tls = std::move(p).value();
    if (!add(BuildWebServer(cfg, *web_tls, runner, *stack, env))) {
      return kExitFailure;
    }
  }
  if (Status st = runner.Start(); !st.ok()) {
    Fatal(st.ToString());
    return kExitFailure;
  }

  admin::AdminServerOptions admin_opts;
  admin_opts.on_refused = [s = stack.get()](uid_t uid, pid_t) {
    AuditEvent(s, "admin:uid=" + std::to_string(uid), "admin_connect", "admin_socket", "denied");
  };
  auto admin = admin::AdminServer::Create(cfg.admin, env, admin_opts);
  if (!admin.ok()) {
    Fatal(admin.status().ToString());
    return kExitFailure;
  }
  admin::AdminServer* admin_server = admin->get();
  servers.push_back(std::move(admin).value());
  for (auto& s : servers) state.servers.push_back(s.get());
  {
    std::lock_guard<std::mutex> lock(state.mu);
    state.warnings = Warnings(cfg, volume, state.servers);
  }
  admin_server->Register("status", admin::kReadOnly,
                         [&state, &env](const json&, const admin::PeerCred&) -> Result<json> {
                           return StatusJson(state, env);
                         });
  RegisterStorageCommands(*admin_server, *stack);
  std::unique_ptr<AuditWiring> audit_wiring =
      RegisterAuditCommands(*admin_server, *stack, cfg, env);
  state.integrity_status = [w = audit_wiring.get()] { return w->IntegrityStatus(); };
  auto forwarder = StartAuditForwarding(*stack, cfg, env);
  if (!forwarder.ok()) {
    Fatal(forwarder.status().WithContext("audit.forward").ToString());
    return kExitFailure;
  }
  state.forwarder = forwarder->get();
  RegisterIngestCommands(*admin_server, *stack);

  auto stop_all = [&](MonotonicTime deadline) {
    for (auto& s : servers) s->StopAccepting();
    for (auto& s : servers) s->Drain(deadline);
  };
  for (auto& s : servers) {
    if (Status st = s->Start(); !st.ok()) {
      Fatal(st.ToString());
      stop_all(env.Monotonic());
      return kExitFailure;
    }
  }

  for (const auto& w : state.warnings) {
    PHI_LOG(kWarning, "running with a warning", {{"warning", log::Safe(w)}});
  }
  std::string status_line = StatusLine(state.servers, volume);
  Notify("READY=1\nSTATUS=" + status_line);
  PHI_LOG(kNotice, "phigated ready", {{"status", log::Safe(status_line)}});

  // 5. Signals, on this thread only.
  uint64_t watchdog_usec = 0;
  bool watchdog = sd_watchdog_enabled(0, &watchdog_usec) > 0 && watchdog_usec > 0;
  const auto wait = watchdog ? std::chrono::microseconds(watchdog_usec / 2)
                             : std::chrono::microseconds(std::chrono::seconds(60));
  if (watchdog) Notify("WATCHDOG=1");
  while (true) {
    timespec ts{static_cast<time_t>(wait.count() / 1000000),
                static_cast<long>((wait.count() % 1000000) * 1000)};
    siginfo_t info;
    int sig = ::sigtimedwait(&sigs, &info, &ts);
    if (sig < 0) {
      if (errno == EAGAIN || errno == EINTR) {
        if (watchdog) Notify("WATCHDOG=1");
        continue;
      }
      Fatal(PosixError("sigtimedwait", errno).ToString());
      break;
    }
    if (watchdog) Notify("WATCHDOG=1");
    if (sig == SIGHUP) {
      Notify("RELOADING=1");
      PHI_LOG(kNotice, "SIGHUP: reloading the configuration",
              {{"config", log::Safe(config_file.string())}});
      std::vector<config::ConfigError> errs;
      auto next = LoadConfig(config_file, env, &errs);
      if (!next.ok()) {
        for (const auto& e : errs) {
          PHI_LOG(kError, "config reload rejected; keeping the running configuration",
                  {{"error", log::Safe(ErrorText(e))}});
        }
        if (errs.empty()) {
          PHI_LOG(kError, "config reload rejected; keeping the running configuration",
                  {{"status", next.status()}});
        }
        AuditEvent(stack.get(), "signal:SIGHUP", "config_reload", "config",
                   "error:InvalidArgument");
      } else {
        bool all_ok = true;
        for (auto& s : servers) {
          if (Status st = s->Reload(*next); !st.ok()) {
            all_ok = false;
            PHI_LOG(kError, "reload failed for a listener; it keeps its old settings",
                    {{"status", st}});
          }
        }
        state.forwarder->Reload(next->audit.forward);
        log::Level new_level = have_cli_level ? cli_level : next->logging.level;
        log::SetLevel(new_level);
        {
          std::lock_guard<std::mutex> lock(state.mu);
          state.cfg = *next;
          state.log_level = new_level;
          // The volume is only checked at start: storage.* changes need a restart.
          state.cfg.storage = cfg.storage;
        }
        if (next->storage.root != cfg.storage.root ||
            next->storage.require_encrypted_volume != cfg.storage.require_encrypted_volume) {
          PHI_LOG(kWarning, "storage.* changes take effect at the next restart");
        }
        PHI_LOG(kNotice, "configuration reloaded", {{"all_listeners_ok", all_ok}});
        AuditEvent(stack.get(), "signal:SIGHUP", "config_reload", "config",
                   all_ok ? "ok" : "error:partial");
      }
      status_line = StatusLine(state.servers, volume);
      Notify("READY=1\nSTATUS=" + status_line);
      continue;
    }
    // SIGTERM / SIGINT: drain and exit.
    PHI_LOG(kNotice, "stopping", {{"signal", sig}});
    Notify("STOPPING=1\nSTATUS=draining");
    audit_wiring->Stop();  // the scrub and running jobs (verify, backup) stop now
    uint32_t drain_s;
    {
      std::lock_guard<std::mutex> lock(state.mu);
      drain_s = state.cfg.lifecycle.drain_timeout_seconds;
    }
    stop_all(env.Monotonic() + std::chrono::seconds(drain_s));
    break;
  }
  // Destroy in reverse order of construction.
  while (!servers.empty()) servers.pop_back();
  runner.Stop();
  PHI_LOG(kNotice, "phigated stopped");
  return kExitOk;
}

}  // namespace
}  // namespace phi::daemon

int main(int argc, char** argv) {
  using namespace phi::daemon;
  // Before any thread exists: every thread inherits this mask, so only the main
  // thread's sigtimedwait ever sees these signals.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);

  try {
    Options opts;
    CLI::App app{"phigated: on-premise PACS gateway daemon"};
    app.set_version_flag("--version", std::string("phigated ") + PHI_VERSION);
    app.add_option("--config", opts.config, "configuration file")->capture_default_str();
    app.add_option("--check-config", opts.check_config,
                   "load and validate FILE (config, TLS material, KEKs), then exit 0/1");
    app.add_option("--print-dev-config", opts.print_dev_config,
                   "print the development config for dev dir DIR");
    app.add_option("--restore", opts.restore,
                   "offline: restore backup DIR onto the (empty) storage root of --config, "
                   "verify it, and exit 0/1");
    app.add_option("--log-level", opts.log_level,
                   "debug|info|notice|warning|error|critical (overrides the config)");
    try {
      app.parse(argc, argv);
    } catch (const CLI::Success& e) {
      return app.exit(e);
    } catch (const CLI::ParseError& e) {
      app.exit(e);
      return kExitUsage;
    }
    if (!opts.print_dev_config.empty()) {
      std::fputs(phi::config::DevConfigYaml(opts.print_dev_config).c_str(), stdout);
      return kExitOk;
    }
    if (!opts.check_config.empty()) {
      phi::log::Init(phi::log::Sink::kStderr, phi::log::Level::kWarning);
      return CheckConfig(opts.check_config, phi::Env::Default());
    }
    if (!opts.restore.empty()) return RunRestore(opts);
    return Run(opts, sigs);
  } catch (const std::exception&) {
    // The text of a library exception may echo input; log only that it happened.
    PHI_LOG(kCritical, "phigated: unexpected exception; exiting");
    std::fprintf(stderr, "phigated: unexpected exception; exiting\n");
    return kExitFailure;
  } catch (...) {
    PHI_LOG(kCritical, "phigated: unexpected non-standard exception; exiting");
    std::fprintf(stderr, "phigated: unexpected exception; exiting\n");
    return kExitFailure;
  }
}
