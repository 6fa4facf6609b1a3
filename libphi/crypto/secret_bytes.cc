// SecretBytes: key material in its own anonymous mapping, locked in RAM
// (mlock), excluded from core dumps (MADV_DONTDUMP) and wiped with
// OPENSSL_cleanse before it is unlocked and unmapped.
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>

#include "libphi/crypto/crypto.h"
#include "libphi/util/log.h"

namespace phi::crypto {
namespace {

std::atomic<uint64_t> g_mlock_failures{0};

size_t PageSize() {
  static const size_t kPage = [] {
    long p = ::sysconf(_SC_PAGESIZE);
    return p > 0 ? static_cast<size_t>(p) : size_t{4096};
  }();
  return kPage;
}

}  // namespace

uint64_t SecretBytesMlockFailures() { return g_mlock_failures.load(std::memory_order_relaxed); }

SecretBytes::SecretBytes(size_t size) {
  if (size == 0) return;
  const size_t page = PageSize();
  PHI_CHECK(size <= SIZE_MAX - page);
  const size_t mapped = (size + page - 1) / page * page;
  void* p = ::mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  // Out of address space for a few key pages is not a recoverable condition.
  PHI_CHECK(p != MAP_FAILED);
  // Never in a core dump, never copied into a fork()ed child.
  (void)::madvise(p, mapped, MADV_DONTDUMP);
  (void)::madvise(p, mapped, MADV_DONTFORK);
  if (::mlock(p, mapped) != 0) {
    // RLIMIT_MEMLOCK exhausted (or no privilege): keep going, unlocked; count it and
    // say so once. The key is still wiped on release and excluded from dumps.
    int err = errno;
    if (g_mlock_failures.fetch_add(1, std::memory_order_relaxed) == 0) {
      PHI_LOG(kDebug, "mlock of key memory failed; continuing unlocked",
              {{"errno", err}, {"bytes", mapped}});
    }
  }
  // Anonymous pages are zero-filled already.
  data_ = static_cast<std::byte*>(p);
  size_ = size;
  mapped_ = mapped;
}

SecretBytes SecretBytes::CopyFrom(ByteSpan bytes) {
  SecretBytes s(bytes.size());
  if (!bytes.empty()) std::memcpy(s.data_, bytes.data(), bytes.size());
  return s;
}

Result<SecretBytes> SecretBytes::Random(size_t size) {
  SecretBytes s(size);
  PHI_RETURN_IF_ERROR(RandomBytes(s.mutable_span()));
  return s;
}

SecretBytes::~SecretBytes() { Release(); }

SecretBytes::SecretBytes(SecretBytes&& o) noexcept
    : data_(o.data_), size_(o.size_), mapped_(o.mapped_) {
  o.data_ = nullptr;
  o.size_ = 0;
  o.mapped_ = 0;
}

SecretBytes& SecretBytes::operator=(SecretBytes&& o) noexcept {
  if (this != &o) {
    Release();
    data_ = o.data_;
    size_ = o.size_;
    mapped_ = o.mapped_;
    o.data_ = nullptr;
    o.size_ = 0;
    o.mapped_ = 0;
  }
  return *this;
}

void SecretBytes::Release() {
  if (data_ == nullptr) return;
  OPENSSL_cleanse(data_, mapped_);
  (void)::munlock(data_, mapped_);
  (void)::munmap(data_, mapped_);
  data_ = nullptr;
  size_ = 0;
  mapped_ = 0;
}

}  // namespace phi::crypto
