// phi::web::ReadAheadChunks: runs a pull BodySource on its own producer
// thread, a bounded number of buffers ahead of the consumer (the
// connection's io thread), so that a WADO-RS stream decrypts the next object
// segments while TLS encrypts and sends the previous ones. The filled
// buffers themselves are lent to the consumer (no copy): each view is one
// inner pull (at most chunk_bytes), valid until the next call; its buffer then
// goes back to the producer. The views give the inner source's bytes in
// order, then an empty view, or the inner error. Memory: depth + 1 buffers of
// `chunk_bytes` (the one lent out), wiped when the source is released.
// Releasing it (the connection ends, even mid-stream) stops and joins the
// producer. Thread-safety: the returned source is called by one thread at a time.
#pragma once

#include <cstddef>

#include "libphi/web/router.h"

namespace phi::web {

ChunkSource ReadAheadChunks(BodySource inner, size_t chunk_bytes = 1 << 20, size_t depth = 2);

}  // namespace phi::web
