#include "libphi/services/study_cache.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <mutex>

#include "libphi/util/log.h"

namespace phi::services {
namespace {

constexpr const char* kMatchKeys[] = {"PatientName", "PatientID", "AccessionNumber", "StudyDate",
                                      "StudyDescription"};

// Wipes a heap string holding plaintext before it is freed.
void Wipe(std::string& s) {
  if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
  s.clear();
}

}  // namespace

StudyCache::StudyCache(StudyCacheOptions options) : options_(options), slab_(options.slab_bytes) {}

StudyCache::~StudyCache() = default;  // the slab wipes its chunks

void StudyCache::Invalidate(const index::Token& study_token) {
  std::unique_lock lock(mu_);
  if (!started_) return;  // nothing cached, nothing being built (tools, loaders)
  if (pending_.size() >= options_.max_studies) {
    // Cannot track more: rebuild from scratch at the next query.
    overflow_ = true;
    ready_.store(false, std::memory_order_release);
    return;
  }
  pending_.insert(study_token);
}

void StudyCache::Erase(const index::Token& study_token) {
  std::unique_lock lock(mu_);
  if (auto it = by_token_.find(study_token); it != by_token_.end()) DropLocked(it->second);
  DropHeadersLocked(study_token);
  pending_.erase(study_token);
  if (readers_in_flight_ > 0) tombstones_.insert(study_token);
}

void StudyCache::DropLocked(int64_t study_pk) {
  auto it = studies_.find(study_pk);
  if (it == studies_.end()) return;
  auto by_pk = [](const ScanRec& r, int64_t pk) { return r.pk < pk; };
  auto rec = std::lower_bound(scan_.begin(), scan_.end(), study_pk, by_pk);
  if (rec != scan_.end() && rec->pk == study_pk) scan_.erase(rec);
  NameBucket& b = buckets_[it->second.bucket];
  rec = std::lower_bound(b.recs.begin(), b.recs.end(), study_pk, by_pk);
  if (rec != b.recs.end() && rec->pk == study_pk) {
    auto name = b.names.begin() + (rec - b.recs.begin());
    OPENSSL_cleanse(&*name, sizeof(*name));
    b.names.erase(name);
    b.recs.erase(rec);
  }
  slab_.Free(it->second.ref);
  if (it->second.rendered) {
    rendered_bytes_ -= it->second.rendered->len;
    slab_.Free(*it->second.rendered);
  }
  by_token_.erase(it->second.row.study_uid_token);
  studies_.erase(it);
}

void StudyCache::DropHeadersLocked(const index::Token& study_token) {
  auto it = headers_of_.find(study_token);
  if (it == headers_of_.end()) return;
  for (const std::string& id : it->second) {
    auto h = headers_.find(id);
    if (h == headers_.end()) continue;
    header_bytes_ -= h->second.ref.len;
    slab_.Free(h->second.ref);
    headers_.erase(h);
  }
  headers_of_.erase(it);
}

void StudyCache::InsertLocked(index::StudyRow row, const PhiFields& phi) {
  if (auto it = by_token_.find(row.study_uid_token); it != by_token_.end()) {
    DropLocked(it->second);
  }
  if (studies_.size() >= options_.max_studies) {
    overflow_ = true;
    return;
  }
  std::string packed;
  Entry e;
  for (size_t i = 0; i < 5; ++i) {
    const std::string& v = phi.Get(kMatchKeys[i]);
    e.lens[i] = static_cast<uint32_t>(v.size());
    packed += v;
  }
  std::string encoded = phi.Encode();
  packed += encoded;
  Wipe(encoded);
  std::optional<NoDumpSlab::Ref> ref = slab_.Put(packed);
  Wipe(packed);
  if (!ref) {
    overflow_ = true;  // too large or over budget: the service falls back
    return;
  }
  e.ref = *ref;
  e.generation = next_generation_++;
  index::Blob().swap(row.phi);  // the sealed blob is not needed here
  const int64_t pk = row.study_pk;
  by_token_[row.study_uid_token] = pk;
  e.row = std::move(row);
  auto [node, inserted] = studies_.emplace(pk, std::move(e));
  ScanRec rec;
  rec.pk = pk;
  rec.entry = &node->second;
  char name8[8] = {};
  const std::string& name = phi.Get("PatientName");
  for (size_t i = 0; i < sizeof(name8) && i < name.size(); ++i) {
    name8[i] = static_cast<char>(std::tolower(static_cast<unsigned char>(name[i])));
  }
  uint64_t word = 0;
  std::memcpy(&word, name8, sizeof(word));
  node->second.bucket = static_cast<uint8_t>(name8[0]);
  OPENSSL_cleanse(name8, sizeof(name8));
  auto by_pk = [](const ScanRec& r, int64_t k) { return r.pk < k; };
  scan_.insert(std::lower_bound(scan_.begin(), scan_.end(), pk, by_pk), rec);
  NameBucket& b = buckets_[node->second.bucket];
  auto at = std::lower_bound(b.recs.begin(), b.recs.end(), pk, by_pk);
  b.names.insert(b.names.begin() + (at - b.recs.begin()), word);
  b.recs.insert(at, rec);
}

StudyCache::View StudyCache::MakeView(const Entry& e) const {
  std::string_view all = slab_.Get(e.ref);
  std::string_view parts[5];
  size_t off = 0;
  for (size_t i = 0; i < 5; ++i) {
    parts[i] = all.substr(off, e.lens[i]);
    off += e.lens[i];
  }
  std::string_view rendered = e.rendered ? slab_.Get(*e.rendered) : std::string_view();
  return View{e.row,    parts[0],        parts[1],     parts[2], parts[3],
              parts[4], all.substr(off), e.generation, rendered};
}

void StudyCache::Attach(const std::vector<Attachment>& renderings) {
  if (renderings.empty()) return;
  std::unique_lock lock(mu_);
  for (const Attachment& a : renderings) {
    auto it = studies_.find(a.study_pk);
    if (it == studies_.end() || it->second.generation != a.generation || it->second.rendered ||
        a.bytes.empty() || rendered_bytes_ + a.bytes.size() > options_.rendered_bytes) {
      continue;
    }
    std::optional<NoDumpSlab::Ref> ref = slab_.Put(a.bytes);
    if (!ref) continue;
    rendered_bytes_ += ref->len;
    it->second.rendered = *ref;
  }
}

Status StudyCache::Build(index::Catalog& catalog, const Opener& open,
                         const std::atomic<bool>* stop) {
  {
    std::unique_lock lock(mu_);
    ++readers_in_flight_;
    overflow_ = false;
    started_ = true;
  }
  Status result = Status::Ok();
  index::StudyFilter f;
  f.limit = 1000;
  for (;;) {
    if (stop != nullptr && stop->load()) {
      result = Status::Unavailable("study cache build cancelled");
      break;
    }
    Result<index::StudyCandidates> page = catalog.QueryStudies(f);
    if (!page.ok()) {
      result = page.status();
      break;
    }
    std::vector<std::pair<index::StudyRow, PhiFields>> loaded;
    loaded.reserve(page->rows.size());
    for (index::StudyRow& row : page->rows) {
      f.after_study_pk = row.study_pk;
      Result<PhiFields> phi = open(row);
      if (!phi.ok()) {
        result = phi.status();
        break;
      }
      loaded.emplace_back(std::move(row), std::move(*phi));
    }
    if (!result.ok()) break;
    {
      std::unique_lock lock(mu_);
      for (auto& [row, phi] : loaded) {
        if (tombstones_.count(row.study_uid_token) != 0) continue;
        // A study invalidated since its row was read is re-read by Sync.
        InsertLocked(std::move(row), phi);
      }
    }
    if (!page->truncated) break;
  }
  std::unique_lock lock(mu_);
  if (--readers_in_flight_ == 0) tombstones_.clear();
  if (result.ok() && !overflow_) {
    ready_.store(true, std::memory_order_release);
  } else if (result.ok()) {
    PHI_LOG(kWarning, "study cache over its bounds; queries decrypt rows",
            {{"studies", studies_.size()}, {"max_studies", options_.max_studies}});
  }
  return result;
}

Status StudyCache::Sync(index::Catalog& catalog, const Opener& open) {
  std::unordered_set<index::Token> todo;
  {
    std::unique_lock lock(mu_);
    if (pending_.empty()) return Status::Ok();
    todo.swap(pending_);
    ++readers_in_flight_;
  }
  std::vector<std::pair<index::StudyRow, PhiFields>> loaded;
  std::vector<index::Token> gone;
  Status result = Status::Ok();
  for (auto it = todo.begin(); it != todo.end(); ++it) {
    Result<index::StudyRow> row = catalog.FindStudyByUidToken(*it);
    if (!row.ok()) {
      if (row.status().code() == Code::kNotFound) {
        gone.push_back(*it);
        continue;
      }
      result = row.status();
    } else {
      Result<PhiFields> phi = open(*row);
      if (phi.ok()) {
        loaded.emplace_back(std::move(*row), std::move(*phi));
        continue;
      }
      result = phi.status();
    }
    // Failed: keep this and the rest pending.
    std::unique_lock lock(mu_);
    for (auto rest = it; rest != todo.end(); ++rest) pending_.insert(*rest);
    break;
  }
  std::unique_lock lock(mu_);
  for (auto& [row, phi] : loaded) {
    if (tombstones_.count(row.study_uid_token) != 0) {
      pending_.insert(row.study_uid_token);  // erased meanwhile: re-read later
      continue;
    }
    InsertLocked(std::move(row), phi);
  }
  for (const index::Token& t : gone) {
    if (auto it = by_token_.find(t); it != by_token_.end()) DropLocked(it->second);
    DropHeadersLocked(t);
  }
  if (--readers_in_flight_ == 0) tombstones_.clear();
  if (overflow_) ready_.store(false, std::memory_order_release);
  return result;
}

void StudyCache::Scan(std::string_view name_prefix, const Visitor& v) const {
  std::shared_lock lock(mu_);
  // The prefix test as one masked 8-byte compare per study (a memcmp call
  // per study was a tenth of a wildcard query's CPU at 100k studies).
  const size_t n = std::min(name_prefix.size(), sizeof(uint64_t));
  char want8[8] = {};
  char mask8[8] = {};
  std::memcpy(want8, name_prefix.data(), n);
  std::memset(mask8, 0xFF, n);
  uint64_t want = 0, mask = 0;
  std::memcpy(&want, want8, sizeof(want));
  std::memcpy(&mask, mask8, sizeof(mask));
  if (n == 0) {
    for (const ScanRec& r : scan_) {
      if (!v(MakeView(*r.entry))) return;
    }
    return;
  }
  const NameBucket& b = buckets_[static_cast<unsigned char>(name_prefix[0])];
  const uint64_t* names = b.names.data();
  for (size_t i = 0, e = b.names.size(); i < e; ++i) {
    if ((names[i] & mask) != want) continue;
    if (!v(MakeView(*b.recs[i].entry))) return;
  }
}

bool StudyCache::Lookup(int64_t study_pk, index::StudyRow* row, PhiFields* phi) const {
  std::shared_lock lock(mu_);
  auto it = studies_.find(study_pk);
  if (it == studies_.end()) return false;
  View v = MakeView(it->second);
  Result<PhiFields> f = PhiFields::Decode(v.encoded);
  if (!f.ok()) return false;
  *row = it->second.row;
  *phi = std::move(*f);
  return true;
}

size_t StudyCache::size() const {
  std::shared_lock lock(mu_);
  return studies_.size();
}

size_t StudyCache::pending() const {
  std::shared_lock lock(mu_);
  return pending_.size();
}

bool StudyCache::GetHeader(const std::string& object_id, std::string* out) const {
  std::shared_lock lock(mu_);
  auto it = headers_.find(object_id);
  if (it == headers_.end()) return false;
  std::string_view v = slab_.Get(it->second.ref);
  out->assign(v.data(), v.size());
  return true;
}

void StudyCache::PutHeader(const index::Token& study_token, const std::string& object_id,
                           std::string_view header) {
  std::unique_lock lock(mu_);
  // Only for a study the cache holds or is about to re-read: Erase() removes
  // the study from both, so a header read while it was being erased is not kept.
  if ((by_token_.count(study_token) == 0 && pending_.count(study_token) == 0) ||
      headers_.count(object_id) != 0) {
    return;
  }
  if (header_bytes_ + header.size() > options_.header_bytes) return;
  std::optional<NoDumpSlab::Ref> ref = slab_.Put(header);
  if (!ref) return;
  header_bytes_ += ref->len;
  headers_.emplace(object_id, Header{study_token, *ref});
  headers_of_[study_token].push_back(object_id);
}

}  // namespace phi::services
