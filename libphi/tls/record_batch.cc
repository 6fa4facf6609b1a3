#include "libphi/tls/record_batch.h"

#include <openssl/bio.h>
#include <openssl/err.h>

#include <algorithm>
#include <climits>

namespace phi::tls {
namespace {

// A sink BIO appending to the std::string set as its data.
int BatchWrite(BIO* b, const char* data, size_t n, size_t* written) {
  static_cast<std::string*>(BIO_get_data(b))->append(data, n);
  *written = n;
  return 1;
}

long BatchCtrl(BIO*, int cmd, long, void*) { return cmd == BIO_CTRL_FLUSH ? 1 : 0; }

int BatchCreate(BIO* b) {
  BIO_set_init(b, 1);
  return 1;
}

const BIO_METHOD* BatchMethod() {
  static BIO_METHOD* m = [] {
    BIO_METHOD* bm = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "phi-record-batch");
    if (bm == nullptr) return bm;
    BIO_meth_set_write_ex(bm, BatchWrite);
    BIO_meth_set_ctrl(bm, BatchCtrl);
    BIO_meth_set_create(bm, BatchCreate);
    return bm;
  }();
  return m;
}

}  // namespace

Status RecordBatch::Attach(SSL* ssl) {
  if (ssl_ != nullptr) return Status::InvalidArgument("record batch: already attached");
  if (ssl == nullptr || SSL_is_init_finished(ssl) == 0) {
    return Status::Unavailable("record batch: the handshake is not finished");
  }
  BIO* original = SSL_get_wbio(ssl);
  if (original == nullptr || BIO_wpending(original) != 0) {
    return Status::Unavailable("record batch: output pending on the connection");
  }
  const BIO_METHOD* method = BatchMethod();
  BIO* sink = method == nullptr ? nullptr : BIO_new(method);
  if (sink == nullptr) return Status::ResourceExhausted("record batch: BIO_new failed");
  BIO_set_data(sink, &out_);
  // Our reference to the original: SSL_set0_wbio drops the SSL's one.
  BIO_up_ref(original);
  SSL_set0_wbio(ssl, sink);
  // asio::ssl releases the record buffer after every record (a malloc and a
  // free per 16 KiB); keep it while the batch runs.
  release_buffers_ = (SSL_get_mode(ssl) & SSL_MODE_RELEASE_BUFFERS) != 0;
  SSL_clear_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
  ssl_ = ssl;
  original_ = original;
  return Status::Ok();
}

Status RecordBatch::Write(std::span<const char> plain) {
  if (ssl_ == nullptr) return Status::InvalidArgument("record batch: not attached");
  ERR_clear_error();
  // SSL_MODE_ENABLE_PARTIAL_WRITE (asio sets it) returns after each record.
  while (!plain.empty()) {
    const int want = static_cast<int>(std::min<size_t>(plain.size(), INT_MAX));
    const int n = SSL_write(ssl_, plain.data(), want);
    if (n <= 0) {
      const int err = SSL_get_error(ssl_, n);
      ERR_clear_error();
      return Status::IOError("record batch: SSL_write failed (SSL error " + std::to_string(err) +
                             ")");
    }
    plain = plain.subspan(static_cast<size_t>(n));
  }
  return Status::Ok();
}

void RecordBatch::Detach() {
  if (ssl_ == nullptr) return;
  SSL_set0_wbio(ssl_, original_);  // frees the sink, hands our reference back
  if (release_buffers_) SSL_set_mode(ssl_, SSL_MODE_RELEASE_BUFFERS);
  ssl_ = nullptr;
  original_ = nullptr;
  out_.clear();
}

}  // namespace phi::tls
