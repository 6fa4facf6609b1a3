// End-to-end tests of phi::dicom::DicomServer: an in-process server on
// loopback ephemeral ports with an in-memory Ingest (a test double of the
// storage service), driven by DCMTK's real command-line tools and, where no
// tool exists (Storage Commitment, hand-made bad requests, holding an
// association open), by DCMTK's SCU API.
#include "libphi/dicom/dicom_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmnet/assoc.h"
#include "dcmtk/dcmnet/dimse.h"
#include "dcmtk/dcmnet/scu.h"
#include "libphi/dicom/part10.h"
#include "libphi/services/ingest.h"
#include "tests/support/temp_dir.h"

namespace phi::dicom {
namespace {

using phi::testing::ReadFile;
using phi::testing::TempDir;
using phi::testing::WriteFile;

// ---- test double of the storage service -----------------------------------

class MemoryIngest : public services::Ingest {
 public:
  Result<services::StoreResult> Store(const services::IngestContext& ctx,
                                      const services::InstanceAttributes& attrs,
                                      std::span<const std::byte> part10) override {
    std::lock_guard<std::mutex> l(mu_);
    if (fail_next_) {
      fail_next_ = false;
      return Status::ResourceExhausted("test: disk full");
    }
    services::StoreResult r;
    if (objects_.count(attrs.sop_instance_uid)) {
      r.outcome = services::StoreOutcome::kDuplicateKept;
      r.object_id = ids_[attrs.sop_instance_uid];
      return r;
    }
    objects_[attrs.sop_instance_uid] = std::vector<std::byte>(part10.begin(), part10.end());
    attrs_[attrs.sop_instance_uid] = attrs;
    actors_.push_back(ctx.actor);
    r.object_id = "obj-" + std::to_string(objects_.size());
    ids_[attrs.sop_instance_uid] = r.object_id;
    return r;
  }
  Result<bool> IsStored(const std::string& uid) override {
    std::lock_guard<std::mutex> l(mu_);
    return objects_.count(uid) > 0;
  }
  size_t count() {
    std::lock_guard<std::mutex> l(mu_);
    return objects_.size();
  }
  std::vector<std::byte> object(const std::string& uid) {
    std::lock_guard<std::mutex> l(mu_);
    return objects_.count(uid) ? objects_[uid] : std::vector<std::byte>{};
  }
  services::InstanceAttributes attrs(const std::string& uid) {
    std::lock_guard<std::mutex> l(mu_);
    return attrs_[uid];
  }
  void FailNext() {
    std::lock_guard<std::mutex> l(mu_);
    fail_next_ = true;
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::vector<std::byte>> objects_;
  std::map<std::string, services::InstanceAttributes> attrs_;
  std::map<std::string, std::string> ids_;
  std::vector<std::string> actors_;
  bool fail_next_ = false;
};

// ---- helpers ----------------------------------------------------------------

struct RunResult {
  int code = -1;
  std::string out;
};

// Runs a shell command with TCP_NODELAY=1, capturing stdout+stderr.
RunResult RunCmd(const std::filesystem::path& dir, const std::string& cmd) {
  static std::atomic<int> n{0};
  auto log = dir / ("run-" + std::to_string(n++) + ".log");
  int rc = std::system(("TCP_NODELAY=1 " + cmd + " >'" + log.string() + "' 2>&1").c_str());
  RunResult r;
  r.code = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  r.out = ReadFile(log);
  return r;
}

// Offset of the dataset in a Part 10 byte string: 132 + 12 + group length.
size_t DatasetOffset(const std::string& bytes) {
  if (bytes.size() < 144 || bytes.compare(128, 4, "DICM") != 0) return std::string::npos;
  uint32_t gl = 0;
  for (int i = 3; i >= 0; --i) gl = (gl << 8) | static_cast<unsigned char>(bytes[140 + i]);
  return 144 + gl;
}

std::string ToString(const std::vector<std::byte>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size());
}

std::string Hex64(int count, int mul) {
  std::ostringstream s;
  for (int i = 0; i < count; ++i) {
    if (i) s << '\\';
    char b[4];
    std::snprintf(b, sizeof(b), "%02x", (i * mul) & 0xff);
    s << b;
  }
  return s.str();
}

// Polls `pred` until true or 20 s pass (a functional wait, not a timing assertion).
template <typename F>
bool WaitFor(F pred) {
  auto end = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return pred();
}

constexpr char kRoot[] = "1.2.826.0.1.3680043.10.1137.99";

// One corpus file: dump text, dump2dcm options, storescu options.
struct CorpusFile {
  std::string name;
  std::string sop_instance;
  std::string dump;
  std::string dump2dcm_opts;
  std::string post;  // "jpeg": compress with dcmcjpeg
  std::string storescu_opts;
};

std::string ImageDump(const std::string& uid, int frames) {
  std::ostringstream d;
  d << "(0008,0005) CS [ISO_IR 192]\n"
    << "(0008,0016) UI =SecondaryCaptureImageStorage\n"
    << "(0008,0018) UI [" << uid << "]\n"
    << "(0008,0060) CS [OT]\n"
    << "(0010,0010) PN [Bild^Anna]\n"
    << "(0020,000d) UI [" << kRoot << ".1]\n"
    << "(0020,000e) UI [" << kRoot << ".1.1]\n"
    << "(0028,0002) US 1\n(0028,0004) CS [MONOCHROME2]\n";
  if (frames > 1) d << "(0028,0008) IS [" << frames << "]\n";
  d << "(0028,0010) US 8\n(0028,0011) US 8\n(0028,0100) US 8\n(0028,0101) US 8\n"
    << "(0028,0102) US 7\n(0028,0103) US 0\n"
    << "(7fe0,0010) OB " << Hex64(64 * frames, 7) << "\n";
  return d.str();
}

std::vector<CorpusFile> Corpus() {
  std::vector<CorpusFile> c;
  std::string common = std::string("(0020,000d) UI [") + kRoot + ".1]\n(0020,000e) UI [" + kRoot +
                       ".1.2]\n(0010,0020) LO [PID-42]\n(0008,0050) SH [ACC-42]\n";
  c.push_back({"utf8_explicit", std::string(kRoot) + ".2.1",
               "(0008,0005) CS [ISO_IR 192]\n(0008,0016) UI =SecondaryCaptureImageStorage\n"
               "(0008,0018) UI [" +
                   std::string(kRoot) +
                   ".2.1]\n(0008,0060) CS [OT]\n"
                   "(0010,0010) PN [M\xC3\xBCller^Hans]\n" +
                   common +
                   "(0008,1140) SQ (Sequence with undefined length)\n"
                   "  (fffe,e000) na (Item with undefined length)\n"
                   "    (0008,1150) UI =CTImageStorage\n    (0008,1155) UI [1.2.3.4.5]\n"
                   "  (fffe,e00d) na (ItemDelimitationItem)\n"
                   "(fffe,e0dd) na (SequenceDelimitationItem)\n"
                   "(0009,0010) LO [PHITEST]\n(0009,1001) LO [private value]\n",
               "+te", "", ""});
  c.push_back({"latin1_implicit", std::string(kRoot) + ".2.2",
               "(0008,0005) CS [ISO_IR 100]\n(0008,0016) UI =CTImageStorage\n"
               "(0008,0018) UI [" +
                   std::string(kRoot) +
                   ".2.2]\n(0008,0060) CS [CT]\n"
                   "(0010,0010) PN [J\xF6rg^G\xFCnther]\n" +
                   common + "(0011,0010) LO [PHITEST2]\n(0011,1002) LO [x]\n",
               "+ti", "", "-xi"});
  c.push_back({"jpeg", std::string(kRoot) + ".2.3", ImageDump(std::string(kRoot) + ".2.3", 1),
               "+te", "jpeg", "-xs"});
  c.push_back({"multiframe", std::string(kRoot) + ".2.4", ImageDump(std::string(kRoot) + ".2.4", 3),
               "+te", "", ""});
  return c;
}

// ---- fixture ----------------------------------------------------------------

class DicomServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    suite_dir_ = new TempDir();
    pki_ = suite_dir_->path() / "pki";
    std::string cmd = std::string(PHI_SOURCE_DIR) + "/scripts/dev-pki.sh '" + pki_.string() + "'";
    auto r = RunCmd(suite_dir_->path(), cmd);
    ASSERT_EQ(r.code, 0) << r.out;
    for (const auto& f : Corpus()) {
      auto dump = suite_dir_->path() / (f.name + ".dump");
      auto dcm = suite_dir_->path() / (f.name + ".dcm");
      WriteFile(dump, f.dump);
      auto d = RunCmd(suite_dir_->path(), "dump2dcm " + f.dump2dcm_opts + " '" + dump.string() +
                                              "' '" + dcm.string() + "'");
      ASSERT_EQ(d.code, 0) << d.out;
      if (f.post == "jpeg") {
        auto j = suite_dir_->path() / (f.name + ".raw.dcm");
        std::filesystem::rename(dcm, j);
        auto cj =
            RunCmd(suite_dir_->path(), "dcmcjpeg '" + j.string() + "' '" + dcm.string() + "'");
        ASSERT_EQ(cj.code, 0) << cj.out;
      }
    }
  }
  static void TearDownTestSuite() {
    delete suite_dir_;
    suite_dir_ = nullptr;
  }

  static config::Network Net(const std::string& t) { return *ParseNetwork(t); }

  config::DicomConfig BaseConfig() {
    config::DicomConfig c;
    c.ae_title = "PHIGATE";
    c.tls = {true, "127.0.0.1", 0, true};
    c.plain = {true, "127.0.0.1", 0, false};
    c.max_associations = 8;
    c.max_associations_per_ae = 4;
    c.acse_timeout_seconds = 30;
    c.dimse_timeout_seconds = 30;
    c.network_timeout_seconds = 30;
    auto peer = [&](std::string ae, std::vector<std::string> nets, std::string subject = "",
                    uint32_t max = 0) {
      config::DicomPeer p;
      p.ae_title = std::move(ae);
      for (auto& n : nets) p.networks.push_back(Net(n));
      p.certificate_subject = std::move(subject);
      p.max_associations = max;
      c.allowed_peers.push_back(p);
    };
    peer("ECHOSCU", {"127.0.0.0/8"});
    peer("STORESCU", {"127.0.0.1/32"});
    peer("CT01", {}, "CN=CT01,O=phigate-dev");
    peer("FARAWAY", {"10.0.0.0/8"});
    peer("HOLDER", {"127.0.0.0/8"}, "", 1);
    peer("COMMITSCU", {"127.0.0.0/8"});
    peer("RAWSCU", {"127.0.0.0/8"});
    return c;
  }

  config::TlsConfig Tls() {
    config::TlsConfig t;
    t.certificate = pki_ / "server.pem";
    t.private_key = pki_ / "server.key";
    t.ca_bundle = pki_ / "ca.pem";
    t.crls = {pki_ / "crl.pem"};
    t.profile = config::TlsProfile::kBcp195;
    return t;
  }

  void StartServer(config::DicomConfig cfg, DicomServerOptions opts = {}) {
    opts.audit = [this](const AssociationEvent& e) {
      std::lock_guard<std::mutex> l(audit_mu_);
      audit_.push_back(e);
    };
    auto s = DicomServer::Create(cfg, Tls(), ingest_, env_, opts);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    server_ = std::move(*s);
    ASSERT_TRUE(server_->Start().ok());
    ASSERT_NE(server_->tls_port(), 0);
    ASSERT_NE(server_->plain_port(), 0);
  }

  void TearDown() override {
    if (server_) server_->Drain(std::chrono::steady_clock::now() + std::chrono::seconds(5));
  }

  std::string Plain() { return "127.0.0.1 " + std::to_string(server_->plain_port()); }
  std::string TlsAddr() { return "127.0.0.1 " + std::to_string(server_->tls_port()); }
  std::string TlsOpts(const std::string& who) {
    return "+tls '" + (pki_ / (who + ".key")).string() + "' '" + (pki_ / (who + ".pem")).string() +
           "' +cf '" + (pki_ / "ca.pem").string() + "' ";
  }
  RunResult Tool(const std::string& cmd) { return RunCmd(dir_.path(), cmd); }

  size_t AuditCount(AssociationEvent::Kind k) {
    std::lock_guard<std::mutex> l(audit_mu_);
    size_t n = 0;
    for (auto& e : audit_) n += e.kind == k;
    return n;
  }

  static TempDir* suite_dir_;
  static std::filesystem::path pki_;
  TempDir dir_;
  PosixEnv env_;
  MemoryIngest ingest_;
  std::unique_ptr<DicomServer> server_;
  std::mutex audit_mu_;
  std::vector<AssociationEvent> audit_;
};

TempDir* DicomServerTest::suite_dir_ = nullptr;
std::filesystem::path DicomServerTest::pki_;

// ---- echo --------------------------------------------------------------------

TEST_F(DicomServerTest, EchoPlainAndTls) {
  StartServer(BaseConfig());
  auto p = Tool("echoscu -aet ECHOSCU -aec PHIGATE " + Plain());
  EXPECT_EQ(p.code, 0) << p.out;
  auto t = Tool("echoscu -aet ECHOSCU -aec PHIGATE " + TlsOpts("clinician") + TlsAddr());
  EXPECT_EQ(t.code, 0) << t.out;
  EXPECT_EQ(server_->stats().echo_ok, 2u);
  EXPECT_EQ(server_->stats().associations_accepted, 2u);
}

// ---- store -------------------------------------------------------------------

TEST_F(DicomServerTest, StoresCorpusByteIdenticalOverTls) {
  StartServer(BaseConfig());
  for (const auto& f : Corpus()) {
    auto file = suite_dir_->path() / (f.name + ".dcm");
    auto r = Tool("storescu -aet STORESCU -aec PHIGATE " + f.storescu_opts + " " +
                  TlsOpts("modality") + TlsAddr() + " '" + file.string() + "'");
    ASSERT_EQ(r.code, 0) << f.name << "\n" << r.out;
    std::string sent = ReadFile(file);
    std::string got = ToString(ingest_.object(f.sop_instance));
    ASSERT_FALSE(got.empty()) << f.name;
    size_t so = DatasetOffset(sent), go = DatasetOffset(got);
    ASSERT_NE(so, std::string::npos);
    ASSERT_NE(go, std::string::npos);
    EXPECT_TRUE(sent.compare(so, std::string::npos, got, go, std::string::npos) == 0)
        << f.name << ": dataset bytes differ (sent " << sent.size() - so << ", got "
        << got.size() - go << ")";
    // The meta header carries the negotiated transfer syntax and our identity.
    auto a = ingest_.attrs(f.sop_instance);
    ASSERT_FALSE(a.transfer_syntax_uid.empty());
    EXPECT_NE(sent.substr(0, so).find(a.transfer_syntax_uid), std::string::npos) << f.name;
    EXPECT_NE(got.substr(0, go).find(a.transfer_syntax_uid), std::string::npos) << f.name;
    EXPECT_NE(got.find(kImplementationClassUid), std::string::npos);
  }
  EXPECT_EQ(ingest_.count(), Corpus().size());
  EXPECT_EQ(ingest_.attrs(std::string(kRoot) + ".2.1").patient_name, "M\xC3\xBCller^Hans");
  EXPECT_EQ(ingest_.attrs(std::string(kRoot) + ".2.2").patient_name, "J\xC3\xB6rg^G\xC3\xBCnther");
  EXPECT_EQ(ingest_.attrs(std::string(kRoot) + ".2.3").transfer_syntax_uid,
            UID_JPEGProcess14SV1TransferSyntax);
  EXPECT_EQ(ingest_.attrs(std::string(kRoot) + ".2.2").transfer_syntax_uid,
            UID_LittleEndianImplicitTransferSyntax);
  EXPECT_EQ(server_->stats().cstore_ok, Corpus().size());
  EXPECT_EQ(AuditCount(AssociationEvent::Kind::kStored), Corpus().size());
}

TEST_F(DicomServerTest, StoresOverPlainAndRefusesWhenIngestFails) {
  StartServer(BaseConfig());
  auto file = suite_dir_->path() / "multiframe.dcm";
  ingest_.FailNext();
  auto r = Tool("storescu -v -aet STORESCU -aec PHIGATE " + Plain() + " '" + file.string() + "'");
  EXPECT_NE(r.out.find("Refused: OutOfResources"), std::string::npos) << r.out;
  EXPECT_EQ(ingest_.count(), 0u);
  r = Tool("storescu -aet STORESCU -aec PHIGATE " + Plain() + " '" + file.string() + "'");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(ingest_.count(), 1u);
  EXPECT_EQ(server_->stats().cstore_refused, 1u);
  EXPECT_EQ(server_->stats().cstore_ok, 1u);
}

// ---- refusals ----------------------------------------------------------------

TEST_F(DicomServerTest, TlsRefusals) {
  StartServer(BaseConfig());
  std::string ca = "+cf '" + (pki_ / "ca.pem").string() + "' ";
  auto none = Tool("echoscu -aet ECHOSCU -aec PHIGATE +tla " + ca + TlsAddr());
  EXPECT_NE(none.code, 0) << none.out;
  for (std::string who : {"untrusted", "expired", "revoked"}) {
    auto r = Tool("echoscu -aet ECHOSCU -aec PHIGATE " + TlsOpts(who) + TlsAddr());
    EXPECT_NE(r.code, 0) << who << "\n" << r.out;
  }
  // The client may exit before the server's worker has counted its failure.
  EXPECT_TRUE(WaitFor([&] { return server_->stats().tls_handshake_failed == 4; }));
  EXPECT_EQ(server_->stats().tls_handshake_failed, 4u);
  EXPECT_EQ(server_->stats().associations_accepted, 0u);
  EXPECT_TRUE(WaitFor([&] { return AuditCount(AssociationEvent::Kind::kTlsFailed) == 4; }));
  // The server still works.
  auto ok = Tool("echoscu -aet ECHOSCU -aec PHIGATE " + TlsOpts("clinician") + TlsAddr());
  EXPECT_EQ(ok.code, 0) << ok.out;
}

TEST_F(DicomServerTest, AssociationPolicyRefusals) {
  StartServer(BaseConfig());
  auto notallowed = Tool("echoscu -aet NOTALLOWED -aec PHIGATE " + Plain());
  EXPECT_NE(notallowed.code, 0);
  EXPECT_NE(notallowed.out.find("Calling AE Title Not Recognized"), std::string::npos)
      << notallowed.out;
  auto wrongcalled = Tool("echoscu -aet ECHOSCU -aec SOMEONE " + Plain());
  EXPECT_NE(wrongcalled.code, 0);
  EXPECT_NE(wrongcalled.out.find("Called AE Title Not Recognized"), std::string::npos)
      << wrongcalled.out;
  auto faraway = Tool("echoscu -aet FARAWAY -aec PHIGATE " + Plain());
  EXPECT_NE(faraway.code, 0);
  // CT01 is bound to the CT01 certificate: another valid certificate is refused,
  // so is the plain listener, and the right certificate is accepted.
  auto other = Tool("echoscu -aet CT01 -aec PHIGATE " + TlsOpts("clinician") + TlsAddr());
  EXPECT_NE(other.code, 0);
  EXPECT_NE(other.out.find("Calling AE Title Not Recognized"), std::string::npos) << other.out;
  auto plain = Tool("echoscu -aet CT01 -aec PHIGATE " + Plain());
  EXPECT_NE(plain.code, 0);
  auto right = Tool("echoscu -aet CT01 -aec PHIGATE " + TlsOpts("peer-ct01") + TlsAddr());
  EXPECT_EQ(right.code, 0) << right.out;
  EXPECT_EQ(server_->stats().associations_rejected, 5u);
  EXPECT_EQ(AuditCount(AssociationEvent::Kind::kRejected), 5u);
  auto ls = server_->Listeners();
  ASSERT_EQ(ls.size(), 2u);
  EXPECT_EQ(ls[0].state, "listening");
  EXPECT_EQ(ls[0].refused_total + ls[1].refused_total, 5u);
}

// ---- concurrency and limits ------------------------------------------------

// An association held open by an in-test DCMTK SCU.
struct HeldAssociation {
  DcmSCU scu;
  OFCondition cond;
  HeldAssociation(uint16_t port, const char* aet) {
    scu.setPeerHostName("127.0.0.1");
    scu.setPeerPort(port);
    scu.setAETitle(aet);
    scu.setPeerAETitle("PHIGATE");
    OFList<OFString> ts;
    ts.push_back(UID_LittleEndianExplicitTransferSyntax);
    scu.addPresentationContext(UID_VerificationSOPClass, ts);
    cond = scu.initNetwork();
    if (cond.good()) cond = scu.negotiateAssociation();
  }
  ~HeldAssociation() {
    if (scu.isConnected()) scu.releaseAssociation();
  }
};

TEST_F(DicomServerTest, SilentConnectionsDoNotDelayOthers) {
  StartServer(BaseConfig());
  // Silent TCP connections on both listeners: no bytes, no TLS ClientHello.
  std::vector<int> silent;
  for (uint16_t port : {server_->plain_port(), server_->tls_port()}) {
    for (int i = 0; i < 2; ++i) {
      int fd = socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(port);
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
      silent.push_back(fd);
    }
  }
  auto p = Tool("echoscu -aet ECHOSCU -aec PHIGATE " + Plain());
  EXPECT_EQ(p.code, 0) << p.out;
  auto t = Tool("echoscu -aet ECHOSCU -aec PHIGATE " + TlsOpts("clinician") + TlsAddr());
  EXPECT_EQ(t.code, 0) << t.out;
  // The silent connections are still open (their ACSE timeout, 30 s, has not
  // passed): the echoes completed while they were pending.
  for (int fd : silent) {
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);
    EXPECT_TRUE(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) << "silent socket closed";
    close(fd);
  }
}

TEST_F(DicomServerTest, PerAeLimitRejectsWithLocalLimitExceeded) {
  StartServer(BaseConfig());
  HeldAssociation held(server_->plain_port(), "HOLDER");
  ASSERT_TRUE(held.cond.good()) << held.cond.text();
  auto r = Tool("echoscu -aet HOLDER -aec PHIGATE " + Plain());
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("Local Limit Exceeded"), std::string::npos) << r.out;
  // Other AEs are not affected.
  auto e = Tool("echoscu -aet ECHOSCU -aec PHIGATE " + Plain());
  EXPECT_EQ(e.code, 0) << e.out;
}

TEST_F(DicomServerTest, TotalLimitRejects) {
  auto cfg = BaseConfig();
  cfg.max_associations = 1;
  StartServer(cfg);
  HeldAssociation held(server_->plain_port(), "ECHOSCU");
  ASSERT_TRUE(held.cond.good()) << held.cond.text();
  auto r = Tool("echoscu -aet STORESCU -aec PHIGATE " + Plain());
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("Local Limit Exceeded"), std::string::npos) << r.out;
}

// ---- bad input ----------------------------------------------------------------

// A bare DCMTK association for hand-made C-STORE requests.
struct RawScu {
  T_ASC_Network* net = nullptr;
  T_ASC_Association* assoc = nullptr;
  OFCondition cond;
  RawScu(uint16_t port, const char* sop_class) {
    cond = ASC_initializeNetwork(NET_REQUESTOR, 0, 30, &net);
    T_ASC_Parameters* params = nullptr;
    if (cond.good()) cond = ASC_createAssociationParameters(&params, ASC_DEFAULTMAXPDU);
    if (cond.bad()) return;
    ASC_setAPTitles(params, "RAWSCU", "PHIGATE", nullptr);
    std::string peer = "127.0.0.1:" + std::to_string(port);
    ASC_setPresentationAddresses(params, "localhost", peer.c_str());
    const char* ts[] = {UID_LittleEndianExplicitTransferSyntax};
    ASC_addPresentationContext(params, 1, sop_class, ts, 1);
    cond = ASC_requestAssociation(net, params, &assoc);
  }
  Uint16 Store(const char* cls, const char* inst, DcmDataset* ds) {
    T_ASC_PresentationContextID pid = ASC_findAcceptedPresentationContextID(assoc, cls);
    if (pid == 0) return 0xFFFF;
    T_DIMSE_C_StoreRQ rq{};
    rq.MessageID = assoc->nextMsgID++;
    OFStandard::strlcpy(rq.AffectedSOPClassUID, cls, sizeof(rq.AffectedSOPClassUID));
    OFStandard::strlcpy(rq.AffectedSOPInstanceUID, inst, sizeof(rq.AffectedSOPInstanceUID));
    rq.DataSetType = DIMSE_DATASET_PRESENT;
    rq.Priority = DIMSE_PRIORITY_MEDIUM;
    T_DIMSE_C_StoreRSP rsp{};
    DcmDataset* detail = nullptr;
    cond = DIMSE_storeUser(assoc, pid, &rq, nullptr, ds, nullptr, nullptr, DIMSE_BLOCKING, 0, &rsp,
                           &detail);
    delete detail;
    return cond.good() ? rsp.DimseStatus : 0xFFFF;
  }
  ~RawScu() {
    if (assoc) {
      ASC_releaseAssociation(assoc);
      ASC_destroyAssociation(&assoc);
    }
    if (net) ASC_dropNetwork(&net);
  }
};

void FillCt(DcmDataset& ds, const char* inst) {
  ds.putAndInsertString(DCM_SOPClassUID, UID_CTImageStorage);
  if (inst) ds.putAndInsertString(DCM_SOPInstanceUID, inst);
  ds.putAndInsertString(DCM_PatientName, "Bad^Input");
  ds.putAndInsertString(DCM_StudyInstanceUID, "1.2.3");
  ds.putAndInsertString(DCM_SeriesInstanceUID, "1.2.3.4");
}

TEST_F(DicomServerTest, BadCStoreRequestsGetFailureStatusAndStoreNothing) {
  DicomServerOptions opts;
  opts.max_object_bytes = 64 * 1024;
  StartServer(BaseConfig(), opts);
  RawScu scu(server_->plain_port(), UID_CTImageStorage);
  ASSERT_TRUE(scu.cond.good()) << scu.cond.text();
  {  // dataset SOP Instance UID differs from the request's
    DcmDataset ds;
    FillCt(ds, "1.2.3.4.5.6");
    EXPECT_EQ(scu.Store(UID_CTImageStorage, "1.2.3.4.5.7", &ds), 0xA900);
  }
  {  // dataset SOP Class differs from the request and the presentation context
    DcmDataset ds;
    FillCt(ds, "1.2.3.4.5.8");
    ds.putAndInsertString(DCM_SOPClassUID, UID_MRImageStorage);
    EXPECT_EQ(scu.Store(UID_CTImageStorage, "1.2.3.4.5.8", &ds), 0xA900);
  }
  {  // no SOP Instance UID in the dataset
    DcmDataset ds;
    FillCt(ds, nullptr);
    EXPECT_EQ(scu.Store(UID_CTImageStorage, "1.2.3.4.5.9", &ds), 0xC000);
  }
  {  // over the size cap
    DcmDataset ds;
    FillCt(ds, "1.2.3.4.5.10");
    std::vector<Uint8> big(128 * 1024, 0x5a);
    ds.putAndInsertString(DcmTag(0x0009, 0x0010, EVR_LO), "PHITEST");
    ds.putAndInsertUint8Array(DcmTag(0x0009, 0x1001, EVR_OB), big.data(), big.size());
    EXPECT_EQ(scu.Store(UID_CTImageStorage, "1.2.3.4.5.10", &ds), 0xA700);
  }
  {  // and the association still works for a good one
    DcmDataset ds;
    FillCt(ds, "1.2.3.4.5.11");
    EXPECT_EQ(scu.Store(UID_CTImageStorage, "1.2.3.4.5.11", &ds), 0x0000);
  }
  EXPECT_EQ(ingest_.count(), 1u);
  EXPECT_EQ(server_->stats().cstore_refused, 4u);
}

TEST_F(DicomServerTest, PeerAbortMidAssociationStoresNothingAndServerSurvives) {
  StartServer(BaseConfig());
  {
    RawScu scu(server_->plain_port(), UID_CTImageStorage);
    ASSERT_TRUE(scu.cond.good());
    ASC_abortAssociation(scu.assoc);
    ASC_destroyAssociation(&scu.assoc);
  }
  // A raw connection that sends half an A-ASSOCIATE-RQ header then closes.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(server_->plain_port());
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  const unsigned char junk[] = {0x01, 0x00, 0xff, 0xff, 0xff, 0xff, 0x00};
  ASSERT_EQ(write(fd, junk, sizeof(junk)), static_cast<ssize_t>(sizeof(junk)));
  close(fd);
  auto e = Tool("echoscu -aet ECHOSCU -aec PHIGATE " + Plain());
  EXPECT_EQ(e.code, 0) << e.out;
  EXPECT_EQ(ingest_.count(), 0u);
}

struct AbortAfter {
  T_ASC_Association* assoc;
  unsigned long bytes;
  bool done = false;
};

void AbortingProgress(void* ctx, T_DIMSE_StoreProgress* progress, T_DIMSE_C_StoreRQ*) {
  auto* a = static_cast<AbortAfter*>(ctx);
  if (!a->done && progress->progressBytes >= static_cast<long>(a->bytes)) {
    a->done = true;
    ASC_abortAssociation(a->assoc);
  }
}

TEST_F(DicomServerTest, PeerAbortMidTransferStoresNothing) {
  StartServer(BaseConfig());
  {
    RawScu scu(server_->plain_port(), UID_CTImageStorage);
    ASSERT_TRUE(scu.cond.good()) << scu.cond.text();
    DcmDataset ds;
    FillCt(ds, "1.2.3.4.5.20");
    std::vector<Uint8> big(1 << 20, 0x33);
    ds.putAndInsertString(DcmTag(0x0009, 0x0010, EVR_LO), "PHITEST");
    ds.putAndInsertUint8Array(DcmTag(0x0009, 0x1001, EVR_OB), big.data(), big.size());
    T_ASC_PresentationContextID pid =
        ASC_findAcceptedPresentationContextID(scu.assoc, UID_CTImageStorage);
    ASSERT_NE(pid, 0);
    T_DIMSE_C_StoreRQ rq{};
    rq.MessageID = scu.assoc->nextMsgID++;
    OFStandard::strlcpy(rq.AffectedSOPClassUID, UID_CTImageStorage, sizeof(rq.AffectedSOPClassUID));
    OFStandard::strlcpy(rq.AffectedSOPInstanceUID, "1.2.3.4.5.20",
                        sizeof(rq.AffectedSOPInstanceUID));
    rq.DataSetType = DIMSE_DATASET_PRESENT;
    T_DIMSE_C_StoreRSP rsp{};
    DcmDataset* detail = nullptr;
    AbortAfter ctx{scu.assoc, 256 * 1024};
    OFCondition c = DIMSE_storeUser(scu.assoc, pid, &rq, nullptr, &ds, AbortingProgress, &ctx,
                                    DIMSE_BLOCKING, 0, &rsp, &detail);
    delete detail;
    EXPECT_TRUE(ctx.done);
    EXPECT_TRUE(c.bad());
    ASC_dropAssociation(scu.assoc);
    ASC_destroyAssociation(&scu.assoc);
  }
  EXPECT_TRUE(WaitFor([&] { return server_->stats().associations_aborted == 1; }) ||
              server_->stats().cstore_refused == 1);
  EXPECT_EQ(ingest_.count(), 0u);
  EXPECT_FALSE(ingest_.IsStored("1.2.3.4.5.20").value());
  auto e = Tool("echoscu -aet ECHOSCU -aec PHIGATE " + Plain());
  EXPECT_EQ(e.code, 0) << e.out;
}

TEST_F(DicomServerTest, StalledAssociationIsAbortedAfterDimseTimeout) {
  auto cfg = BaseConfig();
  cfg.dimse_timeout_seconds = 1;
  StartServer(cfg);
  RawScu scu(server_->plain_port(), UID_CTImageStorage);
  ASSERT_TRUE(scu.cond.good()) << scu.cond.text();
  // Say nothing: the server gives up after its DIMSE timeout and aborts.
  EXPECT_TRUE(WaitFor([&] { return server_->stats().associations_aborted == 1; }));
  auto ls = server_->Listeners();
  EXPECT_TRUE(WaitFor([&] { return server_->Listeners()[1].open_connections == 0; }));
}

// ---- storage commitment ------------------------------------------------------

TEST_F(DicomServerTest, StorageCommitmentReportsOnlyStoredInstances) {
  StartServer(BaseConfig());
  auto file = suite_dir_->path() / "utf8_explicit.dcm";
  auto r = Tool("storescu -aet STORESCU -aec PHIGATE " + Plain() + " '" + file.string() + "'");
  ASSERT_EQ(r.code, 0) << r.out;

  DcmSCU scu;
  scu.setPeerHostName("127.0.0.1");
  scu.setPeerPort(server_->plain_port());
  scu.setAETitle("COMMITSCU");
  scu.setPeerAETitle("PHIGATE");
  OFList<OFString> ts;
  ts.push_back(UID_LittleEndianExplicitTransferSyntax);
  scu.addPresentationContext(UID_StorageCommitmentPushModelSOPClass, ts);
  ASSERT_TRUE(scu.initNetwork().good());
  ASSERT_TRUE(scu.negotiateAssociation().good());
  T_ASC_PresentationContextID pid =
      scu.findPresentationContextID(UID_StorageCommitmentPushModelSOPClass, "");
  ASSERT_NE(pid, 0);

  DcmDataset rq;
  rq.putAndInsertString(DCM_TransactionUID, "1.2.826.0.1.3680043.10.1137.99.7");
  std::string stored = std::string(kRoot) + ".2.1";
  std::string missing = std::string(kRoot) + ".404";
  for (const auto& uid : {stored, missing}) {
    DcmItem* item = nullptr;
    ASSERT_TRUE(rq.findOrCreateSequenceItem(DCM_ReferencedSOPSequence, item, -2).good());
    item->putAndInsertString(DCM_ReferencedSOPClassUID, UID_SecondaryCaptureImageStorage);
    item->putAndInsertString(DCM_ReferencedSOPInstanceUID, uid.c_str());
  }
  Uint16 status = 0xFFFF;
  ASSERT_TRUE(
      scu.sendACTIONRequest(pid, UID_StorageCommitmentPushModelSOPInstance, 1, &rq, status).good());
  EXPECT_EQ(status, 0x0000);

  DcmDataset* report = nullptr;
  Uint16 event_type = 0;
  ASSERT_TRUE(scu.handleEVENTREPORTRequest(report, event_type, 30).good());
  ASSERT_NE(report, nullptr);
  EXPECT_EQ(event_type, 2);  // some failures
  OFString tuid;
  report->findAndGetOFString(DCM_TransactionUID, tuid);
  EXPECT_EQ(tuid, "1.2.826.0.1.3680043.10.1137.99.7");
  DcmItem* ok_item = nullptr;
  DcmItem* failed_item = nullptr;
  ASSERT_TRUE(report->findAndGetSequenceItem(DCM_ReferencedSOPSequence, ok_item, 0).good());
  ASSERT_TRUE(report->findAndGetSequenceItem(DCM_FailedSOPSequence, failed_item, 0).good());
  OFString v;
  ok_item->findAndGetOFString(DCM_ReferencedSOPInstanceUID, v);
  EXPECT_EQ(std::string(v.c_str()), stored);
  failed_item->findAndGetOFString(DCM_ReferencedSOPInstanceUID, v);
  EXPECT_EQ(std::string(v.c_str()), missing);
  Uint16 reason = 0;
  failed_item->findAndGetUint16(DCM_FailureReason, reason);
  EXPECT_EQ(reason, 0x0112);
  EXPECT_FALSE(report->findAndGetSequenceItem(DCM_ReferencedSOPSequence, ok_item, 1).good());
  delete report;
  scu.releaseAssociation();
  EXPECT_EQ(server_->stats().commitment_requests, 1u);
}

// ---- reload ------------------------------------------------------------------

TEST_F(DicomServerTest, ReloadAppliesAllowListToNewAssociations) {
  StartServer(BaseConfig());
  auto before = Tool("echoscu -aet NEWPEER -aec PHIGATE " + Plain());
  EXPECT_NE(before.code, 0);
  config::Config full;
  full.dicom = BaseConfig();
  full.tls = Tls();
  config::DicomPeer p;
  p.ae_title = "NEWPEER";
  p.networks.push_back(Net("127.0.0.1/32"));
  full.dicom.allowed_peers.push_back(p);
  ASSERT_TRUE(server_->Reload(full).ok());
  auto after = Tool("echoscu -aet NEWPEER -aec PHIGATE " + Plain());
  EXPECT_EQ(after.code, 0) << after.out;
  // A reload with broken TLS material is refused and keeps the old settings.
  full.tls.private_key = dir_.path() / "missing.key";
  EXPECT_FALSE(server_->Reload(full).ok());
  auto still = Tool("echoscu -aet ECHOSCU -aec PHIGATE " + TlsOpts("clinician") + TlsAddr());
  EXPECT_EQ(still.code, 0) << still.out;
}

}  // namespace
}  // namespace phi::dicom
