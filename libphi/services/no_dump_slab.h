// phi::services::NoDumpSlab: a small slab allocator for decrypted PHI kept in
// memory by caches (services/study_cache.h). Its memory is anonymous mmap'd
// chunks marked MADV_DONTDUMP and MADV_DONTFORK (never in a core dump, never
// inherited by a child), every freed slot is wiped with OPENSSL_cleanse, and
// the whole mapping is wiped before munmap. It is not mlock'ed: it can hold
// tens of MiB, beyond RLIMIT_MEMLOCK (keys stay in the vault's locked arena).
// Values are copied in; a Ref names a slot. Size classes are powers of two
// from 64 B to kMaxValueBytes; larger values are refused (the caller then
// does not cache them). A byte budget bounds the total.
// Thread-safety: not thread-safe; the owner's lock guards it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace phi::services {

// Allocator for containers of plaintext (a cache's scan index): each
// allocation is its own anonymous mapping, MADV_DONTDUMP | MADV_DONTFORK,
// wiped before it is unmapped.
void* NoDumpAllocate(size_t bytes);
void NoDumpFree(void* p, size_t bytes);

template <class T>
struct NoDumpAllocator {
  using value_type = T;
  NoDumpAllocator() = default;
  template <class U>
  NoDumpAllocator(const NoDumpAllocator<U>&) {}  // NOLINT
  T* allocate(size_t n) { return static_cast<T*>(NoDumpAllocate(n * sizeof(T))); }
  void deallocate(T* p, size_t n) { NoDumpFree(p, n * sizeof(T)); }
  template <class U>
  bool operator==(const NoDumpAllocator<U>&) const {
    return true;
  }
};

class NoDumpSlab {
 public:
  static constexpr size_t kChunkBytes = 1 << 20;
  static constexpr size_t kMinSlotBytes = 64;
  static constexpr size_t kMaxValueBytes = 64 * 1024;

  struct Ref {
    uint32_t cls = 0;
    uint32_t index = 0;
    uint32_t len = 0;
  };

  // budget_bytes: upper bound on mapped chunks (rounded down to whole chunks, >= 1).
  explicit NoDumpSlab(size_t budget_bytes);
  ~NoDumpSlab();
  NoDumpSlab(const NoDumpSlab&) = delete;
  NoDumpSlab& operator=(const NoDumpSlab&) = delete;

  // Copies `bytes` into a free slot. nullopt when too large or over budget.
  std::optional<Ref> Put(std::string_view bytes);
  // The stored bytes; valid until Free(ref) or destruction.
  std::string_view Get(const Ref& ref) const;
  // Wipes the slot and returns it to its class's free list.
  void Free(const Ref& ref);
  // Wipes and unmaps everything.
  void Clear();

  size_t mapped_bytes() const { return chunks_ * kChunkBytes; }
  size_t used_slots() const { return used_; }
  // Test-only: non-zero bytes in all free (and never used) slots of mapped
  // chunks; 0 means freed values were wiped.
  size_t NonZeroFreeBytesForTest() const;
  // Test-only: the start addresses of the mapped chunks.
  std::vector<const void*> ChunksForTest() const;

 private:
  static constexpr size_t kClasses = 11;  // 64 B .. 64 KiB
  struct Class {
    size_t slot_bytes = 0;
    std::vector<std::byte*> chunks;
    std::vector<uint32_t> free;  // freed slot indexes (wiped)
    uint32_t next = 0;           // slots [0, next) have been handed out at least once
  };
  std::byte* SlotPtr(const Class& c, uint32_t index) const;

  const size_t max_chunks_;
  size_t chunks_ = 0;
  size_t used_ = 0;
  Class classes_[kClasses];
};

}  // namespace phi::services
