// phi::services::RotateKek: rewraps every study key (and the derivation
// secret) under the vault's active KEK, in batches, each batch one catalog
// transaction with one audit record. Resumable: a crash mid-way leaves some
// keys under the old KEK and some under the new one, both of which the vault
// (configured with both KEKs) opens; running it again skips the keys already
// rewrapped. Once it reports `remaining == 0`, the old KEK can be removed
// from the configuration.
// Thread-safety: run one rotation at a time (the admin command serialises).
#pragma once

#include <cstddef>
#include <functional>
#include <string>

#include "libphi/index/catalog.h"
#include "libphi/vault/key_vault.h"

namespace phi::services {

struct RotationReport {
  size_t examined = 0;
  size_t rewrapped = 0;
  size_t batches = 0;
  bool derivation_secret_rewrapped = false;
};

// progress(examined, rewrapped) after each batch.
Result<RotationReport> RotateKek(vault::KeyVault& vault, index::Catalog& catalog,
                                 const std::string& actor, size_t batch_size = 256,
                                 const std::function<void(size_t, size_t)>& progress = {});

}  // namespace phi::services
