// A real storage stack for service tests: KEK files on another filesystem
// (/dev/shm), a KeyVault, a SqliteCatalog and an FsObjectStore in a TempDir,
// with an Env that records the random bytes it hands out (so tests know the
// plaintext study keys, for the erasure scan) and can inject faults.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "libphi/index/sqlite_catalog.h"
#include "libphi/objects/fs_object_store.h"
#include "libphi/services/erasure_service.h"
#include "libphi/services/ingest_service.h"
#include "libphi/services/query_service.h"
#include "libphi/services/study_keys.h"
#include "libphi/vault/key_vault.h"
#include "tests/support/fault_env.h"
#include "tests/support/temp_dir.h"
#include "tests/unit/vault/vault_test_util.h"

namespace phi::services::testing {

// Records every 32-byte random output (study keys, derivation secrets).
class RecordingEnv : public EnvWrapper {
 public:
  explicit RecordingEnv(Env& target) : EnvWrapper(target) {}
  Status RandomBytes(std::span<std::byte> out) override {
    Status s = target().RandomBytes(out);
    if (s.ok() && out.size() == 32) {
      std::lock_guard lock(mu_);
      outputs_.emplace_back(reinterpret_cast<const char*>(out.data()), out.size());
    }
    return s;
  }
  std::vector<std::string> outputs() {
    std::lock_guard lock(mu_);
    return outputs_;
  }

 private:
  std::mutex mu_;
  std::vector<std::string> outputs_;
};

struct Patient {
  std::string name, id, birth_date, accession, study_uid, study_date, modality;
};

inline InstanceAttributes Attrs(const Patient& p, int series, int instance) {
  InstanceAttributes a;
  a.sop_class_uid = "1.2.840.10008.5.1.4.1.1.2";
  a.transfer_syntax_uid = "1.2.840.10008.1.2.1";
  a.study_instance_uid = p.study_uid;
  a.series_instance_uid = p.study_uid + "." + std::to_string(series);
  a.sop_instance_uid = a.series_instance_uid + "." + std::to_string(instance);
  a.patient_name = p.name;
  a.patient_id = p.id;
  a.patient_birth_date = p.birth_date;
  a.patient_sex = "O";
  a.accession_number = p.accession;
  a.study_date = p.study_date;
  a.modality = p.modality;
  a.series_number = series;
  a.instance_number = instance;
  return a;
}

// Bytes standing in for a Part 10 file: carries the PHI strings in clear, as a
// real DICOM file does, so scans can look for them.
inline std::string FakePart10(const InstanceAttributes& a, size_t size) {
  std::string s = "DICM|" + a.patient_name + "|" + a.patient_id + "|" + a.patient_birth_date + "|" +
                  a.accession_number + "|" + a.sop_instance_uid + "|";
  uint32_t x = static_cast<uint32_t>(std::hash<std::string>{}(a.sop_instance_uid));
  while (s.size() < size) {
    x = x * 1664525u + 1013904223u;
    s.push_back(static_cast<char>(x >> 24));
  }
  return s;
}

inline std::span<const std::byte> Bytes(const std::string& s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

class ServicesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!keys_dir_.DiffersFrom(storage_.path())) {
      GTEST_SKIP() << "needs /dev/shm on a different filesystem from $TMPDIR";
    }
    phi::testing::WriteFile(keys_dir_ / "a.kek", vault::testing::RandomKeyBytes(), 0400);
    phi::testing::WriteFile(keys_dir_ / "b.kek", vault::testing::RandomKeyBytes(), 0400);
    Open({"A"}, "A");
  }
  void TearDown() override { Close(); }

  void Open(std::vector<std::string> kek_ids, const std::string& active,
            config::DuplicatePolicy dup = config::DuplicatePolicy::kKeepFirst) {
    Close();
    std::vector<config::KekConfig> keks;
    for (const auto& id : kek_ids) {
      keks.push_back(vault::testing::FileKek(id, keys_dir_ / (id == "A" ? "a.kek" : "b.kek")));
    }
    auto v = vault::KeyVault::Open(vault::testing::Keys(keks, active), storage_.path(), env_);
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    vault_ = std::move(v).value();
    index::SqliteCatalog::Options opts;
    vault::KeyVault* vp = vault_.get();
    opts.audit_mac = [vp](crypto::ByteSpan d) { return vp->AuditMac(d); };
    auto c = index::SqliteCatalog::Open(storage_.path(), env_, opts);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    catalog_ = std::move(c).value();
    auto o = objects::FsObjectStore::Open(storage_.path(), fault_);
    ASSERT_TRUE(o.ok()) << o.status().ToString();
    objects_ = std::move(o).value();
    Status boot = BootstrapDerivationSecret(*vault_, *catalog_);
    ASSERT_TRUE(boot.ok()) << boot.ToString();
    keys_ = std::make_unique<StudyKeys>(*vault_, *catalog_);
    ingest_ = std::make_unique<IngestService>(*vault_, *catalog_, *objects_, *keys_, dup, env_);
    erasure_ = std::make_unique<ErasureService>(*vault_, *catalog_, *objects_, *keys_, env_);
    query_ = std::make_unique<QueryService>(*vault_, *catalog_, *objects_, *keys_);
  }

  void Close() {
    query_.reset();
    erasure_.reset();
    ingest_.reset();
    keys_.reset();
    objects_.reset();
    catalog_.reset();
    vault_.reset();
  }

  Result<StoreResult> Store(const Patient& p, int series, int instance, size_t size = 4096) {
    InstanceAttributes a = Attrs(p, series, instance);
    std::string bytes = FakePart10(a, size);
    return ingest_->Store({"dicom:TESTSCU", "127.0.0.1:1", "TESTSCU"}, a, Bytes(bytes));
  }

  std::string ReadInstance(const std::string& sop_uid) {
    auto o = query_->OpenInstance(sop_uid);
    EXPECT_TRUE(o.ok()) << o.status().ToString();
    if (!o.ok()) return "";
    std::string out;
    Status s = o->reader->ReadAll([&](std::span<const std::byte> chunk) {
      out.append(reinterpret_cast<const char*>(chunk.data()), chunk.size());
      return Status::Ok();
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
    return out;
  }

  phi::testing::TempDir storage_;
  vault::testing::OtherFsDir keys_dir_;
  PosixEnv posix_;
  RecordingEnv env_{posix_};
  phi::testing::FaultEnv fault_{posix_};
  std::unique_ptr<vault::KeyVault> vault_;
  std::unique_ptr<index::SqliteCatalog> catalog_;
  std::unique_ptr<objects::FsObjectStore> objects_;
  std::unique_ptr<StudyKeys> keys_;
  std::unique_ptr<IngestService> ingest_;
  std::unique_ptr<ErasureService> erasure_;
  std::unique_ptr<QueryService> query_;
};

}  // namespace phi::services::testing
