// phi::web::ReadAhead: runs a pull BodySource on its own producer thread, a
// bounded number of chunks ahead of the consumer (the connection's io
// thread), so that a WADO-RS stream decrypts the next object segments while
// TLS encrypts and sends the previous ones. Memory: `depth` buffers of
// `chunk_bytes`, wiped when reused and when released.
// The returned source must be pulled with spans of at least 1 byte; it
// returns the inner source's bytes in order, then 0, or the inner error.
// Releasing it (the connection ends, even mid-stream) stops and joins the
// producer. Thread-safety: the returned source is pulled by one thread at a time.
#pragma once

#include <cstddef>

#include "libphi/web/router.h"

namespace phi::web {

BodySource ReadAhead(BodySource inner, size_t chunk_bytes = 1 << 20, size_t depth = 2);

}  // namespace phi::web
