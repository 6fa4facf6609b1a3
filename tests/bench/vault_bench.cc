// vault_bench: the vault's durable store path against the raw disk, side by
// side in one run (the vault issue's benchmark). Not a test: it prints figures.
//
//  raw      write + fdatasync + rename + directory fsync of the same bytes,
//           no encryption, no SQLite (the disk's limit for this contract);
//  phigate  IngestService::Store: AES-256-GCM .phg object, fsync, rename,
//           directory fsync (group), catalog transaction (group commit) with
//           sealed PHI, tokens and an audit record; acknowledged when durable.
// Each with 1, 4 and 16 concurrent writers, N objects of 512 KiB (a CT slice).
// Then the object writer's AES-256-GCM throughput (no I/O) for comparison
// with `openssl speed -evp aes-256-gcm` (printed by tests/bench/vault_bench.sh).
//
// usage: phi_vault_bench DIR [objects_per_run]   (DIR on the disk to measure)
#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "libphi/crypto/crypto.h"
#include "libphi/objects/object_writer.h"
#include "libphi/objects/phg_format.h"
#include "libphi/services/storage_stack.h"
#include "libphi/util/log.h"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

constexpr size_t kObjectBytes = 512 * 1024;

std::string Payload(size_t n, uint32_t seed) {
  std::string s(n, '\0');
  std::mt19937 rng(seed);
  for (size_t i = 0; i < n; i += 4) {
    uint32_t v = rng();
    std::memcpy(&s[i], &v, std::min<size_t>(4, n - i));
  }
  return s;
}

void Die(const char* what, const phi::Status& s) {
  std::fprintf(stderr, "vault_bench: %s: %s\n", what, s.ToString().c_str());
  std::exit(1);
}

void SyncDir(const fs::path& d) {
  int fd = ::open(d.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0 || ::fsync(fd) != 0) {
    std::perror("fsync dir");
    std::exit(1);
  }
  ::close(fd);
}

// objects/00/00 .. objects/ff/ff, made before the clock starts.
void PrecreateFanout(const fs::path& root) {
  char name[3];
  for (int a = 0; a < 256; ++a) {
    std::snprintf(name, sizeof name, "%02x", a);
    const fs::path ab = root / "objects" / name;
    for (int b = 0; b < 256; ++b) {
      std::snprintf(name, sizeof name, "%02x", b);
      fs::create_directories(ab / name);
    }
  }
}

// The raw baseline: the same bytes, the same tmp -> fan-out directory layout.
double RawRun(const fs::path& root, int threads, int objects, const std::string& payload) {
  fs::create_directories(root / "tmp");
  std::atomic<int> next{0};
  auto t0 = Clock::now();
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      for (int i = next++; i < objects; i = next++) {
        char name[32];
        std::snprintf(name, sizeof name, "%08x%04x", static_cast<unsigned>(i * 2654435761u), t);
        fs::path dir = root / "objects" / std::string(name, 2) / std::string(name + 2, 2);
        fs::create_directories(dir);
        fs::path tmp = root / "tmp" / name;
        int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
        if (fd < 0 ||
            ::write(fd, payload.data(), payload.size()) != static_cast<ssize_t>(payload.size()) ||
            ::fdatasync(fd) != 0) {
          std::perror("raw write");
          std::exit(1);
        }
        ::close(fd);
        fs::rename(tmp, dir / name);
        SyncDir(dir);
      }
    });
  }
  for (auto& th : ts) th.join();
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double PhigateRun(const fs::path& root, const fs::path& kek, int threads, int objects,
                  const std::string& payload) {
  fs::create_directories(root);
  phi::config::KeysConfig keys;
  phi::config::KekConfig k;
  k.id = "bench";
  k.file = kek;
  keys.keks = {k};
  keys.active = "bench";
  phi::config::StorageConfig st;
  st.root = root;
  st.require_encrypted_volume = false;
  auto stack = phi::services::StorageStack::Open(keys, st, phi::Env::Default());
  if (!stack.ok()) Die("open", stack.status());
  std::atomic<int> next{0};
  auto t0 = Clock::now();
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      const std::string study = "1.2.826.0.1.3680043.10.7." + std::to_string(t + 1);
      for (int i = next++; i < objects; i = next++) {
        phi::services::InstanceAttributes a;
        a.sop_class_uid = "1.2.840.10008.5.1.4.1.1.2";
        a.transfer_syntax_uid = "1.2.840.10008.1.2.1";
        a.study_instance_uid = study;
        a.series_instance_uid = study + ".1";
        a.sop_instance_uid = study + ".1." + std::to_string(i + 1);
        a.patient_name = "BENCH^PATIENT";
        a.patient_id = "BENCH-" + std::to_string(t);
        a.study_date = "20261125";
        a.modality = "CT";
        auto r = (*stack)->ingest().Store({"bench", "", ""}, a,
                                          std::as_bytes(std::span(payload.data(), payload.size())));
        if (!r.ok()) Die("store", r.status());
      }
    });
  }
  for (auto& th : ts) th.join();
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  auto cs = (*stack)->catalog().stats();
  std::printf("    (catalog: %llu transactions in %llu commits)\n",
              static_cast<unsigned long long>(cs.transactions),
              static_cast<unsigned long long>(cs.commits));
  return secs;
}

// AES-256-GCM through the .phg encoder into a discarding file: the cipher
// cost of the object writer without I/O.
class DiscardFile final : public phi::WritableFile {
 public:
  phi::Status Append(std::span<const std::byte> d) override {
    bytes += d.size();
    return phi::Status::Ok();
  }
  phi::Status Sync() override { return phi::Status::Ok(); }
  phi::Status Close() override { return phi::Status::Ok(); }
  uint64_t bytes = 0;
};

double EncoderMBps() {
  std::array<std::byte, 32> key{};
  (void)phi::crypto::RandomBytes(key);
  auto gcm = phi::crypto::AesGcm::Create(key);
  if (!gcm.ok()) Die("aes", gcm.status());
  const std::string chunk = Payload(1 << 20, 7);
  DiscardFile out;
  phi::objects::phg::Header h;
  auto enc = phi::objects::PhgEncoder::Create(h, out, **gcm);
  if (!enc.ok()) Die("encoder", enc.status());
  const int kChunks = 2048;  // 2 GiB
  auto t0 = Clock::now();
  for (int i = 0; i < kChunks; ++i) {
    phi::Status s = (*enc)->Append(std::as_bytes(std::span(chunk.data(), chunk.size())));
    if (!s.ok()) Die("append", s);
  }
  if (phi::Status s = (*enc)->Finish(); !s.ok()) Die("finish", s);
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  return static_cast<double>(kChunks) * (1 << 20) / secs / 1e6;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s DIR [objects_per_run]\n", argv[0]);
    return 2;
  }
  phi::log::Init(phi::log::Sink::kStderr, phi::log::Level::kWarning);
  const fs::path dir = argv[1];
  const int objects = argc > 2 ? std::atoi(argv[2]) : 1000;
  fs::create_directories(dir);
  const fs::path kek = dir / "bench.kek";
  fs::remove(kek);
  {
    std::string k = Payload(32, 99);
    FILE* f = std::fopen(kek.c_str(), "wb");
    std::fwrite(k.data(), 1, k.size(), f);
    std::fclose(f);
    fs::permissions(kek, fs::perms::owner_read);
  }
  const std::string payload = Payload(kObjectBytes, 1);
  const double mb = objects * (kObjectBytes / 1e6);
  std::printf("vault_bench: %d objects of 512 KiB per run in %s\n\n", objects, dir.c_str());
  std::printf("%-8s %12s %10s %12s %10s %8s\n", "writers", "raw obj/s", "raw MB/s", "phigate obj/s",
              "MB/s", "ratio");
  std::printf(
      "(steady state: both roots start with all 65,536 objects/ab/cd fan-out directories,\n"
      " as a store has after its first few hundred thousand objects)\n");
  double phigate_1 = 0;
  for (int threads : {1, 4, 16}) {
    fs::remove_all(dir / "raw");
    fs::remove_all(dir / "phigate");
    PrecreateFanout(dir / "raw");
    PrecreateFanout(dir / "phigate");
    ::sync();
    double raw = RawRun(dir / "raw", threads, objects, payload);
    double phi_s = PhigateRun(dir / "phigate", kek, threads, objects, payload);
    double raw_rate = objects / raw, phi_rate = objects / phi_s;
    if (threads == 1) phigate_1 = phi_rate;
    std::printf("%-8d %12.0f %10.0f %12.0f %10.0f %8.2f\n", threads, raw_rate, mb / raw, phi_rate,
                mb / phi_s, phi_rate / raw_rate);
    if (threads == 16) {
      std::printf("\ngroup commit: 16 writers / 1 writer = %.2fx (target >= 2x)\n",
                  phi_rate / phigate_1);
    }
  }
  fs::remove_all(dir / "raw");
  fs::remove_all(dir / "phigate");
  std::printf("object writer AES-256-GCM (no I/O): %.0f MB/s\n", EncoderMBps());
  return 0;
}
