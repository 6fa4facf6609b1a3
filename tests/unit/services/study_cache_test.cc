// The study cache behind wildcard queries (services/study_cache.h) on a real
// storage stack: it answers like the decrypting path, stays coherent with
// ingest, HL7 ADT updates and merges and erasure (each through the real
// service), and its memory is no-dump and wiped when entries are dropped.
#include "libphi/services/study_cache.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "libphi/services/hl7_service.h"
#include "tests/unit/services/services_fixture.h"

namespace phi::services::testing {
namespace {

const Patient kSmith{"SMITH^JOHN", "PID-1", "19600101", "ACC-1", "1.2.826.0.1.3680043.7.1",
                     "20240315",   "CT"};
const Patient kSmythe{"SMYTHE^ANN", "PID-2", "19700202", "ACC-2", "1.2.826.0.1.3680043.7.2",
                      "20230101",   "MR"};
const Patient kJones{"JONES^BOB", "PID-3", "19800303", "ACC-3", "1.2.826.0.1.3680043.7.3",
                     "20220606",  "CT"};

class StudyCacheTest : public ServicesTest {
 protected:
  void SetUp() override {
    ServicesTest::SetUp();
    if (IsSkipped()) return;
    hl7_ = std::make_unique<Hl7Service>(*vault_, *catalog_, *keys_, env_);
  }
  void TearDown() override {
    hl7_.reset();
    ServicesTest::TearDown();
  }

  std::vector<std::string> Names(const std::string& pattern) {
    StudyQuery q;
    q.patient_name = pattern;
    auto r = query_->FindStudies(q);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    std::vector<std::string> out;
    if (r.ok()) {
      for (auto& m : *r) out.push_back(m.phi.Get("PatientName"));
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  Status Adt(Hl7Event::Kind kind, const std::string& pid, const std::string& name,
             const std::string& prior = "") {
    Hl7Event ev;
    ev.kind = kind;
    ev.message_type = kind == Hl7Event::Kind::kPatientMerge ? "ADT^A40" : "ADT^A08";
    ev.raw = "MSH|...";
    ev.patient.patient_id = pid;
    ev.patient.name = name;
    ev.prior_patient_id = prior;
    return hl7_->Apply({"hl7:test", "127.0.0.1"}, ev).status();
  }

  std::unique_ptr<Hl7Service> hl7_;
};

TEST_F(StudyCacheTest, AnswersLikeTheDecryptingPath) {
  ASSERT_TRUE(Store(kSmith, 1, 1).ok());
  ASSERT_TRUE(Store(kSmythe, 1, 1).ok());
  ASSERT_TRUE(Store(kJones, 1, 1).ok());
  // Before the build: the decrypting path.
  StudyQuery q;
  q.patient_name = "SM*";
  auto before = query_->FindStudies(q);
  ASSERT_TRUE(before.ok());
  ASSERT_FALSE(keys_->cache().ready());
  ASSERT_TRUE(query_->BuildCache().ok());
  ASSERT_TRUE(keys_->cache().ready());
  EXPECT_EQ(keys_->cache().size(), 3u);
  for (StudyQuery probe : std::vector<StudyQuery>{
           q, StudyQuery{.patient_name = "sm?th*"}, StudyQuery{.study_date = "20230101-"},
           StudyQuery{.modality = "CT"}, StudyQuery{.patient_id = "PID-*"},
           StudyQuery{.accession_number = "ACC-3"}, StudyQuery{.offset = 1, .limit = 1},
           StudyQuery{.patient_name = "SM*", .fold_case = false}}) {
    // The same query through the decrypting path (cache bypassed by a token query
    // is not comparable), so compare against a fresh service without a cache.
    StudyKeys plain_keys(*vault_, *catalog_);
    QueryService plain(*vault_, *catalog_, *objects_, plain_keys);
    auto want = plain.FindStudies(probe);
    auto got = query_->FindStudies(probe);
    ASSERT_TRUE(want.ok() && got.ok())
        << want.status().ToString() << " " << got.status().ToString();
    ASSERT_EQ(got->size(), want->size());
    for (size_t i = 0; i < got->size(); ++i) {
      EXPECT_EQ((*got)[i].row.study_pk, (*want)[i].row.study_pk);
      EXPECT_EQ((*got)[i].phi, (*want)[i].phi);
      EXPECT_EQ((*got)[i].row.num_instances, (*want)[i].row.num_instances);
    }
  }
  EXPECT_EQ(before->size(), 2u);
}

TEST_F(StudyCacheTest, CoherentWithIngest) {
  ASSERT_TRUE(Store(kSmith, 1, 1).ok());
  ASSERT_TRUE(query_->BuildCache().ok());
  EXPECT_EQ(Names("SM*"), std::vector<std::string>{"SMITH^JOHN"});
  ASSERT_TRUE(Store(kSmythe, 1, 1).ok());  // a new study after the build
  ASSERT_TRUE(Store(kSmith, 2, 1).ok());   // a new series: counters change
  EXPECT_EQ(Names("SM*"), (std::vector<std::string>{"SMITH^JOHN", "SMYTHE^ANN"}));
  StudyQuery q;
  q.patient_name = "SMITH*";
  auto r = query_->FindStudies(q);
  ASSERT_TRUE(r.ok() && r->size() == 1);
  EXPECT_EQ((*r)[0].row.num_instances, 2);
  EXPECT_EQ((*r)[0].row.num_series, 2);
}

TEST_F(StudyCacheTest, CoherentWithAdtUpdateAndMerge) {
  ASSERT_TRUE(Store(kSmith, 1, 1).ok());
  ASSERT_TRUE(Store(kJones, 1, 1).ok());
  ASSERT_TRUE(query_->BuildCache().ok());
  EXPECT_EQ(Names("JONES*"), std::vector<std::string>{"JONES^BOB"});
  // ADT update renames PID-3: the old name no longer matches, the new one does.
  ASSERT_TRUE(Adt(Hl7Event::Kind::kPatientUpdate, "PID-3", "SMALL^BOB").ok());
  EXPECT_TRUE(Names("JONES*").empty());
  EXPECT_EQ(Names("SM*"), (std::vector<std::string>{"SMALL^BOB", "SMITH^JOHN"}));
  // Merge PID-1 into PID-3: the study now carries PatientID PID-3.
  ASSERT_TRUE(Adt(Hl7Event::Kind::kPatientMerge, "PID-3", "SMALL^BOB", "PID-1").ok());
  StudyQuery q;
  q.patient_id = "PID-?";
  auto r = query_->FindStudies(q);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->size(), 2u);
  for (auto& m : *r) EXPECT_EQ(m.phi.Get("PatientID"), "PID-3");
  EXPECT_EQ(Names("SMITH*"), std::vector<std::string>{});  // renamed by the merge's PID
  EXPECT_EQ(Names("SMALL*").size(), 2u);
}

TEST_F(StudyCacheTest, ErasureDropsAndWipesTheStudy) {
  ASSERT_TRUE(Store(kSmith, 1, 1).ok());
  ASSERT_TRUE(Store(kSmythe, 1, 1).ok());
  ASSERT_TRUE(query_->BuildCache().ok());
  auto study = query_->GetStudy(kSmith.study_uid);
  ASSERT_TRUE(study.ok());
  auto insts = query_->ListInstancesOf(*study);
  ASSERT_TRUE(insts.ok() && insts->size() == 1);
  query_->CacheHeader(study->row.study_uid_token, (*insts)[0].row.object_id, "HEADER|SMITH^JOHN");
  std::string h;
  ASSERT_TRUE(query_->CachedHeader((*insts)[0].row.object_id, &h));
  const NoDumpSlab& slab = keys_->cache().SlabForTest();
  const size_t used = slab.used_slots();
  EXPECT_EQ(slab.NonZeroFreeBytesForTest(), 0u);

  ASSERT_TRUE(erasure_->EraseStudy(kSmith.study_uid, "admin:uid=0", "test").ok());
  // Dropped at once (not at the next query), and its slots are zero.
  EXPECT_EQ(keys_->cache().size(), 1u);
  EXPECT_EQ(slab.used_slots(), used - 2);
  EXPECT_EQ(slab.NonZeroFreeBytesForTest(), 0u);
  EXPECT_FALSE(query_->CachedHeader((*insts)[0].row.object_id, &h));
  EXPECT_EQ(Names("SM*"), std::vector<std::string>{"SMYTHE^ANN"});
  // No slot of the slab still holds the erased study's name.
  for (const void* chunk : slab.ChunksForTest()) {
    std::string_view mem(static_cast<const char*>(chunk), NoDumpSlab::kChunkBytes);
    EXPECT_EQ(mem.find("SMITH^JOHN"), std::string_view::npos);
    EXPECT_EQ(mem.find("PID-1"), std::string_view::npos);
  }
}

// The prefix scan walks the bucket of the pattern's first byte: every pattern
// still answers like the decrypting path, whatever the names' first bytes
// (upper/lower case, non-ASCII, empty), and a rename moves a study across
// buckets.
TEST_F(StudyCacheTest, NamePrefixScanAnswersLikeTheDecryptingPath) {
  const std::vector<std::string> names = {"SMITH^JOHN", "sampson^ann", "\xC3\x89MILE^ZOLA", "",
                                          "JONES^BOB",  "S",           "SMITHSONIAN^X"};
  for (size_t i = 0; i < names.size(); ++i) {
    Patient p{names[i],
              "PID-" + std::to_string(i),
              "19600101",
              "ACC-" + std::to_string(i),
              "1.2.826.0.1.3680043.7.5" + std::to_string(i),
              "20240315",
              "CT"};
    ASSERT_TRUE(Store(p, 1, 1).ok());
  }
  ASSERT_TRUE(query_->BuildCache().ok());
  auto check = [&] {
    for (const char* pattern : {"S*", "s*", "SM*", "SMITHSON*", "\xC3\x89*", "*", "?MITH*", "",
                                "SMITH^JOHN", "J*", "X*", "S"}) {
      for (bool fold : {true, false}) {
        StudyQuery q{.patient_name = pattern, .fold_case = fold};
        StudyKeys plain_keys(*vault_, *catalog_);
        QueryService plain(*vault_, *catalog_, *objects_, plain_keys);
        auto want = plain.FindStudies(q);
        auto got = query_->FindStudies(q);
        ASSERT_TRUE(want.ok() && got.ok());
        ASSERT_EQ(got->size(), want->size()) << pattern << " fold=" << fold;
        for (size_t i = 0; i < got->size(); ++i) {
          EXPECT_EQ((*got)[i].row.study_pk, (*want)[i].row.study_pk) << pattern;
        }
      }
    }
  };
  check();
  EXPECT_EQ(Names("S*"),
            (std::vector<std::string>{"S", "SMITHSONIAN^X", "SMITH^JOHN", "sampson^ann"}));
  // Renamed from S to J: leaves the S bucket, joins the J one.
  ASSERT_TRUE(Adt(Hl7Event::Kind::kPatientUpdate, "PID-0", "JOHNSON^JOHN").ok());
  check();
  EXPECT_EQ(Names("J*"), (std::vector<std::string>{"JOHNSON^JOHN", "JONES^BOB"}));
  EXPECT_EQ(Names("SM*"), std::vector<std::string>{"SMITHSONIAN^X"});
}

// A caller's rendering attached to a study's entry is returned instead of the
// decoded attributes only while the entry is the one it was derived from: an
// ADT update (re-read) drops it, an attachment for an older generation is
// ignored, and erasure wipes it with the entry.
TEST_F(StudyCacheTest, AttachedRenderingFollowsTheEntry) {
  ASSERT_TRUE(Store(kSmith, 1, 1).ok());
  ASSERT_TRUE(Store(kSmythe, 1, 1).ok());
  ASSERT_TRUE(query_->BuildCache().ok());
  const StudyQuery q{.patient_name = "SM*", .rendered_instead_of_phi = true};
  auto find = [&] {
    auto r = query_->FindStudies(q);
    EXPECT_TRUE(r.ok() && r->size() == 2u);
    return r.ok() ? *r : std::vector<StudyMatch>{};
  };
  std::vector<StudyMatch> first = find();
  ASSERT_EQ(first.size(), 2u);
  ASSERT_EQ(first[0].phi.Get("PatientName"), "SMITH^JOHN");
  for (auto& m : first) {
    EXPECT_NE(m.cache_generation, 0u);
    EXPECT_TRUE(m.rendered.empty());
  }
  query_->AttachRendered({{first[0].row.study_pk, first[0].cache_generation, "R|SMITH^JOHN"},
                          {first[1].row.study_pk, first[1].cache_generation + 1000, "R|STALE"}});
  std::vector<StudyMatch> second = find();
  ASSERT_EQ(second.size(), 2u);
  EXPECT_EQ(second[0].rendered, "R|SMITH^JOHN");
  EXPECT_TRUE(second[0].phi.items().empty());
  EXPECT_TRUE(second[1].rendered.empty());  // the stale generation was ignored
  EXPECT_EQ(second[1].phi.Get("PatientName"), "SMYTHE^ANN");
  // Without the option, the attributes as always.
  auto plain = query_->FindStudies(StudyQuery{.patient_name = "SM*"});
  ASSERT_TRUE(plain.ok() && plain->size() == 2u);
  EXPECT_EQ((*plain)[0].phi.Get("PatientName"), "SMITH^JOHN");
  EXPECT_TRUE((*plain)[0].rendered.empty());

  // An ADT rename re-reads the study: the rendering is gone, the new name is there.
  ASSERT_TRUE(Adt(Hl7Event::Kind::kPatientUpdate, "PID-1", "SMALL^JOHN").ok());
  std::vector<StudyMatch> third = find();
  ASSERT_EQ(third.size(), 2u);
  EXPECT_TRUE(third[0].rendered.empty());
  EXPECT_EQ(third[0].phi.Get("PatientName"), "SMALL^JOHN");
  EXPECT_NE(third[0].cache_generation, first[0].cache_generation);
  // A rendering made from the old entry (a request that raced the update) is ignored.
  query_->AttachRendered({{first[0].row.study_pk, first[0].cache_generation, "R|SMITH^JOHN"}});
  EXPECT_TRUE(find()[0].rendered.empty());

  const NoDumpSlab& slab = keys_->cache().SlabForTest();
  const size_t used = slab.used_slots();
  query_->AttachRendered({{third[0].row.study_pk, third[0].cache_generation, "R|SMALL^JOHN"}});
  EXPECT_EQ(find()[0].rendered, "R|SMALL^JOHN");
  EXPECT_EQ(slab.used_slots(), used + 1);
  ASSERT_TRUE(erasure_->EraseStudy(kSmith.study_uid, "admin:uid=0", "test").ok());
  EXPECT_EQ(slab.used_slots(), used - 1);  // the entry and its rendering
  EXPECT_EQ(slab.NonZeroFreeBytesForTest(), 0u);
  for (const void* chunk : slab.ChunksForTest()) {
    std::string_view mem(static_cast<const char*>(chunk), NoDumpSlab::kChunkBytes);
    EXPECT_EQ(mem.find("R|SMALL^JOHN"), std::string_view::npos);
    EXPECT_EQ(mem.find("R|SMITH^JOHN"), std::string_view::npos);
  }
  auto after = query_->FindStudies(q);
  ASSERT_TRUE(after.ok());
  ASSERT_EQ(after->size(), 1u);
  EXPECT_EQ((*after)[0].phi.Get("PatientName"), "SMYTHE^ANN");
}

TEST(NoDumpSlabTest, MemoryIsNoDumpAndWipedOnFree) {
  NoDumpSlab slab(4 << 20);
  auto a = slab.Put("SMITH^JOHN|PID-1|19600101");
  auto b = slab.Put(std::string(3000, 'x'));
  ASSERT_TRUE(a && b);
  EXPECT_EQ(slab.Get(*a), "SMITH^JOHN|PID-1|19600101");
  EXPECT_EQ(slab.NonZeroFreeBytesForTest(), 0u);
  slab.Free(*a);
  EXPECT_EQ(slab.NonZeroFreeBytesForTest(), 0u);  // the freed slot is zero
  EXPECT_EQ(slab.Get(*b), std::string(3000, 'x'));
  EXPECT_FALSE(slab.Put(std::string(NoDumpSlab::kMaxValueBytes + 1, 'y')).has_value());
  // Every chunk is a mapping the kernel flags "dd" (VM_DONTDUMP) in smaps.
  std::vector<const void*> chunks = slab.ChunksForTest();
  ASSERT_EQ(chunks.size(), 2u);  // two size classes
  std::ifstream smaps("/proc/self/smaps");
  std::string line, flags_of_chunk;
  size_t checked = 0;
  bool in_chunk = false;
  while (std::getline(smaps, line)) {
    unsigned long lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2 && line.find(' ') != 0 &&
        line.find(':') > line.find('-')) {
      in_chunk = std::any_of(chunks.begin(), chunks.end(), [&](const void* c) {
        auto p = reinterpret_cast<unsigned long>(c);
        return p >= lo && p < hi;
      });
      continue;
    }
    if (in_chunk && line.rfind("VmFlags:", 0) == 0) {
      std::istringstream fl(line.substr(8));
      std::string f;
      bool dd = false;
      while (fl >> f) dd |= f == "dd";
      EXPECT_TRUE(dd) << line;
      ++checked;
      in_chunk = false;
    }
  }
  EXPECT_GE(checked, 1u);
}

TEST(NoDumpSlabTest, BudgetBoundsTheMapping) {
  NoDumpSlab slab(NoDumpSlab::kChunkBytes);  // one chunk
  std::string v(NoDumpSlab::kMaxValueBytes, 'z');
  size_t n = 0;
  while (slab.Put(v)) ++n;
  EXPECT_EQ(n, NoDumpSlab::kChunkBytes / NoDumpSlab::kMaxValueBytes);
  EXPECT_EQ(slab.mapped_bytes(), NoDumpSlab::kChunkBytes);
  EXPECT_FALSE(slab.Put("small").has_value());  // another class would need a chunk
}

}  // namespace
}  // namespace phi::services::testing
