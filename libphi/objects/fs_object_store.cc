#include "libphi/objects/fs_object_store.h"

#include <algorithm>
#include <chrono>
#include <system_error>
#include <utility>

#include "libphi/util/log.h"

namespace phi::objects {
namespace {

constexpr std::string_view kPhgSuffix = ".phg";
constexpr std::string_view kTmpSuffix = ".tmp";

// The value of the first `n` hex digits of a valid object id.
size_t HexPrefixValue(std::string_view id, size_t n) {
  size_t v = 0;
  for (size_t i = 0; i < n; ++i) {
    const char c = id[i];
    v = v * 16 + static_cast<size_t>(c <= '9' ? c - '0' : c - 'a' + 10);
  }
  return v;
}

bool IsHexPrefix(std::string_view s) {
  return s.size() == 2 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

}  // namespace

// The writer of FsObjectStore: encoder over tmp/<id>.tmp, then the durable
// publish sequence in Finish().
class FsObjectWriter final : public ObjectWriter {
 public:
  FsObjectWriter(FsObjectStore& store, std::string id, WritableFilePtr file)
      : store_(store), id_(std::move(id)), file_(std::move(file)) {}
  ~FsObjectWriter() override { Abort(); }
  FsObjectWriter(const FsObjectWriter&) = delete;
  FsObjectWriter& operator=(const FsObjectWriter&) = delete;

  Status Init(const phg::Header& header, crypto::AesGcm& aead) {
    // The leaf directory is made before the object's bytes are written: its
    // mkdir is then committed with the object's own fdatasync, and the
    // directory syncs after the rename find little left to do.
    if (Status s = store_.EnsureFanoutDir(id_, &parents_to_sync_); !s.ok()) return Fail(s);
    auto enc = PhgEncoder::Create(header, *file_, aead);
    if (!enc.ok()) return Fail(enc.status());
    encoder_ = std::move(enc).value();
    return Status::Ok();
  }

  const std::string& object_id() const override { return id_; }

  Status Append(std::span<const std::byte> data) override {
    if (!error_.ok()) return error_;
    if (done_) return Status::Internal("objects: Append after Finish/Abort");
    Status s = encoder_->Append(data);
    if (!s.ok()) return Fail(s);
    return Status::Ok();
  }

  Result<ObjectInfo> Finish() override { return AppendAndFinish({}); }

  Result<ObjectInfo> AppendAndFinish(std::span<const std::byte> tail) override {
    if (!error_.ok()) return error_;
    if (done_) return Status::Internal("objects: Finish after Finish/Abort");
    PHI_RETURN_IF_ERROR(Fail(store_.BackgroundError()));
    PHI_RETURN_IF_ERROR(Fail(encoder_->Finish(tail)));
    ObjectInfo info{id_, encoder_->plaintext_size(), encoder_->stored_size()};
    encoder_.reset();  // wipes its buffer
    if (Status s = file_->Sync(); !s.ok()) return Fail(store_.RecordBackgroundError(s));
    if (Status s = file_->Close(); !s.ok()) return Fail(store_.RecordBackgroundError(s));
    PHI_RETURN_IF_ERROR(Fail(store_.BackgroundError()));
    const Path final_path = store_.ObjectPath(id_);
    if (Status s = store_.env_.RenameFile(store_.TmpPath(id_), final_path); !s.ok()) {
      return Fail(store_.RecordBackgroundError(s));
    }
    renamed_ = true;
    // One shared batch: the leaf (for the rename) and, when not known
    // durable yet, the fan-out parents (for the mkdirs). Syncing the parents
    // after the rename instead of before it costs no extra round: on a
    // journaling filesystem the first sync commits them all.
    std::vector<Path> to_sync = std::move(parents_to_sync_);
    to_sync.insert(to_sync.begin(), final_path.parent_path());
    if (Status s = store_.dir_syncer_.SyncAll(to_sync); !s.ok()) {
      return Fail(store_.RecordBackgroundError(s));
    }
    if (to_sync.size() > 1) store_.MarkFanoutDurable(id_);
    done_ = true;
    file_.reset();
    store_.EndWrite(id_);
    return info;
  }

  void Abort() override {
    if (done_) return;
    done_ = true;
    encoder_.reset();
    if (file_ != nullptr) {
      (void)file_->Close();
      file_.reset();
    }
    // Best effort: what cannot be removed now, CleanTmp() or the start-up
    // reconciliation (objects without a catalog row) removes later.
    if (renamed_) {
      (void)store_.env_.RemoveFile(store_.ObjectPath(id_));
    } else {
      (void)store_.env_.RemoveFile(store_.TmpPath(id_));
    }
    store_.EndWrite(id_);
  }

 private:
  // Fails the writer with `s` (if not OK) and aborts it; returns `s`.
  Status Fail(Status s) {
    if (s.ok()) return s;
    if (error_.ok()) error_ = s;
    Abort();
    return s;
  }

  FsObjectStore& store_;
  const std::string id_;
  WritableFilePtr file_;
  std::unique_ptr<PhgEncoder> encoder_;
  Status error_;
  std::vector<Path> parents_to_sync_;  // fan-out dirs to sync with the leaf
  bool done_ = false;
  bool renamed_ = false;
};

Result<std::unique_ptr<FsObjectStore>> FsObjectStore::Open(const Path& root, Env& env,
                                                           FsObjectStoreOptions options) {
  PHI_RETURN_IF_ERROR(phg::ValidateSegmentSize(options.segment_size));
  if (options.spare_files > kMaxSpareFiles) {
    return Status::InvalidArgument("objects: spare_files above " + std::to_string(kMaxSpareFiles));
  }
  std::unique_ptr<FsObjectStore> store(new FsObjectStore(root, env, options));
  PHI_RETURN_IF_ERROR(env.CreateDirs(store->objects_dir_));
  PHI_RETURN_IF_ERROR(env.CreateDirs(store->tmp_dir_));
  // The 256 first-level fan-out directories (1 MiB on ext4), made once so
  // that a new leaf costs one mkdir and one parent sync.
  static constexpr char kHex[] = "0123456789abcdef";
  for (size_t i = 0; i < 256; ++i) {
    const char name[3] = {kHex[i >> 4], kHex[i & 15], '\0'};
    PHI_RETURN_IF_ERROR(env.CreateDirs(store->objects_dir_ / name));
  }
  PHI_RETURN_IF_ERROR(env.SyncDir(store->objects_dir_));
  PHI_RETURN_IF_ERROR(env.SyncDir(root));
  // One syncfs makes every leaf directory already there durable, so the
  // first object into each of them in this process needs no parent syncs.
  store->existing_dirs_durable_ = env.SyncFilesystem(root).ok();
  return store;
}

FsObjectStore::FsObjectStore(const Path& root, Env& env, FsObjectStoreOptions options)
    : root_(root),
      objects_dir_(root / "objects"),
      tmp_dir_(root / "tmp"),
      env_(env),
      options_(options),
      dir_syncer_(env) {}

Path FsObjectStore::ObjectPath(std::string_view id) const {
  return objects_dir_ / std::string(id.substr(0, 2)) / std::string(id.substr(2, 2)) /
         (std::string(id) + std::string(kPhgSuffix));
}

Path FsObjectStore::TmpPath(std::string_view id) const {
  return tmp_dir_ / (std::string(id) + std::string(kTmpSuffix));
}

Status FsObjectStore::BackgroundError() {
  std::lock_guard<std::mutex> lock(mu_);
  return bg_error_;
}

Status FsObjectStore::RecordBackgroundError(const Status& s) {
  std::lock_guard<std::mutex> lock(mu_);
  if (bg_error_.ok() && !s.ok()) {
    bg_error_ = s;
    PHI_LOG(kError, "object store: durability failure, refusing writes until reopened",
            {{"status", s}});
  }
  return s;
}

bool FsObjectStore::IsBeingWritten(std::string_view object_id) {
  std::lock_guard<std::mutex> lock(mu_);
  return in_flight_.count(std::string(object_id)) != 0;
}

void FsObjectStore::EndWrite(const std::string& object_id) {
  std::lock_guard<std::mutex> lock(mu_);
  in_flight_.erase(object_id);
}

Status FsObjectStore::EnsureFanoutDir(std::string_view id, std::vector<Path>* parents_to_sync) {
  const size_t leaf = HexPrefixValue(id, 4);
  const Path ab = objects_dir_ / std::string(id.substr(0, 2));
  const Path cd = ab / std::string(id.substr(2, 2));
  {
    std::lock_guard<std::mutex> lock(dirs_mu_);
    if (leaf_durable_.test(leaf)) return Status::Ok();
    // A leaf that existed when the store was opened was made durable by the
    // syncfs in Open (when the Env supports it). Otherwise (created by this
    // process, or no syncfs) its parent is synced once per process: a
    // previous process may have created it and died before syncing.
    if (!leaf_created_here_.test(leaf)) {
      if (existing_dirs_durable_ && env_.FileExists(cd)) {
        leaf_durable_.set(leaf);
        return Status::Ok();
      }
      leaf_created_here_.set(leaf);
    }
  }
  // CreateDirs is idempotent: concurrent writers need no lock for it.
  PHI_RETURN_IF_ERROR(env_.CreateDirs(cd));
  parents_to_sync->push_back(ab);
  return Status::Ok();
}

void FsObjectStore::SharePrefix(ObjectId& id) {
  std::lock_guard<std::mutex> lock(dirs_mu_);
  if (prefix_uses_left_ == 0) {
    prefix_ = {id[0], id[1]};  // a new random leaf
    prefix_uses_left_ = kObjectsPerLeafVisit;
  } else {
    id[0] = prefix_[0];
    id[1] = prefix_[1];
  }
  --prefix_uses_left_;
}

void FsObjectStore::MarkFanoutDurable(std::string_view id) {
  std::lock_guard<std::mutex> lock(dirs_mu_);
  leaf_durable_.set(HexPrefixValue(id, 4));
}

Result<FsObjectStore::NewFile> FsObjectStore::CreateTmpFile() {
  NewFile nf;
  PHI_RETURN_IF_ERROR(env_.RandomBytes(nf.id));
  SharePrefix(nf.id);
  const std::string id = phg::IdToHex(nf.id);
  // In flight before it exists: a CleanTmp running meanwhile leaves it alone.
  {
    std::lock_guard<std::mutex> lock(mu_);
    in_flight_.insert(id);
  }
  Result<WritableFilePtr> file = env_.NewWritableFile(TmpPath(id));
  if (!file.ok()) {
    EndWrite(id);
    return file.status();
  }
  nf.file = std::move(file).value();
  return nf;
}

std::optional<FsObjectStore::NewFile> FsObjectStore::TakeSpare() {
  if (options_.spare_files == 0) return std::nullopt;
  std::lock_guard<std::mutex> lock(spare_mu_);
  if (!spare_thread_.joinable() && !spare_stop_) {
    try {
      spare_thread_ = std::thread([this] { SpareLoop(); });
    } catch (const std::system_error& e) {
      spare_stop_ = true;  // callers create their own files
      PHI_LOG(kWarning, "object store: no thread for spare files; creating files inline",
              {{"error", log::Safe(e.what())}});
    }
  }
  spare_cv_.notify_one();
  if (spares_.empty()) return std::nullopt;
  NewFile nf = std::move(spares_.front());
  spares_.pop_front();
  return nf;
}

void FsObjectStore::SpareLoop() {
  std::unique_lock<std::mutex> lock(spare_mu_);
  bool warned = false;
  while (!spare_stop_) {
    if (spares_.size() >= options_.spare_files) {
      spare_cv_.wait(lock);
      continue;
    }
    lock.unlock();
    Status bg = BackgroundError();
    Result<NewFile> nf = bg.ok() ? CreateTmpFile() : Result<NewFile>(bg);
    lock.lock();
    if (nf.ok()) {
      spares_.push_back(std::move(nf).value());
      warned = false;
      continue;
    }
    // Callers meanwhile create their own files and see the error themselves.
    if (!warned && bg.ok()) {
      PHI_LOG(kWarning, "object store: could not create a spare file; retrying",
              {{"status", nf.status()}});
    }
    warned = true;
    spare_cv_.wait_for(lock, std::chrono::seconds(1));
  }
}

FsObjectStore::~FsObjectStore() {
  {
    std::lock_guard<std::mutex> lock(spare_mu_);
    spare_stop_ = true;
  }
  spare_cv_.notify_all();
  if (spare_thread_.joinable()) spare_thread_.join();
  for (NewFile& nf : spares_) {
    const std::string id = phg::IdToHex(nf.id);
    (void)nf.file->Close();
    nf.file.reset();
    (void)env_.RemoveFile(TmpPath(id));
    EndWrite(id);
  }
}

size_t FsObjectStore::SpareFilesForTest() {
  std::lock_guard<std::mutex> lock(spare_mu_);
  return spares_.size();
}

Result<ObjectWriterPtr> FsObjectStore::NewObject(const KeyId& study_key_id, crypto::AesGcm& aead) {
  PHI_RETURN_IF_ERROR(BackgroundError());
  phg::Header header;
  header.segment_size = options_.segment_size;
  header.study_key_id = study_key_id;
  // The nonce comes from OpenSSL's CSPRNG: its uniqueness under a study key
  // is what GCM's security rests on.
  PHI_RETURN_IF_ERROR(crypto::RandomBytes(header.base_nonce));
  std::optional<NewFile> nf = TakeSpare();
  if (!nf.has_value()) {
    PHI_ASSIGN_OR_RETURN(NewFile made, CreateTmpFile());
    nf = std::move(made);
  }
  header.object_id = nf->id;
  auto writer = std::make_unique<FsObjectWriter>(*this, phg::IdToHex(nf->id), std::move(nf->file));
  PHI_RETURN_IF_ERROR(writer->Init(header, aead));
  return ObjectWriterPtr(std::move(writer));
}

Result<ObjectReaderPtr> FsObjectStore::Open(std::string_view object_id,
                                            const KeyId& expected_key_id, crypto::AesGcm& aead) {
  PHI_ASSIGN_OR_RETURN(ObjectId id, phg::ParseId(object_id));
  const Path p = ObjectPath(object_id);
  if (!env_.FileExists(p)) return Status::NotFound("object " + std::string(object_id));
  PHI_ASSIGN_OR_RETURN(RandomAccessFilePtr file, env_.NewRandomAccessFile(p));
  return ObjectReader::Open(std::move(file), expected_key_id, aead, id);
}

Status FsObjectStore::Remove(std::string_view object_id) {
  PHI_RETURN_IF_ERROR(phg::ParseId(object_id).status());
  const Path p = ObjectPath(object_id);
  if (!env_.FileExists(p)) return Status::NotFound("object " + std::string(object_id));
  PHI_RETURN_IF_ERROR(env_.RemoveFile(p));
  if (Status s = dir_syncer_.Sync(p.parent_path()); !s.ok()) return RecordBackgroundError(s);
  return Status::Ok();
}

Result<std::vector<std::string>> FsObjectStore::ListObjectIds() {
  std::vector<std::string> ids;
  PHI_ASSIGN_OR_RETURN(std::vector<std::string> abs, env_.ListDir(objects_dir_));
  std::sort(abs.begin(), abs.end());
  for (const std::string& ab : abs) {
    if (!IsHexPrefix(ab)) continue;
    PHI_ASSIGN_OR_RETURN(std::vector<std::string> cds, env_.ListDir(objects_dir_ / ab));
    std::sort(cds.begin(), cds.end());
    for (const std::string& cd : cds) {
      if (!IsHexPrefix(cd)) continue;
      PHI_ASSIGN_OR_RETURN(std::vector<std::string> names, env_.ListDir(objects_dir_ / ab / cd));
      std::sort(names.begin(), names.end());
      for (const std::string& name : names) {
        if (name.size() != 2 * kIdBytes + kPhgSuffix.size() || !name.ends_with(kPhgSuffix)) {
          continue;
        }
        std::string id = name.substr(0, 2 * kIdBytes);
        if (!phg::ParseId(id).ok() || id.compare(0, 2, ab) != 0 || id.compare(2, 2, cd) != 0) {
          continue;
        }
        ids.push_back(std::move(id));
      }
    }
  }
  return ids;
}

Result<size_t> FsObjectStore::CleanTmp() {
  // With a durability failure recorded the state of tmp/ is unknown: leave it.
  PHI_RETURN_IF_ERROR(BackgroundError());
  PHI_ASSIGN_OR_RETURN(std::vector<std::string> names, env_.ListDir(tmp_dir_));
  size_t removed = 0;
  for (const std::string& name : names) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (name.ends_with(kTmpSuffix) &&
          in_flight_.count(name.substr(0, name.size() - kTmpSuffix.size())) != 0) {
        continue;
      }
    }
    PHI_RETURN_IF_ERROR(env_.RemoveFile(tmp_dir_ / name));
    ++removed;
  }
  if (removed > 0) {
    if (Status s = env_.SyncDir(tmp_dir_); !s.ok()) return RecordBackgroundError(s);
  }
  return removed;
}

}  // namespace phi::objects
