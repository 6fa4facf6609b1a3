// phi::tls::RecordBatch: encrypts application data of an established TLS
// connection into a batch of records held in memory, so that a bulk body goes
// out in one socket write per batch. asio::ssl writes through a 17 KiB BIO
// pair: one SSL_write, two copies and one send (and one completion) per
// 16 KiB record; a 210 MB WADO-RS study was 13,000 sends.
//
// While attached, the SSL's write BIO is the batch; Detach (or destruction)
// puts the original back. Attach only on a finished handshake with nothing
// left in the original write BIO (no write in flight) and make no other
// write on the SSL until Detach; reads and the read BIO are not touched.
// Only ciphertext is held. Not thread-safe: one connection's strand.
#pragma once

#include <openssl/ssl.h>

#include <span>
#include <string>

#include "libphi/util/status.h"

namespace phi::tls {

class RecordBatch {
 public:
  RecordBatch() = default;
  RecordBatch(const RecordBatch&) = delete;
  RecordBatch& operator=(const RecordBatch&) = delete;
  ~RecordBatch() { Detach(); }

  Status Attach(SSL* ssl);
  bool attached() const { return ssl_ != nullptr; }
  // Appends the records carrying `plain` to bytes(); an error leaves the
  // connection unusable (the caller closes it).
  Status Write(std::span<const char> plain);
  std::span<const char> bytes() const { return {out_.data(), out_.size()}; }
  // Forgets bytes() once they are sent; keeps the capacity for the next batch.
  void Clear() { out_.clear(); }
  // Restores the original write BIO. Unsent bytes() are dropped with it
  // (the stream is then out of step: only do that when closing).
  void Detach();

 private:
  SSL* ssl_ = nullptr;
  BIO* original_ = nullptr;
  bool release_buffers_ = false;
  std::string out_;
};

}  // namespace phi::tls
