#include "libphi/dicom/dicom_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/bio.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>

#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcistrmb.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmdata/dcxfer.h"
#include "dcmtk/dcmnet/assoc.h"
#include "dcmtk/dcmnet/dimse.h"
#include "dcmtk/dcmnet/dul.h"
#include "dcmtk/dcmtls/tlslayer.h"
#include "dcmtk/dcmtls/tlstrans.h"
#include "dcmtk/oflog/oflog.h"
#include "libphi/dicom/dimse_status.h"
#include "libphi/dicom/part10.h"
#include "libphi/util/log.h"

namespace phi::dicom {
namespace {

// OpenSSL's read-ahead buffer for DICOM TLS connections (ReadAheadTlsConnection).
constexpr size_t kTlsReadBuffer = 64 * 1024;

// Initial capacity of the per-C-STORE receive buffer (it grows up to the cap).
constexpr uint64_t kInitialObjectBuffer = 1u << 20;

// ---------------------------------------------------------------------------
// Handing an accepted socket to DCMTK (see the header comment).

std::mutex g_handoff_mu;
thread_local bool t_handoff_held = false;
thread_local DcmTLSTransportLayer* t_tls_layer = nullptr;

void ReleaseHandoff() {
  if (t_handoff_held) {
    dcmExternalSocketHandle.set(-1);
    t_handoff_held = false;
    g_handoff_mu.unlock();
  }
}

// A DICOM TLS connection whose OpenSSL object reads ahead: one read() brings
// up to kTlsReadBuffer bytes (several 16 KiB records) instead of two read()s
// per record (a 512 KiB image: ~80 read() calls without it). DCMTK asks
// SSL_pending() before it polls the socket, which does not count records
// read ahead but not yet decrypted; SSL_has_pending() does, so without this
// override a C-STORE whose last records sit in the buffer would wait for the
// DIMSE timeout.
class ReadAheadTlsConnection final : public DcmTLSConnection {
 public:
  ReadAheadTlsConnection(DcmNativeSocketType sock, SSL* ssl)
      : DcmTLSConnection(sock, ssl), ssl_(ssl) {}
  OFBool networkDataAvailable(int timeout) override {
    if (ssl_ != nullptr && SSL_has_pending(ssl_) == 1) return OFTrue;
    return DcmTLSConnection::networkDataAvailable(timeout);
  }
  void close() override {
    ssl_ = nullptr;  // freed by the base
    DcmTLSConnection::close();
  }

 private:
  SSL* ssl_;
};

class HandoffLayer : public DcmTransportLayer {
 public:
  DcmTransportConnection* createConnection(DcmNativeSocketType sock, OFBool secure) override {
    ReleaseHandoff();  // DCMTK has taken the socket: let the next worker in
    if (secure) {
      if (t_tls_layer == nullptr) return nullptr;
      SSL* ssl = SSL_new(t_tls_layer->getNativeHandle());
      if (ssl == nullptr) return nullptr;
      SSL_set_read_ahead(ssl, 1);
      SSL_set_fd(ssl, static_cast<int>(sock));
      return new ReadAheadTlsConnection(sock, ssl);
    }
    return DcmTransportLayer::createConnection(sock, OFFalse);
  }
};

void InitDcmtkOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    dcmDisableGethostbyaddr.set(OFTrue);
    // DCMTK's own logger may print dataset values at debug levels: keep it to
    // fatal errors only; we log what matters ourselves, without PHI.
    OFLog::configure(OFLogger::FATAL_LOG_LEVEL);
    // A peer closing mid-write must not kill the daemon.
    struct sigaction sa {};
    if (sigaction(SIGPIPE, nullptr, &sa) == 0 && sa.sa_handler == SIG_DFL) {
      signal(SIGPIPE, SIG_IGN);
    }
  });
}

std::string Trim(const char* s) {
  std::string v(s);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\0')) v.pop_back();
  size_t b = 0;
  while (b < v.size() && v[b] == ' ') ++b;
  return v.substr(b);
}

void SetTimeouts(int fd, uint32_t seconds) {
  timeval tv{};
  tv.tv_sec = seconds;
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

std::string PeerString(const sockaddr_storage& ss, std::string* ip_out) {
  char host[INET6_ADDRSTRLEN] = {};
  uint16_t port = 0;
  if (ss.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
    port = ntohs(a->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
    port = ntohs(a->sin6_port);
  }
  *ip_out = host;
  if (ss.ss_family == AF_INET6) return "[" + std::string(host) + "]:" + std::to_string(port);
  return std::string(host) + ":" + std::to_string(port);
}

std::vector<const char*> TransferSyntaxes() {
  // Our preference order: uncompressed explicit first, then implicit, then
  // every compressed syntax DCMTK 3.6.7 knows. We never transcode, so the
  // choice only matters when an SCU offers several for one context.
  return {
      UID_LittleEndianExplicitTransferSyntax,
      UID_BigEndianExplicitTransferSyntax,
      UID_LittleEndianImplicitTransferSyntax,
      UID_DeflatedExplicitVRLittleEndianTransferSyntax,
      UID_JPEGProcess1TransferSyntax,
      UID_JPEGProcess2_4TransferSyntax,
      UID_JPEGProcess3_5TransferSyntax,
      UID_JPEGProcess6_8TransferSyntax,
      UID_JPEGProcess7_9TransferSyntax,
      UID_JPEGProcess10_12TransferSyntax,
      UID_JPEGProcess11_13TransferSyntax,
      UID_JPEGProcess14TransferSyntax,
      UID_JPEGProcess15TransferSyntax,
      UID_JPEGProcess16_18TransferSyntax,
      UID_JPEGProcess17_19TransferSyntax,
      UID_JPEGProcess20_22TransferSyntax,
      UID_JPEGProcess21_23TransferSyntax,
      UID_JPEGProcess24_26TransferSyntax,
      UID_JPEGProcess25_27TransferSyntax,
      UID_JPEGProcess28TransferSyntax,
      UID_JPEGProcess29TransferSyntax,
      UID_JPEGProcess14SV1TransferSyntax,
      UID_JPEGLSLosslessTransferSyntax,
      UID_JPEGLSLossyTransferSyntax,
      UID_JPEG2000LosslessOnlyTransferSyntax,
      UID_JPEG2000TransferSyntax,
      UID_JPEG2000Part2MulticomponentImageCompressionLosslessOnlyTransferSyntax,
      UID_JPEG2000Part2MulticomponentImageCompressionTransferSyntax,
      UID_RLELosslessTransferSyntax,
      UID_MPEG2MainProfileAtMainLevelTransferSyntax,
      UID_MPEG2MainProfileAtHighLevelTransferSyntax,
      UID_MPEG4HighProfileLevel4_1TransferSyntax,
      UID_MPEG4BDcompatibleHighProfileLevel4_1TransferSyntax,
      UID_MPEG4HighProfileLevel4_2_For2DVideoTransferSyntax,
      UID_MPEG4HighProfileLevel4_2_For3DVideoTransferSyntax,
      UID_MPEG4StereoHighProfileLevel4_2TransferSyntax,
      UID_HEVCMainProfileLevel5_1TransferSyntax,
      UID_HEVCMain10ProfileLevel5_1TransferSyntax,
  };
}

std::vector<const char*> AbstractSyntaxes() {
  std::vector<const char*> v(dcmAllStorageSOPClassUIDs,
                             dcmAllStorageSOPClassUIDs + numberOfDcmAllStorageSOPClassUIDs);
  v.push_back(UID_VerificationSOPClass);
  v.push_back(UID_StorageCommitmentPushModelSOPClass);
  return v;
}

DcmTLSSecurityProfile ProfileOf(config::TlsProfile p) {
  switch (p) {
    case config::TlsProfile::kBcp195Nd:
      return TSP_Profile_BCP195_ND;
    case config::TlsProfile::kBcp195Extended:
      return TSP_Profile_BCP195_Extended;
    case config::TlsProfile::kBcp195:
    default:
      return TSP_Profile_BCP195;
  }
}

Status FromCond(const OFCondition& c, std::string_view what) {
  return Status::InvalidArgument(std::string(what) + ": " + c.text());
}

Result<std::shared_ptr<DcmTLSTransportLayer>> BuildTlsLayer(const config::TlsConfig& tls,
                                                            bool require_client_cert) {
  auto layer = std::make_shared<DcmTLSTransportLayer>(NET_ACCEPTOR, nullptr, OFTrue);
  if (!*layer) return Status::Internal("TLS layer initialisation failed");
  OFCondition c = layer->setTLSProfile(ProfileOf(tls.profile));
  if (c.bad()) return FromCond(c, "tls profile");
  c = layer->activateCipherSuites();
  if (c.bad()) return FromCond(c, "tls cipher suites");
  c = layer->setPrivateKeyFile(tls.private_key.c_str(), DCF_Filetype_PEM);
  if (c.bad()) return FromCond(c, "tls private key " + tls.private_key.string());
  c = layer->setCertificateFile(tls.certificate.c_str(), DCF_Filetype_PEM);
  if (c.bad()) return FromCond(c, "tls certificate " + tls.certificate.string());
  if (!layer->checkPrivateKeyMatchesCertificate()) {
    return Status::InvalidArgument("tls private key does not match certificate");
  }
  if (!tls.ca_bundle.empty()) {
    c = layer->addTrustedCertificateFile(tls.ca_bundle.c_str(), DCF_Filetype_PEM);
    if (c.bad()) return FromCond(c, "tls ca bundle " + tls.ca_bundle.string());
  }
  for (const auto& crl : tls.crls) {
    c = layer->addCertificateRevocationList(crl.c_str(), DCF_Filetype_PEM);
    if (c.bad()) return FromCond(c, "tls crl " + crl.string());
  }
  if (!tls.crls.empty()) {
    c = layer->setCRLverification(TCR_checkAllCRL);  // X509_V_FLAG_CRL_CHECK | _ALL
    if (c.bad()) return FromCond(c, "tls crl verification");
  }
  layer->setCertificateVerification(require_client_cert ? DCV_requireCertificate
                                                        : DCV_checkCertificate);
  if (layer->getNativeHandle() == nullptr) return Status::Internal("TLS layer has no context");
  SSL_CTX_set_default_read_buffer_len(layer->getNativeHandle(), kTlsReadBuffer);
  return layer;
}

std::string SubjectOf(T_ASC_Association* assoc) {
  unsigned long len = ASC_getPeerCertificateLength(assoc);
  if (len == 0 || len > 65536) return {};
  std::vector<unsigned char> der(len);
  if (ASC_getPeerCertificate(assoc, der.data(), len) != len) return {};
  const unsigned char* p = der.data();
  X509* cert = d2i_X509(nullptr, &p, static_cast<long>(len));
  if (cert == nullptr) return {};
  std::string out;
  BIO* bio = BIO_new(BIO_s_mem());
  if (bio != nullptr &&
      X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) >= 0) {
    char* data = nullptr;
    long n = BIO_get_mem_data(bio, &data);
    if (n > 0) out.assign(data, static_cast<size_t>(n));
  }
  BIO_free(bio);
  X509_free(cert);
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------

// What new associations use; swapped whole on Reload.
struct Snapshot {
  config::DicomConfig cfg;
  std::shared_ptr<DcmTLSTransportLayer> tls;  // null when the TLS listener is off
  std::shared_ptr<const AssociationPolicy> policy;
};

struct Job {
  int fd = -1;
  bool tls = false;
  std::string peer;     // ip:port
  std::string peer_ip;  // ip
};

struct DicomServer::Impl {
  Impl(const config::DicomConfig& c, services::Ingest& i, Env& e, DicomServerOptions o)
      : ingest(i),
        env(e),
        options(std::move(o)),
        limiter(c.max_associations, c.max_associations_per_ae) {}

  services::Ingest& ingest;
  Env& env;
  DicomServerOptions options;
  AssociationLimiter limiter;

  mutable std::mutex snap_mu;
  std::shared_ptr<const Snapshot> snap;  // guarded by snap_mu

  std::shared_ptr<const Snapshot> Current() const {
    std::lock_guard<std::mutex> l(snap_mu);
    return snap;
  }

  // Listening sockets and the accept thread.
  int tls_fd = -1;
  int plain_fd = -1;
  int wake[2] = {-1, -1};
  std::string tls_addr, plain_addr;
  std::thread acceptor;
  std::atomic<bool> accepting{false};
  std::atomic<bool> started{false};

  // Worker pool.
  std::mutex q_mu;
  std::condition_variable q_cv;
  std::deque<Job> queue;  // guarded by q_mu
  bool stopping = false;  // guarded by q_mu
  std::vector<std::thread> workers;
  size_t pool_size = 0;

  // Open connections (for Drain) and counters.
  std::mutex conn_mu;
  std::condition_variable conn_cv;
  std::set<int> open_fds;  // guarded by conn_mu
  std::atomic<uint64_t> open_tls{0}, open_plain{0};
  std::atomic<uint64_t> accepted_tls{0}, accepted_plain{0};
  std::atomic<uint64_t> refused_tls{0}, refused_plain{0};

#define PHI_DICOM_STAT_ATOMIC(name) std::atomic<uint64_t> name{0};
  PHI_DICOM_STATS(PHI_DICOM_STAT_ATOMIC)
#undef PHI_DICOM_STAT_ATOMIC

  T_ASC_Network* net = nullptr;
  HandoffLayer handoff_layer;

  void Audit(const AssociationEvent& e) {
    if (options.audit) options.audit(e);
  }

  Status Bind(const config::Listener& l, int* fd_out, std::string* addr_out, uint16_t* port_out);
  void AcceptLoop();
  void WorkerLoop();
  void Serve(Job job);
  // Returns false when the association must end (aborted).
  bool HandleStore(T_ASC_Association* assoc, T_ASC_PresentationContextID pid, T_DIMSE_C_StoreRQ& rq,
                   const Snapshot& s, const AssociationEvent& who);
  bool HandleCommit(T_ASC_Association* assoc, T_ASC_PresentationContextID pid,
                    T_DIMSE_N_ActionRQ& rq, const Snapshot& s, const AssociationEvent& who);
  void Shutdown(MonotonicTime deadline);
};

Status DicomServer::Impl::Bind(const config::Listener& l, int* fd_out, std::string* addr_out,
                               uint16_t* port_out) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  std::string port = std::to_string(l.port);
  std::string where = l.bind + ":" + port;
  if (int rc = getaddrinfo(l.bind.c_str(), port.c_str(), &hints, &res); rc != 0) {
    return Status::InvalidArgument("bind " + where + ": " + gai_strerror(rc));
  }
  int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    freeaddrinfo(res);
    return PosixError("socket " + where, errno);
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 128) != 0) {
    int err = errno;
    freeaddrinfo(res);
    close(fd);
    return PosixError("bind " + where, err);
  }
  freeaddrinfo(res);
  sockaddr_storage ss{};
  socklen_t sl = sizeof(ss);
  getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &sl);
  *port_out = ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                             : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  int fl = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, fl | O_NONBLOCK);
  *fd_out = fd;
  *addr_out = l.bind + ":" + std::to_string(*port_out);
  return Status::Ok();
}

void DicomServer::Impl::AcceptLoop() {
  while (accepting.load()) {
    pollfd p[3];
    int n = 0;
    p[n++] = {wake[0], POLLIN, 0};
    int tls_i = -1, plain_i = -1;
    if (tls_fd >= 0) {
      tls_i = n;
      p[n++] = {tls_fd, POLLIN, 0};
    }
    if (plain_fd >= 0) {
      plain_i = n;
      p[n++] = {plain_fd, POLLIN, 0};
    }
    int rc = poll(p, n, 1000);
    if (rc < 0) {
      if (errno == EINTR) continue;
      PHI_LOG(kError, "dicom accept poll failed", {{"status", PosixError("poll", errno)}});
      return;
    }
    if (p[0].revents) return;
    for (int i : {tls_i, plain_i}) {
      if (i < 0 || !(p[i].revents & POLLIN)) continue;
      bool is_tls = (i == tls_i);
      sockaddr_storage ss{};
      socklen_t sl = sizeof(ss);
      int fd = accept4(p[i].fd, reinterpret_cast<sockaddr*>(&ss), &sl, SOCK_CLOEXEC);
      if (fd < 0) continue;  // EAGAIN, ECONNABORTED, EMFILE...: try again on the next poll
      connections_accepted++;
      (is_tls ? accepted_tls : accepted_plain)++;
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      auto s = Current();
      SetTimeouts(fd, s->cfg.acse_timeout_seconds);  // handshake and A-ASSOCIATE-RQ
      Job job;
      job.fd = fd;
      job.tls = is_tls;
      job.peer = PeerString(ss, &job.peer_ip);
      bool queued = false;
      {
        std::lock_guard<std::mutex> l(q_mu);
        if (!stopping && queue.size() < pool_size) {
          queue.push_back(std::move(job));
          queued = true;
        }
      }
      if (queued) {
        q_cv.notify_one();
      } else {
        connections_dropped_busy++;
        (is_tls ? refused_tls : refused_plain)++;
        PHI_LOG(kWarning, "dicom connection dropped: worker pool busy",
                {{"peer", log::Safe(job.peer)}});
        close(fd);
      }
    }
  }
}

void DicomServer::Impl::WorkerLoop() {
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> l(q_mu);
      q_cv.wait(l, [&] { return stopping || !queue.empty(); });
      if (queue.empty()) return;  // stopping
      job = std::move(queue.front());
      queue.pop_front();
    }
    Serve(std::move(job));
  }
}

void DicomServer::Impl::Serve(Job job) {
  auto snap_ptr = Current();
  const Snapshot& s = *snap_ptr;
  const char* listener = job.tls ? "dicom-tls" : "dicom";
  std::atomic<uint64_t>& open_count = job.tls ? open_tls : open_plain;
  {
    std::lock_guard<std::mutex> l(conn_mu);
    open_fds.insert(job.fd);
  }
  open_count++;
  auto unregister = [&] {
    std::lock_guard<std::mutex> l(conn_mu);
    open_fds.erase(job.fd);
    open_count--;
    conn_cv.notify_all();
  };

  AssociationEvent ev;
  ev.listener = listener;
  ev.peer = job.peer;

  if (job.tls && !s.tls) {  // TLS listener turned off by a reload
    unregister();
    close(job.fd);
    return;
  }

  // Wait here, not inside DCMTK, for the peer's first bytes (the TLS
  // ClientHello or the A-ASSOCIATE-RQ), bounded by the ACSE timeout: a silent
  // peer then costs one worker sleeping in poll(), and DCMTK's blocking
  // handshake starts only once the peer has spoken.
  {
    pollfd pf{job.fd, POLLIN, 0};
    int rc;
    do {
      rc = poll(&pf, 1, static_cast<int>(s.cfg.acse_timeout_seconds) * 1000);
    } while (rc < 0 && errno == EINTR);
    if (rc <= 0 || (pf.revents & (POLLERR | POLLNVAL)) != 0) {
      PHI_LOG(kInfo, "dicom connection closed before association",
              {{"peer", log::Safe(job.peer)},
               {"listener", log::Safe(listener)},
               {"reason", log::Safe(rc == 0 ? "silent until the ACSE timeout" : "socket error")}});
      unregister();
      close(job.fd);
      return;
    }
  }

  // Hand the socket to DCMTK (header comment): the lock is released in
  // HandoffLayer::createConnection, before any peer I/O.
  g_handoff_mu.lock();
  t_handoff_held = true;
  t_tls_layer = job.tls ? s.tls.get() : nullptr;
  dcmExternalSocketHandle.set(job.fd);
  T_ASC_Association* assoc = nullptr;
  OFCondition cond = ASC_receiveAssociation(
      net, &assoc, static_cast<long>(s.cfg.max_pdu_bytes), nullptr, nullptr,
      job.tls ? OFTrue : OFFalse, DUL_NOBLOCK, static_cast<int>(s.cfg.acse_timeout_seconds));
  bool taken = !t_handoff_held;
  ReleaseHandoff();
  t_tls_layer = nullptr;

  auto finish = [&](bool abort) {
    unregister();  // before DCMTK closes the fd, so Drain never touches a reused fd
    if (assoc != nullptr) {
      if (abort) ASC_abortAssociation(assoc);
      ASC_dropSCPAssociation(assoc);
      ASC_destroyAssociation(&assoc);
    }
    if (!taken) close(job.fd);
  };

  if (cond.bad()) {
    if (job.tls && (cond.module() == OFM_dcmtls || cond.code() == DULC_TLSERROR)) {
      tls_handshake_failed++;
      refused_tls++;
      ev.kind = AssociationEvent::Kind::kTlsFailed;
      ev.reason = "TLS handshake failed";
      PHI_LOG(kWarning, "dicom TLS handshake failed",
              {{"peer", log::Safe(job.peer)}, {"error", log::Safe(cond.text())}});
      Audit(ev);
    } else {
      PHI_LOG(kInfo, "dicom connection closed before association",
              {{"peer", log::Safe(job.peer)},
               {"listener", log::Safe(listener)},
               {"error", log::Safe(cond.text())}});
    }
    finish(false);
    return;
  }

  if (assoc->params->DULparams.calledAPTitle[0] == '\0' &&
      assoc->params->DULparams.callingAPTitle[0] == '\0') {
    // DCMTK reports success for a connection closed before any A-ASSOCIATE-RQ.
    PHI_LOG(kInfo, "dicom connection closed before association",
            {{"peer", log::Safe(job.peer)}, {"listener", log::Safe(listener)}});
    finish(false);
    return;
  }

  AssociationRequest rq;
  rq.called_ae = Trim(assoc->params->DULparams.calledAPTitle);
  rq.calling_ae = Trim(assoc->params->DULparams.callingAPTitle);
  rq.peer_ip = job.peer_ip;
  rq.tls = job.tls;
  if (job.tls) {
    std::string subj = SubjectOf(assoc);
    if (!subj.empty()) rq.client_subject = subj;
  }
  ev.calling_ae = rq.calling_ae;
  ev.called_ae = rq.called_ae;
  ev.client_subject = rq.client_subject.value_or("");

  PolicyDecision d = s.policy->Evaluate(rq);
  bool acquired = false;
  if (d.reject == RejectKind::kNone) {
    acquired = limiter.TryAcquire(rq.calling_ae, d.per_ae_limit);
    if (!acquired) {
      d.reject = RejectKind::kLocalLimitExceeded;
      d.why = "association limit reached";
    }
  }
  if (d.reject != RejectKind::kNone) {
    T_ASC_RejectParameters rej{};
    switch (d.reject) {
      case RejectKind::kCalledAeNotRecognized:
        rej = {ASC_RESULT_REJECTEDPERMANENT, ASC_SOURCE_SERVICEUSER,
               ASC_REASON_SU_CALLEDAETITLENOTRECOGNIZED};
        break;
      case RejectKind::kCallingAeNotRecognized:
        rej = {ASC_RESULT_REJECTEDPERMANENT, ASC_SOURCE_SERVICEUSER,
               ASC_REASON_SU_CALLINGAETITLENOTRECOGNIZED};
        break;
      default:
        rej = {ASC_RESULT_REJECTEDTRANSIENT, ASC_SOURCE_SERVICEPROVIDER_PRESENTATION_RELATED,
               ASC_REASON_SP_PRES_LOCALLIMITEXCEEDED};
        break;
    }
    associations_rejected++;
    (job.tls ? refused_tls : refused_plain)++;
    PHI_LOG(kWarning, "dicom association rejected",
            {{"peer", log::Safe(job.peer)},
             {"listener", log::Safe(listener)},
             {"calling_ae", log::Safe(rq.calling_ae)},
             {"called_ae", log::Safe(rq.called_ae)},
             {"reason", log::Safe(d.why)}});
    ev.kind = AssociationEvent::Kind::kRejected;
    ev.reason = d.why;
    Audit(ev);
    (void)ASC_rejectAssociation(assoc, &rej);
    finish(false);
    return;
  }

  // Accept: every storage SOP class, verification and storage commitment.
  static const std::vector<const char*> kAbstract = AbstractSyntaxes();
  static const std::vector<const char*> kTransfer = TransferSyntaxes();
  cond = ASC_acceptContextsWithPreferredTransferSyntaxes(
      assoc->params, const_cast<const char**>(kAbstract.data()), static_cast<int>(kAbstract.size()),
      const_cast<const char**>(kTransfer.data()), static_cast<int>(kTransfer.size()));
  OFStandard::strlcpy(assoc->params->ourImplementationClassUID, kImplementationClassUid,
                      sizeof(assoc->params->ourImplementationClassUID));
  OFStandard::strlcpy(assoc->params->ourImplementationVersionName, kImplementationVersionName,
                      sizeof(assoc->params->ourImplementationVersionName));
  ASC_setAPTitles(assoc->params, nullptr, nullptr, s.cfg.ae_title.c_str());
  if (cond.good()) cond = ASC_acknowledgeAssociation(assoc);
  if (cond.bad()) {
    PHI_LOG(kWarning, "dicom association accept failed",
            {{"peer", log::Safe(job.peer)}, {"error", log::Safe(cond.text())}});
    limiter.Release(rq.calling_ae);
    finish(true);
    return;
  }
  associations_accepted++;
  ev.kind = AssociationEvent::Kind::kAccepted;
  Audit(ev);
  PHI_LOG(kInfo, "dicom association accepted",
          {{"peer", log::Safe(job.peer)},
           {"listener", log::Safe(listener)},
           {"calling_ae", log::Safe(rq.calling_ae)}});
  SetTimeouts(job.fd, s.cfg.network_timeout_seconds);

  bool abort = false;
  const char* end_reason = "released";
  for (;;) {
    T_DIMSE_Message msg{};
    T_ASC_PresentationContextID pid = 0;
    DcmDataset* detail = nullptr;
    cond = DIMSE_receiveCommand(assoc, DIMSE_NONBLOCKING,
                                static_cast<int>(s.cfg.dimse_timeout_seconds), &pid, &msg, &detail);
    delete detail;
    if (cond == DUL_PEERREQUESTEDRELEASE) {
      ASC_acknowledgeRelease(assoc);
      break;
    }
    if (cond == DUL_PEERABORTEDASSOCIATION) {
      end_reason = "peer aborted";
      break;
    }
    if (cond == DIMSE_NODATAAVAILABLE) {
      end_reason = "DIMSE timeout";
      abort = true;
      break;
    }
    if (cond.bad()) {
      end_reason = "network error";
      abort = true;
      break;
    }
    bool keep = true;
    switch (msg.CommandField) {
      case DIMSE_C_ECHO_RQ:
        echo_ok++;  // counted before the response, so a peer never sees it uncounted
        keep = DIMSE_sendEchoResponse(assoc, pid, &msg.msg.CEchoRQ, STATUS_Success, nullptr).good();
        break;
      case DIMSE_C_STORE_RQ:
        keep = HandleStore(assoc, pid, msg.msg.CStoreRQ, s, ev);
        break;
      case DIMSE_N_ACTION_RQ:
        keep = HandleCommit(assoc, pid, msg.msg.NActionRQ, s, ev);
        break;
      default:
        PHI_LOG(kWarning, "dicom unsupported DIMSE command: aborting",
                {{"peer", log::Safe(job.peer)}, {"command", static_cast<int>(msg.CommandField)}});
        end_reason = "unsupported command";
        keep = false;
        break;
    }
    if (!keep) {
      if (std::strcmp(end_reason, "released") == 0) end_reason = "transfer failed";
      abort = true;
      break;
    }
  }
  limiter.Release(rq.calling_ae);
  if (abort) associations_aborted++;
  ev.kind = abort || std::strcmp(end_reason, "peer aborted") == 0
                ? AssociationEvent::Kind::kAborted
                : AssociationEvent::Kind::kReleased;
  ev.reason = end_reason;
  Audit(ev);
  PHI_LOG(kInfo, "dicom association ended",
          {{"peer", log::Safe(job.peer)},
           {"calling_ae", log::Safe(rq.calling_ae)},
           {"how", log::Safe(end_reason)}});
  finish(abort);
}

bool DicomServer::Impl::HandleStore(T_ASC_Association* assoc, T_ASC_PresentationContextID pid,
                                    T_DIMSE_C_StoreRQ& rq, const Snapshot& s,
                                    const AssociationEvent& who) {
  T_ASC_PresentationContext pc{};
  OFCondition cond = ASC_findAcceptedPresentationContext(assoc->params, pid, &pc);
  MetaInfo meta;
  meta.sop_class_uid = Trim(rq.AffectedSOPClassUID);
  meta.sop_instance_uid = Trim(rq.AffectedSOPInstanceUID);
  meta.transfer_syntax_uid = Trim(pc.acceptedTransferSyntax);
  meta.source_ae = who.calling_ae;
  auto header = BuildPart10Header(meta);

  std::vector<std::byte> buf;
  uint64_t cap = options.max_object_bytes;
  // One allocation for a typical image (512x512x16 bits is 512 KiB) instead of
  // ~20 doublings and copies; large objects still grow geometrically up to cap.
  buf.reserve(static_cast<size_t>(std::min<uint64_t>(cap, kInitialObjectBuffer)));
  if (header.ok()) {
    buf.insert(buf.end(), header->begin(), header->end());
    cap += header->size();
  }
  BoundedBufferStream stream(&buf, cap);
  T_ASC_PresentationContextID data_pid = pid;
  cond = DIMSE_receiveDataSetInFile(assoc, DIMSE_NONBLOCKING,
                                    static_cast<int>(s.cfg.dimse_timeout_seconds), &data_pid,
                                    &stream, nullptr, nullptr);
  if (cond.bad()) {
    cstore_refused++;
    PHI_LOG(kWarning, "dicom C-STORE transfer failed: nothing stored",
            {{"peer", log::Safe(who.peer)},
             {"calling_ae", log::Safe(who.calling_ae)},
             {"error", log::Safe(cond.text())}});
    return false;
  }

  uint16_t status = kDimseSuccess;
  const char* why = "";
  services::StoreResult stored;
  if (stream.overflowed()) {
    status = kDimseOutOfResources;
    why = "dataset exceeds the size cap";
  } else if (!header.ok() || !cond.good()) {
    status = kDimseCannotUnderstand;
    why = "bad C-STORE request UIDs";
  } else if (data_pid != pid || Trim(pc.abstractSyntax) != meta.sop_class_uid) {
    status = kDimseDataSetDoesNotMatchSop;
    why = "SOP class does not match the presentation context";
  } else {
    auto attrs = ParseInstance(buf);
    if (!attrs.ok()) {
      status = StoreStatusToDimse(attrs.status());
      why = attrs.status().code() == Code::kCorruption ? "dataset does not parse"
                                                       : "dataset lacks required UIDs";
    } else if (attrs->sop_class_uid != meta.sop_class_uid ||
               attrs->sop_instance_uid != meta.sop_instance_uid) {
      status = kDimseDataSetDoesNotMatchSop;
      why = "dataset does not match the C-STORE request";
    } else {
      services::IngestContext ctx;
      ctx.actor = "dicom:" + who.calling_ae;
      ctx.peer = who.peer;
      ctx.calling_ae = who.calling_ae;
      auto r = ingest.Store(ctx, *attrs, buf);
      status = StoreStatusToDimse(r.status());
      if (r.ok()) {
        stored = *r;
      } else {
        why = "ingest refused";
        PHI_LOG(kWarning, "dicom ingest store failed",
                {{"peer", log::Safe(who.peer)}, {"status", r.status()}});
      }
    }
  }
  buf.clear();
  buf.shrink_to_fit();

  if (status == kDimseSuccess) {
    cstore_ok++;
    PHI_LOG(kInfo, "dicom C-STORE stored",
            {{"calling_ae", log::Safe(who.calling_ae)},
             {"sop_instance_uid", log::Safe(meta.sop_instance_uid)},
             {"object_id", log::Safe(stored.object_id)},
             {"outcome", static_cast<int>(stored.outcome)}});
    AssociationEvent e = who;
    e.kind = AssociationEvent::Kind::kStored;
    e.sop_instance_uid = meta.sop_instance_uid;
    Audit(e);
  } else {
    cstore_refused++;
    PHI_LOG(kWarning, "dicom C-STORE refused",
            {{"peer", log::Safe(who.peer)},
             {"calling_ae", log::Safe(who.calling_ae)},
             {"dimse_status", static_cast<int>(status)},
             {"reason", log::Safe(why)}});
  }
  T_DIMSE_C_StoreRSP rsp{};
  rsp.MessageIDBeingRespondedTo = rq.MessageID;
  rsp.DimseStatus = status;
  rsp.DataSetType = DIMSE_DATASET_NULL;
  OFStandard::strlcpy(rsp.AffectedSOPClassUID, rq.AffectedSOPClassUID,
                      sizeof(rsp.AffectedSOPClassUID));
  OFStandard::strlcpy(rsp.AffectedSOPInstanceUID, rq.AffectedSOPInstanceUID,
                      sizeof(rsp.AffectedSOPInstanceUID));
  rsp.opts = O_STORE_AFFECTEDSOPCLASSUID | O_STORE_AFFECTEDSOPINSTANCEUID;
  return DIMSE_sendStoreResponse(assoc, pid, &rq, &rsp, nullptr).good();
}

bool DicomServer::Impl::HandleCommit(T_ASC_Association* assoc, T_ASC_PresentationContextID pid,
                                     T_DIMSE_N_ActionRQ& rq, const Snapshot& s,
                                     const AssociationEvent& who) {
  commitment_requests++;
  T_ASC_PresentationContext pc{};
  if (ASC_findAcceptedPresentationContext(assoc->params, pid, &pc).bad()) return false;
  std::vector<std::byte> buf;
  bool have_data = rq.DataSetType != DIMSE_DATASET_NULL;
  bool overflow = false;
  if (have_data) {
    BoundedBufferStream stream(&buf, options.max_commitment_bytes);
    T_ASC_PresentationContextID data_pid = pid;
    OFCondition c = DIMSE_receiveDataSetInFile(assoc, DIMSE_NONBLOCKING,
                                               static_cast<int>(s.cfg.dimse_timeout_seconds),
                                               &data_pid, &stream, nullptr, nullptr);
    if (c.bad()) return false;
    overflow = stream.overflowed();
  }

  uint16_t status = kDimseSuccess;
  std::string transaction_uid;
  std::vector<std::pair<std::string, std::string>> refs;  // class, instance
  if (Trim(rq.RequestedSOPClassUID) != UID_StorageCommitmentPushModelSOPClass ||
      Trim(rq.RequestedSOPInstanceUID) != UID_StorageCommitmentPushModelSOPInstance ||
      Trim(pc.abstractSyntax) != UID_StorageCommitmentPushModelSOPClass) {
    status = kDimseProcessingFailure;
  } else if (rq.ActionTypeID != 1) {
    status = kDimseNoSuchActionType;
  } else if (!have_data || overflow) {
    status = kDimseProcessingFailure;
  } else {
    DcmDataset ds;
    DcmInputBufferStream in;
    in.setBuffer(buf.data(), static_cast<offile_off_t>(buf.size()));
    in.setEos();
    E_TransferSyntax xfer = DcmXfer(Trim(pc.acceptedTransferSyntax).c_str()).getXfer();
    ds.transferInit();
    OFCondition c = ds.read(in, xfer);
    ds.transferEnd();
    OFString tuid;
    if (c.bad() || ds.findAndGetOFString(DCM_TransactionUID, tuid).bad() || tuid.empty()) {
      status = kDimseProcessingFailure;
    } else {
      transaction_uid = tuid.c_str();
      DcmItem* item = nullptr;
      for (unsigned long i = 0;
           ds.findAndGetSequenceItem(DCM_ReferencedSOPSequence, item, static_cast<int>(i)).good() &&
           i < 100000;
           ++i) {
        OFString cls, inst;
        item->findAndGetOFString(DCM_ReferencedSOPClassUID, cls);
        item->findAndGetOFString(DCM_ReferencedSOPInstanceUID, inst);
        refs.emplace_back(cls.c_str(), inst.c_str());
      }
      if (refs.empty()) status = kDimseProcessingFailure;
    }
  }

  T_DIMSE_Message rsp{};
  rsp.CommandField = DIMSE_N_ACTION_RSP;
  T_DIMSE_N_ActionRSP& a = rsp.msg.NActionRSP;
  a.MessageIDBeingRespondedTo = rq.MessageID;
  a.DimseStatus = status;
  a.DataSetType = DIMSE_DATASET_NULL;
  a.ActionTypeID = rq.ActionTypeID;
  OFStandard::strlcpy(a.AffectedSOPClassUID, rq.RequestedSOPClassUID,
                      sizeof(a.AffectedSOPClassUID));
  OFStandard::strlcpy(a.AffectedSOPInstanceUID, rq.RequestedSOPInstanceUID,
                      sizeof(a.AffectedSOPInstanceUID));
  a.opts =
      O_NACTION_AFFECTEDSOPCLASSUID | O_NACTION_AFFECTEDSOPINSTANCEUID | O_NACTION_ACTIONTYPEID;
  if (DIMSE_sendMessageUsingMemoryData(assoc, pid, &rsp, nullptr, nullptr, nullptr, nullptr)
          .bad()) {
    return false;
  }
  PHI_LOG(kInfo, "dicom storage commitment request",
          {{"calling_ae", log::Safe(who.calling_ae)},
           {"transaction_uid", log::Safe(transaction_uid)},
           {"instances", static_cast<uint64_t>(refs.size())},
           {"dimse_status", static_cast<int>(status)}});
  if (status != kDimseSuccess) return true;

  // N-EVENT-REPORT on the same association: success only for what Ingest
  // confirms is durably stored.
  DcmDataset event;
  event.putAndInsertString(DCM_TransactionUID, transaction_uid.c_str());
  size_t failures = 0;
  for (const auto& [cls, inst] : refs) {
    auto st = ingest.IsStored(inst);
    bool ok = st.ok() && *st;
    DcmItem* item = nullptr;
    event.findOrCreateSequenceItem(ok ? DCM_ReferencedSOPSequence : DCM_FailedSOPSequence, item,
                                   -2);
    if (item == nullptr) continue;
    item->putAndInsertString(DCM_ReferencedSOPClassUID, cls.c_str());
    item->putAndInsertString(DCM_ReferencedSOPInstanceUID, inst.c_str());
    if (!ok) {
      ++failures;
      item->putAndInsertUint16(DCM_FailureReason,
                               st.ok() ? kDimseNoSuchObjectInstance : kDimseProcessingFailure);
    }
  }
  T_DIMSE_Message er{};
  er.CommandField = DIMSE_N_EVENT_REPORT_RQ;
  T_DIMSE_N_EventReportRQ& e = er.msg.NEventReportRQ;
  e.MessageID = assoc->nextMsgID++;
  OFStandard::strlcpy(e.AffectedSOPClassUID, UID_StorageCommitmentPushModelSOPClass,
                      sizeof(e.AffectedSOPClassUID));
  OFStandard::strlcpy(e.AffectedSOPInstanceUID, UID_StorageCommitmentPushModelSOPInstance,
                      sizeof(e.AffectedSOPInstanceUID));
  e.DataSetType = DIMSE_DATASET_PRESENT;
  e.EventTypeID = failures ? 2 : 1;
  if (DIMSE_sendMessageUsingMemoryData(assoc, pid, &er, nullptr, &event, nullptr, nullptr).bad()) {
    return false;
  }
  T_DIMSE_Message reply{};
  T_ASC_PresentationContextID rpid = 0;
  DcmDataset* detail = nullptr;
  OFCondition c =
      DIMSE_receiveCommand(assoc, DIMSE_NONBLOCKING, static_cast<int>(s.cfg.dimse_timeout_seconds),
                           &rpid, &reply, &detail);
  delete detail;
  if (c.bad() || reply.CommandField != DIMSE_N_EVENT_REPORT_RSP) {
    PHI_LOG(kWarning, "dicom storage commitment report not acknowledged",
            {{"calling_ae", log::Safe(who.calling_ae)},
             {"transaction_uid", log::Safe(transaction_uid)}});
    return c.good();
  }
  return true;
}

void DicomServer::Impl::Shutdown(MonotonicTime deadline) {
  // Wait for open associations, then cut the rest.
  {
    std::unique_lock<std::mutex> l(conn_mu);
    conn_cv.wait_until(l, deadline, [&] { return open_fds.empty(); });
    for (int fd : open_fds) shutdown(fd, SHUT_RDWR);
  }
  {
    std::lock_guard<std::mutex> l(q_mu);
    stopping = true;
    for (auto& j : queue) close(j.fd);
    queue.clear();
  }
  q_cv.notify_all();
  for (auto& t : workers) {
    if (t.joinable()) t.join();
  }
  workers.clear();
  if (net != nullptr) {
    ASC_dropNetwork(&net);
    net = nullptr;
  }
}

// ---------------------------------------------------------------------------

DicomServer::DicomServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

DicomServer::~DicomServer() {
  StopAccepting();
  Drain(std::chrono::steady_clock::now());
  if (impl_->wake[0] >= 0) close(impl_->wake[0]);
  if (impl_->wake[1] >= 0) close(impl_->wake[1]);
}

static Status ValidateConfig(const config::DicomConfig& cfg) {
  if (cfg.ae_title.empty() || cfg.ae_title.size() > 16) {
    return Status::InvalidArgument("dicom.ae_title: must be 1-16 characters");
  }
  if (cfg.max_pdu_bytes < 4096 || cfg.max_pdu_bytes > (16u << 20)) {
    return Status::InvalidArgument("dicom.max_pdu_bytes: must be 4096..16777216");
  }
  if (cfg.max_associations == 0 || cfg.max_associations > 1024) {
    return Status::InvalidArgument("dicom.max_associations: must be 1..1024");
  }
  if (cfg.acse_timeout_seconds == 0 || cfg.dimse_timeout_seconds == 0 ||
      cfg.network_timeout_seconds == 0) {
    return Status::InvalidArgument("dicom timeouts must be > 0");
  }
  return Status::Ok();
}

static Result<std::shared_ptr<const Snapshot>> MakeSnapshot(const config::DicomConfig& cfg,
                                                            const config::TlsConfig& tls) {
  PHI_RETURN_IF_ERROR(ValidateConfig(cfg));
  auto s = std::make_shared<Snapshot>();
  s->cfg = cfg;
  if (cfg.tls.enabled) {
    PHI_ASSIGN_OR_RETURN(s->tls, BuildTlsLayer(tls, cfg.tls.require_client_cert));
  }
  s->policy = std::make_shared<const AssociationPolicy>(cfg);
  return std::shared_ptr<const Snapshot>(std::move(s));
}

Result<std::unique_ptr<DicomServer>> DicomServer::Create(const config::DicomConfig& cfg,
                                                         const config::TlsConfig& tls,
                                                         services::Ingest& ingest, Env& env,
                                                         DicomServerOptions options) {
  InitDcmtkOnce();
  PHI_ASSIGN_OR_RETURN(auto snap, MakeSnapshot(cfg, tls));
  auto impl = std::make_unique<Impl>(cfg, ingest, env, std::move(options));
  impl->snap = std::move(snap);
  return std::unique_ptr<DicomServer>(new DicomServer(std::move(impl)));
}

Status DicomServer::Start() {
  Impl& m = *impl_;
  if (m.started.load()) return Status::Internal("DicomServer already started");
  auto s = m.Current();
  uint16_t port = 0;
  if (s->cfg.tls.enabled) {
    PHI_RETURN_IF_ERROR(m.Bind(s->cfg.tls, &m.tls_fd, &m.tls_addr, &port));
    tls_port_ = port;
  }
  if (s->cfg.plain.enabled) {
    Status st = m.Bind(s->cfg.plain, &m.plain_fd, &m.plain_addr, &port);
    if (!st.ok()) {
      if (m.tls_fd >= 0) close(m.tls_fd);
      m.tls_fd = -1;
      return st;
    }
    plain_port_ = port;
  }
  if (pipe2(m.wake, O_CLOEXEC) != 0) return PosixError("pipe", errno);

  // The DCMTK network never listens: while it is created, the handoff global
  // holds a (any) valid descriptor, which makes DUL skip its own listen socket.
  {
    std::lock_guard<std::mutex> l(g_handoff_mu);
    dcmExternalSocketHandle.set(m.wake[0]);
    OFCondition c = ASC_initializeNetwork(NET_ACCEPTOR, 0,
                                          static_cast<int>(s->cfg.acse_timeout_seconds), &m.net);
    dcmExternalSocketHandle.set(-1);
    if (c.bad()) return Status::Internal(std::string("DCMTK network: ") + c.text());
  }
  OFCondition c = ASC_setTransportLayer(m.net, &m.handoff_layer, 0);
  if (c.bad()) return Status::Internal(std::string("DCMTK transport layer: ") + c.text());

  m.pool_size = s->cfg.max_associations + m.options.spare_workers;
  for (size_t i = 0; i < m.pool_size; ++i) m.workers.emplace_back([&m] { m.WorkerLoop(); });
  m.accepting = true;
  m.started = true;
  m.acceptor = std::thread([&m] { m.AcceptLoop(); });
  PHI_LOG(kNotice, "dicom listening",
          {{"tls", log::Safe(m.tls_addr)},
           {"plain", log::Safe(m.plain_addr)},
           {"ae_title", log::Safe(s->cfg.ae_title)}});
  return Status::Ok();
}

Status DicomServer::Reload(const config::Config& cfg) {
  Impl& m = *impl_;
  auto r = MakeSnapshot(cfg.dicom, cfg.tls);
  if (!r.ok()) {
    PHI_LOG(kError, "dicom reload failed: keeping the previous settings", {{"status", r.status()}});
    return r.status();
  }
  auto old = m.Current();
  if (old->cfg.max_associations != cfg.dicom.max_associations ||
      old->cfg.tls.port != cfg.dicom.tls.port || old->cfg.plain.port != cfg.dicom.plain.port ||
      old->cfg.tls.enabled != cfg.dicom.tls.enabled ||
      old->cfg.plain.enabled != cfg.dicom.plain.enabled) {
    PHI_LOG(kWarning, "dicom reload: listener addresses and pool size apply after restart");
  }
  {
    std::lock_guard<std::mutex> l(m.snap_mu);
    m.snap = *r;
  }
  m.limiter.SetLimits(std::min(cfg.dicom.max_associations, old->cfg.max_associations),
                      cfg.dicom.max_associations_per_ae);
  PHI_LOG(kNotice, "dicom reloaded");
  return Status::Ok();
}

void DicomServer::StopAccepting() {
  Impl& m = *impl_;
  if (m.accepting.exchange(false)) {
    char b = 1;
    (void)!write(m.wake[1], &b, 1);
  }
  if (m.acceptor.joinable()) m.acceptor.join();
  if (m.tls_fd >= 0) close(m.tls_fd);
  if (m.plain_fd >= 0) close(m.plain_fd);
  m.tls_fd = m.plain_fd = -1;
}

void DicomServer::Drain(MonotonicTime deadline) {
  StopAccepting();
  impl_->Shutdown(deadline);
}

std::vector<ListenerStatus> DicomServer::Listeners() const {
  const Impl& m = *impl_;
  auto s = m.Current();
  std::vector<ListenerStatus> out;
  auto state = [&](bool enabled) -> std::string {
    if (!enabled) return "disabled";
    return m.accepting.load() ? "listening" : "stopped";
  };
  ListenerStatus t;
  t.name = "dicom-tls";
  t.address =
      m.tls_addr.empty() ? s->cfg.tls.bind + ":" + std::to_string(s->cfg.tls.port) : m.tls_addr;
  t.tls = true;
  t.state = state(s->cfg.tls.enabled);
  t.open_connections = m.open_tls.load();
  t.accepted_total = m.accepted_tls.load();
  t.refused_total = m.refused_tls.load();
  out.push_back(t);
  ListenerStatus p;
  p.name = "dicom";
  p.address = m.plain_addr.empty() ? s->cfg.plain.bind + ":" + std::to_string(s->cfg.plain.port)
                                   : m.plain_addr;
  p.tls = false;
  p.state = state(s->cfg.plain.enabled);
  p.open_connections = m.open_plain.load();
  p.accepted_total = m.accepted_plain.load();
  p.refused_total = m.refused_plain.load();
  out.push_back(p);
  return out;
}

DicomStats DicomServer::stats() const {
  DicomStats s;
#define PHI_DICOM_STAT_COPY(name) s.name = impl_->name.load();
  PHI_DICOM_STATS(PHI_DICOM_STAT_COPY)
#undef PHI_DICOM_STAT_COPY
  return s;
}

}  // namespace phi::dicom
