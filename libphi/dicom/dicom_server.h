// phi::dicom::DicomServer: the DICOM SCP edge (DESIGN.md "Listeners",
// "Contracts"). Owns the DICOM TLS listener (dicom.tls, DcmTLSTransportLayer,
// BCP195 profiles, client certificate required, CRLs) and the plain listener
// (dicom.plain, off by default); the association policy (association_policy.h);
// C-ECHO, C-STORE into services::Ingest, and Storage Commitment Push Model.
//
// Threading: one accept thread polls the listening sockets and never blocks on
// a peer: it accepts, sets TCP_NODELAY and socket timeouts, and hands the
// socket to a bounded pool of worker threads (max_associations + a few spare
// for rejections). A worker runs the TLS handshake and reads the
// A-ASSOCIATE-RQ (both bounded by the ACSE timeout), applies the policy, and
// serves the association until release/abort. When the pool queue is full the
// connection is closed at once and counted.
//
// How the accepted socket reaches DCMTK 3.6.7: ASC_receiveAssociation reads
// the global dcmExternalSocketHandle instead of calling accept(). A worker
// takes a process-wide handoff mutex, sets the global to its socket, and
// calls ASC_receiveAssociation; our transport layer's createConnection()
// (called by DCMTK right after taking the socket, before the handshake and the
// RQ read) clears the global and releases the mutex. So the mutex covers only
// a few non-blocking syscalls, never peer I/O.
//
// Storage Commitment Push Model: N-ACTION is answered, then the N-EVENT-REPORT
// is sent on the same association and its N-EVENT-REPORT-RSP awaited (DIMSE
// timeout); an instance is reported committed only when Ingest::IsStored()
// says so (failures carry reason 0x0112, or 0x0110 when IsStored errs).
// NOT YET: sending the report on a new association to the requester when the
// first one was released (needs a per-AE address/port in DicomPeer); until
// then a requester that releases before the report gets none.
//
// Process-wide effects (done once, in Create): DCMTK reverse DNS off, DCMTK's
// own logger at FATAL (it can print dataset values at debug levels), SIGPIPE
// ignored if it was SIG_DFL. dcmExternalSocketHandle is owned by this class:
// no other in-process DCMTK *acceptor* may use it (SCU code is unaffected).
// Reload swaps TLS material, allow-list, per-AE limit and timeouts for new
// associations; bind addresses and the pool size need a restart (the total
// limit can only shrink on reload).
//
// Thread-safety: Start/Reload/StopAccepting/Drain from one thread (the
// daemon's main thread); Listeners()/stats() from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "libphi/config/config.h"
#include "libphi/config/server.h"
#include "libphi/dicom/association_policy.h"
#include "libphi/services/ingest.h"
#include "libphi/util/env.h"
#include "libphi/util/status.h"

namespace phi::dicom {

// Counters (Envoy-style X-macro list).
#define PHI_DICOM_STATS(X)    \
  X(connections_accepted)     \
  X(connections_dropped_busy) \
  X(tls_handshake_failed)     \
  X(associations_accepted)    \
  X(associations_rejected)    \
  X(associations_aborted)     \
  X(echo_ok)                  \
  X(cstore_ok)                \
  X(cstore_refused)           \
  X(commitment_requests)

struct DicomStats {
#define PHI_DICOM_STAT_FIELD(name) uint64_t name = 0;
  PHI_DICOM_STATS(PHI_DICOM_STAT_FIELD)
#undef PHI_DICOM_STAT_FIELD
};

// What the audit hook sees (never PHI: AE titles, addresses, UIDs of objects
// are not PHI by project rule; the subject DN is the peer's identity).
struct AssociationEvent {
  enum class Kind : uint8_t {
    kRejected,  // A-ASSOCIATE-RJ sent
    kAccepted,
    kTlsFailed,  // handshake failed (no/untrusted/expired/revoked certificate...)
    kStored,     // one C-STORE stored (sop_instance_uid set)
    kReleased,
    kAborted,
  };
  Kind kind = Kind::kRejected;
  std::string listener;  // "dicom-tls" or "dicom"
  std::string peer;      // "ip:port"
  std::string calling_ae;
  std::string called_ae;
  std::string client_subject;
  std::string reason;  // PHI-free text
  std::string sop_instance_uid;
};
using AuditHook = std::function<void(const AssociationEvent&)>;

struct DicomServerOptions {
  uint64_t max_object_bytes = 2ull << 30;       // per C-STORE dataset; beyond: 0xA700
  uint64_t max_commitment_bytes = 16ull << 20;  // N-ACTION dataset cap
  uint32_t spare_workers = 4;                   // above max_associations, for rejections
  AuditHook audit;                              // optional
};

class DicomServer : public Server {
 public:
  // Validates the config and loads the TLS material (when the TLS listener is
  // on); binds nothing until Start(). Ports 0 bind ephemeral ports (tests).
  static Result<std::unique_ptr<DicomServer>> Create(const config::DicomConfig& cfg,
                                                     const config::TlsConfig& tls,
                                                     services::Ingest& ingest, Env& env,
                                                     DicomServerOptions options = {});
  ~DicomServer() override;
  DicomServer(const DicomServer&) = delete;
  DicomServer& operator=(const DicomServer&) = delete;

  Status Start() override;
  // New TLS layer (certificate, key, CA, CRLs, profile), allow-list, limits
  // and timeouts apply to new associations; open ones keep theirs.
  Status Reload(const config::Config& cfg) override;
  void StopAccepting() override;
  void Drain(MonotonicTime deadline) override;
  std::vector<ListenerStatus> Listeners() const override;

  DicomStats stats() const;
  // Bound ports after Start() (0 when that listener is off).
  uint16_t tls_port() const { return tls_port_.load(); }
  uint16_t plain_port() const { return plain_port_.load(); }

  struct Impl;  // public for the .cc's helpers; opaque to users

 private:
  explicit DicomServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  std::atomic<uint16_t> tls_port_{0};
  std::atomic<uint16_t> plain_port_{0};
};

}  // namespace phi::dicom
