// phi::web::Dicomweb: the DICOMweb routes of the viewer API (PS3.18) on the
// Router - QIDO-RS search, WADO-RS retrieve (instances streamed from the
// vault as multipart/related in bounded memory, /metadata, /frames), STOW-RS
// store through services::Ingest, DELETE (admin erasure) and /metrics.
// Authorisation is by role on each route; the `share` role only ever sees
// de-identified data (services::Deidentifier, PS3.15 Annex E Basic profile):
// its UIDs are mapped both ways, identity matching keys are refused, objects
// flagged BurnedInAnnotation=YES are withheld. Every request that touches a
// study is audited (actor = certificate subject, action, the pks of the
// studies it disclosed, outcome; AuditObjects) in one catalog transaction
// before the response is sent.
// Problem bodies carry fixed titles only (no UIDs, no query text).
// Thread-safety: handlers run concurrently on the io threads; the UID map is
// guarded by a mutex; everything else is immutable or a thread-safe service.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "libphi/index/catalog.h"
#include "libphi/services/deid.h"
#include "libphi/services/erasure_service.h"
#include "libphi/services/ingest_service.h"
#include "libphi/services/query_service.h"
#include "libphi/util/env.h"
#include "libphi/vault/key_vault.h"
#include "libphi/web/router.h"
#include "libphi/web/web_metrics.h"

namespace phi::web {

struct DicomwebOptions {
  // Apply the study's current (HL7-updated) patient demographics to the
  // Patient module of returned metadata and instances.
  bool apply_demographic_updates = true;
  services::DeidOptions deid;
  size_t max_stow_parts = 10000;
  // Largest instance rewritten in memory (share de-identification,
  // demographics, frames). Larger ones are refused for those paths (413).
  uint64_t max_rewrite_bytes = 1ull << 30;
};

struct DicomwebDeps {
  services::QueryService& query;
  services::IngestService& ingest;
  services::ErasureService& erasure;
  index::Catalog& catalog;
  const vault::KeyVault& vault;
  Env& env;
  std::shared_ptr<WebMetrics> metrics;  // for /metrics; may be null
};

// The audit objects of a request that disclosed `study_pks`: "study:<pk>"
// joined by spaces (the grammar of other multi-object records, e.g.
// "study:12 object:ab"), in order, as few strings as fit `max_bytes` each
// (one per request up to ~80 studies at the audit bound of 1 KiB). Empty
// when there are no pks.
std::vector<std::string> AuditObjects(const std::vector<int64_t>& study_pks, size_t max_bytes);

class Dicomweb {
 public:
  // Adds the DICOMweb, DELETE and /metrics routes to `router`. The returned
  // object is shared by the handlers; deps must outlive the router's server.
  static std::shared_ptr<Dicomweb> AddRoutes(Router& router, DicomwebDeps deps,
                                             DicomwebOptions options);
  struct Impl;

 private:
  explicit Dicomweb(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

}  // namespace phi::web
