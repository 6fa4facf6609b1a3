// phi_storage_readback: a test helper that opens a stopped phigated's storage
// offline (config -> services::StorageStack, the same composition the daemon
// uses) and writes every stored instance's plaintext Part 10 bytes to
// OUT/<SOPInstanceUID>.dcm, one line per instance on stdout:
//   <SOPInstanceUID> <StudyInstanceUID> <bytes> <conflict 0|1>
// Test-only: it prints UIDs (not PHI by project rule) and writes decrypted
// objects, so it is never installed.
// Usage: phi_storage_readback --config FILE --out DIR [--recover]
// Exit: 0 ok, 1 error (message on stderr), 2 usage.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "libphi/config/config.h"
#include "libphi/services/storage_stack.h"
#include "libphi/util/env.h"
#include "libphi/util/log.h"

namespace {

using phi::Result;
using phi::Status;

Status Dump(const std::string& config_file, const std::string& out_dir, bool recover) {
  phi::Env& env = phi::Env::Default();
  std::vector<phi::config::ConfigError> errors;
  PHI_ASSIGN_OR_RETURN(phi::config::Config cfg, phi::config::Load(config_file, env, &errors));
  PHI_ASSIGN_OR_RETURN(auto stack, phi::services::StorageStack::Open(cfg.keys, cfg.storage, env));
  if (recover) PHI_RETURN_IF_ERROR(stack->Recover().status());
  phi::services::QueryService& q = stack->query();
  size_t offset = 0;
  while (true) {
    phi::services::StudyQuery sq;
    sq.limit = 1000;
    sq.offset = offset;
    PHI_ASSIGN_OR_RETURN(auto studies, q.FindStudies(sq));
    for (const auto& study : studies) {
      const std::string& study_uid = study.phi.Get("StudyInstanceUID");
      PHI_ASSIGN_OR_RETURN(auto instances, q.ListInstances(study_uid));
      for (const auto& inst : instances) {
        const std::string& sop = inst.phi.Get("SOPInstanceUID");
        if (sop.empty() || sop.find('/') != std::string::npos || sop[0] == '.') {
          return Status::Corruption("instance without a usable SOPInstanceUID");
        }
        PHI_ASSIGN_OR_RETURN(auto opened, q.OpenInstance(sop));
        std::ofstream f(out_dir + "/" + sop + ".dcm", std::ios::binary | std::ios::trunc);
        if (!f) return Status::IOError("cannot write to " + out_dir);
        uint64_t n = 0;
        PHI_RETURN_IF_ERROR(opened.reader->ReadAll([&](std::span<const std::byte> chunk) {
          f.write(reinterpret_cast<const char*>(chunk.data()),
                  static_cast<std::streamsize>(chunk.size()));
          n += chunk.size();
          return f ? Status::Ok() : Status::IOError("short write");
        }));
        f.close();
        std::printf("%s %s %llu %d\n", sop.c_str(), study_uid.c_str(),
                    static_cast<unsigned long long>(n), study.row.conflict ? 1 : 0);
      }
    }
    if (studies.size() < sq.limit) break;
    offset += studies.size();
  }
  return Status::Ok();
}

}  // namespace

int main(int argc, char** argv) {
  std::string config, out;
  bool recover = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
      config = argv[++i];
    } else if (std::strcmp(argv[i], "--out") == 0 && i + 1 < argc) {
      out = argv[++i];
    } else if (std::strcmp(argv[i], "--recover") == 0) {
      recover = true;
    } else {
      config.clear();
      break;
    }
  }
  if (config.empty() || out.empty()) {
    std::fprintf(stderr, "usage: phi_storage_readback --config FILE --out DIR [--recover]\n");
    return 2;
  }
  phi::log::Init(phi::log::Sink::kStderr, phi::log::Level::kWarning);
  Status s = Dump(config, out, recover);
  if (!s.ok()) {
    std::fprintf(stderr, "phi_storage_readback: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
