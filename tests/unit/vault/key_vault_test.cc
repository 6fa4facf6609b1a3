// KeyVault: wrapping, AAD binding, rotation, derived keys and the key cache,
// with real KEK files, real OpenSSL and several vault instances.
#include "libphi/vault/key_vault.h"

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <set>
#include <thread>
#include <vector>

#include "tests/unit/vault/vault_test_util.h"

namespace phi::vault {
namespace {

using phi::testing::TempDir;
using phi::testing::WriteFile;
using testing::FileKek;
using testing::Keys;
using testing::OtherFsDir;

class KeyVaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!keys_.DiffersFrom(storage_.path())) {
      GTEST_SKIP() << "needs /dev/shm on a different filesystem from $TMPDIR";
    }
    WriteFile(keys_ / "a.kek", testing::RandomKeyBytes(), 0400);
    WriteFile(keys_ / "b.kek", crypto::ToHex(crypto::AsBytes(testing::RandomKeyBytes())) + "\n",
              0400);
  }

  std::unique_ptr<KeyVault> OpenVault(std::vector<std::string> ids, const std::string& active,
                                      VaultOptions opts = {}) {
    std::vector<config::KekConfig> keks;
    for (const auto& id : ids) keks.push_back(FileKek(id, keys_ / (id == "A" ? "a.kek" : "b.kek")));
    auto v = KeyVault::Open(Keys(keks, active), storage_.path(), env_, opts);
    EXPECT_TRUE(v.ok()) << v.status().ToString();
    return v.ok() ? std::move(v).value() : nullptr;
  }

  // Seals `text` with the study key through NewCipher (as the object store does).
  static std::string SealWithCipher(KeyVault& v, const std::string& key_id,
                                    const std::string& text) {
    auto gcm = v.NewCipher(key_id);
    EXPECT_TRUE(gcm.ok()) << gcm.status().ToString();
    std::string out(crypto::kGcmNonceBytes + text.size() + crypto::kGcmTagBytes, '\0');
    auto b = std::as_writable_bytes(std::span(out.data(), out.size()));
    EXPECT_TRUE(crypto::RandomBytes(b.first(crypto::kGcmNonceBytes)).ok());
    EXPECT_TRUE((*gcm)
                    ->Seal(b.first(crypto::kGcmNonceBytes), crypto::AsBytes("seg"),
                           crypto::AsBytes(text), b.subspan(crypto::kGcmNonceBytes, text.size()),
                           b.last<crypto::kGcmTagBytes>())
                    .ok());
    return out;
  }
  static Result<std::string> OpenWithCipher(KeyVault& v, const std::string& key_id,
                                            const std::string& box) {
    PHI_ASSIGN_OR_RETURN(auto gcm, v.NewCipher(key_id));
    auto b = crypto::AsBytes(box);
    const size_t n = box.size() - crypto::kGcmNonceBytes - crypto::kGcmTagBytes;
    std::string out(n, '\0');
    PHI_RETURN_IF_ERROR(gcm->Open(b.first(crypto::kGcmNonceBytes), crypto::AsBytes("seg"),
                                  b.subspan(crypto::kGcmNonceBytes, n),
                                  b.last<crypto::kGcmTagBytes>(),
                                  std::as_writable_bytes(std::span(out.data(), out.size()))));
    return out;
  }

  TempDir storage_;
  OtherFsDir keys_;
  PosixEnv env_;
};

TEST_F(KeyVaultTest, OpenValidatesTheKeysConfig) {
  auto a = FileKek("A", keys_ / "a.kek");
  auto code = [&](const config::KeysConfig& k) {
    return KeyVault::Open(k, storage_.path(), env_).status().code();
  };
  EXPECT_EQ(code(Keys({}, "A")), Code::kInvalidArgument);
  EXPECT_EQ(code(Keys({a}, "B")), Code::kInvalidArgument);
  EXPECT_EQ(code(Keys({a, a}, "A")), Code::kInvalidArgument);
  EXPECT_EQ(code(Keys({FileKek("bad id", keys_ / "a.kek")}, "bad id")), Code::kInvalidArgument);
  EXPECT_EQ(code(Keys({FileKek(std::string(65, 'x'), keys_ / "a.kek")}, std::string(65, 'x'))),
            Code::kInvalidArgument);
  EXPECT_FALSE(
      KeyVault::Open(Keys({a, FileKek("B", keys_ / "missing")}, "A"), storage_.path(), env_).ok());
  auto v = OpenVault({"A", "B"}, "B");
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(v->active_kek_id(), "B");
  EXPECT_EQ(v->kek_ids(), (std::vector<std::string>{"A", "B"}));
}

TEST_F(KeyVaultTest, CreateWrapsUnderActiveKekAndAnotherVaultUnwraps) {
  auto v1 = OpenVault({"A"}, "A");
  auto v2 = OpenVault({"A"}, "A");
  ASSERT_TRUE(v1 && v2);
  auto wk = v1->CreateStudyKey();
  ASSERT_TRUE(wk.ok()) << wk.status().ToString();
  EXPECT_EQ(wk->key_id.size(), kKeyIdChars);
  EXPECT_EQ(wk->key_id.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_EQ(wk->kek_id, "A");
  EXPECT_EQ(wk->wrapped.size(), kWrappedKeyBytes);
  auto wk2 = v1->CreateStudyKey();
  ASSERT_TRUE(wk2.ok());
  EXPECT_NE(wk->key_id, wk2->key_id);
  EXPECT_NE(wk->wrapped, wk2->wrapped);

  const std::string box = SealWithCipher(*v1, wk->key_id, "pixel data");
  EXPECT_EQ(v2->NewCipher(wk->key_id).status().code(), Code::kNotFound);  // not loaded yet
  ASSERT_TRUE(v2->LoadStudyKey(*wk).ok());
  ASSERT_TRUE(v2->LoadStudyKey(*wk).ok());  // idempotent
  EXPECT_EQ(v2->cached_keys(), 1u);
  auto back = OpenWithCipher(*v2, wk->key_id, box);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, "pixel data");
  // A different study key cannot open it.
  ASSERT_TRUE(v2->LoadStudyKey(*wk2).ok());
  EXPECT_EQ(OpenWithCipher(*v2, wk2->key_id, box).status().code(), Code::kCorruption);
}

TEST_F(KeyVaultTest, SealFieldOpenFieldBindKeyAndAad) {
  auto v = OpenVault({"A"}, "A");
  ASSERT_NE(v, nullptr);
  auto k1 = v->CreateStudyKey();
  auto k2 = v->CreateStudyKey();
  ASSERT_TRUE(k1.ok() && k2.ok());
  auto box = v->SealField(k1->key_id, "patients.name", "DOE^JANE");
  ASSERT_TRUE(box.ok()) << box.status().ToString();
  EXPECT_EQ(box->find("DOE^JANE"), std::string::npos);
  auto back = v->OpenField(k1->key_id, "patients.name", *box);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, "DOE^JANE");

  EXPECT_EQ(v->OpenField(k1->key_id, "patients.id", *box).status().code(), Code::kCorruption);
  EXPECT_EQ(v->OpenField(k2->key_id, "patients.name", *box).status().code(), Code::kCorruption);
  std::string t = *box;
  t[t.size() / 2] ^= 0x40;
  EXPECT_EQ(v->OpenField(k1->key_id, "patients.name", t).status().code(), Code::kCorruption);
  EXPECT_EQ(v->OpenField(k1->key_id, "patients.name", box->substr(0, 20)).status().code(),
            Code::kCorruption);
  EXPECT_EQ(v->SealField("not-a-key-id", "a", "b").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(v->SealField(k1->key_id, "a", std::string(kMaxFieldBytes + 1, 'x')).status().code(),
            Code::kInvalidArgument);
  auto empty = v->SealField(k1->key_id, "", "");
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(v->OpenField(k1->key_id, "", *empty).value(), "");
}

TEST_F(KeyVaultTest, TamperedWrappedKeyIsCorruption) {
  auto v = OpenVault({"A"}, "A");
  ASSERT_NE(v, nullptr);
  auto wk = v->CreateStudyKey();
  ASSERT_TRUE(wk.ok());
  for (size_t i = 0; i < wk->wrapped.size(); ++i) {
    WrappedKey t = *wk;
    t.wrapped[i] ^= 0x01;
    EXPECT_EQ(v->LoadStudyKey(t).code(), Code::kCorruption) << "byte " << i;
  }
  WrappedKey shorter = *wk;
  shorter.wrapped.pop_back();
  EXPECT_EQ(v->LoadStudyKey(shorter).code(), Code::kCorruption);
  WrappedKey empty = *wk;
  empty.wrapped.clear();
  EXPECT_EQ(v->LoadStudyKey(empty).code(), Code::kCorruption);
  WrappedKey bad_id = *wk;
  bad_id.key_id = "../../etc";
  EXPECT_EQ(v->LoadStudyKey(bad_id).code(), Code::kInvalidArgument);
}

TEST_F(KeyVaultTest, WrappedKeyIsBoundToItsKeyIdKekIdAndPurpose) {
  auto v = OpenVault({"A", "B"}, "A");
  ASSERT_NE(v, nullptr);
  auto wk = v->CreateStudyKey();
  auto other = v->CreateStudyKey();
  ASSERT_TRUE(wk.ok() && other.ok());
  // The wrapped bytes moved to another key id.
  WrappedKey moved = *wk;
  moved.key_id = other->key_id;
  EXPECT_EQ(v->LoadStudyKey(moved).code(), Code::kCorruption);
  // Claimed to be under another (configured) KEK.
  WrappedKey relabelled = *wk;
  relabelled.kek_id = "B";
  EXPECT_EQ(v->LoadStudyKey(relabelled).code(), Code::kCorruption);
  // A study key is not a derivation secret, and the other way round.
  EXPECT_EQ(v->LoadDerivationSecret(*wk).code(), Code::kCorruption);
  auto ds = v->CreateDerivationSecret();
  ASSERT_TRUE(ds.ok());
  EXPECT_EQ(v->LoadStudyKey(*ds).code(), Code::kCorruption);
}

// New key ids are time-ordered (key_vault.h "Formats"): a 48-bit millisecond
// prefix from the injected clock, then random bits; strictly increasing within
// one vault even in the same millisecond or when the clock goes back; still 32
// lowercase hex characters that wrap, unwrap and seal like any key id.
class MillisEnv : public EnvWrapper {
 public:
  explicit MillisEnv(Env& t) : EnvWrapper(t) {}
  SystemTime Now() override { return SystemTime(std::chrono::milliseconds(now_ms.load())); }
  std::atomic<int64_t> now_ms{1'764'000'000'123};
};

TEST_F(KeyVaultTest, KeyIdsAreTimeOrderedUniqueAndValid) {
  MillisEnv clock(env_);
  auto opened =
      KeyVault::Open(Keys({FileKek("A", keys_ / "a.kek")}, "A"), storage_.path(), clock, {});
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  KeyVault& v = **opened;
  auto other = OpenVault({"A"}, "A");
  ASSERT_NE(other, nullptr);
  auto prefix = [](int64_t ms) {
    char buf[16];
    std::snprintf(buf, sizeof(buf), "%012llx", static_cast<unsigned long long>(ms));
    return std::string(buf);
  };

  std::vector<WrappedKey> made;
  for (int i = 0; i < 300; ++i) {  // all in one millisecond
    auto wk = v.CreateStudyKey();
    ASSERT_TRUE(wk.ok()) << wk.status().ToString();
    made.push_back(*wk);
  }
  clock.now_ms += 5;
  made.push_back(v.CreateStudyKey().value());
  clock.now_ms -= 60'000;  // the clock steps back a minute
  made.push_back(v.CreateStudyKey().value());
  made.push_back(v.CreateDerivationSecret().value());  // the same id space

  std::set<std::string> distinct;
  for (size_t i = 0; i < made.size(); ++i) {
    const std::string& id = made[i].key_id;
    ASSERT_EQ(id.size(), kKeyIdChars);
    EXPECT_EQ(id.find_first_not_of("0123456789abcdef"), std::string::npos) << id;
    if (i > 0) {
      EXPECT_LT(made[i - 1].key_id, id) << "ids must strictly increase, at " << i;
    }
    distinct.insert(id);
  }
  EXPECT_EQ(distinct.size(), made.size());
  const int64_t t0 = 1'764'000'000'123;
  EXPECT_EQ(made[0].key_id.substr(0, 12), prefix(t0));
  EXPECT_EQ(made[299].key_id.substr(0, 12), prefix(t0));  // the increments stay in the random part
  EXPECT_EQ(made[300].key_id.substr(0, 12), prefix(t0 + 5));
  EXPECT_EQ(made[301].key_id.substr(0, 12), prefix(t0 + 5));  // not behind the last id
  // In one millisecond an id is a fresh random one when that sorts after the
  // previous id, else the previous one plus a random 1..2^32: never plus 1 each time.
  std::set<uint64_t> steps;
  for (size_t i = 1; i < 300; ++i) {
    const uint64_t lo_prev = std::stoull(made[i - 1].key_id.substr(20), nullptr, 16);
    const uint64_t lo = std::stoull(made[i].key_id.substr(20), nullptr, 16);
    const uint64_t step = (lo - lo_prev) & ((uint64_t{1} << 48) - 1);
    EXPECT_GE(step, 1u);
    steps.insert(step);
  }
  EXPECT_GT(steps.size(), 250u);

  // They work as key ids everywhere: another vault unwraps them, seals and opens.
  for (size_t i : {size_t{0}, size_t{150}, size_t{301}}) {
    ASSERT_TRUE(other->LoadStudyKey(made[i]).ok()) << i;
    auto box = v.SealField(made[i].key_id, "t", "value");
    ASSERT_TRUE(box.ok());
    EXPECT_EQ(other->OpenField(made[i].key_id, "t", *box).value(), "value");
  }
}

TEST_F(KeyVaultTest, UnknownKekIsNotFound) {
  auto ab = OpenVault({"A", "B"}, "B");
  auto a = OpenVault({"A"}, "A");
  ASSERT_TRUE(ab && a);
  auto wk = ab->CreateStudyKey();
  ASSERT_TRUE(wk.ok());
  EXPECT_EQ(wk->kek_id, "B");
  Status s = a->LoadStudyKey(*wk);
  EXPECT_EQ(s.code(), Code::kNotFound) << s.ToString();
  EXPECT_EQ(a->Rewrap(*wk).status().code(), Code::kNotFound);
}

TEST_F(KeyVaultTest, RotationRewrapsEverythingAndOldDataStillOpens) {
  // Era 1: only KEK A.
  std::vector<WrappedKey> keys;
  std::map<std::string, std::string> segment, field;
  WrappedKey derivation;
  std::array<std::string, 2> tokens_before;
  crypto::Digest audit_before{};
  {
    auto a = OpenVault({"A"}, "A");
    ASSERT_NE(a, nullptr);
    auto ds = a->CreateDerivationSecret();
    ASSERT_TRUE(ds.ok());
    derivation = *ds;
    tokens_before[0] = crypto::ToHex(a->IndexToken("PatientID", "12345"));
    tokens_before[1] = crypto::ToHex(a->IndexToken("AccessionNumber", "A-77"));
    audit_before = a->AuditMac(crypto::AsBytes("record 1"));
    for (int i = 0; i < 5; ++i) {
      auto wk = a->CreateStudyKey();
      ASSERT_TRUE(wk.ok());
      keys.push_back(*wk);
      segment[wk->key_id] = SealWithCipher(*a, wk->key_id, "study " + std::to_string(i));
      field[wk->key_id] = a->SealField(wk->key_id, "name", "PATIENT^" + std::to_string(i)).value();
    }
  }
  // Era 2: KEKs A and B, B active: rewrap everything.
  std::vector<WrappedKey> rewrapped;
  WrappedKey derivation_b;
  {
    auto ab = OpenVault({"A", "B"}, "B");
    ASSERT_NE(ab, nullptr);
    for (const auto& wk : keys) {
      auto r = ab->Rewrap(wk);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      EXPECT_EQ(r->key_id, wk.key_id);
      EXPECT_EQ(r->kek_id, "B");
      EXPECT_NE(r->wrapped, wk.wrapped);
      EXPECT_NE(KeyVault::Fingerprint(*r), KeyVault::Fingerprint(wk));
      // Rewrapping what is already under the active KEK is a no-op copy.
      auto again = ab->Rewrap(*r);
      ASSERT_TRUE(again.ok());
      EXPECT_EQ(*again, *r);
      rewrapped.push_back(*r);
    }
    EXPECT_EQ(ab->cached_keys(), 0u);  // rewrap does not populate the cache
    auto d = ab->RewrapDerivationSecret(derivation);
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(d->kek_id, "B");
    derivation_b = *d;
  }
  // Era 3: only KEK B. Old wrapped keys are unusable, rewrapped ones work, data
  // sealed in era 1 opens, and the derived keys did not change.
  auto b = OpenVault({"B"}, "B");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->LoadDerivationSecret(derivation).code(), Code::kNotFound);
  ASSERT_TRUE(b->LoadDerivationSecret(derivation_b).ok());
  EXPECT_EQ(crypto::ToHex(b->IndexToken("PatientID", "12345")), tokens_before[0]);
  EXPECT_EQ(crypto::ToHex(b->IndexToken("AccessionNumber", "A-77")), tokens_before[1]);
  EXPECT_EQ(b->AuditMac(crypto::AsBytes("record 1")), audit_before);
  for (size_t i = 0; i < keys.size(); ++i) {
    EXPECT_EQ(b->LoadStudyKey(keys[i]).code(), Code::kNotFound);
    ASSERT_TRUE(b->LoadStudyKey(rewrapped[i]).ok());
    const std::string& id = keys[i].key_id;
    auto seg = OpenWithCipher(*b, id, segment[id]);
    ASSERT_TRUE(seg.ok()) << seg.status().ToString();
    EXPECT_EQ(*seg, "study " + std::to_string(i));
    auto f = b->OpenField(id, "name", field[id]);
    ASSERT_TRUE(f.ok());
    EXPECT_EQ(*f, "PATIENT^" + std::to_string(i));
  }
}

TEST_F(KeyVaultTest, IndexTokensAreStableKeyedAndUnambiguous) {
  auto v1 = OpenVault({"A"}, "A");
  auto v2 = OpenVault({"A", "B"}, "B");
  auto v3 = OpenVault({"A"}, "A");
  ASSERT_TRUE(v1 && v2 && v3);
  EXPECT_FALSE(v1->derivation_loaded());
  auto ds = v1->CreateDerivationSecret();
  ASSERT_TRUE(ds.ok());
  EXPECT_TRUE(v1->derivation_loaded());
  ASSERT_TRUE(v2->LoadDerivationSecret(*ds).ok());

  const auto t = v1->IndexToken("PatientID", "12345");
  EXPECT_EQ(v2->IndexToken("PatientID", "12345"), t);  // another instance, another active KEK
  EXPECT_EQ(v1->IndexToken("PatientID", "12345"), t);  // deterministic
  EXPECT_NE(v1->IndexToken("OtherPatientIDs", "12345"), t);
  EXPECT_NE(v1->IndexToken("PatientID", "12346"), t);
  EXPECT_NE(v1->IndexToken("Patient", "ID12345"), t);  // attribute/value boundary is encoded
  EXPECT_NE(v1->IndexToken("PatientID", ""), v1->IndexToken("PatientI", "D"));
  EXPECT_NE(v1->AuditMac(crypto::AsBytes("PatientID12345")), t);  // separate keys
  // Not a plain hash: a vault with another derivation secret gives other tokens.
  auto other = v3->CreateDerivationSecret();
  ASSERT_TRUE(other.ok());
  EXPECT_NE(v3->IndexToken("PatientID", "12345"), t);
  EXPECT_NE(v3->AuditMac(crypto::AsBytes("x")), v1->AuditMac(crypto::AsBytes("x")));
}

TEST_F(KeyVaultTest, DerivationSecretIsSetOnce) {
  auto v = OpenVault({"A"}, "A");
  auto w = OpenVault({"A"}, "A");
  ASSERT_TRUE(v && w);
  auto ds = v->CreateDerivationSecret();
  ASSERT_TRUE(ds.ok());
  EXPECT_EQ(v->CreateDerivationSecret().status().code(), Code::kAlreadyExists);
  EXPECT_TRUE(v->LoadDerivationSecret(*ds).ok());  // same secret: idempotent
  auto other = w->CreateDerivationSecret();
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(v->LoadDerivationSecret(*other).code(), Code::kAlreadyExists);
  WrappedKey t = *ds;
  t.wrapped[0] ^= 1;
  EXPECT_EQ(w->LoadDerivationSecret(t).code(), Code::kCorruption);
}

TEST_F(KeyVaultTest, ForgetStudyKeyWipesItsSlot) {
  auto v = OpenVault({"A"}, "A");
  ASSERT_NE(v, nullptr);
  auto k1 = v->CreateStudyKey();
  auto k2 = v->CreateStudyKey();
  ASSERT_TRUE(k1.ok() && k2.ok());
  EXPECT_EQ(v->NonZeroSlotsForTest(), 2u);
  const std::string box = SealWithCipher(*v, k1->key_id, "data");

  v->ForgetStudyKey(k1->key_id);
  EXPECT_EQ(v->NewCipher(k1->key_id).status().code(), Code::kNotFound);
  EXPECT_EQ(v->SealField(k1->key_id, "a", "b").status().code(), Code::kNotFound);
  EXPECT_EQ(v->cached_keys(), 1u);
  EXPECT_EQ(v->NonZeroSlotsForTest(), 1u);  // the forgotten key's bytes are gone
  EXPECT_TRUE(v->NewCipher(k2->key_id).ok());
  v->ForgetStudyKey(k1->key_id);      // twice: no-op
  v->ForgetStudyKey("not a key id");  // malformed: no-op

  // Erasure is final only once the wrapped key is gone too; with it, reload works.
  ASSERT_TRUE(v->LoadStudyKey(*k1).ok());
  EXPECT_EQ(OpenWithCipher(*v, k1->key_id, box).value(), "data");
}

TEST_F(KeyVaultTest, LruEvictsLeastRecentlyUsedAndReloadWorks) {
  auto v = OpenVault({"A"}, "A", VaultOptions{.max_cached_keys = 2});
  ASSERT_NE(v, nullptr);
  auto k1 = v->CreateStudyKey();
  auto k2 = v->CreateStudyKey();
  ASSERT_TRUE(k1.ok() && k2.ok());
  const std::string box1 = SealWithCipher(*v, k1->key_id, "one");  // k1 now most recent
  const std::string box2 = SealWithCipher(*v, k2->key_id, "two");  // k2 now most recent
  ASSERT_TRUE(v->NewCipher(k1->key_id).ok());                      // k1 most recent again
  auto k3 = v->CreateStudyKey();                                   // evicts k2
  ASSERT_TRUE(k3.ok());
  EXPECT_EQ(v->cached_keys(), 2u);
  EXPECT_EQ(v->NonZeroSlotsForTest(), 2u);
  EXPECT_EQ(v->NewCipher(k2->key_id).status().code(), Code::kNotFound);
  EXPECT_TRUE(v->NewCipher(k1->key_id).ok());  // k1 most recent, k3 least
  EXPECT_TRUE(v->NewCipher(k3->key_id).ok());  // k3 most recent, k1 least

  ASSERT_TRUE(v->LoadStudyKey(*k2).ok());  // evicts k1
  EXPECT_EQ(v->NewCipher(k1->key_id).status().code(), Code::kNotFound);
  EXPECT_EQ(OpenWithCipher(*v, k2->key_id, box2).value(), "two");
  ASSERT_TRUE(v->LoadStudyKey(*k1).ok());
  EXPECT_EQ(OpenWithCipher(*v, k1->key_id, box1).value(), "one");
  EXPECT_EQ(v->cached_keys(), 2u);
}

TEST_F(KeyVaultTest, ConcurrentUseFromManyThreads) {
  auto v = OpenVault({"A"}, "A", VaultOptions{.max_cached_keys = 8});
  ASSERT_NE(v, nullptr);
  ASSERT_TRUE(v->CreateDerivationSecret().ok());
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        auto wk = v->CreateStudyKey();
        if (!wk.ok()) {
          ++failures;
          continue;
        }
        if (!v->LoadStudyKey(*wk).ok()) ++failures;
        auto box = v->SealField(wk->key_id, "f", "value");
        // Another thread may have evicted it in between: then reload and retry once.
        if (!box.ok()) {
          if (!v->LoadStudyKey(*wk).ok()) ++failures;
          continue;
        }
        auto back = v->OpenField(wk->key_id, "f", *box);
        if (back.ok() && *back != "value") ++failures;
        if ((i + t) % 3 == 0) v->ForgetStudyKey(wk->key_id);
        (void)v->IndexToken("PatientID", std::to_string(i));
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_LE(v->cached_keys(), 8u);
  EXPECT_EQ(v->NonZeroSlotsForTest(), v->cached_keys());
}

TEST_F(KeyVaultTest, FingerprintIsSha256OfTheWrappedBytes) {
  auto v = OpenVault({"A"}, "A");
  ASSERT_NE(v, nullptr);
  auto wk = v->CreateStudyKey();
  ASSERT_TRUE(wk.ok());
  EXPECT_EQ(KeyVault::Fingerprint(*wk),
            crypto::ToHex(crypto::Sha256(crypto::AsBytes(wk->wrapped))));
  EXPECT_EQ(KeyVault::Fingerprint(*wk).size(), 64u);
}

}  // namespace
}  // namespace phi::vault
