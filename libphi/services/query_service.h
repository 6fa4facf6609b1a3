// phi::services::QueryService: study/series/instance queries over the
// encrypted index, for C-FIND, QIDO-RS and the admin tools. The catalog
// narrows candidates on blind-index tokens and non-PHI columns (study year,
// modality); this service decrypts each candidate's PHI with its study key
// and applies DICOM matching (wildcards, date ranges) before limit/offset.
// Queries without a blind-index token (wildcards, dates, modality only) scan
// the StudyCache (study_cache.h: decrypted attributes in no-dump memory, kept
// coherent by StudyKeys) instead, once it is built (StartCacheWarmUp, or
// BuildCache); until then, or when it is over its bounds, they decrypt rows.
// Thread-safety: thread-safe.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "libphi/index/catalog.h"
#include "libphi/objects/object_store.h"
#include "libphi/services/phi_fields.h"
#include "libphi/services/study_keys.h"
#include "libphi/vault/key_vault.h"

namespace phi::services {

struct StudyQuery {
  std::string patient_name;                      // wildcards * and ?; "" = any
  std::string patient_id;                        // exact (token) unless it has wildcards
  std::string accession_number;                  // exact (token) unless it has wildcards
  std::string study_date;                        // DA range: "YYYYMMDD", "A-B", "-B", "A-"
  std::string modality;                          // a series of the study has it
  std::vector<std::string> study_instance_uids;  // any of these
  bool fold_case = true;                         // PatientName case-insensitive
  size_t offset = 0;
  size_t limit = 100;  // REQUIRES: 1..10000
  // Study cache path only: a study with a rendering attached (AttachRendered)
  // comes back with StudyMatch::rendered set and `phi` left empty.
  bool rendered_instead_of_phi = false;
};

struct StudyMatch {
  index::StudyRow row;  // non-PHI columns (row.phi is the sealed blob)
  PhiFields phi;        // decrypted study attributes
  // From the study cache: the entry's generation (0 otherwise) and, with
  // StudyQuery::rendered_instead_of_phi, its attached rendering.
  uint64_t cache_generation = 0;
  std::string rendered;
};

struct SeriesMatch {
  index::SeriesRow row;
  PhiFields phi;
};

struct InstanceMatch {
  index::InstanceRow row;
  PhiFields phi;
};

// An opened object: its reader and the cipher it reads with.
struct OpenedInstance {
  std::unique_ptr<crypto::AesGcm> cipher;  // must outlive reader (declared first)
  objects::ObjectReaderPtr reader;
  index::InstanceRow row;
};

class QueryService {
 public:
  QueryService(vault::KeyVault& vault, index::Catalog& catalog, objects::ObjectStore& objects,
               StudyKeys& keys)
      : vault_(vault), catalog_(catalog), objects_(objects), keys_(keys) {}
  ~QueryService();
  QueryService(const QueryService&) = delete;
  QueryService& operator=(const QueryService&) = delete;

  // Builds the study cache now (tests, tools); then wildcard queries use it.
  Status BuildCache();
  // Builds it on a background thread (the daemon, at start); joined by the
  // destructor. Queries decrypt rows until it is ready. Idempotent.
  void StartCacheWarmUp();

  // InvalidArgument for a malformed date range or limit.
  Result<std::vector<StudyMatch>> FindStudies(const StudyQuery& q);
  Result<StudyMatch> GetStudy(const std::string& study_instance_uid);
  Result<std::vector<SeriesMatch>> ListSeries(const std::string& study_instance_uid);
  Result<std::vector<InstanceMatch>> ListInstances(const std::string& study_instance_uid);
  Result<OpenedInstance> OpenInstance(const std::string& sop_instance_uid);
  // The same study/instances from known rows: no study lookup again.
  Result<std::vector<SeriesMatch>> ListSeriesOf(const StudyMatch& study);
  Result<std::vector<InstanceMatch>> ListInstancesOf(const StudyMatch& study);
  // Opens an instance of `study` from its row (no catalog lookup).
  Result<OpenedInstance> OpenInstanceOf(const index::StudyRow& study,
                                        const index::InstanceRow& row);

  // Attaches renderings of studies found from the study cache (their
  // StudyMatch::cache_generation) to the cache entries; see StudyCache::Attach.
  void AttachRendered(const std::vector<StudyCache::Attachment>& renderings);

  // Instance headers (Part 10 bytes up to Pixel Data) cached by object id,
  // in the study cache's no-dump memory; dropped when the study is erased.
  bool CachedHeader(const std::string& object_id, std::string* out) const;
  void CacheHeader(const index::Token& study_token, const std::string& object_id,
                   std::string_view header);

 private:
  index::Token Token(std::string_view attr, std::string_view value) const;
  Result<PhiFields> OpenPhi(const std::string& key_id, std::string_view level,
                            const index::Token& token, const index::Blob& box);
  Result<PhiFields> OpenStudyPhi(const index::StudyRow& row);
  // The cache path of FindStudies. REQUIRES: the cache is ready and synced.
  std::vector<StudyMatch> ScanCache(const StudyQuery& q);

  vault::KeyVault& vault_;
  index::Catalog& catalog_;
  objects::ObjectStore& objects_;
  StudyKeys& keys_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> warming_{false};
  std::thread warm_;
};

}  // namespace phi::services
