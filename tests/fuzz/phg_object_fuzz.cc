// libFuzzer: arbitrary bytes as a .phg object file. DecodeHeader and
// ObjectReader must never crash, never allocate without bound, and never
// return plaintext (every input here is forged, so every read must fail).
#include <cstdint>
#include <cstring>
#include <string>

#include "libphi/crypto/crypto.h"
#include "libphi/objects/object_reader.h"
#include "libphi/objects/phg_format.h"

namespace {

class MemFile final : public phi::RandomAccessFile {
 public:
  MemFile(const uint8_t* d, size_t n) : data_(reinterpret_cast<const char*>(d), n) {}
  phi::Result<size_t> Read(uint64_t off, std::span<std::byte> out) const override {
    if (off >= data_.size()) return size_t{0};
    size_t n = std::min(out.size(), data_.size() - static_cast<size_t>(off));
    std::memcpy(out.data(), data_.data() + off, n);
    return n;
  }
  phi::Result<uint64_t> Size() const override { return data_.size(); }

 private:
  std::string data_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)phi::objects::phg::DecodeHeader(std::as_bytes(std::span(data, size)));
  static std::array<std::byte, 32> key{};
  static auto gcm = phi::crypto::AesGcm::Create(key);
  phi::objects::KeyId expected{};
  if (size >= 32) std::memcpy(expected.data(), data + 16, expected.size());  // the header's key id
  auto reader = phi::objects::ObjectReader::Open(std::make_unique<MemFile>(data, size), expected,
                                                 **gcm, std::nullopt);
  if (reader.ok()) {
    std::byte buf[4096];
    auto n = (*reader)->Read(0, buf);
    if (n.ok() && *n > 0) __builtin_trap();  // forged input authenticated: impossible
    (void)(*reader)->ReadAll([](std::span<const std::byte>) {
      __builtin_trap();  // no plaintext may ever come out
      return phi::Status::Ok();
    });
  }
  return 0;
}
