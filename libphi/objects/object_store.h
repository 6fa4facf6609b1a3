// ObjectStore: where encrypted `.phg` objects live (DESIGN "Storage root",
// "Scale-out"). The interface is backend-neutral so that an S3-compatible
// backend can be added beside FsObjectStore; objects are encrypted before
// they reach any backend, which never sees plaintext or key bytes.
//
// The store knows nothing of SQLite, DICOM or key material: the caller (the
// vault/ingest path) passes a ready AesGcm keyed with the study key plus
// that key's id, which is written into (and checked against) each header.
//
// Thread-safety: implementations are thread-safe; the writers and readers
// they return are not (one owner each), and each needs its own AesGcm for
// its lifetime. Writers and readers must not outlive their store.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "libphi/crypto/crypto.h"
#include "libphi/objects/object_reader.h"
#include "libphi/objects/object_writer.h"
#include "libphi/objects/phg_format.h"
#include "libphi/util/status.h"

namespace phi::objects {

using ObjectReaderPtr = std::unique_ptr<ObjectReader>;

class ObjectStore {
 public:
  virtual ~ObjectStore() = default;

  // Starts a new object under a fresh random id, encrypted with `aead`
  // (keyed with the study key whose id is `study_key_id`).
  virtual Result<ObjectWriterPtr> NewObject(const KeyId& study_key_id, crypto::AesGcm& aead) = 0;

  // Opens an object for reading. NotFound if absent; InvalidArgument if the id
  // is malformed; Corruption if its header names another study key or
  // another object id, or any authentication fails.
  virtual Result<ObjectReaderPtr> Open(std::string_view object_id, const KeyId& expected_key_id,
                                       crypto::AesGcm& aead) = 0;

  // Unlinks an object (erasure: the caller has already destroyed the key).
  virtual Status Remove(std::string_view object_id) = 0;

  // Ids of every stored object (for start-up reconciliation with the catalog).
  virtual Result<std::vector<std::string>> ListObjectIds() = 0;

  // Removes leftovers of interrupted writes (start-up recovery); returns how
  // many were removed. Writes in flight in this process are left alone.
  virtual Result<size_t> CleanTmp() = 0;

  // True while a writer of this object is live in this process (written,
  // not yet renamed and synced, or being aborted).
  virtual bool IsBeingWritten(std::string_view object_id) {
    (void)object_id;
    return false;
  }

  // OK, or the first durability failure (failed fsync/rename) after which the
  // store refuses writes until it is reopened.
  virtual Status BackgroundError() = 0;
};
using ObjectStorePtr = std::unique_ptr<ObjectStore>;

}  // namespace phi::objects
