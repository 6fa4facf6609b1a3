#include "daemon/audit_wiring.h"

#include <openssl/crypto.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <string>

#include "libphi/audit/audit_atna.h"
#include "libphi/audit/audit_export.h"
#include "libphi/audit/cms_signer.h"
#include "libphi/services/integrity.h"
#include "libphi/services/retention.h"
#include "libphi/util/log.h"

namespace phi::daemon {
namespace {

using nlohmann::json;

constexpr size_t kMaxPemBytes = 1 << 20;
constexpr int64_t kDefaultExportPage = 20000;

std::string Actor(const admin::PeerCred& peer) { return "admin:uid=" + std::to_string(peer.uid); }

Result<std::string> Str(const json& args, const char* name, bool required) {
  auto it = args.find(name);
  if (it == args.end()) {
    if (required) return Status::InvalidArgument(std::string("--") + name + " is required");
    return std::string();
  }
  if (!it->is_string() || (required && it->get<std::string>().empty())) {
    return Status::InvalidArgument(std::string("--") + name + " must be text");
  }
  return it->get<std::string>();
}

Result<int64_t> Int(const json& args, const char* name, int64_t dflt) {
  auto it = args.find(name);
  if (it == args.end()) return dflt;
  if (!it->is_number_integer()) {
    return Status::InvalidArgument(std::string("--") + name + " must be an integer");
  }
  return it->get<int64_t>();
}

std::string Hostname() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "-";
  return buf;
}

// The signed erasure certificate: the audit record's JSON detail with its
// own seq filled in and the record's chain hash, so the document points at
// exactly one link of the (independently verifiable) audit chain.
Result<std::string> CertificateDocument(const audit::AuditRecord& r) {
  if (r.action != "erase" || r.outcome != "ok") {
    return Status::NotFound("audit record " + std::to_string(r.seq) + " is not an erasure");
  }
  nlohmann::ordered_json j = nlohmann::ordered_json::parse(r.detail, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return Status::Corruption("erasure record " + std::to_string(r.seq) + " has no certificate");
  }
  j["audit_seq"] = r.seq;
  j["audit_time"] = audit::FormatTimeUs(r.time_us);
  const crypto::Digest h = audit::RecordHash(r);
  j["audit_record_sha256"] = crypto::ToHex(h);
  return j.dump();
}

}  // namespace

std::unique_ptr<services::RetentionScheduler> RegisterAuditCommands(admin::AdminServer& admin,
                                                                    services::StorageStack& stack,
                                                                    const config::Config& cfg,
                                                                    Env& env) {
  const config::RetentionConfig retention = cfg.retention;
  const Path cert_file = cfg.tls.certificate;
  const Path key_file = cfg.tls.private_key;
  const uint32_t retention_years = cfg.audit.retention_years;

  // Replaces main.cc's version: also reports the pruning anchor.
  admin.Register("audit verify", admin::kReadOnly,
                 [&stack](const json&, const admin::PeerCred&) -> Result<json> {
                   PHI_ASSIGN_OR_RETURN(audit::VerifyReport r,
                                        audit::Verify(stack.catalog(), stack.AuditMac()));
                   return json{{"ok", r.ok},
                               {"records", r.count},
                               {"last_seq", r.last_seq},
                               {"broken_seq", r.broken_seq},
                               {"anchor_seq", r.anchor_seq},
                               {"reason", std::string(audit::BreakReasonName(r.reason))}};
                 });

  admin.Register(
      "audit export", admin::kReadOnly,
      [&stack](const json& args, const admin::PeerCred&) -> Result<json> {
        PHI_ASSIGN_OR_RETURN(std::string format, Str(args, "format", false));
        if (format.empty()) format = "jsonl";
        if (format != "jsonl" && format != "atna") {
          return Status::InvalidArgument("--format must be jsonl or atna");
        }
        audit::ExportRange range;
        PHI_ASSIGN_OR_RETURN(std::string since, Str(args, "since", false));
        PHI_ASSIGN_OR_RETURN(std::string until, Str(args, "until", false));
        if (!since.empty()) {
          PHI_ASSIGN_OR_RETURN(range.since_us, audit::ParseTimeUs(since));
        }
        if (!until.empty()) {
          PHI_ASSIGN_OR_RETURN(range.until_us, audit::ParseTimeUs(until));
        }
        PHI_ASSIGN_OR_RETURN(range.after_seq, Int(args, "after", 0));
        PHI_ASSIGN_OR_RETURN(int64_t limit, Int(args, "limit", kDefaultExportPage));
        if (range.after_seq < 0 || limit < 1 || limit > kDefaultExportPage) {
          return Status::InvalidArgument("--after must be >= 0 and --limit 1.." +
                                         std::to_string(kDefaultExportPage));
        }
        range.max_records = static_cast<size_t>(limit);
        audit::AtnaOptions atna;
        atna.hostname = Hostname();
        json lines = json::array();
        PHI_ASSIGN_OR_RETURN(
            audit::ExportResult res,
            audit::ExportRecords(stack.catalog(), range, [&](const audit::AuditRecord& r) {
              lines.push_back(format == "atna" ? audit::ToAtnaSyslog(r, atna)
                                               : audit::ToJsonLine(r));
              return Status::Ok();
            }));
        return json{{"format", format},
                    {"count", res.count},
                    {"last_seq", res.last_seq},
                    {"more", res.more},
                    {"lines", std::move(lines)}};
      });

  admin.Register("audit prune", admin::kDestructive,
                 [&stack, &env, retention_years](const json& args,
                                                 const admin::PeerCred& peer) -> Result<json> {
                   PHI_ASSIGN_OR_RETURN(std::string before, Str(args, "before", false));
                   std::optional<int64_t> before_us;
                   if (!before.empty()) {
                     PHI_ASSIGN_OR_RETURN(before_us, audit::ParseTimeUs(before));
                   }
                   PHI_ASSIGN_OR_RETURN(
                       services::AuditPruneReport r,
                       services::PruneAudit(stack.catalog(), stack.AuditMac(), env.Now(),
                                            retention_years, before_us, Actor(peer)));
                   return json{{"pruned", r.pruned},
                               {"anchor_seq", r.through_seq},
                               {"cutoff", audit::FormatTimeUs(r.cutoff_us)},
                               {"retention_years", retention_years},
                               {"audit_seq", r.audit_seq}};
                 });

  admin.Register("erasure-certificate", admin::kReadOnly,
                 [&stack, &env, cert_file, key_file](const json& args,
                                                     const admin::PeerCred&) -> Result<json> {
                   PHI_ASSIGN_OR_RETURN(int64_t seq, Int(args, "seq", 0));
                   if (seq < 1)
                     return Status::InvalidArgument("--seq SEQ (an audit sequence number) needed");
                   PHI_ASSIGN_OR_RETURN(std::vector<audit::AuditRecord> rows,
                                        stack.catalog().ReadAudit(seq - 1, 1));
                   if (rows.empty() || rows[0].seq != seq) {
                     return Status::NotFound("no audit record " + std::to_string(seq));
                   }
                   PHI_ASSIGN_OR_RETURN(std::string doc, CertificateDocument(rows[0]));
                   PHI_ASSIGN_OR_RETURN(std::string cert_pem,
                                        env.ReadSmallFile(cert_file, kMaxPemBytes));
                   auto key_pem = env.ReadSmallFile(key_file, kMaxPemBytes);
                   if (!key_pem.ok()) return key_pem.status();
                   Result<std::string> sig = audit::SignDetachedCmsPem(doc, cert_pem, *key_pem);
                   // Wipe our copy of the private key's PEM.
                   OPENSSL_cleanse(key_pem->data(), key_pem->size());
                   PHI_RETURN_IF_ERROR(sig.status());
                   return json{{"seq", seq},
                               {"certificate", doc},
                               {"signature", *sig},
                               {"signer_certificate", cert_pem}};
                 });

  for (bool hold : {true, false}) {
    admin.Register(hold ? "hold" : "release", admin::kDestructive,
                   [&stack, hold](const json& args, const admin::PeerCred& peer) -> Result<json> {
                     PHI_ASSIGN_OR_RETURN(std::string uid, Str(args, "study", true));
                     PHI_ASSIGN_OR_RETURN(std::string reason, Str(args, "reason", false));
                     PHI_ASSIGN_OR_RETURN(
                         int64_t pk, services::SetLegalHold(stack.vault(), stack.catalog(), uid,
                                                            hold, Actor(peer), reason));
                     return json{{"study_pk", pk}, {"legal_hold", hold}};
                   });
  }

  admin.Register(
      "retention plan", admin::kReadOnly,
      [&stack, &env, retention](const json& args, const admin::PeerCred&) -> Result<json> {
        PHI_ASSIGN_OR_RETURN(int64_t limit, Int(args, "limit", 1000));
        if (limit < 1 || limit > 100000) return Status::InvalidArgument("--limit 1..100000");
        PHI_ASSIGN_OR_RETURN(services::RetentionPlan plan,
                             services::PlanRetention(stack.catalog(), stack.keys(), retention,
                                                     env.Now(), static_cast<size_t>(limit)));
        json due = json::array();
        for (const auto& d : plan.due) {
          due.push_back({{"study_pk", d.study_pk},
                         {"study_instance_uid", d.study_instance_uid},
                         {"year", d.study_year ? json(*d.study_year) : json(nullptr)},
                         {"modalities", d.modalities},
                         {"source_ae", d.source_ae.empty() ? json(nullptr) : json(d.source_ae)},
                         {"keep_years", d.keep_years},
                         {"rule", d.rule}});
        }
        return json{
            {"enabled", retention.enabled},
            {"basis",
             retention.basis == config::RetentionBasis::kStudyDate ? "study_date" : "last_access"},
            {"count", plan.due.size()},
            {"truncated", plan.truncated},
            {"due", std::move(due)}};
      });
  admin.Register("retention run", admin::kDestructive,
                 [&stack, &env, retention](const json&, const admin::PeerCred&) -> Result<json> {
                   PHI_ASSIGN_OR_RETURN(
                       services::RetentionRunReport r,
                       services::RunRetention(stack.catalog(), stack.keys(), stack.erasure(),
                                              retention, env.Now()));
                   return json{{"erased", r.erased},
                               {"failed", r.failed},
                               {"batches", r.batches},
                               {"audit_seqs", r.audit_seqs}};
                 });

  admin.Register("verify", admin::kReadOnly,
                 [&stack](const json& args, const admin::PeerCred&) -> Result<json> {
                   PHI_ASSIGN_OR_RETURN(std::string uid, Str(args, "study", false));
                   std::optional<std::string> one;
                   if (!uid.empty()) one = uid;
                   PHI_ASSIGN_OR_RETURN(
                       services::IntegrityReport r,
                       services::VerifyStorage(stack.vault(), stack.catalog(), stack.objects(),
                                               stack.keys(), one, nullptr));
                   json problems = json::array();
                   for (const auto& p : r.problems) {
                     problems.push_back({{"kind", p.kind},
                                         {"study_pk", p.study_pk},
                                         {"object", p.object},
                                         {"detail", p.detail}});
                   }
                   return json{{"ok", r.ok()},
                               {"studies", r.studies},
                               {"instances", r.instances},
                               {"bytes", r.bytes},
                               {"problem_count", r.problem_count},
                               {"problems", std::move(problems)}};
                 });

  auto scheduler = std::make_unique<services::RetentionScheduler>(stack.catalog(), stack.keys(),
                                                                  stack.erasure(), retention, env);
  scheduler->Start();
  return scheduler;
}

Result<std::unique_ptr<audit::SyslogForwarder>> StartAuditForwarding(services::StorageStack& stack,
                                                                     const config::Config& cfg,
                                                                     Env& env) {
  audit::ForwarderOptions opts;
  opts.cfg = cfg.audit.forward;
  opts.state_file = cfg.storage.root / "audit-forward.state";
  opts.atna.hostname = Hostname();
  PHI_ASSIGN_OR_RETURN(std::unique_ptr<audit::SyslogForwarder> f,
                       audit::SyslogForwarder::Create(stack.catalog(), std::move(opts), env));
  f->Start();
  return f;
}

json AuditForwardStatusJson(audit::SyslogForwarder& forwarder) {
  const audit::ForwarderStatus s = forwarder.GetStatus();
  return json{{"enabled", s.enabled},
              {"connected", s.connected},
              {"collector", s.collector},
              {"format", s.format},
              {"head_seq", s.head_seq},
              {"last_forwarded_seq", s.sent_seq},
              {"acked_seq", s.acked_seq},
              {"backlog", s.backlog},
              {"sent_total", s.sent_total},
              {"drops", s.drops},
              {"connects", s.connects},
              {"failures", s.failures},
              {"last_error", s.last_error.empty() ? json(nullptr) : json(s.last_error)},
              {"last_error_time", s.last_error_unix == 0
                                      ? json(nullptr)
                                      : json(audit::FormatTimeUs(s.last_error_unix * 1000000))}};
}

}  // namespace phi::daemon
