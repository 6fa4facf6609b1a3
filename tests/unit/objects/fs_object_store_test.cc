#include "libphi/objects/fs_object_store.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <set>
#include <thread>

#include "tests/support/fault_env.h"
#include "tests/support/temp_dir.h"
#include "tests/unit/objects/test_util.h"

namespace phi::objects {
namespace {

namespace fs = std::filesystem;
using testing::FaultEnv;
using testing::TempDir;
using testutil::NewKey;
using testutil::NewKeyId;
using testutil::Pattern;

constexpr uint32_t kSeg = 4096;

std::vector<std::string> FilesUnder(const fs::path& dir) {
  std::vector<std::string> out;
  if (!fs::exists(dir)) return out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) out.push_back(e.path().string());
  }
  return out;
}

std::string ReadBytes(const fs::path& p) { return testing::ReadFile(p); }
void WriteBytes(const fs::path& p, const std::string& s) {
  fs::permissions(p, fs::perms::owner_read | fs::perms::owner_write);
  testing::WriteFile(p, s);
}

class FsObjectStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    key_ = NewKey();
    key_id_ = NewKeyId();
    Reopen();
  }
  void Reopen(uint32_t seg = kSeg) {
    store_.reset();
    auto s = FsObjectStore::Open(dir_.path(), env_, FsObjectStoreOptions{seg});
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
  }

  // Writes `data` in chunks of `chunk` bytes (0: one Append). With
  // `tail_in_finish`, the last chunk goes through AppendAndFinish.
  Result<ObjectInfo> Put(std::span<const std::byte> data, size_t chunk = 0,
                         bool tail_in_finish = false) {
    PHI_ASSIGN_OR_RETURN(ObjectWriterPtr w, store_->NewObject(key_id_, *key_));
    if (chunk == 0) chunk = std::max<size_t>(data.size(), 1);
    for (size_t off = 0; off < data.size(); off += chunk) {
      auto piece = data.subspan(off, std::min(chunk, data.size() - off));
      if (tail_in_finish && off + piece.size() == data.size()) return w->AppendAndFinish(piece);
      PHI_RETURN_IF_ERROR(w->Append(piece));
    }
    return tail_in_finish ? w->AppendAndFinish({}) : w->Finish();
  }

  Result<std::vector<std::byte>> GetAll(const std::string& id, crypto::AesGcm& key,
                                        const KeyId& key_id) {
    PHI_ASSIGN_OR_RETURN(ObjectReaderPtr r, store_->Open(id, key_id, key));
    std::vector<std::byte> out;
    PHI_RETURN_IF_ERROR(r->ReadAll([&](std::span<const std::byte> b) {
      out.insert(out.end(), b.begin(), b.end());
      return Status::Ok();
    }));
    if (out.size() != r->plaintext_size()) return Status::Internal("size mismatch");
    return out;
  }
  Result<std::vector<std::byte>> GetAll(const std::string& id) {
    return GetAll(id, *key_, key_id_);
  }

  TempDir dir_;
  PosixEnv posix_;
  FaultEnv env_{posix_};
  std::unique_ptr<crypto::AesGcm> key_;
  KeyId key_id_;
  std::unique_ptr<FsObjectStore> store_;
};

TEST_F(FsObjectStoreTest, RoundTripSizesAroundSegmentBoundaries) {
  for (size_t n : {size_t{0}, size_t{1}, size_t{kSeg - 1}, size_t{kSeg}, size_t{kSeg + 1},
                   size_t{kSeg * 7 / 2}}) {
    for (size_t chunk : {size_t{0}, size_t{1000}, size_t{kSeg}, size_t{kSeg + 3}}) {
      for (bool tail_in_finish : {false, true}) {
        SCOPED_TRACE(::testing::Message()
                     << "size " << n << " chunk " << chunk << " tail in finish " << tail_in_finish);
        std::vector<std::byte> data = Pattern(n * 31 + chunk, n);
        auto info = Put(data, chunk, tail_in_finish);
        ASSERT_TRUE(info.ok()) << info.status().ToString();
        EXPECT_EQ(info->plaintext_size, n);
        EXPECT_EQ(info->stored_size, phg::StoredSize(n, kSeg));
        fs::path p = store_->ObjectPath(info->object_id);
        EXPECT_EQ(fs::file_size(p), info->stored_size);
        EXPECT_EQ(p.parent_path().filename().string(), info->object_id.substr(2, 2));
        EXPECT_EQ(p.parent_path().parent_path().filename().string(), info->object_id.substr(0, 2));
        EXPECT_EQ(p.parent_path().parent_path().parent_path(), dir_.path() / "objects");
        auto back = GetAll(info->object_id);
        ASSERT_TRUE(back.ok()) << back.status().ToString();
        EXPECT_EQ(*back, data);
      }
    }
  }
  EXPECT_TRUE(FilesUnder(dir_.path() / "tmp").empty());
}

TEST_F(FsObjectStoreTest, CiphertextDoesNotContainPlaintext) {
  std::string secret(3 * kSeg, 'A');
  std::copy_n("DOE^JOHN", 8, secret.begin() + 100);
  auto info = Put(crypto::AsBytes(secret));
  ASSERT_TRUE(info.ok());
  std::string raw = ReadBytes(store_->ObjectPath(info->object_id));
  EXPECT_EQ(raw.find("DOE^JOHN"), std::string::npos);
  EXPECT_EQ(raw.find(std::string(32, 'A')), std::string::npos);
}

TEST_F(FsObjectStoreTest, DefaultSegmentSizeRoundTrip) {
  Reopen(phg::kDefaultSegmentSize);
  std::vector<std::byte> data = Pattern(5, 2 * phg::kDefaultSegmentSize + 17);
  auto info = Put(data, 300000);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  auto back = GetAll(info->object_id);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, data);
  EXPECT_FALSE(FsObjectStore::Open(dir_.path(), env_, FsObjectStoreOptions{1000}).ok());
}

TEST_F(FsObjectStoreTest, RandomAccessReadsAcrossSegmentBoundaries) {
  const size_t n = kSeg * 7 / 2;
  std::vector<std::byte> data = Pattern(9, n);
  auto info = Put(data);
  ASSERT_TRUE(info.ok());
  auto r = store_->Open(info->object_id, key_id_, *key_);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ((*r)->plaintext_size(), n);
  struct Range {
    uint64_t off;
    size_t len;
  };
  for (Range rg : std::vector<Range>{{0, 1},
                                     {0, n},
                                     {kSeg - 1, 2},
                                     {kSeg - 10, kSeg + 20},
                                     {2 * kSeg, kSeg},
                                     {kSeg / 2, 2 * kSeg},
                                     {n - 5, 5},
                                     {n - 5, 100},  // short at the end
                                     {3 * kSeg + 1, 10},
                                     {1, 0}}) {
    SCOPED_TRACE(::testing::Message() << rg.off << "+" << rg.len);
    std::vector<std::byte> out(rg.len);
    auto got = (*r)->Read(rg.off, out);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    size_t expect = std::min<size_t>(rg.len, n - rg.off);
    ASSERT_EQ(*got, expect);
    EXPECT_TRUE(std::equal(out.begin(), out.begin() + expect, data.begin() + rg.off));
  }
  std::vector<std::byte> out(10);
  auto past = (*r)->Read(n, out);
  ASSERT_TRUE(past.ok());
  EXPECT_EQ(*past, 0u);
  past = (*r)->Read(n + 1000, out);
  ASSERT_TRUE(past.ok());
  EXPECT_EQ(*past, 0u);
}

// --- tampering ------------------------------------------------------------

class TamperTest : public FsObjectStoreTest {
 protected:
  void SetUp() override {
    FsObjectStoreTest::SetUp();
    data_ = Pattern(77, kSeg * 7 / 2);  // segments 0,1,2 full; 3 holds half
    auto info = Put(data_);
    ASSERT_TRUE(info.ok());
    id_ = info->object_id;
    path_ = store_->ObjectPath(id_);
    original_ = ReadBytes(path_);
  }
  static uint64_t SegOffset(uint64_t i) { return phg::kHeaderSize + i * (kSeg + kTagBytes); }

  // The tampered object must fail with Corruption; whatever plaintext was
  // delivered before the failure must be whole, verified segments preceding
  // `first_bad_segment`, and a direct Read of that segment returns nothing.
  void ExpectCorrupt(const std::string& what, uint64_t first_bad_segment = 0) {
    SCOPED_TRACE(what);
    auto r = store_->Open(id_, key_id_, *key_);
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), Code::kCorruption) << r.status().ToString();
      return;
    }
    std::vector<std::byte> delivered;
    Status s = (*r)->ReadAll([&](std::span<const std::byte> b) {
      delivered.insert(delivered.end(), b.begin(), b.end());
      return Status::Ok();
    });
    EXPECT_EQ(s.code(), Code::kCorruption) << s.ToString();
    EXPECT_EQ(delivered.size(), first_bad_segment * kSeg);
    EXPECT_TRUE(std::equal(delivered.begin(), delivered.end(), data_.begin()));
    std::vector<std::byte> out(kSeg, std::byte{0x55});
    auto got = (*r)->Read(first_bad_segment * kSeg, out);
    EXPECT_EQ(got.status().code(), Code::kCorruption);
    EXPECT_TRUE(std::all_of(out.begin(), out.end(), [](std::byte b) { return b == std::byte{0}; }))
        << "output buffer must be wiped on failure";
  }
  void Restore() { WriteBytes(path_, original_); }

  std::vector<std::byte> data_;
  std::string id_;
  fs::path path_;
  std::string original_;
};

TEST_F(TamperTest, UntamperedReadsBack) {
  auto back = GetAll(id_);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, data_);
}

TEST_F(TamperTest, EveryHeaderByteFlipFails) {
  for (size_t i = 0; i < phg::kHeaderSize; ++i) {
    std::string t = original_;
    t[i] ^= 0x01;
    WriteBytes(path_, t);
    ExpectCorrupt("header byte " + std::to_string(i));
    t = original_;
    t[i] ^= 0x80;
    WriteBytes(path_, t);
    ExpectCorrupt("header byte (high bit) " + std::to_string(i));
  }
  Restore();
  EXPECT_TRUE(GetAll(id_).ok());
}

TEST_F(TamperTest, BitFlipInEachSegmentAndTagFails) {
  for (uint64_t seg = 0; seg < 4; ++seg) {
    const uint64_t len = seg < 3 ? kSeg : kSeg / 2;
    for (uint64_t pos : {SegOffset(seg), SegOffset(seg) + len / 2, SegOffset(seg) + len - 1,
                         SegOffset(seg) + len /*tag*/, SegOffset(seg) + len + kTagBytes - 1}) {
      std::string t = original_;
      t[pos] ^= 0x04;
      WriteBytes(path_, t);
      // Flipping the last segment is detected at Open (it is verified there).
      ExpectCorrupt("segment " + std::to_string(seg) + " byte " + std::to_string(pos), seg);
    }
  }
}

TEST_F(TamperTest, TruncationFails) {
  const uint64_t size = original_.size();
  for (uint64_t cut :
       {size - 1, size - kTagBytes, size - kTagBytes - 1, SegOffset(3), SegOffset(3) + kTagBytes,
        SegOffset(2), SegOffset(1) + 100, uint64_t{phg::kHeaderSize} + kTagBytes,
        uint64_t{phg::kHeaderSize}, uint64_t{10}, uint64_t{0}}) {
    WriteBytes(path_, original_.substr(0, cut));
    ExpectCorrupt("truncated at " + std::to_string(cut));
  }
}

TEST_F(TamperTest, AppendedBytesFail) {
  for (size_t extra : {size_t{1}, size_t{kTagBytes}, size_t{kSeg}, size_t{kSeg + kTagBytes}}) {
    WriteBytes(path_, original_ + std::string(extra, '\0'));
    ExpectCorrupt("appended " + std::to_string(extra));
  }
  // Appending a copy of a genuine segment as a new final segment fails too.
  WriteBytes(path_, original_ + original_.substr(SegOffset(1), kSeg / 2 + kTagBytes));
  ExpectCorrupt("appended copy of segment");
}

TEST_F(TamperTest, SwappedSegmentsFail) {
  std::string t = original_;
  const size_t full = kSeg + kTagBytes;
  std::string s0 = t.substr(SegOffset(0), full), s1 = t.substr(SegOffset(1), full);
  t.replace(SegOffset(0), full, s1);
  t.replace(SegOffset(1), full, s0);
  WriteBytes(path_, t);
  ExpectCorrupt("swap 0 and 1", 0);
  // Dropping a middle segment: the file is one segment shorter, the rest shifts.
  t = original_;
  t.erase(SegOffset(1), full);
  WriteBytes(path_, t);
  ExpectCorrupt("drop segment 1");
}

TEST_F(TamperTest, StudyKeyIdChangeAndWrongKeyFail) {
  // Opened as another study: refused on the key id, before any decryption.
  KeyId other = NewKeyId();
  auto r = store_->Open(id_, other, *key_);
  EXPECT_EQ(r.status().code(), Code::kCorruption);
  EXPECT_NE(r.status().message().find("study key"), std::string::npos);
  // Header rewritten to claim the other study: authentication fails.
  std::string t = original_;
  std::copy(reinterpret_cast<const char*>(other.data()),
            reinterpret_cast<const char*>(other.data()) + kIdBytes, t.begin() + phg::kKeyIdOffset);
  WriteBytes(path_, t);
  auto r2 = store_->Open(id_, other, *key_);
  EXPECT_EQ(r2.status().code(), Code::kCorruption);
  Restore();
  // Right key id, wrong key bytes.
  auto wrong = NewKey();
  auto r3 = store_->Open(id_, key_id_, *wrong);
  EXPECT_EQ(r3.status().code(), Code::kCorruption);
}

TEST_F(TamperTest, ObjectMovedUnderAnotherIdFails) {
  auto other = Put(Pattern(1, 10));
  ASSERT_TRUE(other.ok());
  // Replace the other object's file with this one's bytes.
  WriteBytes(store_->ObjectPath(other->object_id), original_);
  auto r = store_->Open(other->object_id, key_id_, *key_);
  EXPECT_EQ(r.status().code(), Code::kCorruption);
  EXPECT_NE(r.status().message().find("object id"), std::string::npos);
}

// --- store operations -----------------------------------------------------

TEST_F(FsObjectStoreTest, ListRemoveAndBadIds) {
  std::vector<std::string> ids;
  for (int i = 0; i < 6; ++i) {
    auto info = Put(Pattern(i, 100 * i));
    ASSERT_TRUE(info.ok());
    ids.push_back(info->object_id);
  }
  // Junk that must not be listed.
  testing::WriteFile(dir_.path() / "objects" / "README", "x");
  fs::create_directories(dir_.path() / "objects" / "zz" / "00");
  testing::WriteFile(dir_.path() / "objects" / "zz" / "00" / (std::string(32, 'a') + ".phg"), "x");
  fs::path misplaced_dir = store_->ObjectPath(ids[0]).parent_path();
  testing::WriteFile(misplaced_dir / (std::string(32, 'f') + ".phg"), "x");
  testing::WriteFile(misplaced_dir / "partial.tmp", "x");

  auto listed = store_->ListObjectIds();
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(*listed, ids);

  ASSERT_TRUE(store_->Remove(ids[2]).ok());
  EXPECT_FALSE(fs::exists(store_->ObjectPath(ids[2])));
  EXPECT_EQ(store_->Remove(ids[2]).code(), Code::kNotFound);
  EXPECT_EQ(store_->Open(ids[2], key_id_, *key_).status().code(), Code::kNotFound);
  listed = store_->ListObjectIds();
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->size(), ids.size() - 1);
  EXPECT_EQ(std::count(listed->begin(), listed->end(), ids[2]), 0);

  for (std::string bad : {"../../etc/passwd", "", "ABCDEF0123456789ABCDEF0123456789",
                          "0123456789abcdef0123456789abcde/"}) {
    EXPECT_EQ(store_->Open(bad, key_id_, *key_).status().code(), Code::kInvalidArgument) << bad;
    EXPECT_EQ(store_->Remove(bad).code(), Code::kInvalidArgument) << bad;
  }
}

TEST_F(FsObjectStoreTest, AbortAndDestroyLeaveNothing) {
  {
    auto w = store_->NewObject(key_id_, *key_);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Append(Pattern(1, 3 * kSeg)).ok());
    EXPECT_EQ(FilesUnder(dir_.path() / "tmp").size(), 1u);
    (*w)->Abort();
    EXPECT_TRUE(FilesUnder(dir_.path() / "tmp").empty());
    EXPECT_EQ((*w)->Append(Pattern(1, 1)).code(), Code::kInternal);
  }
  {
    auto w = store_->NewObject(key_id_, *key_);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Append(Pattern(1, 10)).ok());
  }  // destroyed unfinished
  EXPECT_TRUE(FilesUnder(dir_.path() / "tmp").empty());
  EXPECT_TRUE(FilesUnder(dir_.path() / "objects").empty());
}

TEST_F(FsObjectStoreTest, CleanTmpRemovesLeftoversButNotLiveWrites) {
  testing::WriteFile(dir_.path() / "tmp" / "0123456789abcdef0123456789abcdef.tmp", "partial");
  testing::WriteFile(dir_.path() / "tmp" / "junk", "x");
  auto live = store_->NewObject(key_id_, *key_);
  ASSERT_TRUE(live.ok());
  ASSERT_TRUE((*live)->Append(Pattern(3, kSeg + 5)).ok());

  auto n = store_->CleanTmp();
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(*n, 2u);
  EXPECT_EQ(FilesUnder(dir_.path() / "tmp").size(), 1u);  // the live write

  auto info = (*live)->Finish();
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_TRUE(GetAll(info->object_id).ok());
  n = store_->CleanTmp();
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 0u);
}

// Waits (up to 10 s) until the store holds `n` spare files.
bool WaitForSpares(FsObjectStore& store, size_t n) {
  for (int i = 0; i < 1000; ++i) {
    if (store.SpareFilesForTest() == n) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

TEST_F(FsObjectStoreTest, SpareFilesAreMadeAheadTakenByNewObjectsAndRemovedOnClose) {
  store_.reset();
  auto opened = FsObjectStore::Open(dir_.path(), env_, FsObjectStoreOptions{kSeg, 3});
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  store_ = std::move(opened).value();
  // Nothing is made ahead before the first write.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(store_->SpareFilesForTest(), 0u);
  EXPECT_TRUE(FilesUnder(dir_.path() / "tmp").empty());

  std::vector<std::byte> first = Pattern(11, 2 * kSeg + 3);
  auto info = Put(first);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  ASSERT_TRUE(WaitForSpares(*store_, 3));
  const std::vector<std::string> spares = FilesUnder(dir_.path() / "tmp");
  ASSERT_EQ(spares.size(), 3u);

  // The next object is written into one of them.
  auto w = store_->NewObject(key_id_, *key_);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_EQ(std::count(spares.begin(), spares.end(), store_->TmpPath((*w)->object_id()).string()),
            1)
      << (*w)->object_id();
  // Spares are in flight: CleanTmp leaves them and the live write alone.
  auto cleaned = store_->CleanTmp();
  ASSERT_TRUE(cleaned.ok()) << cleaned.status().ToString();
  EXPECT_EQ(*cleaned, 0u);
  std::vector<std::byte> second = Pattern(12, kSeg + 1);
  auto info2 = (*w)->AppendAndFinish(second);
  ASSERT_TRUE(info2.ok()) << info2.status().ToString();
  EXPECT_FALSE(fs::exists(dir_.path() / "tmp" / ((*w)->object_id() + ".tmp")));
  ASSERT_TRUE(WaitForSpares(*store_, 3));  // refilled

  auto back = GetAll(info->object_id);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, first);
  back = GetAll(info2->object_id);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, second);

  // Closing the store removes the spares; the objects stay.
  store_.reset();
  EXPECT_TRUE(FilesUnder(dir_.path() / "tmp").empty());
  EXPECT_EQ(FilesUnder(dir_.path() / "objects").size(), 2u);

  EXPECT_EQ(FsObjectStore::Open(dir_.path(), env_, FsObjectStoreOptions{kSeg, kMaxSpareFiles + 1})
                .status()
                .code(),
            Code::kInvalidArgument);
}

TEST_F(FsObjectStoreTest, SpareFilesThatCannotBeMadeLeaveTheErrorToNewObject) {
  store_.reset();
  auto opened = FsObjectStore::Open(dir_.path(), env_, FsObjectStoreOptions{kSeg, 2});
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  store_ = std::move(opened).value();
  env_.FailAlways(FaultEnv::Op::kNewWritableFile, ENOSPC);
  auto w = store_->NewObject(key_id_, *key_);
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.status().ToString().find("No space"), std::string::npos) << w.status().ToString();
  EXPECT_EQ(store_->SpareFilesForTest(), 0u);
  EXPECT_TRUE(FilesUnder(dir_.path() / "tmp").empty());

  env_.ClearFaults();
  std::vector<std::byte> data = Pattern(13, 100);
  auto info = Put(data);  // made inline or taken from a spare: either way it works
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  auto back = GetAll(info->object_id);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, data);
  EXPECT_TRUE(WaitForSpares(*store_, 2));  // the spare thread recovers (retries once a second)
}

TEST_F(FsObjectStoreTest, ConcurrentWritersAllSucceed) {
  constexpr int kThreads = 8;
  std::vector<std::string> ids(kThreads);
  std::vector<Status> st(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto key = NewKey();  // AesGcm is one per stream
      auto w = store_->NewObject(key_id_, *key);
      if (!w.ok()) {
        st[t] = w.status();
        return;
      }
      Status s = (*w)->Append(Pattern(t, 2 * kSeg + t));
      if (!s.ok()) {
        st[t] = s;
        return;
      }
      auto info = (*w)->Finish();
      st[t] = info.status();
      if (info.ok()) ids[t] = info->object_id;
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_TRUE(st[t].ok()) << st[t].ToString();
  auto listed = store_->ListObjectIds();
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->size(), size_t{kThreads});
}

// --- faults ---------------------------------------------------------------

class FsObjectStoreFaultTest : public FsObjectStoreTest {
 protected:
  void ExpectNothingStored() {
    EXPECT_TRUE(FilesUnder(dir_.path() / "objects").empty());
    EXPECT_TRUE(FilesUnder(dir_.path() / "tmp").empty());
  }
  // Writes 3.5 segments in 1000-byte appends; returns Finish's result or the
  // first Append error.
  Result<ObjectInfo> PutChunked() { return Put(Pattern(4, kSeg * 7 / 2), 1000); }
};

TEST_F(FsObjectStoreFaultTest, EnospcOnAppendFailsCleanlyAndIsNotSticky) {
  env_.FailNth(FaultEnv::Op::kAppend, 3, ENOSPC);
  auto r = PutChunked();
  EXPECT_EQ(r.status().code(), Code::kResourceExhausted);
  EXPECT_NE(r.status().message().find("No space"), std::string::npos) << r.status().ToString();
  ExpectNothingStored();
  EXPECT_TRUE(store_->BackgroundError().ok());
  auto again = PutChunked();
  EXPECT_TRUE(again.ok()) << again.status().ToString();
}

TEST_F(FsObjectStoreFaultTest, ShortAppendFailsCleanly) {
  env_.SetShortAppends(true);
  auto r = PutChunked();
  EXPECT_FALSE(r.ok());
  ExpectNothingStored();
  env_.ClearFaults();
  EXPECT_TRUE(PutChunked().ok());
}

TEST_F(FsObjectStoreFaultTest, EnospcOnFinalSegmentFailsCleanly) {
  // 0 bytes: header append, then the final-segment append fails in Finish.
  env_.FailNth(FaultEnv::Op::kAppend, 2, ENOSPC);
  auto r = Put({});
  EXPECT_EQ(r.status().code(), Code::kResourceExhausted);
  ExpectNothingStored();
}

TEST_F(FsObjectStoreFaultTest, EioOnSyncIsStickyUntilReopen) {
  env_.FailNth(FaultEnv::Op::kSync, 1, EIO);
  auto r = PutChunked();
  ASSERT_EQ(r.status().code(), Code::kIOError);
  ExpectNothingStored();
  const Status original = r.status();
  EXPECT_EQ(store_->BackgroundError(), original);
  // Refuses new writes with the original error, and writers already open.
  EXPECT_EQ(store_->NewObject(key_id_, *key_).status(), original);
  EXPECT_EQ(store_->CleanTmp().status(), original);
  // Reads still work.
  Reopen();
  auto ok = PutChunked();
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_TRUE(GetAll(ok->object_id).ok());
}

TEST_F(FsObjectStoreFaultTest, OpenWriterFailsAfterAnotherWritersSyncFailure) {
  auto w1 = store_->NewObject(key_id_, *key_);
  ASSERT_TRUE(w1.ok());
  ASSERT_TRUE((*w1)->Append(Pattern(1, 100)).ok());
  env_.FailNth(FaultEnv::Op::kSync, 1, EIO);
  auto r = Put(Pattern(2, 100));
  ASSERT_FALSE(r.ok());
  auto f1 = (*w1)->Finish();
  EXPECT_EQ(f1.status(), r.status());
  ExpectNothingStored();
}

TEST_F(FsObjectStoreFaultTest, RenameFailureIsSticky) {
  env_.FailNth(FaultEnv::Op::kRename, 1, EIO);
  auto r = PutChunked();
  ASSERT_EQ(r.status().code(), Code::kIOError);
  ExpectNothingStored();
  EXPECT_FALSE(store_->BackgroundError().ok());
  EXPECT_FALSE(store_->NewObject(key_id_, *key_).ok());
}

TEST_F(FsObjectStoreFaultTest, DirSyncFailureRemovesObjectAndIsSticky) {
  // A fresh store's first Finish syncs, after the rename, ab (new cd; ab
  // itself was made and synced by Open) and then cd; fail the leaf's.
  env_.FailNth(FaultEnv::Op::kSyncDir, 2, EIO);
  auto r = PutChunked();
  ASSERT_EQ(r.status().code(), Code::kIOError) << r.status().ToString();
  ExpectNothingStored();
  EXPECT_FALSE(store_->BackgroundError().ok());
  env_.ClearFaults();
  EXPECT_FALSE(PutChunked().ok());
}

TEST_F(FsObjectStoreFaultTest, DurableWritePathOrder) {
  std::vector<std::string> events;
  std::mutex mu;
  auto record = [&](const char* what) {
    return [&, what](const Path& p) {
      std::lock_guard<std::mutex> lock(mu);
      events.push_back(std::string(what) + " " + p.filename().string());
    };
  };
  env_.SetHook(FaultEnv::Op::kSync, record("sync"));
  env_.SetHook(FaultEnv::Op::kRename, record("rename"));
  env_.SetHook(FaultEnv::Op::kSyncDir, record("syncdir"));
  auto info = PutChunked();
  ASSERT_TRUE(info.ok());
  const std::string& id = info->object_id;
  // The object's data, then its rename, then one batch of directory syncs:
  // the new leaf (for the rename) and its parent (for the leaf's mkdir;
  // objects/ab itself was made and synced by Open).
  std::vector<std::string> want = {"sync " + id + ".tmp", "rename " + id + ".tmp",
                                   "syncdir " + id.substr(0, 2), "syncdir " + id.substr(2, 2)};
  EXPECT_EQ(events, want);
}

TEST_F(FsObjectStoreFaultTest, CrashAfterFinishKeepsObjectAndDropsUnfinished) {
  auto done = PutChunked();
  ASSERT_TRUE(done.ok());
  auto pending = store_->NewObject(key_id_, *key_);
  ASSERT_TRUE(pending.ok());
  ASSERT_TRUE((*pending)->Append(Pattern(8, 2 * kSeg)).ok());
  ASSERT_TRUE(env_.SimulateCrash().ok());
  // The unfinished write was never synced: gone. The acknowledged one is intact.
  EXPECT_TRUE(FilesUnder(dir_.path() / "tmp").empty());
  (*pending).reset();
  store_.reset();
  Reopen();
  auto back = GetAll(done->object_id);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, Pattern(4, kSeg * 7 / 2));
  auto listed = store_->ListObjectIds();
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(*listed, std::vector<std::string>{done->object_id});
}

}  // namespace
}  // namespace phi::objects

namespace phi::objects {
namespace {

// PosixEnv with syncfs, recording directory syncs, handing out object ids
// that all start with ab cd (so objects share one fan-out directory).
class SyncfsEnv : public EnvWrapper {
 public:
  explicit SyncfsEnv(Env& t) : EnvWrapper(t) {}
  Status SyncFilesystem(const Path& p) override {
    ++syncfs;
    return target().SyncFilesystem(p);
  }
  Status SyncDir(const Path& d) override {
    std::lock_guard<std::mutex> lock(mu);
    synced.push_back(d.filename().string());
    return target().SyncDir(d);
  }
  Status RandomBytes(std::span<std::byte> out) override {
    PHI_RETURN_IF_ERROR(target().RandomBytes(out));
    if (out.size() == kIdBytes) {
      out[0] = std::byte{0xab};
      out[1] = std::byte{0xcd};
    }
    return Status::Ok();
  }
  std::mutex mu;
  std::vector<std::string> synced;
  int syncfs = 0;
};

TEST(FsObjectStoreSyncfsTest, DirectoriesPresentAtOpenNeedNoParentSyncs) {
  TempDir dir;
  PosixEnv posix;
  SyncfsEnv env(posix);
  auto key = NewKey();
  const KeyId key_id = NewKeyId();
  auto put = [&](FsObjectStore& store) {
    auto w = store.NewObject(key_id, *key);
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    ASSERT_EQ((*w)->object_id().substr(0, 4), "abcd");
    auto info = (*w)->AppendAndFinish(std::as_bytes(std::span("payload", 7)));
    ASSERT_TRUE(info.ok()) << info.status().ToString();
  };
  {
    auto store = FsObjectStore::Open(dir.path(), env);
    ASSERT_TRUE(store.ok());
    EXPECT_EQ(env.syncfs, 1);
    // Open made the 256 first-level fan-out directories.
    auto level1 = posix.ListDir(dir.path() / "objects");
    ASSERT_TRUE(level1.ok());
    EXPECT_EQ(level1->size(), 256u);
    env.synced.clear();
    put(**store);  // creates objects/ab/cd: the leaf and its parent synced
    EXPECT_EQ(env.synced, (std::vector<std::string>{"ab", "cd"}));
    env.synced.clear();
    put(**store);  // same process, same directory: the leaf only
    EXPECT_EQ(env.synced, std::vector<std::string>{"cd"});
  }
  auto store = FsObjectStore::Open(dir.path(), env);
  ASSERT_TRUE(store.ok());
  EXPECT_EQ(env.syncfs, 2);
  env.synced.clear();
  put(**store);  // existed at Open, made durable by its syncfs: the leaf only
  EXPECT_EQ(env.synced, std::vector<std::string>{"cd"});
}

// PosixEnv whose object ids are predictable: the n-th id drawn has every
// byte equal to n (so each draw proposes a different leaf).
class CountingIdEnv : public EnvWrapper {
 public:
  explicit CountingIdEnv(Env& t) : EnvWrapper(t) {}
  Status RandomBytes(std::span<std::byte> out) override {
    if (out.size() != kIdBytes) return target().RandomBytes(out);
    std::fill(out.begin(), out.end(), std::byte{static_cast<uint8_t>(draws++)});
    return Status::Ok();
  }
  int draws = 0;
};

TEST(FsObjectStoreLeafTest, ConsecutiveObjectsShareALeafForOneVisitThenMoveOn) {
  TempDir dir;
  PosixEnv posix;
  CountingIdEnv env(posix);
  auto key = NewKey();
  const KeyId key_id = NewKeyId();
  auto store = FsObjectStore::Open(dir.path(), env);
  ASSERT_TRUE(store.ok());
  std::vector<std::string> ids;
  for (uint32_t i = 0; i < kObjectsPerLeafVisit + 1; ++i) {
    auto w = (*store)->NewObject(key_id, *key);
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    auto info = (*w)->AppendAndFinish(std::as_bytes(std::span("payload", 7)));
    ASSERT_TRUE(info.ok()) << info.status().ToString();
    ids.push_back(info->object_id);
  }
  // One visit: the first id's leaf (0000), the rest of each id its own.
  for (uint32_t i = 0; i < kObjectsPerLeafVisit; ++i) {
    EXPECT_EQ(ids[i].substr(0, 4), "0000") << i;
    EXPECT_EQ(ids[i].substr(4, 2),
              phg::IdToHex(ObjectId{std::byte{static_cast<uint8_t>(i)}}).substr(0, 2))
        << i;
  }
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), ids.size());
  // The next visit starts at the next draw's own leaf.
  const std::string next = phg::IdToHex(ObjectId{std::byte{kObjectsPerLeafVisit & 0xff}});
  EXPECT_EQ(ids.back().substr(0, 4), next.substr(0, 2) + next.substr(0, 2));
  // Each object reads back from where its id says.
  for (const auto& id : ids) {
    EXPECT_TRUE(posix.FileExists((*store)->ObjectPath(id))) << id;
  }
}

}  // namespace
}  // namespace phi::objects
