#include "libphi/services/no_dump_slab.h"

#include <openssl/crypto.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <new>

#include "libphi/util/status.h"

namespace phi::services {

void* NoDumpAllocate(size_t bytes) {
  if (bytes == 0) bytes = 1;
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  (void)::madvise(p, bytes, MADV_DONTDUMP);
  (void)::madvise(p, bytes, MADV_DONTFORK);
  return p;
}

void NoDumpFree(void* p, size_t bytes) {
  if (p == nullptr) return;
  if (bytes == 0) bytes = 1;
  OPENSSL_cleanse(p, bytes);
  ::munmap(p, bytes);
}

NoDumpSlab::NoDumpSlab(size_t budget_bytes)
    : max_chunks_(std::max<size_t>(1, budget_bytes / kChunkBytes)) {
  for (size_t i = 0; i < kClasses; ++i) classes_[i].slot_bytes = kMinSlotBytes << i;
}

NoDumpSlab::~NoDumpSlab() { Clear(); }

std::byte* NoDumpSlab::SlotPtr(const Class& c, uint32_t index) const {
  const size_t per_chunk = kChunkBytes / c.slot_bytes;
  return c.chunks[index / per_chunk] + (index % per_chunk) * c.slot_bytes;
}

std::optional<NoDumpSlab::Ref> NoDumpSlab::Put(std::string_view bytes) {
  if (bytes.size() > kMaxValueBytes) return std::nullopt;
  uint32_t cls = 0;
  while ((kMinSlotBytes << cls) < bytes.size()) ++cls;
  Class& c = classes_[cls];
  uint32_t index = 0;
  if (!c.free.empty()) {
    index = c.free.back();
    c.free.pop_back();
  } else {
    const size_t per_chunk = kChunkBytes / c.slot_bytes;
    if (c.next == c.chunks.size() * per_chunk) {
      if (chunks_ >= max_chunks_) return std::nullopt;
      void* p =
          ::mmap(nullptr, kChunkBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) return std::nullopt;
      (void)::madvise(p, kChunkBytes, MADV_DONTDUMP);
      (void)::madvise(p, kChunkBytes, MADV_DONTFORK);
      c.chunks.push_back(static_cast<std::byte*>(p));
      ++chunks_;
    }
    index = c.next++;
  }
  std::byte* dst = SlotPtr(c, index);
  if (!bytes.empty()) std::memcpy(dst, bytes.data(), bytes.size());
  ++used_;
  return Ref{cls, index, static_cast<uint32_t>(bytes.size())};
}

std::string_view NoDumpSlab::Get(const Ref& ref) const {
  const Class& c = classes_[ref.cls];
  return {reinterpret_cast<const char*>(SlotPtr(c, ref.index)), ref.len};
}

void NoDumpSlab::Free(const Ref& ref) {
  Class& c = classes_[ref.cls];
  PHI_CHECK(ref.index < c.next);
  OPENSSL_cleanse(SlotPtr(c, ref.index), c.slot_bytes);
  c.free.push_back(ref.index);
  --used_;
}

void NoDumpSlab::Clear() {
  for (Class& c : classes_) {
    for (std::byte* p : c.chunks) {
      OPENSSL_cleanse(p, kChunkBytes);
      ::munmap(p, kChunkBytes);
    }
    c.chunks.clear();
    c.free.clear();
    c.next = 0;
  }
  chunks_ = 0;
  used_ = 0;
}

size_t NoDumpSlab::NonZeroFreeBytesForTest() const {
  size_t n = 0;
  for (const Class& c : classes_) {
    const size_t per_chunk = kChunkBytes / c.slot_bytes;
    std::vector<bool> is_free(c.chunks.size() * per_chunk, false);
    for (uint32_t i : c.free) is_free[i] = true;
    for (uint32_t i = c.next; i < is_free.size(); ++i) is_free[i] = true;
    for (uint32_t i = 0; i < is_free.size(); ++i) {
      if (!is_free[i]) continue;
      const std::byte* p = SlotPtr(c, i);
      n += static_cast<size_t>(
          std::count_if(p, p + c.slot_bytes, [](std::byte b) { return b != std::byte{0}; }));
    }
  }
  return n;
}

std::vector<const void*> NoDumpSlab::ChunksForTest() const {
  std::vector<const void*> out;
  for (const Class& c : classes_) out.insert(out.end(), c.chunks.begin(), c.chunks.end());
  return out;
}

}  // namespace phi::services
