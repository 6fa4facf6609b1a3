// The crash test's child: opens a real storage stack, runs recovery, then
// stores objects from 4 threads until it is killed, printing "ACK <uid> <size>"
// on stdout (a pipe) only after Store() has returned success.
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "libphi/services/storage_stack.h"
#include "libphi/util/log.h"
#include "tests/crash/crash_common.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s ROOT KEK RUN\n", argv[0]);
    return 2;
  }
  const std::string root = argv[1], kek = argv[2], run = argv[3];
  phi::log::Init(phi::log::Sink::kStderr, phi::log::Level::kWarning);
  auto stack = phi::services::StorageStack::Open(
      phi::crashtest::Keys(kek), phi::crashtest::Storage(root), phi::Env::Default());
  if (!stack.ok()) {
    std::fprintf(stderr, "open: %s\n", stack.status().ToString().c_str());
    return 1;
  }
  auto rec = (*stack)->Recover();
  if (!rec.ok()) {
    std::fprintf(stderr, "recover: %s\n", rec.status().ToString().c_str());
    return 1;
  }
  std::mutex out_mu;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      const std::string study = "1.2.826.0.1.3680043.9." + run + "." + std::to_string(t + 1);
      for (uint64_t n = 1;; ++n) {
        phi::services::InstanceAttributes a;
        a.sop_class_uid = "1.2.840.10008.5.1.4.1.1.2";
        a.transfer_syntax_uid = "1.2.840.10008.1.2.1";
        a.study_instance_uid = study;
        a.series_instance_uid = study + ".1";
        a.sop_instance_uid = study + ".1." + std::to_string(n);
        a.patient_id = "CRASH-" + run;
        a.patient_name = "CRASH^TEST";
        a.modality = "CT";
        const size_t size = phi::crashtest::SizeFor(n + static_cast<uint64_t>(t) * 7919);
        const std::string bytes = phi::crashtest::Content(a.sop_instance_uid, size);
        auto r = (*stack)->ingest().Store({"crash:child", "", ""}, a,
                                          std::as_bytes(std::span(bytes.data(), bytes.size())));
        std::lock_guard lock(out_mu);
        if (r.ok()) {
          std::printf("ACK %s %zu\n", a.sop_instance_uid.c_str(), size);
        } else {
          std::printf("ERR %s\n", r.status().ToString().c_str());
        }
        std::fflush(stdout);
      }
    });
  }
  for (auto& th : threads) th.join();
  return 0;
}
