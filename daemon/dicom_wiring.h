// daemon/dicom_wiring: admin commands over the DICOM ingest path.
//   conflicts [--after STUDY_PK] [--limit N]   (read-only)
// lists the studies flagged as patient conflicts by ingest (same
// StudyInstanceUID received with another PatientID): study_pk,
// StudyInstanceUID, counts and times. Never patient names or IDs.
// Thread-safety: the handler is thread-safe (the catalog and keys are).
#pragma once

#include "libphi/admin/admin_server.h"
#include "libphi/services/storage_stack.h"

namespace phi::daemon {

void RegisterIngestCommands(admin::AdminServer& admin, services::StorageStack& stack);

}  // namespace phi::daemon
