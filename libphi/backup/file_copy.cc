#include "libphi/backup/file_copy.h"

#include <openssl/evp.h>

#include <memory>
#include <vector>

#include "libphi/crypto/crypto.h"

namespace phi::backup {
namespace {

constexpr size_t kChunk = 1 << 20;

struct Sha256 {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx{EVP_MD_CTX_new(), EVP_MD_CTX_free};
  Status Init() {
    if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
      return Status::Internal("EVP_DigestInit_ex(sha256) failed");
    }
    return Status::Ok();
  }
  void Update(const std::byte* p, size_t n) { EVP_DigestUpdate(ctx.get(), p, n); }
  std::string HexFinal() {
    crypto::Digest d{};
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx.get(), reinterpret_cast<unsigned char*>(d.data()), &len);
    return crypto::ToHex(d);
  }
};

// Reads `src` in chunks, calling sink(chunk) for each.
template <typename Sink>
Result<CopiedFile> Stream(Env& env, const Path& src, Sink&& sink) {
  PHI_ASSIGN_OR_RETURN(RandomAccessFilePtr in, env.NewRandomAccessFile(src));
  Sha256 h;
  PHI_RETURN_IF_ERROR(h.Init());
  std::vector<std::byte> buf(kChunk);
  CopiedFile out;
  for (;;) {
    PHI_ASSIGN_OR_RETURN(size_t n, in->Read(out.size, buf));
    if (n == 0) break;
    h.Update(buf.data(), n);
    PHI_RETURN_IF_ERROR(sink(std::span<const std::byte>(buf.data(), n)));
    out.size += n;
  }
  out.sha256 = h.HexFinal();
  return out;
}

}  // namespace

Result<CopiedFile> HashFile(Env& env, const Path& p) {
  return Stream(env, p, [](std::span<const std::byte>) { return Status::Ok(); });
}

Result<CopiedFile> CopyFile(Env& env, const Path& src, const Path& dst) {
  PHI_ASSIGN_OR_RETURN(WritableFilePtr out, env.NewWritableFile(dst));
  Result<CopiedFile> r =
      Stream(env, src, [&](std::span<const std::byte> chunk) { return out->Append(chunk); });
  Status s = r.status();
  if (s.ok()) s = out->Sync();
  Status c = out->Close();
  if (s.ok()) s = c;
  if (!s.ok()) {
    (void)env.RemoveFile(dst);
    return s;
  }
  return r;
}

}  // namespace phi::backup
