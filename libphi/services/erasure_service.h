// phi::services::ErasureService: cryptographic erasure of a study
// (DESIGN.md, Erasure contract). In one catalog transaction it deletes the
// study's index rows and its wrapped key and appends an erasure certificate
// to the audit trail; then it forgets the plaintext key, checkpoints the WAL
// with TRUNCATE (secure_delete is on, so freed pages are zeroed), and only
// then unlinks the objects, which no key can open any more.
// Thread-safety: thread-safe.
#pragma once

#include <cstdint>
#include <string>

#include "libphi/index/catalog.h"
#include "libphi/objects/object_store.h"
#include "libphi/services/study_keys.h"
#include "libphi/vault/key_vault.h"

namespace phi::services {

// The proof of one erasure. No PHI: internal ids, counts, the fingerprint of
// the destroyed wrapped key, the actor and the reason given.
struct ErasureCertificate {
  int64_t audit_seq = 0;
  int64_t study_pk = 0;
  std::string study_key_id;
  std::string kek_id;
  std::string wrapped_key_sha256;  // hex SHA-256 of the destroyed wrapped key
  int64_t objects = 0;
  int64_t bytes = 0;
  std::string actor;
  std::string reason;
  int64_t time_unix = 0;
  std::string ToJson() const;  // canonical JSON, stored as the audit record's detail
};

class ErasureService {
 public:
  ErasureService(vault::KeyVault& vault, index::Catalog& catalog, objects::ObjectStore& objects,
                 StudyKeys& keys, Env& env)
      : vault_(vault), catalog_(catalog), objects_(objects), keys_(keys), env_(env) {}

  // Erases the study with that StudyInstanceUID. NotFound if unknown;
  // PermissionDenied under legal hold; InvalidArgument for a reason that is
  // empty, longer than 512 bytes or has control characters.
  Result<ErasureCertificate> EraseStudy(const std::string& study_instance_uid,
                                        const std::string& actor, const std::string& reason,
                                        const std::string& peer = "");

 private:
  vault::KeyVault& vault_;
  index::Catalog& catalog_;
  objects::ObjectStore& objects_;
  StudyKeys& keys_;
  Env& env_;
};

}  // namespace phi::services
