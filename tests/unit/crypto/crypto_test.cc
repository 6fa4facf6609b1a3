// Known-answer tests from the published specifications, plus tamper tests.
#include "libphi/crypto/crypto.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <string>
#include <vector>

namespace phi::crypto {
namespace {

std::vector<std::byte> Hex(std::string_view hex) {
  std::vector<std::byte> out(hex.size() / 2);
  EXPECT_EQ(hex.size() % 2, 0u);
  EXPECT_TRUE(FromHex(hex, out).ok()) << hex;
  return out;
}
std::vector<std::byte> Repeat(uint8_t b, size_t n) {
  return std::vector<std::byte>(n, std::byte{b});
}
std::vector<std::byte> Range(uint8_t from, uint8_t to) {  // inclusive
  std::vector<std::byte> v;
  for (int i = from; i <= to; ++i) v.push_back(static_cast<std::byte>(i));
  return v;
}
bool AllZero(ByteSpan s) {
  return std::all_of(s.begin(), s.end(), [](std::byte b) { return b == std::byte{0}; });
}

// ---------------------------------------------------------------- AES-256-GCM
// McGrew & Viega, "The Galois/Counter Mode of Operation", test cases 13-16
// (the AES-256 cases, also in NIST's GCM test vectors).
struct GcmVector {
  const char* name;
  const char* key;
  const char* iv;
  const char* pt;
  const char* aad;
  const char* ct;
  const char* tag;
};

constexpr char kK15[] = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308";
constexpr char kP15[] =
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255";
constexpr char kP16[] =
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39";

const GcmVector kGcmVectors[] = {
    {"tc13", "0000000000000000000000000000000000000000000000000000000000000000",
     "000000000000000000000000", "", "", "", "530f8afbc74536b9a963b4f1c4cb738b"},
    {"tc14", "0000000000000000000000000000000000000000000000000000000000000000",
     "000000000000000000000000", "00000000000000000000000000000000", "",
     "cea7403d4d606b6e074ec5d3baf39d18", "d0d1c8a799996bf0265b98b5d48ab919"},
    {"tc15", kK15, "cafebabefacedbaddecaf888", kP15, "",
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
     "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
     "b094dac5d93471bdec1a502270e3cc6c"},
    {"tc16", kK15, "cafebabefacedbaddecaf888", kP16, "feedfacedeadbeeffeedfacedeadbeefabaddad2",
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
     "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
     "76fc6ece0f4e1768cddf8853bb2d551b"},
};

TEST(AesGcmTest, KnownAnswersSealAndOpen) {
  for (const auto& v : kGcmVectors) {
    SCOPED_TRACE(v.name);
    auto key = Hex(v.key), iv = Hex(v.iv), pt = Hex(v.pt), aad = Hex(v.aad);
    auto gcm = AesGcm::Create(key);
    ASSERT_TRUE(gcm.ok()) << gcm.status().ToString();
    std::vector<std::byte> ct(pt.size());
    std::array<std::byte, kGcmTagBytes> tag{};
    ASSERT_TRUE((*gcm)->Seal(iv, aad, pt, ct, tag).ok());
    EXPECT_EQ(ToHex(ct), v.ct);
    EXPECT_EQ(ToHex(tag), v.tag);

    std::vector<std::byte> back(ct.size(), std::byte{0x5a});
    ASSERT_TRUE((*gcm)->Open(iv, aad, ct, tag, back).ok());
    EXPECT_EQ(back, pt);
  }
}

TEST(AesGcmTest, OneContextManyMessagesAndInPlace) {
  auto key = Hex(kK15);
  auto gcm = AesGcm::Create(key);
  ASSERT_TRUE(gcm.ok());
  // Interleave vectors 16 and 15 on one context: the per-message state must reset.
  for (int round = 0; round < 3; ++round) {
    for (const auto* v : {&kGcmVectors[3], &kGcmVectors[2]}) {
      auto buf = Hex(v->pt);
      std::array<std::byte, kGcmTagBytes> tag{};
      ASSERT_TRUE((*gcm)->Seal(Hex(v->iv), Hex(v->aad), buf, buf, tag).ok());  // in place
      EXPECT_EQ(ToHex(buf), v->ct);
      EXPECT_EQ(ToHex(tag), v->tag);
      ASSERT_TRUE((*gcm)->Open(Hex(v->iv), Hex(v->aad), buf, tag, buf).ok());
      EXPECT_EQ(ToHex(buf), v->pt);
    }
  }
}

TEST(AesGcmTest, RejectsBadSizes) {
  EXPECT_EQ(AesGcm::Create(Repeat(1, 16)).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(AesGcm::Create(Repeat(1, 33)).status().code(), Code::kInvalidArgument);
  auto gcm = AesGcm::Create(Repeat(1, 32));
  ASSERT_TRUE(gcm.ok());
  std::vector<std::byte> pt(10), ct(9);
  std::array<std::byte, kGcmTagBytes> tag{};
  EXPECT_EQ((*gcm)->Seal(Repeat(0, 12), {}, pt, ct, tag).code(), Code::kInvalidArgument);
  std::vector<std::byte> ct10(10);
  EXPECT_EQ((*gcm)->Seal(Repeat(0, 8), {}, pt, ct10, tag).code(), Code::kInvalidArgument);
}

// Every single-bit flip of nonce, AAD, ciphertext or tag is detected, and the
// caller's plaintext buffer holds zeros afterwards, not unauthenticated data.
TEST(AesGcmTest, TamperIsCorruptionAndWipesPlaintext) {
  const auto& v = kGcmVectors[3];
  auto key = Hex(v.key), iv = Hex(v.iv), aad = Hex(v.aad), ct = Hex(v.ct);
  auto tag_vec = Hex(v.tag);
  std::array<std::byte, kGcmTagBytes> tag{};
  std::copy(tag_vec.begin(), tag_vec.end(), tag.begin());
  auto gcm = AesGcm::Create(key);
  ASSERT_TRUE(gcm.ok());

  auto expect_rejected = [&](ByteSpan n, ByteSpan a, ByteSpan c,
                             std::span<const std::byte, kGcmTagBytes> t) {
    std::vector<std::byte> out(c.size(), std::byte{0xa5});
    Status s = (*gcm)->Open(n, a, c, t, out);
    EXPECT_EQ(s.code(), Code::kCorruption) << s.ToString();
    EXPECT_TRUE(AllZero(out));
  };
  for (size_t bit : {size_t{0}, size_t{7}, size_t{37}}) {
    auto n2 = iv;
    n2[bit / 8] ^= std::byte{static_cast<uint8_t>(1u << (bit % 8))};
    expect_rejected(n2, aad, ct, tag);
    auto a2 = aad;
    a2[bit / 8] ^= std::byte{static_cast<uint8_t>(1u << (bit % 8))};
    expect_rejected(iv, a2, ct, tag);
    auto c2 = ct;
    c2[bit / 8] ^= std::byte{static_cast<uint8_t>(1u << (bit % 8))};
    expect_rejected(iv, aad, c2, tag);
    auto t2 = tag;
    t2[bit / 8 % kGcmTagBytes] ^= std::byte{static_cast<uint8_t>(1u << (bit % 8))};
    expect_rejected(iv, aad, ct, t2);
  }
  // Dropped AAD and truncated ciphertext are tampering too.
  expect_rejected(iv, {}, ct, tag);
  expect_rejected(iv, aad, ByteSpan(ct).first(ct.size() - 1), tag);
  // The untouched message still opens on the same context afterwards.
  std::vector<std::byte> out(ct.size());
  EXPECT_TRUE((*gcm)->Open(iv, aad, ct, tag, out).ok());
  EXPECT_EQ(ToHex(out), v.pt);
}

// OpenBoxInto: the same box format into a caller's buffer (the vault's
// reused locked scratch); exact size required, wiped on a bad tag.
TEST(SealBoxTest, OpenBoxIntoChecksSizeAndWipesOnTamper) {
  auto key = Repeat(7, 32);
  auto aad = AsBytes("context");
  auto box = SealBox(key, aad, AsBytes("0123456789abcdef0123456789abcdef"));
  ASSERT_TRUE(box.ok());
  std::array<std::byte, 32> out{};
  ASSERT_TRUE(OpenBoxInto(key, aad, AsBytes(*box), out).ok());
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(out.data()), out.size()),
            "0123456789abcdef0123456789abcdef");
  std::array<std::byte, 31> small{};
  EXPECT_EQ(OpenBoxInto(key, aad, AsBytes(*box), small).code(), Code::kInvalidArgument);
  EXPECT_EQ(OpenBoxInto(key, aad, AsBytes(box->substr(0, 27)), out).code(), Code::kCorruption);
  std::string t = *box;
  t[kGcmNonceBytes + 3] ^= 0x01;
  out.fill(std::byte{0x55});
  EXPECT_EQ(OpenBoxInto(key, aad, AsBytes(t), out).code(), Code::kCorruption);
  for (std::byte b : out) EXPECT_EQ(b, std::byte{0});
}

TEST(SealBoxTest, RoundTripFreshNonceAndTamper) {
  auto key = Repeat(7, 32);
  auto aad = AsBytes("context");
  auto b1 = SealBox(key, aad, AsBytes("secret field"));
  auto b2 = SealBox(key, aad, AsBytes("secret field"));
  ASSERT_TRUE(b1.ok() && b2.ok());
  EXPECT_EQ(b1->size(), kGcmNonceBytes + 12 + kGcmTagBytes);
  EXPECT_NE(*b1, *b2);  // random nonce per box
  EXPECT_EQ(b1->find("secret field"), std::string::npos);

  auto opened = OpenBox(key, aad, AsBytes(*b1));
  ASSERT_TRUE(opened.ok());
  EXPECT_EQ(*opened, "secret field");
  auto secret = OpenBoxSecret(key, aad, AsBytes(*b2));
  ASSERT_TRUE(secret.ok());
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(secret->span().data()), secret->size()),
            "secret field");

  for (size_t i = 0; i < b1->size(); ++i) {
    std::string t = *b1;
    t[i] ^= 0x01;
    EXPECT_EQ(OpenBox(key, aad, AsBytes(t)).status().code(), Code::kCorruption) << i;
  }
  EXPECT_EQ(OpenBox(key, AsBytes("other"), AsBytes(*b1)).status().code(), Code::kCorruption);
  EXPECT_EQ(OpenBox(Repeat(8, 32), aad, AsBytes(*b1)).status().code(), Code::kCorruption);
  EXPECT_EQ(OpenBox(key, aad, AsBytes(b1->substr(0, 27))).status().code(), Code::kCorruption);
  EXPECT_EQ(OpenBoxSecret(key, aad, AsBytes("")).status().code(), Code::kCorruption);
  EXPECT_EQ(SealBox(Repeat(7, 16), aad, AsBytes("x")).status().code(), Code::kInvalidArgument);

  auto empty = SealBox(key, {}, {});
  ASSERT_TRUE(empty.ok());
  auto empty_back = OpenBox(key, {}, AsBytes(*empty));
  ASSERT_TRUE(empty_back.ok());
  EXPECT_TRUE(empty_back->empty());
}

// ---------------------------------------------------------------- HKDF (RFC 5869 A.1-A.3)
TEST(HkdfTest, Rfc5869TestCases) {
  struct V {
    std::vector<std::byte> ikm, salt, info;
    const char* okm;
  };
  const V cases[] = {
      {Repeat(0x0b, 22), Hex("000102030405060708090a0b0c"), Hex("f0f1f2f3f4f5f6f7f8f9"),
       "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"},
      {Range(0x00, 0x4f), Range(0x60, 0xaf), Range(0xb0, 0xff),
       "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c"
       "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71"
       "cc30c58179ec3e87c14c01d5c1f3434f1d87"},
      {Repeat(0x0b, 22),
       {},
       {},
       "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"},
  };
  for (const auto& c : cases) {
    std::vector<std::byte> out(std::string_view(c.okm).size() / 2);
    ASSERT_TRUE(HkdfSha256(c.ikm, c.salt, c.info, out).ok());
    EXPECT_EQ(ToHex(out), c.okm);
  }
}

TEST(HkdfTest, KeyHelperIsLabelledAndBounded) {
  auto ikm = Repeat(0x42, 32);
  auto a = HkdfSha256Key(ikm, "phigate index v1");
  auto b = HkdfSha256Key(ikm, "phigate audit v1");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->size(), kKeyBytes);
  EXPECT_FALSE(ConstantTimeEqual(a->span(), b->span()));
  std::vector<std::byte> expect(32);
  ASSERT_TRUE(HkdfSha256(ikm, {}, AsBytes("phigate index v1"), expect).ok());
  EXPECT_TRUE(ConstantTimeEqual(a->span(), expect));

  std::vector<std::byte> too_long(255 * 32 + 1);
  EXPECT_EQ(HkdfSha256(ikm, {}, {}, too_long).code(), Code::kInvalidArgument);
}

// ---------------------------------------------------------------- HMAC (RFC 4231)
TEST(HmacTest, Rfc4231TestCases) {
  struct V {
    std::vector<std::byte> key, data;
    const char* mac;
  };
  auto s = [](std::string_view t) {
    auto b = AsBytes(t);
    return std::vector<std::byte>(b.begin(), b.end());
  };
  const V cases[] = {
      {Repeat(0x0b, 20), s("Hi There"),
       "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
      {s("Jefe"), s("what do ya want for nothing?"),
       "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
      {Repeat(0xaa, 20), Repeat(0xdd, 50),
       "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
      {Range(0x01, 0x19), Repeat(0xcd, 50),
       "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
      {Repeat(0xaa, 131), s("Test Using Larger Than Block-Size Key - Hash Key First"),
       "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(ToHex(HmacSha256(c.key, c.data)), c.mac);
    // The incremental form, fed byte by byte, agrees.
    HmacSha256Stream st(c.key);
    for (std::byte b : c.data) st.Update(ByteSpan(&b, 1));
    EXPECT_EQ(ToHex(st.Final()), c.mac);
  }
}

TEST(Sha256Test, Abc) {
  EXPECT_EQ(ToHex(Sha256(AsBytes("abc"))),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(ToHex(Sha256({})), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

// ---------------------------------------------------------------- misc
TEST(MiscTest, RandomBytesFillAndDiffer) {
  std::vector<std::byte> a(64), b(64);
  ASSERT_TRUE(RandomBytes(a).ok());
  ASSERT_TRUE(RandomBytes(b).ok());
  EXPECT_NE(a, b);
  EXPECT_FALSE(AllZero(a));
}

TEST(MiscTest, ConstantTimeEqualAndHex) {
  auto a = Hex("00ff10"), b = Hex("00ff10"), c = Hex("00ff11");
  EXPECT_TRUE(ConstantTimeEqual(a, b));
  EXPECT_FALSE(ConstantTimeEqual(a, c));
  EXPECT_FALSE(ConstantTimeEqual(a, ByteSpan(a).first(2)));
  EXPECT_TRUE(ConstantTimeEqual({}, {}));
  EXPECT_EQ(ToHex(a), "00ff10");
  std::vector<std::byte> out(2);
  EXPECT_TRUE(FromHex("ABcd", out).ok());
  EXPECT_EQ(ToHex(out), "abcd");
  EXPECT_EQ(FromHex("abc", out).code(), Code::kInvalidArgument);
  EXPECT_EQ(FromHex("zzzz", out).code(), Code::kInvalidArgument);
  EXPECT_TRUE(AllZero(out));  // wiped on failure
}

}  // namespace
}  // namespace phi::crypto
