// phi::services::StudyCache: decrypted study attributes and instance headers
// kept in memory, so that wildcard study queries (QIDO-RS, C-FIND) match
// without decrypting every row, and /metadata parses instance headers
// without decrypting whole objects. README "Threat model" states the trade.
//
// What it holds, all in one NoDumpSlab (MADV_DONTDUMP, wiped when dropped,
// never written to disk):
//  - per study: its catalog row (non-PHI columns; the sealed blob is not kept)
//    and its decrypted PhiFields, plus the match keys (PatientName, PatientID,
//    AccessionNumber, StudyDate, StudyDescription) for the scan;
//  - per stored object (by object id, immutable): the Part 10 bytes up to
//    Pixel Data, within a byte budget;
//  - per study, optionally, one rendering of it attached by a caller (the
//    web edge's QIDO-RS JSON of the study: opaque bytes here), within a byte
//    budget. It belongs to the entry it was derived from (its generation):
//    any re-read of the study (Invalidate + Sync) or Erase drops and wipes
//    it with the entry, and an Attach for an older generation is ignored.
// Coherence. Every writer of a study's sealed PHI goes through StudyKeys,
// which calls Invalidate(study token) after the commit (ingest: every store;
// HL7: each study it resealed; both before they acknowledge) and Erase()
// after an erasure commit. Invalidated studies are re-read from the catalog
// by the next Sync() (every query calls it first), so a query that starts
// after a write was acknowledged sees it. Erase() wipes the study's entry and
// headers at once; a Build or Sync that read the row before the erasure
// committed does not re-insert it (tombstones while they run).
// Bounds: max_studies entries (beyond it the cache reports not ready and the
// query service falls back to decrypting rows); the slab's byte budget.
// Thread-safety: thread-safe; mu_ (shared for scans) guards everything.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "libphi/index/catalog.h"
#include "libphi/services/no_dump_slab.h"
#include "libphi/services/phi_fields.h"

namespace phi::services {

struct StudyCacheOptions {
  size_t max_studies = 1'000'000;
  size_t slab_bytes = size_t{1} << 30;        // all decrypted values
  size_t header_bytes = size_t{256} << 20;    // of which instance headers at most
  size_t rendered_bytes = size_t{128} << 20;  // of which attached renderings at most
};

class StudyCache {
 public:
  // Decrypts one study row's sealed PHI (QueryService supplies it).
  using Opener = std::function<Result<PhiFields>(const index::StudyRow&)>;

  // The match keys of one cached study, valid while the visitor runs.
  struct View {
    const index::StudyRow& row;  // row.phi is empty
    std::string_view patient_name, patient_id, accession_number, study_date, study_description;
    std::string_view encoded;   // PhiFields::Encode() of the study's attributes
    uint64_t generation;        // new each time the study is (re)loaded; never 0
    std::string_view rendered;  // what Attach() attached to this generation, or empty
  };
  // A caller's rendering of the study `study_pk` as read at `generation`.
  struct Attachment {
    int64_t study_pk = 0;
    uint64_t generation = 0;
    std::string bytes;
  };
  // Return false to stop the scan.
  using Visitor = std::function<bool(const View&)>;

  explicit StudyCache(StudyCacheOptions options = {});
  ~StudyCache();
  StudyCache(const StudyCache&) = delete;
  StudyCache& operator=(const StudyCache&) = delete;

  // ---- coherence (StudyKeys calls these after commits)
  void Invalidate(const index::Token& study_token);
  void Erase(const index::Token& study_token);

  // ---- the study index
  // Loads every study (paged); then ready() is true. Cancelled (Unavailable)
  // when `stop` becomes true.
  Status Build(index::Catalog& catalog, const Opener& open, const std::atomic<bool>* stop);
  bool ready() const { return ready_.load(std::memory_order_acquire); }
  // Re-reads the invalidated studies. REQUIRES: ready().
  Status Sync(index::Catalog& catalog, const Opener& open);
  // Visits the cached studies in study_pk order, under a shared lock.
  // `name_prefix`: when not empty (at most 8 bytes, ASCII lower-cased), only
  // studies whose PatientName, lower-cased, starts with it are visited (a
  // prefilter on a compact in-order index; the visitor still matches).
  void Scan(std::string_view name_prefix, const Visitor& v) const;
  // Attaches each rendering to its study's entry when the entry is still the
  // generation it was derived from and has none yet; else (re-read, erased,
  // over the rendered_bytes budget or the slab's) ignores it.
  void Attach(const std::vector<Attachment>& renderings);
  // One study's cached attributes, when present.
  bool Lookup(int64_t study_pk, index::StudyRow* row, PhiFields* phi) const;
  size_t size() const;
  size_t pending() const;

  // ---- instance headers (by object id; objects are immutable)
  bool GetHeader(const std::string& object_id, std::string* out) const;
  void PutHeader(const index::Token& study_token, const std::string& object_id,
                 std::string_view header);

  // Test-only: the slab (wiping and no-dump checks).
  const NoDumpSlab& SlabForTest() const { return slab_; }

 private:
  struct Entry {
    index::StudyRow row;
    NoDumpSlab::Ref ref;
    uint32_t lens[5] = {0, 0, 0, 0, 0};  // match keys, then the encoded fields
    uint64_t generation = 0;
    std::optional<NoDumpSlab::Ref> rendered;  // Attach()
    uint8_t bucket = 0;                       // in buckets_
  };
  // The scan index: contiguous, in study_pk order, in no-dump memory. scan_
  // holds every study (scans without a name prefix); buckets_[b] the studies
  // whose PatientName's first byte, ASCII lower-cased, is b, with `names`
  // (same order, names[i] belongs to recs[i]): each study's PatientName's
  // first 8 bytes, ASCII lower-cased, zero padded, as one word. A prefix scan
  // walks one bucket, 8 bytes per study, and touches the records only for
  // candidates.
  struct ScanRec {
    int64_t pk = 0;
    const Entry* entry = nullptr;  // the node in studies_ (stable)
  };
  struct NameBucket {
    std::vector<ScanRec, NoDumpAllocator<ScanRec>> recs;
    std::vector<uint64_t, NoDumpAllocator<uint64_t>> names;
  };
  struct Header {
    index::Token study_token;
    NoDumpSlab::Ref ref;
  };

  // REQUIRES: mu_ held exclusively.
  void InsertLocked(index::StudyRow row, const PhiFields& phi);
  void DropLocked(int64_t study_pk);
  void DropHeadersLocked(const index::Token& study_token);
  View MakeView(const Entry& e) const;

  const StudyCacheOptions options_;
  std::atomic<bool> ready_{false};
  mutable std::shared_mutex mu_;
  NoDumpSlab slab_;                                      // guarded by mu_
  std::map<int64_t, Entry> studies_;                     // guarded by mu_
  std::vector<ScanRec, NoDumpAllocator<ScanRec>> scan_;  // guarded by mu_
  std::array<NameBucket, 256> buckets_;                  // guarded by mu_
  std::unordered_map<index::Token, int64_t> by_token_;   // guarded by mu_
  std::unordered_set<index::Token> pending_;             // guarded by mu_
  // Erased while a Build/Sync was reading: not to be (re)inserted by it.
  std::unordered_set<index::Token> tombstones_;      // guarded by mu_
  int readers_in_flight_ = 0;                        // guarded by mu_
  bool overflow_ = false;                            // guarded by mu_: max_studies reached
  bool started_ = false;                             // guarded by mu_: a Build has begun
  std::unordered_map<std::string, Header> headers_;  // guarded by mu_
  std::unordered_map<index::Token, std::vector<std::string>> headers_of_;  // guarded by mu_
  size_t header_bytes_ = 0;                                                // guarded by mu_
  size_t rendered_bytes_ = 0;                                              // guarded by mu_
  uint64_t next_generation_ = 1;                                           // guarded by mu_
};

}  // namespace phi::services
