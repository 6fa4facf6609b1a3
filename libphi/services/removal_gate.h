// phi::services::RemovalGate: an ObjectStore decorator that holds back object
// unlinks while a backup is copying (DESIGN.md, Erasure; README "Backup and
// restore"). A backup takes a Hold before its catalog snapshot; any Remove()
// issued while a hold exists (an erasure's unlinks after its commit, the
// replaced object of a duplicate under `replace`) is queued and performed
// when the last hold is released. So every object named by the snapshot is
// still on disk when the backup copies it, and an erased study's objects
// outlive its key by at most the duration of the backup (no key opens them;
// if the daemon dies meanwhile, start-up recovery removes them as orphans).
// Everything else is forwarded unchanged.
// Thread-safety: thread-safe; mu_ guards holds_ and deferred_.
#pragma once

#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "libphi/objects/object_store.h"

namespace phi::services {

class RemovalGate final : public objects::ObjectStore {
 public:
  explicit RemovalGate(objects::ObjectStore& target) : target_(target) {}
  ~RemovalGate() override;  // performs what is still deferred
  RemovalGate(const RemovalGate&) = delete;
  RemovalGate& operator=(const RemovalGate&) = delete;

  // While a Hold lives, Remove() is deferred.
  class Hold {
   public:
    explicit Hold(RemovalGate& g) : g_(g) { g_.Acquire(); }
    ~Hold() { g_.Release(); }
    Hold(const Hold&) = delete;
    Hold& operator=(const Hold&) = delete;

   private:
    RemovalGate& g_;
  };

  Result<objects::ObjectWriterPtr> NewObject(const objects::KeyId& study_key_id,
                                             crypto::AesGcm& aead) override {
    return target_.NewObject(study_key_id, aead);
  }
  Result<objects::ObjectReaderPtr> Open(std::string_view object_id,
                                        const objects::KeyId& expected_key_id,
                                        crypto::AesGcm& aead) override {
    return target_.Open(object_id, expected_key_id, aead);
  }
  Status Remove(std::string_view object_id) override;
  Result<std::vector<std::string>> ListObjectIds() override { return target_.ListObjectIds(); }
  Result<size_t> CleanTmp() override { return target_.CleanTmp(); }
  Status BackgroundError() override { return target_.BackgroundError(); }

  size_t deferred() const;
  size_t holds() const;
  // Whether an unlink of this object is queued (verify/scrub: such a file is
  // an erased object waiting for a backup to end, not an orphan to report).
  bool IsDeferred(std::string_view object_id) const;

 private:
  void Acquire();
  void Release();

  objects::ObjectStore& target_;
  mutable std::mutex mu_;
  size_t holds_ = 0;                   // guarded by mu_
  std::vector<std::string> deferred_;  // guarded by mu_
};

}  // namespace phi::services
