#include "libphi/web/read_ahead.h"

#include <openssl/crypto.h>

#include <condition_variable>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace phi::web {
namespace {

class Pipe {
 public:
  Pipe(BodySource inner, size_t chunk_bytes, size_t depth)
      : inner_(std::move(inner)), chunk_bytes_(chunk_bytes), depth_(depth) {
    thread_ = std::thread([this] { Produce(); });
  }
  ~Pipe() {
    {
      std::lock_guard l(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
    for (auto& b : ready_) OPENSSL_cleanse(b.data.data(), b.data.size());
    for (auto& b : free_) OPENSSL_cleanse(b.data(), b.size());
    OPENSSL_cleanse(cur_.data.data(), cur_.data.size());
  }
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;

  // The next filled buffer itself; the previous one goes back to the producer.
  Result<std::span<const char>> Next() {
    std::unique_lock l(mu_);
    if (!cur_.data.empty()) {
      free_.push_back(std::move(cur_.data));
      cur_ = Buf{};
      cv_.notify_all();
    }
    if (done_) return std::span<const char>();
    cv_.wait(l, [&] { return !ready_.empty() || finished_; });
    if (ready_.empty()) {
      done_ = true;
      if (!status_.ok()) return status_;
      return std::span<const char>();
    }
    cur_ = std::move(ready_.front());
    ready_.pop_front();
    cv_.notify_all();
    return std::span<const char>(cur_.data.data(), cur_.len);
  }

 private:
  struct Buf {
    std::vector<char> data;
    size_t len = 0;
  };

  void Produce() {
    for (;;) {
      std::vector<char> buf;
      {
        std::unique_lock l(mu_);
        cv_.wait(l, [&] { return stop_ || ready_.size() < depth_; });
        if (stop_) return;
        if (!free_.empty()) {
          buf = std::move(free_.back());
          free_.pop_back();
        }
      }
      if (buf.empty()) buf.resize(chunk_bytes_);
      Result<size_t> n = inner_(std::span<char>(buf.data(), buf.size()));
      std::lock_guard l(mu_);
      if (!n.ok() || *n == 0) {
        if (!n.ok()) status_ = n.status();
        OPENSSL_cleanse(buf.data(), buf.size());
        finished_ = true;
        cv_.notify_all();
        inner_ = nullptr;  // releases readers and keys held by the source
        return;
      }
      ready_.push_back(Buf{std::move(buf), *n});
      cv_.notify_all();
    }
  }

  BodySource inner_;  // used by the producer thread only
  const size_t chunk_bytes_;
  const size_t depth_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Buf> ready_;                // guarded by mu_
  std::vector<std::vector<char>> free_;  // guarded by mu_
  bool stop_ = false;                    // guarded by mu_
  bool finished_ = false;                // guarded by mu_
  Status status_ = Status::Ok();         // guarded by mu_
  Buf cur_;                              // consumer only: the buffer lent out
  bool done_ = false;                    // consumer only
  std::thread thread_;
};

}  // namespace

ChunkSource ReadAheadChunks(BodySource inner, size_t chunk_bytes, size_t depth) {
  auto pipe = std::make_shared<Pipe>(std::move(inner), chunk_bytes, depth < 1 ? 1 : depth);
  return [pipe]() { return pipe->Next(); };
}

}  // namespace phi::web
