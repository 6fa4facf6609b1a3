// HL7 handling end to end on a real storage stack (real SQLite, real AES-GCM,
// real files): the handler parses, the service applies durably, and the
// effects are checked through QueryService / WorklistService / reports; the
// ACKs are checked field by field; erasure removes the HL7 data it should.
#include "libphi/services/hl7_service.h"

#include <gtest/gtest.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <thread>

#include "libphi/hl7/hl7_handler.h"
#include "libphi/hl7/hl7_server.h"
#include "libphi/hl7/mllp_framer.h"
#include "libphi/services/worklist_service.h"
#include "libphi/tls/asio_runner.h"
#include "tests/unit/index/fault_vfs.h"
#include "tests/unit/services/services_fixture.h"

namespace phi::hl7 {
namespace {

using services::testing::Patient;
namespace fs = std::filesystem;

const Patient kSmith{"SMITH^JOHN", "PID-4711", "19600101", "ACC-0001", "1.2.826.0.1.3680043.1.1",
                     "20240315",   "CT"};
const Patient kMuller{"MULLER^J", "PID-0815", "19751224", "ACC-0002", "1.2.826.0.1.3680043.1.2",
                      "20240321", "MR"};

std::string Corpus(const std::string& name) {
  return phi::testing::ReadFile(fs::path(PHI_SOURCE_DIR) / "tests/integration/hl7/messages" / name);
}

std::string Slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// MSA-1 and the ERR segment (if any) of an ACK.
struct AckView {
  std::string code, control, err;
};
AckView View(const std::string& ack) {
  AckView v;
  auto m = Parse(ack);
  EXPECT_TRUE(m.ok()) << ack;
  if (!m.ok()) return v;
  if (const Segment* msa = m->Find("MSA")) {
    v.code = msa->Get(1);
    v.control = msa->Get(2);
  }
  if (const Segment* err = m->Find("ERR")) {
    v.err = err->Get(3, 1).empty() ? err->Get(1, 4) : err->Get(3, 1);
  }
  return v;
}

class Hl7ServiceTest : public services::testing::ServicesTest {
 protected:
  void SetUp() override {
    ServicesTest::SetUp();
    if (IsSkipped()) return;
    hl7_ = std::make_unique<services::Hl7Service>(*vault_, *catalog_, *keys_, env_);
    worklist_ = std::make_unique<services::WorklistService>(*vault_, *catalog_, *keys_);
    handler_ = std::make_unique<Hl7MessageHandler>(*hl7_, env_);
  }
  void TearDown() override {
    handler_.reset();
    worklist_.reset();
    hl7_.reset();
    ServicesTest::TearDown();
  }
  AckView Send(const std::string& msg) {
    ConnectionInfo conn;
    conn.id = 1;
    conn.peer_address = "127.0.0.1";
    return View(handler_->Handle(msg, conn));
  }
  std::vector<std::string> NamesFor(const std::string& patient_id) {
    services::StudyQuery q;
    q.patient_id = patient_id;
    auto r = query_->FindStudies(q);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    std::vector<std::string> names;
    if (r.ok()) {
      for (const auto& m : *r) names.push_back(m.phi.Get("PatientName"));
    }
    return names;
  }

  std::unique_ptr<services::Hl7Service> hl7_;
  std::unique_ptr<services::WorklistService> worklist_;
  std::unique_ptr<Hl7MessageHandler> handler_;
};

TEST_F(Hl7ServiceTest, AdtUpdateReachesStoredStudies) {
  ASSERT_TRUE(Store(kSmith, 1, 1).ok());
  EXPECT_EQ(NamesFor("PID-4711"), std::vector<std::string>{"SMITH^JOHN"});
  AckView a = Send(Corpus("adt_a08_v231.hl7"));
  EXPECT_EQ(a.code, "AA");
  EXPECT_EQ(a.control, "MSG00002");
  EXPECT_EQ(NamesFor("PID-4711"), std::vector<std::string>{"SMITH^JONATHAN^Q"});
  services::StudyQuery byname;
  byname.patient_name = "SMITH^JONATHAN*";
  auto found = query_->FindStudies(byname);
  ASSERT_TRUE(found.ok());
  ASSERT_EQ(found->size(), 1u);
  EXPECT_EQ((*found)[0].phi.Get("PatientBirthDate"), "19600102");
  byname.patient_name = "SMITH^JOHN";
  EXPECT_TRUE(query_->FindStudies(byname)->empty());
  // The message is kept, sealed, with what it changed.
  auto msgs = hl7_->MessagesOfPatient("PID-4711", 10);
  ASSERT_TRUE(msgs.ok());
  ASSERT_EQ(msgs->size(), 1u);
  EXPECT_EQ((*msgs)[0].Get("Message"), Corpus("adt_a08_v231.hl7"));
  EXPECT_NE((*msgs)[0].Get("Effects").find("studies_updated=1"), std::string::npos);
}

TEST_F(Hl7ServiceTest, MergeMovesStudiesToSurvivingId) {
  ASSERT_TRUE(Store(kSmith, 1, 1).ok());
  ASSERT_EQ(Send(Corpus("adt_a01_v23.hl7")).code, "AA");
  EXPECT_EQ(Send(Corpus("adt_a40_v251.hl7")).code, "AA");
  EXPECT_TRUE(NamesFor("PID-4711").empty());
  EXPECT_EQ(NamesFor("PID-9999"), std::vector<std::string>{"SMITH^JONATHAN^Q"});
  auto study = query_->GetStudy(kSmith.study_uid);
  ASSERT_TRUE(study.ok());
  EXPECT_EQ(study->phi.Get("PatientID"), "PID-9999");
  // The old patient's HL7 history moved with it.
  EXPECT_TRUE(hl7_->MessagesOfPatient("PID-4711", 10)->empty());
  EXPECT_EQ(hl7_->MessagesOfPatient("PID-9999", 10)->size(), 2u);
}

TEST_F(Hl7ServiceTest, OrdersCreateChangeAndCancelWorklistEntries) {
  EXPECT_EQ(Send(Corpus("orm_o01_v231.hl7")).code, "AA");
  AckView omi = Send(Corpus("omi_o23_v251.hl7"));  // enhanced mode: MSH-15 AL
  EXPECT_EQ(omi.code, "CA");
  services::WorklistQuery q;
  auto all = worklist_->Find(q);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  q.modality = "CT";
  auto ct = worklist_->Find(q);
  ASSERT_TRUE(ct.ok());
  ASSERT_EQ(ct->size(), 1u);
  const services::PhiFields& f = (*ct)[0].phi;
  EXPECT_EQ(f.Get("AccessionNumber"), "ACC-0001");
  EXPECT_EQ(f.Get("PatientName"), "SMITH^JONATHAN");
  EXPECT_EQ(f.Get("ScheduledStationAETitle"), "CTSCANNER1");
  EXPECT_EQ(f.Get("ScheduledProcedureStepStartDate"), "20240320");
  EXPECT_EQ(f.Get("ScheduledProcedureStepStartTime"), "093000");
  EXPECT_EQ(f.Get("RequestedProcedureDescription"), "CT CHEST W/O CONTRAST");
  EXPECT_EQ(f.Get("StudyInstanceUID"), "1.2.826.0.1.3680043.1.1");
  EXPECT_EQ(f.Get("ReferringPhysicianName"), "WELBY^MARCUS");
  q = {};
  q.scheduled_ae = "MRSCANNER1";
  auto mr = worklist_->Find(q);
  ASSERT_TRUE(mr.ok());
  ASSERT_EQ(mr->size(), 1u);
  EXPECT_EQ((*mr)[0].phi.Get("PatientName"), "M\xc3\x9cLLER^J\xc3\x9cRGEN");
  EXPECT_EQ((*mr)[0].phi.Get("RequestedProcedureDescription"), "MR BRAIN & IAC");
  q = {};
  q.patient_name = "m\xc3\x9cller*";
  q.scheduled_date = "20240321-20240322";
  EXPECT_EQ(worklist_->Find(q)->size(), 1u);
  q.scheduled_date = "20250101-";
  EXPECT_EQ(worklist_->Find(q)->size(), 0u);

  // Change (XO) keeps one entry; cancel (CA) removes it.
  std::string xo = Corpus("orm_o01_v231.hl7");
  xo.replace(xo.find("ORC|NW"), 6, "ORC|XO");
  xo.replace(xo.find("CTSCANNER1"), 10, "CTSCANNER2");
  EXPECT_EQ(Send(xo).code, "AA");
  q = {};
  q.accession_number = "ACC-0001";
  auto changed = worklist_->Find(q);
  ASSERT_EQ(changed->size(), 1u);
  EXPECT_EQ((*changed)[0].row.scheduled_ae, "CTSCANNER2");
  EXPECT_EQ(Send(Corpus("orm_o01_cancel_v231.hl7")).code, "AA");
  q = {};
  q.accession_number = "ACC-0002";
  EXPECT_TRUE(worklist_->Find(q)->empty());
  EXPECT_EQ(worklist_->Find({})->size(), 1u);
}

TEST_F(Hl7ServiceTest, ReportAttachesToStudyOrWaitsForIt) {
  ASSERT_TRUE(Store(kSmith, 1, 1).ok());
  EXPECT_EQ(Send(Corpus("oru_r01_v251.hl7")).code, "AA");
  auto reps = hl7_->ReportsOfStudy(kSmith.study_uid);
  ASSERT_TRUE(reps.ok()) << reps.status().ToString();
  ASSERT_EQ(reps->size(), 1u);
  EXPECT_EQ((*reps)[0].phi.Get("ReportText"),
            "FINDINGS: No acute abnormality.\nIMPRESSION: Normal chest CT \\ follow-up in 12 "
            "months.\nSecond paragraph");
  EXPECT_EQ((*reps)[0].phi.Get("ResultStatus"), "F");
  // A report for a study not here yet is pending, and attaches when it arrives.
  std::string pending = Corpus("oru_r01_v251.hl7");
  for (size_t p; (p = pending.find("ACC-0001")) != std::string::npos;)
    pending.replace(p, 8, "ACC-0002");
  EXPECT_EQ(Send(pending).code, "AA");
  EXPECT_EQ(hl7_->ReportsOfAccession("ACC-0002")->size(), 1u);
  ASSERT_TRUE(Store(kMuller, 1, 1).ok());
  EXPECT_EQ(hl7_->ReportsOfStudy(kMuller.study_uid)->size(), 1u);
}

TEST_F(Hl7ServiceTest, RefusalsStoreNothing) {
  const std::string a03 = "MSH|^~\\&|A|B|C|D|20240101||ADT^A03|C1|P|2.5.1\rPID|1||PID-4711\r";
  AckView v = Send(a03);
  EXPECT_EQ(v.code, "AR");
  EXPECT_EQ(v.control, "C1");
  EXPECT_EQ(v.err, "201");
  v = Send("MSH|^~\\&|A|B|C|D|20240101||QRY^Q01|C2|P|2.5.1\rQRD|x\r");
  EXPECT_EQ(v.code, "AR");
  EXPECT_EQ(v.err, "200");
  v = Send("MSH|^~\\&|A|B|C|D|20240101||ADT^A08|C3|P|2.3\rPID|1||\r");  // no patient ID
  EXPECT_EQ(v.code, "AE");
  EXPECT_EQ(v.err, "101");                                                      // old-style ERR-1
  v = Send("MSH|^~\\&|A|B|C|D|20240101||ADT^A08|C4|P|2.5\rPID|1||\xff\xfe\r");  // bad UTF-8
  EXPECT_EQ(v.code, "AE");
  EXPECT_EQ(v.err, "102");
  v = Send("MSH|^~\\&|A|B|C|D|20240101||ADT^A08|C5|P|3.0\rPID|1||X\r");
  EXPECT_EQ(v.code, "AR");
  EXPECT_EQ(v.err, "203");
  v = Send("MSH|^~\\&|A|B|C|D|20240101||ORM^O01|C6|P|2.3.1\rPID|1||PID-4711\rORC|ZZ|1|2\r");
  EXPECT_EQ(v.code, "AE");
  EXPECT_EQ(v.err, "103");
  // No MSH: no ACK at all (the server closes the connection).
  ConnectionInfo conn;
  EXPECT_EQ(handler_->Handle("garbage", conn), "");
  EXPECT_TRUE(hl7_->MessagesOfPatient("PID-4711", 10)->empty());
  EXPECT_TRUE(worklist_->Find({})->empty());
  EXPECT_EQ(handler_->stats().accepted, 0u);
}

TEST_F(Hl7ServiceTest, EnhancedModeAcceptAckConditions) {
  const std::string ne = "MSH|^~\\&|A|B|C|D|1||ADT^A08|E1|P|2.5|||NE|NE\rPID|1||PID-1\r";
  ConnectionInfo conn;
  EXPECT_EQ(handler_->Handle(ne, conn), kNoReply);
  const std::string er_ok = "MSH|^~\\&|A|B|C|D|1||ADT^A08|E2|P|2.5|||ER|NE\rPID|1||PID-1\r";
  EXPECT_EQ(handler_->Handle(er_ok, conn), kNoReply);
  const std::string er_bad = "MSH|^~\\&|A|B|C|D|1||ADT^A03|E3|P|2.5|||ER|NE\rPID|1||PID-1\r";
  EXPECT_EQ(View(handler_->Handle(er_bad, conn)).code, "CR");
  const std::string su_ok = "MSH|^~\\&|A|B|C|D|1||ADT^A08|E4|P|2.5|||SU|NE\rPID|1||PID-1\r";
  EXPECT_EQ(View(handler_->Handle(su_ok, conn)).code, "CA");
  EXPECT_EQ(hl7_->MessagesOfPatient("PID-1", 10)->size(), 3u);
}

TEST_F(Hl7ServiceTest, AckSwapsSenderAndReceiverAndKeepsVersion) {
  ConnectionInfo conn;
  auto ack = Parse(handler_->Handle(Corpus("adt_a01_v23.hl7"), conn));
  ASSERT_TRUE(ack.ok());
  const Segment& msh = ack->segments[0];
  EXPECT_EQ(msh.Get(3), "PHIGATE");
  EXPECT_EQ(msh.Get(4), "RAD");
  EXPECT_EQ(msh.Get(5), "EPIC");
  EXPECT_EQ(msh.Get(6), "HOSP");
  EXPECT_EQ(msh.Get(9, 1), "ACK");
  EXPECT_EQ(msh.Get(12), "2.3");
  EXPECT_EQ(ack->Find("MSA")->Get(2), "MSG00001");
}

TEST_F(Hl7ServiceTest, ErasingLastStudyErasesPatientHl7History) {
  ASSERT_TRUE(Store(kSmith, 1, 1).ok());
  ASSERT_EQ(Send(Corpus("adt_a01_v23.hl7")).code, "AA");
  ASSERT_EQ(Send(Corpus("orm_o01_v231.hl7")).code, "AA");
  ASSERT_EQ(Send(Corpus("oru_r01_v251.hl7")).code, "AA");
  // A second study of the same patient, another accession.
  Patient second = kSmith;
  second.accession = "ACC-0003";
  second.study_uid = "1.2.826.0.1.3680043.1.3";
  ASSERT_TRUE(Store(second, 1, 1).ok());
  auto keys_before = catalog_->ListStudyKeys("", 100);
  ASSERT_TRUE(keys_before.ok());
  EXPECT_EQ(keys_before->size(), 3u);  // two study keys + the patient key

  // Erasing the first study removes its order, report and the messages about it.
  ASSERT_TRUE(erasure_->EraseStudy(kSmith.study_uid, "admin:test", "test").ok());
  EXPECT_TRUE(hl7_->ReportsOfAccession("ACC-0001")->empty());
  EXPECT_TRUE(worklist_->Find({})->empty());
  auto left = hl7_->MessagesOfPatient("PID-4711", 10);
  ASSERT_TRUE(left.ok());
  ASSERT_EQ(left->size(), 1u);  // the ADT stays: the patient has another study
  EXPECT_EQ((*left)[0].Get("MessageType"), "ADT^A01");

  // The patient's last study: the ADT history and the patient key go too.
  ASSERT_TRUE(erasure_->EraseStudy(second.study_uid, "admin:test", "test").ok());
  EXPECT_TRUE(hl7_->MessagesOfPatient("PID-4711", 10)->empty());
  EXPECT_TRUE(catalog_->ListStudyKeys("", 100)->empty());
  // Nothing of the HL7 messages is left in the catalog files.
  for (const char* f : {"catalog.db", "catalog.db-wal"}) {
    std::string bytes = Slurp(storage_.path() / f);
    EXPECT_EQ(bytes.find("SMITH"), std::string::npos) << f;
    EXPECT_EQ(bytes.find("FINDINGS"), std::string::npos) << f;
  }
}

TEST_F(Hl7ServiceTest, NoHl7PlaintextOnDisk) {
  ASSERT_EQ(Send(Corpus("adt_a01_v23.hl7")).code, "AA");
  ASSERT_EQ(Send(Corpus("oru_r01_v251.hl7")).code, "AA");
  for (const auto& e : fs::recursive_directory_iterator(storage_.path())) {
    if (!e.is_regular_file()) continue;
    std::string bytes = Slurp(e.path());
    for (const char* needle : {"SMITH", "PID-4711", "19600101", "ACC-0001", "FINDINGS"}) {
      EXPECT_EQ(bytes.find(needle), std::string::npos) << e.path() << " has " << needle;
    }
  }
}

TEST_F(Hl7ServiceTest, ConcurrentConnectionsShareCommits) {
  constexpr int kThreads = 8, kEach = 40;
  auto before = catalog_->stats();
  std::vector<std::thread> ts;
  std::atomic<int> aa{0};
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        std::string msg = "MSH|^~\\&|A|B|C|D|1||ADT^A08|T" + std::to_string(t) + "-" +
                          std::to_string(i) + "|P|2.5.1\rPID|1||P" + std::to_string(t) + "||DOE^J" +
                          std::to_string(i) + "\r";
        ConnectionInfo conn;
        if (View(handler_->Handle(msg, conn)).code == "AA") ++aa;
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(aa.load(), kThreads * kEach);
  auto after = catalog_->stats();
  EXPECT_EQ(after.transactions - before.transactions, static_cast<uint64_t>(kThreads * kEach));
  EXPECT_LT(after.commits - before.commits, after.transactions - before.transactions);
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(hl7_->MessagesOfPatient("P" + std::to_string(t), 100)->size(),
              static_cast<size_t>(kEach));
  }
}

std::string Adt(const std::string& control_id, const std::string& patient,
                const std::string& name) {
  return "MSH|^~\\&|RIS|HOSP|PHIGATE|RAD|20240101120000||ADT^A08|" + control_id +
         "|P|2.5.1\rPID|1||" + patient + "||" + name + "\r";
}

// A real Hl7Server with the real handler: a sender that streams 30 messages
// without waiting gets 30 AA in order, each only once stored, and the
// messages are applied in arrival order (the last name wins).
TEST_F(Hl7ServiceTest, PipelinedSenderGetsDurableAcksInOrder) {
  tls::AsioRunner runner(2);
  config::Hl7Config cfg;
  cfg.tls.enabled = false;
  cfg.plain = {true, "127.0.0.1", 0, false};
  cfg.allowed_networks = {*config::ParseNetwork("127.0.0.0/8")};
  auto srv = Hl7Server::Create(cfg, nullptr, runner, *handler_);
  ASSERT_TRUE(srv.ok()) << srv.status().ToString();
  ASSERT_TRUE((*srv)->Start().ok());
  ASSERT_TRUE(runner.Start().ok());
  ASSERT_TRUE(Store(kSmith, 1, 1).ok());
  namespace asio = boost::asio;
  asio::io_context io;
  asio::ip::tcp::socket s(io);
  s.connect({asio::ip::make_address("127.0.0.1"), (*srv)->plain_port()});
  std::string wire;
  for (int i = 0; i < 30; ++i) {
    wire += MllpEncode(Adt("S" + std::to_string(i), kSmith.id, "SMITH^V" + std::to_string(i)));
  }
  asio::write(s, asio::buffer(wire));
  s.shutdown(asio::ip::tcp::socket::shutdown_send);
  std::string got;
  boost::system::error_code ec;
  asio::read(s, asio::dynamic_buffer(got), ec);  // until the server closes
  MllpFramer f(1 << 20);
  std::deque<std::string> acks;
  ASSERT_TRUE(f.Feed(got, &acks).ok());
  ASSERT_EQ(acks.size(), 30u);
  for (int i = 0; i < 30; ++i) {
    AckView v = View(acks[i]);
    EXPECT_EQ(v.code, "AA");
    EXPECT_EQ(v.control, "S" + std::to_string(i));
  }
  EXPECT_EQ(hl7_->MessagesOfPatient(kSmith.id, 100)->size(), 30u);
  EXPECT_EQ(NamesFor(kSmith.id), std::vector<std::string>{"SMITH^V29"});
  (*srv)->StopAccepting();
  (*srv)->Drain(std::chrono::steady_clock::now() + std::chrono::seconds(5));
  srv->reset();
  runner.Stop();
}

// A COMMIT whose fsync fails answers AE (ERR 207), never AA, stores nothing,
// and the failure is sticky: later messages get AE too.
TEST_F(Hl7ServiceTest, FailedCommitGivesAeNeverAa) {
  // Reopen the catalog through the fault VFS (same files, same vault).
  handler_.reset();
  worklist_.reset();
  hl7_.reset();
  query_.reset();
  erasure_.reset();
  ingest_.reset();
  keys_.reset();
  catalog_.reset();
  index::SqliteCatalog::Options opts;
  vault::KeyVault* vp = vault_.get();
  opts.audit_mac = [vp](crypto::ByteSpan d) { return vp->AuditMac(d); };
  opts.vfs_for_test = index::testing::RegisterFaultVfs();
  auto c = index::SqliteCatalog::Open(storage_.path(), env_, opts);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  catalog_ = std::move(c).value();
  keys_ = std::make_unique<services::StudyKeys>(*vault_, *catalog_);
  hl7_ = std::make_unique<services::Hl7Service>(*vault_, *catalog_, *keys_, env_);
  handler_ = std::make_unique<Hl7MessageHandler>(*hl7_, env_);

  EXPECT_EQ(Send(Adt("F1", "PID-F1", "DOE^A")).code, "AA");
  index::testing::SetFailSync(true);
  const long syncs = index::testing::SyncCount();
  AckView v = Send(Adt("F2", "PID-F2", "DOE^B"));
  index::testing::SetFailSync(false);
  EXPECT_EQ(v.code, "AE");
  EXPECT_EQ(v.control, "F2");
  EXPECT_EQ(v.err, "207");
  EXPECT_EQ(index::testing::SyncCount(), syncs);  // the failing fsync never reached the disk
  // Sticky: the disk "works" again, the catalog still refuses until reopened.
  EXPECT_EQ(Send(Adt("F3", "PID-F3", "DOE^C")).code, "AE");
  EXPECT_EQ(handler_->stats().accepted, 1u);
  EXPECT_EQ(hl7_->stats().failed, 2u);
  EXPECT_TRUE(hl7_->MessagesOfPatient("PID-F2", 10)->empty());
  EXPECT_TRUE(hl7_->MessagesOfPatient("PID-F3", 10)->empty());
  EXPECT_EQ(hl7_->MessagesOfPatient("PID-F1", 10)->size(), 1u);
}

}  // namespace
}  // namespace phi::hl7
