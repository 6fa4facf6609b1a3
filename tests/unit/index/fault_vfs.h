// A SQLite VFS shim over the default unix VFS that fails xSync on demand
// (SQLITE_IOERR_FSYNC), so that tests can make a real COMMIT fail, and counts
// the syncs and temporary files that go through it.
// Thread-safety: the fault switch is atomic; register once per process.
#pragma once

namespace phi::index::testing {

// Registers the "phi-fault" VFS (idempotent) and returns its name.
const char* RegisterFaultVfs();
// While set, every xSync of a file opened through the VFS fails.
void SetFailSync(bool fail);
// Number of xSync calls that reached the real VFS (i.e. fsyncs).
long SyncCount();
// Number of files SQLite opened without a name: temporary files (spilled
// statement journals, temporary tables, sorter runs), which the default VFS
// puts in /var/tmp or $SQLITE_TMPDIR, outside the storage folder.
long TempFileOpens();

}  // namespace phi::index::testing
