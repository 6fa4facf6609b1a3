// The vault's services end to end on real files, real SQLite, real AES-GCM:
// store and read back, duplicates, conflicts, refusals, faults, concurrency
// (group commit), queries, KEK rotation with the old KEK removed, recovery,
// and the auditor's erasure scan.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <thread>

#include "libphi/services/key_rotation.h"
#include "libphi/services/recovery.h"
#include "tests/unit/services/services_fixture.h"

namespace phi::services::testing {
namespace {

namespace fs = std::filesystem;

const Patient kSmith{"SMITH^JOHN", "PID-4711", "19600101", "ACC-0001", "1.2.826.0.1.3680043.1.1",
                     "20240315",   "CT"};
const Patient kDoe{"DOE^JANE", "PID-0815", "19751224", "ACC-0002", "1.2.826.0.1.3680043.1.2",
                   "20230102", "MR"};

size_t CountObjectFiles(const fs::path& root) {
  size_t n = 0;
  for (const auto& e : fs::recursive_directory_iterator(root / "objects")) {
    if (e.is_regular_file()) ++n;
  }
  return n;
}

std::string Slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

TEST_F(ServicesTest, StoresAndReadsBackByteIdentical) {
  for (int i = 1; i <= 3; ++i) {
    auto r = Store(kSmith, 1, i, 3 * 1024 * 1024 + i);  // spans several segments
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->outcome, StoreOutcome::kStored);
  }
  ASSERT_TRUE(Store(kDoe, 1, 1).ok());
  for (int i = 1; i <= 3; ++i) {
    InstanceAttributes a = Attrs(kSmith, 1, i);
    EXPECT_EQ(ReadInstance(a.sop_instance_uid), FakePart10(a, 3 * 1024 * 1024 + i));
  }
  EXPECT_EQ(CountObjectFiles(storage_.path()), 4u);
  auto counts = catalog_->CountObjects();
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ(counts->studies, 2);
  EXPECT_EQ(counts->instances, 4);
  EXPECT_TRUE(*ingest_->IsStored(Attrs(kDoe, 1, 1).sop_instance_uid));
  EXPECT_FALSE(*ingest_->IsStored("1.2.3.4.5"));
}

TEST_F(ServicesTest, NoPhiInClearOnDisk) {
  ASSERT_TRUE(Store(kSmith, 1, 1).ok());
  for (const auto& e : fs::recursive_directory_iterator(storage_.path())) {
    if (!e.is_regular_file()) continue;
    std::string data = Slurp(e.path());
    for (const std::string& phi : {kSmith.name, kSmith.id, kSmith.accession, kSmith.birth_date}) {
      EXPECT_EQ(data.find(phi), std::string::npos) << phi << " in clear in " << e.path();
    }
  }
}

TEST_F(ServicesTest, DuplicateKeptUnderKeepFirst) {
  auto first = Store(kSmith, 1, 1);
  ASSERT_TRUE(first.ok());
  auto again = Store(kSmith, 1, 1, 5000);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->outcome, StoreOutcome::kDuplicateKept);
  EXPECT_EQ(again->object_id, first->object_id);
  EXPECT_EQ(CountObjectFiles(storage_.path()), 1u);
  EXPECT_EQ(ReadInstance(Attrs(kSmith, 1, 1).sop_instance_uid),
            FakePart10(Attrs(kSmith, 1, 1), 4096));
}

TEST_F(ServicesTest, DuplicateReplacedUnderReplacePolicy) {
  Open({"A"}, "A", config::DuplicatePolicy::kReplace);
  auto first = Store(kSmith, 1, 1);
  ASSERT_TRUE(first.ok());
  auto again = Store(kSmith, 1, 1, 5000);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->outcome, StoreOutcome::kReplaced);
  EXPECT_NE(again->object_id, first->object_id);
  EXPECT_EQ(CountObjectFiles(storage_.path()), 1u) << "the replaced object is unlinked";
  EXPECT_EQ(ReadInstance(Attrs(kSmith, 1, 1).sop_instance_uid),
            FakePart10(Attrs(kSmith, 1, 1), 5000));
}

TEST_F(ServicesTest, ConflictingPatientIsStoredAndFlagged) {
  ASSERT_TRUE(Store(kSmith, 1, 1).ok());
  Patient other = kSmith;
  other.id = "PID-9999";
  auto r = Store(other, 2, 1);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->outcome, StoreOutcome::kStoredConflict);
  auto study = query_->GetStudy(kSmith.study_uid);
  ASSERT_TRUE(study.ok());
  EXPECT_TRUE(study->row.conflict);
  EXPECT_EQ(study->phi.Get("PatientID"), kSmith.id) << "never merged silently";
  EXPECT_EQ(ingest_->stats().conflicts, 1u);
}

TEST_F(ServicesTest, RefusesUnusableAttributes) {
  InstanceAttributes a = Attrs(kSmith, 1, 1);
  a.sop_instance_uid = "";
  std::string bytes = FakePart10(a, 100);
  auto r = ingest_->Store({}, a, Bytes(bytes));
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  a = Attrs(kSmith, 1, 1);
  a.study_instance_uid = "1.2.abc";
  r = ingest_->Store({}, a, Bytes(bytes));
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(CountObjectFiles(storage_.path()), 0u);
  EXPECT_EQ(catalog_->CountObjects()->instances, 0);
}

TEST_F(ServicesTest, FailedSyncNeverAcknowledgesAndLeavesNothing) {
  fault_.FailNth(phi::testing::FaultEnv::Op::kSync, 1, EIO);
  auto r = Store(kSmith, 1, 1);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(CountObjectFiles(storage_.path()), 0u);
  // The rows committed in parallel with the object are undone, study included.
  index::ObjectCounts n = *catalog_->CountObjects();
  EXPECT_EQ(n.instances, 0);
  EXPECT_EQ(n.series, 0);
  EXPECT_EQ(n.studies, 0);
  EXPECT_TRUE(catalog_->ListPendingObjectIds()->empty());
  EXPECT_FALSE(*ingest_->IsStored(Attrs(kSmith, 1, 1).sop_instance_uid));
  auto audit = catalog_->ReadAudit(0, 100);
  ASSERT_TRUE(audit.ok());
  ASSERT_FALSE(audit->empty());
  EXPECT_EQ(audit->back().action, "store-undone");
  EXPECT_EQ(audit->back().outcome, "error:IOError");
  // fsync failures are sticky: later stores are refused until reopened.
  fault_.ClearFaults();
  EXPECT_FALSE(Store(kSmith, 1, 2).ok());
  Open({"A"}, "A");
  ASSERT_TRUE(RecoverStorage(*catalog_, *objects_).ok());
  EXPECT_TRUE(Store(kSmith, 1, 2).ok());
}

TEST_F(ServicesTest, DiskFullRefusesCleanly) {
  fault_.FailNth(phi::testing::FaultEnv::Op::kAppend, 1, ENOSPC);
  auto r = Store(kSmith, 1, 1, 2 * 1024 * 1024);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kResourceExhausted);
  EXPECT_EQ(catalog_->CountObjects()->instances, 0);
  fault_.ClearFaults();
  EXPECT_TRUE(Store(kSmith, 1, 1).ok()) << "ENOSPC is not sticky";
}

TEST_F(ServicesTest, ConcurrentStoresShareCommits) {
  constexpr int kThreads = 8, kPerThread = 20;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Patient p = (t % 2 == 0) ? kSmith : kDoe;  // two studies, concurrent first instances
      for (int i = 0; i < kPerThread; ++i) {
        if (!Store(p, t + 1, i + 1, 2048).ok()) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(catalog_->CountObjects()->instances, kThreads * kPerThread);
  EXPECT_EQ(catalog_->CountObjects()->studies, 2) << "one key and one row per study";
  auto keys = catalog_->ListStudyKeys("", 100);
  ASSERT_TRUE(keys.ok());
  EXPECT_EQ(keys->size(), 2u);
  auto st = catalog_->stats();
  EXPECT_LT(st.commits, st.transactions) << "group commit batches concurrent stores";
}

TEST_F(ServicesTest, QueriesMatchDecryptedAttributes) {
  ASSERT_TRUE(Store(kSmith, 1, 1).ok());
  ASSERT_TRUE(Store(kDoe, 1, 1).ok());
  auto by_name = query_->FindStudies({.patient_name = "smi*"});
  ASSERT_TRUE(by_name.ok());
  ASSERT_EQ(by_name->size(), 1u);
  EXPECT_EQ((*by_name)[0].phi.Get("PatientID"), kSmith.id);
  auto by_id = query_->FindStudies({.patient_id = kDoe.id});
  ASSERT_EQ(by_id->size(), 1u);
  EXPECT_EQ((*by_id)[0].phi.Get("PatientName"), kDoe.name);
  auto by_date = query_->FindStudies({.study_date = "20240101-20241231"});
  ASSERT_EQ(by_date->size(), 1u);
  EXPECT_EQ((*by_date)[0].phi.Get("StudyInstanceUID"), kSmith.study_uid);
  auto by_modality = query_->FindStudies({.modality = "MR"});
  ASSERT_EQ(by_modality->size(), 1u);
  auto by_acc_wild = query_->FindStudies({.accession_number = "ACC-000?"});
  EXPECT_EQ(by_acc_wild->size(), 2u);
  auto paged = query_->FindStudies({.offset = 1, .limit = 1});
  EXPECT_EQ(paged->size(), 1u);
  EXPECT_EQ(query_->FindStudies({.study_date = "2024-01-01"}).status().code(),
            Code::kInvalidArgument);
  auto series = query_->ListSeries(kSmith.study_uid);
  ASSERT_TRUE(series.ok());
  ASSERT_EQ(series->size(), 1u);
  EXPECT_EQ((*series)[0].phi.Get("SeriesInstanceUID"), Attrs(kSmith, 1, 1).series_instance_uid);
  auto inst = query_->ListInstances(kSmith.study_uid);
  ASSERT_EQ(inst->size(), 1u);
  EXPECT_EQ((*inst)[0].phi.Get("SOPInstanceUID"), Attrs(kSmith, 1, 1).sop_instance_uid);
}

TEST_F(ServicesTest, KekRotationThenOldKekRemoved) {
  for (int i = 1; i <= 5; ++i) ASSERT_TRUE(Store(kSmith, 1, i).ok());
  ASSERT_TRUE(Store(kDoe, 1, 1).ok());
  Open({"A", "B"}, "B");
  size_t calls = 0;
  auto rep = RotateKek(*vault_, *catalog_, "admin:test", /*batch_size=*/1,
                       [&](size_t, size_t) { ++calls; });
  ASSERT_TRUE(rep.ok()) << rep.status().ToString();
  EXPECT_EQ(rep->rewrapped, 2u);
  EXPECT_TRUE(rep->derivation_secret_rewrapped);
  EXPECT_EQ(calls, 2u);
  auto again = RotateKek(*vault_, *catalog_, "admin:test");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->rewrapped, 0u) << "resumable: nothing left to do";

  Open({"B"}, "B");  // kek A is gone
  for (int i = 1; i <= 5; ++i) {
    InstanceAttributes a = Attrs(kSmith, 1, i);
    EXPECT_EQ(ReadInstance(a.sop_instance_uid), FakePart10(a, 4096));
  }
  auto found = query_->FindStudies({.patient_id = kDoe.id});
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(found->size(), 1u) << "blind-index tokens survive rotation";
  auto verify = audit::Verify(*catalog_, [&](crypto::ByteSpan d) { return vault_->AuditMac(d); });
  ASSERT_TRUE(verify.ok());
  EXPECT_TRUE(verify->ok);
}

TEST_F(ServicesTest, RecoveryRemovesOrphansAndTmp) {
  ASSERT_TRUE(Store(kSmith, 1, 1).ok());
  // An object that no catalog row names (a crash between rename and commit).
  auto key = vault_->CreateStudyKey();
  ASSERT_TRUE(key.ok());
  auto cipher = vault_->NewCipher(key->key_id);
  auto w = objects_->NewObject(*objects::phg::ParseId(key->key_id), **cipher);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Append(Bytes(std::string(100, 'x'))).ok());
  ASSERT_TRUE((*w)->Finish().ok());
  phi::testing::WriteFile(storage_.path() / "tmp" / "leftover.tmp", "partial");
  EXPECT_EQ(CountObjectFiles(storage_.path()), 2u);
  auto rep = RecoverStorage(*catalog_, *objects_);
  ASSERT_TRUE(rep.ok()) << rep.status().ToString();
  EXPECT_EQ(rep->orphans_removed, 1u);
  EXPECT_EQ(rep->tmp_removed, 1u);
  EXPECT_EQ(rep->missing_objects, 0u);
  EXPECT_EQ(CountObjectFiles(storage_.path()), 1u);
  EXPECT_EQ(ReadInstance(Attrs(kSmith, 1, 1).sop_instance_uid),
            FakePart10(Attrs(kSmith, 1, 1), 4096));
}

// A crash after the parallel catalog commit but before the object became
// durable leaves a pending row without its object: recovery removes it (the
// store was never acknowledged) and clears the flag of complete stores.
TEST_F(ServicesTest, RecoveryReconcilesPendingRows) {
  ASSERT_TRUE(Store(kSmith, 1, 1).ok());
  const InstanceAttributes first = Attrs(kSmith, 1, 1);
  crypto::Digest d = vault_->IndexToken("SOPInstanceUID", first.sop_instance_uid);
  auto row = catalog_->GetInstanceBySopToken(
      index::Token(reinterpret_cast<const char*>(d.data()), d.size()));
  ASSERT_TRUE(row.ok()) << row.status().ToString();
  auto study = catalog_->GetStudy(row->study_pk);
  ASSERT_TRUE(study.ok());
  auto cipher = vault_->NewCipher(study->key_id);
  ASSERT_TRUE(cipher.ok());
  const objects::KeyId key_bytes = *objects::phg::ParseId(study->key_id);
  // One object made durable, one that never was (its writer aborted).
  auto done = objects_->NewObject(key_bytes, **cipher);
  ASSERT_TRUE(done.ok());
  ASSERT_TRUE((*done)->Append(Bytes(std::string(100, 'y'))).ok());
  ASSERT_TRUE((*done)->Finish().ok());
  auto lost = objects_->NewObject(key_bytes, **cipher);
  ASSERT_TRUE(lost.ok());
  const std::string done_id = (*done)->object_id(), lost_id = (*lost)->object_id();
  (*lost)->Abort();
  Status s = catalog_->Write([&](index::WriteTxn& t) -> Status {
    int n = 0;
    for (const std::string& id : {done_id, lost_id}) {
      crypto::Digest tok = vault_->IndexToken("SOPInstanceUID", "1.2.3.4." + std::to_string(++n));
      index::NewInstance ni;
      ni.series_pk = row->series_pk;
      ni.sop_uid_token = index::Token(reinterpret_cast<const char*>(tok.data()), tok.size());
      ni.sop_class_uid = first.sop_class_uid;
      ni.object_id = id;
      ni.size_bytes = 100;
      ni.phi = "sealed";
      ni.pending = true;
      PHI_RETURN_IF_ERROR(t.InsertInstance(ni).status());
    }
    return Status::Ok();
  });
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_EQ(catalog_->CountObjects()->instances, 3);

  auto rep = RecoverStorage(*catalog_, *objects_);
  ASSERT_TRUE(rep.ok()) << rep.status().ToString();
  EXPECT_EQ(rep->unacknowledged_rows_removed, 1u);
  EXPECT_EQ(rep->missing_objects, 0u);
  EXPECT_EQ(rep->orphans_removed, 0u);
  EXPECT_TRUE(catalog_->ListPendingObjectIds()->empty());
  EXPECT_EQ(catalog_->CountObjects()->instances, 2);
  auto all = catalog_->ListAllObjectIds();
  ASSERT_TRUE(all.ok());
  EXPECT_NE(std::find(all->begin(), all->end(), done_id), all->end());
  EXPECT_EQ(std::find(all->begin(), all->end(), lost_id), all->end());
  auto audit = catalog_->ReadAudit(0, 100);
  ASSERT_TRUE(audit.ok());
  EXPECT_EQ(audit->back().action, "store-undone");
  EXPECT_EQ(audit->back().object, "object:" + lost_id);
  EXPECT_EQ(ReadInstance(first.sop_instance_uid), FakePart10(first, 4096));
}

// The auditor's test of DESIGN.md's erasure contract: after erasing a study,
// neither its plaintext key, nor its wrapped key, nor any of its PHI strings
// is found in any byte of any file under the storage root.
TEST_F(ServicesTest, ErasureLeavesNoKeyNoWrappedKeyNoPhi) {
  ASSERT_TRUE(Store(kDoe, 1, 1).ok());
  const size_t before = env_.outputs().size();
  for (int i = 1; i <= 4; ++i) ASSERT_TRUE(Store(kSmith, 1, i, 300000).ok());
  std::vector<std::string> fresh = env_.outputs();
  fresh.erase(fresh.begin(), fresh.begin() + static_cast<long>(before));
  ASSERT_EQ(fresh.size(), 1u) << "one new study key for the new study";
  const std::string plain_key = fresh[0];
  auto study = query_->GetStudy(kSmith.study_uid);
  ASSERT_TRUE(study.ok());
  auto key_row = catalog_->GetStudyKey(study->row.key_id);
  ASSERT_TRUE(key_row.ok());
  const std::string wrapped = key_row->wrapped;

  auto cert = erasure_->EraseStudy(kSmith.study_uid, "admin:uid=0", "retention expired");
  ASSERT_TRUE(cert.ok()) << cert.status().ToString();
  EXPECT_EQ(cert->objects, 4);
  EXPECT_EQ(cert->bytes, 4 * 300000);
  EXPECT_EQ(cert->wrapped_key_sha256,
            vault::KeyVault::Fingerprint({key_row->key_id, key_row->kek_id, wrapped}));
  EXPECT_GT(cert->audit_seq, 0);

  const std::vector<std::string> needles = {
      plain_key, wrapped, kSmith.name, kSmith.id, kSmith.accession, kSmith.birth_date, "SMITH"};
  size_t files = 0;
  for (const auto& e : fs::recursive_directory_iterator(storage_.path())) {
    if (!e.is_regular_file()) continue;
    ++files;
    std::string data = Slurp(e.path());
    for (size_t i = 0; i < needles.size(); ++i) {
      EXPECT_EQ(data.find(needles[i]), std::string::npos)
          << "needle " << i << " found in " << e.path();
    }
  }
  EXPECT_GE(files, 2u);  // catalog.db and the other study's object at least
  EXPECT_EQ(CountObjectFiles(storage_.path()), 1u);
  EXPECT_EQ(query_->GetStudy(kSmith.study_uid).status().code(), Code::kNotFound);
  EXPECT_FALSE(*ingest_->IsStored(Attrs(kSmith, 1, 1).sop_instance_uid));
  // The other study still reads back intact.
  EXPECT_EQ(ReadInstance(Attrs(kDoe, 1, 1).sop_instance_uid), FakePart10(Attrs(kDoe, 1, 1), 4096));
  // And the certificate is in a verifiable audit chain.
  auto verify = audit::Verify(*catalog_, [&](crypto::ByteSpan d) { return vault_->AuditMac(d); });
  ASSERT_TRUE(verify.ok());
  EXPECT_TRUE(verify->ok);
  // The same study can come back later under a new key.
  ASSERT_TRUE(Store(kSmith, 1, 1).ok());
  EXPECT_NE(query_->GetStudy(kSmith.study_uid)->row.key_id, key_row->key_id);
}

TEST_F(ServicesTest, ErasureRefusals) {
  ASSERT_TRUE(Store(kSmith, 1, 1).ok());
  EXPECT_EQ(erasure_->EraseStudy("1.2.3", "admin", "x").status().code(), Code::kNotFound);
  EXPECT_EQ(erasure_->EraseStudy(kSmith.study_uid, "admin", "").status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(erasure_->EraseStudy(kSmith.study_uid, "admin", "bad\nreason").status().code(),
            Code::kInvalidArgument);
  auto study = query_->GetStudy(kSmith.study_uid);
  ASSERT_TRUE(
      catalog_->Write([&](index::WriteTxn& t) { return t.SetLegalHold(study->row.study_pk, true); })
          .ok());
  EXPECT_EQ(erasure_->EraseStudy(kSmith.study_uid, "admin", "x").status().code(),
            Code::kPermissionDenied);
  EXPECT_EQ(ReadInstance(Attrs(kSmith, 1, 1).sop_instance_uid),
            FakePart10(Attrs(kSmith, 1, 1), 4096));
}

}  // namespace
}  // namespace phi::services::testing
