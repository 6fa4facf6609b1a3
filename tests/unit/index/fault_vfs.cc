#include "tests/unit/index/fault_vfs.h"

#include <sqlite3.h>

#include <atomic>
#include <mutex>

namespace phi::index::testing {
namespace {

std::atomic<bool> g_fail_sync{false};
std::atomic<long> g_syncs{0};
std::atomic<long> g_temp_opens{0};
sqlite3_vfs* g_real = nullptr;
sqlite3_vfs g_vfs;

struct FaultFile {
  sqlite3_file base;
  // The real VFS's file follows (szOsFile bytes).
  sqlite3_file* real() { return reinterpret_cast<sqlite3_file*>(this + 1); }
};
FaultFile* F(sqlite3_file* f) { return reinterpret_cast<FaultFile*>(f); }
sqlite3_file* R(sqlite3_file* f) { return F(f)->real(); }

int Close(sqlite3_file* f) { return R(f)->pMethods->xClose(R(f)); }
int Read(sqlite3_file* f, void* b, int n, sqlite3_int64 o) {
  return R(f)->pMethods->xRead(R(f), b, n, o);
}
int Write(sqlite3_file* f, const void* b, int n, sqlite3_int64 o) {
  return R(f)->pMethods->xWrite(R(f), b, n, o);
}
int Truncate(sqlite3_file* f, sqlite3_int64 size) { return R(f)->pMethods->xTruncate(R(f), size); }
int Sync(sqlite3_file* f, int flags) {
  if (g_fail_sync.load()) return SQLITE_IOERR_FSYNC;
  g_syncs.fetch_add(1);
  return R(f)->pMethods->xSync(R(f), flags);
}
int FileSize(sqlite3_file* f, sqlite3_int64* out) { return R(f)->pMethods->xFileSize(R(f), out); }
int Lock(sqlite3_file* f, int l) { return R(f)->pMethods->xLock(R(f), l); }
int Unlock(sqlite3_file* f, int l) { return R(f)->pMethods->xUnlock(R(f), l); }
int CheckReserved(sqlite3_file* f, int* out) {
  return R(f)->pMethods->xCheckReservedLock(R(f), out);
}
int FileControl(sqlite3_file* f, int op, void* arg) {
  return R(f)->pMethods->xFileControl(R(f), op, arg);
}
int SectorSize(sqlite3_file* f) { return R(f)->pMethods->xSectorSize(R(f)); }
int DeviceCharacteristics(sqlite3_file* f) { return R(f)->pMethods->xDeviceCharacteristics(R(f)); }
int ShmMap(sqlite3_file* f, int pg, int sz, int extend, void volatile** pp) {
  return R(f)->pMethods->xShmMap(R(f), pg, sz, extend, pp);
}
int ShmLock(sqlite3_file* f, int off, int n, int flags) {
  return R(f)->pMethods->xShmLock(R(f), off, n, flags);
}
void ShmBarrier(sqlite3_file* f) { R(f)->pMethods->xShmBarrier(R(f)); }
int ShmUnmap(sqlite3_file* f, int del) { return R(f)->pMethods->xShmUnmap(R(f), del); }

// Version 2 methods: no memory-mapped I/O through the shim.
const sqlite3_io_methods kMethods = {2,
                                     Close,
                                     Read,
                                     Write,
                                     Truncate,
                                     Sync,
                                     FileSize,
                                     Lock,
                                     Unlock,
                                     CheckReserved,
                                     FileControl,
                                     SectorSize,
                                     DeviceCharacteristics,
                                     ShmMap,
                                     ShmLock,
                                     ShmBarrier,
                                     ShmUnmap,
                                     nullptr,
                                     nullptr};

int Open(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* f, int flags, int* out_flags) {
  FaultFile* ff = F(f);
  ff->base.pMethods = nullptr;
  if (name == nullptr) g_temp_opens.fetch_add(1);  // a temporary file (SQLite names it)
  int rc = g_real->xOpen(g_real, name, ff->real(), flags, out_flags);
  if (rc == SQLITE_OK && ff->real()->pMethods != nullptr) ff->base.pMethods = &kMethods;
  return rc;
}
int Delete(sqlite3_vfs*, const char* name, int sync_dir) {
  return g_real->xDelete(g_real, name, sync_dir);
}
int Access(sqlite3_vfs*, const char* name, int flags, int* out) {
  return g_real->xAccess(g_real, name, flags, out);
}
int FullPathname(sqlite3_vfs*, const char* name, int n, char* out) {
  return g_real->xFullPathname(g_real, name, n, out);
}
int Randomness(sqlite3_vfs*, int n, char* out) { return g_real->xRandomness(g_real, n, out); }
int Sleep(sqlite3_vfs*, int us) { return g_real->xSleep(g_real, us); }
int CurrentTime(sqlite3_vfs*, double* out) { return g_real->xCurrentTime(g_real, out); }
int GetLastError(sqlite3_vfs*, int n, char* out) { return g_real->xGetLastError(g_real, n, out); }
int CurrentTimeInt64(sqlite3_vfs*, sqlite3_int64* out) {
  return g_real->xCurrentTimeInt64(g_real, out);
}

}  // namespace

const char* RegisterFaultVfs() {
  static std::once_flag once;
  std::call_once(once, [] {
    g_real = sqlite3_vfs_find(nullptr);
    g_vfs = sqlite3_vfs{};
    g_vfs.iVersion = 2;
    g_vfs.szOsFile = static_cast<int>(sizeof(FaultFile)) + g_real->szOsFile;
    g_vfs.mxPathname = g_real->mxPathname;
    g_vfs.zName = "phi-fault";
    g_vfs.xOpen = Open;
    g_vfs.xDelete = Delete;
    g_vfs.xAccess = Access;
    g_vfs.xFullPathname = FullPathname;
    g_vfs.xRandomness = Randomness;
    g_vfs.xSleep = Sleep;
    g_vfs.xCurrentTime = CurrentTime;
    g_vfs.xGetLastError = GetLastError;
    g_vfs.xCurrentTimeInt64 = CurrentTimeInt64;
    sqlite3_vfs_register(&g_vfs, 0);
  });
  return "phi-fault";
}

void SetFailSync(bool fail) { g_fail_sync.store(fail); }
long SyncCount() { return g_syncs.load(); }
long TempFileOpens() { return g_temp_opens.load(); }

}  // namespace phi::index::testing
