// phi::web::ReadAhead: runs a pull BodySource on its own producer thread, a
// bounded number of chunks ahead of the consumer (the connection's io
// thread), so that a WADO-RS stream decrypts the next object segments while
// TLS encrypts and sends the previous ones. Memory: `depth` buffers of
// `chunk_bytes`, wiped when reused and when released.
// A returned BodySource must be pulled with spans of at least 1 byte; it
// returns the inner source's bytes in order, then 0, or the inner error.
// Releasing it (the connection ends, even mid-stream) stops and joins the
// producer. Thread-safety: the returned source is pulled by one thread at a time.
#pragma once

#include <cstddef>

#include "libphi/web/router.h"

namespace phi::web {

BodySource ReadAhead(BodySource inner, size_t chunk_bytes = 1 << 20, size_t depth = 2);

// The same pipe handing its filled buffers themselves to the consumer (no
// copy): each view is one inner pull (at most chunk_bytes), valid until the
// next call; its buffer then goes back to the producer. Memory: depth + 1
// buffers (the one lent out), wiped when the source is released.
ChunkSource ReadAheadChunks(BodySource inner, size_t chunk_bytes = 1 << 20, size_t depth = 2);

}  // namespace phi::web
