// phi::audit::SyslogForwarder: live forwarding of the audit trail to a
// syslog-over-TLS collector (RFC 5425), e.g. a SIEM or an IHE ATNA audit
// record repository (issue 7; config `audit.forward`).
//
// The queue is the catalog itself. The forwarder reads committed records
// (seq > last sent) through the AuditReader, i.e. the catalog's reader pool:
// a record is seen only once its transaction has committed, so nothing that
// rolls back is ever forwarded, and in seq order, because one writer assigns
// seqs in commit order. It never takes part in a write transaction, so a
// slow or dead collector never delays a store or a commit.
//
// Wire: each record becomes one RFC 5424 message (ToAtnaSyslog: DICOM PS3.15
// A.5 AuditMessage; or ToJsonSyslog) framed with octet counting,
// "MSG-LEN SP SYSLOG-MSG" (RFC 5425 4.3), over TLS 1.2/1.3 (BCP195 suites),
// TCP_NODELAY. The collector's certificate must chain to `ca` and match
// `host` (DNS name or IP address, OpenSSL's RFC 6125 checks); an optional
// client certificate authenticates us. Nothing is sent before the handshake
// has verified the collector.
//
// Delivery: at least once, in seq order, without gaps. syslog has no
// application acknowledgement, so "acknowledged" means acknowledged by the
// collector's TCP stack: after a write, when the socket's send queue is empty
// (SIOCOUTQ == 0), everything sent so far is acked. After any failure the
// next connection resumes at acked + 1 (records may be repeated; their seq
// is in the structured data [phigate@32473 seq=".."] for de-duplication).
// The acked seq is persisted in `state_file` (atomically: tmp, fsync,
// rename, dir fsync; at most once a second and at Stop), so a restart
// resumes where the collector stopped acknowledging. Without a state file
// (first start) forwarding starts at the current end of the chain; earlier
// records are for `phigatectl audit export`.
//
// Bound: at most queue_max records are kept waiting. When the collector is
// so far behind that more are, the oldest are skipped (not sent), counted in
// `drops` and logged with their seq range (export them with
// `phigatectl audit export --after SEQ`).
//
// Reconnects: exponential backoff (backoff_min doubling up to backoff_max).
// A connection is also dropped when the collector closes it (a read is kept
// pending for that) or when any step takes longer than io_timeout.
//
// Thread-safety: Start/Stop/Reload/GetStatus may be called from any thread.
// The work runs on the forwarder's own thread and io_context; mutable state
// shared with callers is guarded by mu_.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "libphi/audit/audit_atna.h"
#include "libphi/audit/audit_log.h"
#include "libphi/config/config.h"
#include "libphi/util/env.h"
#include "libphi/util/status.h"

namespace phi::audit {

struct ForwarderOptions {
  config::AuditForwardConfig cfg;
  Path state_file;                               // the persisted acked seq; empty = memory only
  AtnaOptions atna;                              // syslog HOSTNAME / APP-NAME of the messages
  std::chrono::milliseconds poll_interval{200};  // how often new records are looked for
  std::chrono::milliseconds backoff_min{500};
  std::chrono::milliseconds backoff_max{30000};
  std::chrono::milliseconds io_timeout{15000};  // resolve, connect, handshake, one write
  size_t batch_records = 256;                   // records per write at most
};

// A snapshot for `phigatectl status` and metrics. No PHI: seqs, counts, the
// collector's address and error texts from the OS and OpenSSL.
struct ForwarderStatus {
  bool enabled = false;
  bool connected = false;
  std::string collector;    // "host:port"
  std::string format;       // "atna" / "jsonl"
  int64_t head_seq = 0;     // last seq in the catalog
  int64_t sent_seq = 0;     // last seq written to the current connection
  int64_t acked_seq = 0;    // last seq acknowledged by the collector's TCP (resume point)
  int64_t backlog = 0;      // head_seq - acked_seq
  uint64_t sent_total = 0;  // records written (repeats after a reconnect included)
  uint64_t drops = 0;       // records skipped because more than queue_max were waiting
  uint64_t connects = 0;    // successful handshakes
  uint64_t failures = 0;    // failed connection attempts and broken connections
  std::string last_error;   // "" when none since the last successful handshake
  int64_t last_error_unix = 0;
};

// "MSG-LEN SP SYSLOG-MSG" (RFC 5425 section 4.3, octet counting).
std::string FrameOctetCounted(std::string_view syslog_msg);

class SyslogForwarder {
 public:
  // Reads the state file (Corruption if it exists but is malformed). Does not
  // connect; Start() does.
  static Result<std::unique_ptr<SyslogForwarder>> Create(AuditReader& reader,
                                                         ForwarderOptions options, Env& env);
  ~SyslogForwarder();
  SyslogForwarder(const SyslogForwarder&) = delete;
  SyslogForwarder& operator=(const SyslogForwarder&) = delete;

  // Starts the thread (idle while cfg.enabled is false). Idempotent.
  void Start();
  // Closes the connection, persists the acked seq, joins the thread.
  void Stop();
  // SIGHUP: takes the new settings; the current connection (if any) is
  // closed and a new one made with them, re-reading the TLS files.
  void Reload(const config::AuditForwardConfig& cfg);
  ForwarderStatus GetStatus();

 private:
  class Session;
  SyslogForwarder(AuditReader& reader, ForwarderOptions options, Env& env);

  void Run();
  // One connection: connect, handshake, stream until an error, a reload or Stop.
  // *connected: the handshake succeeded.
  Status RunSession(const config::AuditForwardConfig& cfg, bool* connected);
  // Skips the oldest records beyond queue_max (counted in drops).
  void TrimBacklog(uint32_t queue_max);
  Result<int64_t> HeadSeq();
  void PersistAcked(bool force);
  void SetError(const Status& s);

  AuditReader& reader_;
  const ForwarderOptions options_;
  Env& env_;

  std::mutex mu_;
  std::condition_variable cv_;
  config::AuditForwardConfig cfg_;      // GUARDED_BY(mu_)
  bool reload_ = false;                 // GUARDED_BY(mu_)
  bool stop_ = false;                   // GUARDED_BY(mu_)
  ForwarderStatus status_;              // GUARDED_BY(mu_): counters, error, seqs as last published
  std::atomic<bool> interrupt_{false};  // stop or reload requested: leave the session now
  Session* session_ = nullptr;          // GUARDED_BY(mu_): the live session, for Interrupt
  std::thread thread_;

  // Forwarder thread only.
  int64_t sent_ = 0;
  int64_t acked_ = 0;
  int64_t persisted_ = -1;
  MonotonicTime last_persist_{};
  bool outage_logged_ = false;
  bool active_ = false;  // forwarding was enabled at some point of this run
};

}  // namespace phi::audit
