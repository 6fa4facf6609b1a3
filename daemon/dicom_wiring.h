// daemon/dicom_wiring: admin commands over the DICOM ingest path.
//   conflicts [--after STUDY_PK] [--limit N]   (read-only)
// lists the studies flagged as patient conflicts by ingest (same
// StudyInstanceUID received with another PatientID): study_pk,
// StudyInstanceUID, counts and times. Never patient names or IDs.
// DicomOptions(): the DicomServer options phigated runs with; its audit hook
// appends one audit record (DESIGN "Audit": login failures) per rejected
// association, failed TLS handshake and aborted association. Stores are
// audited by ingest, in the store's own transaction.
// Thread-safety: the handler and the hook are thread-safe (the catalog and keys are).
#pragma once

#include "libphi/admin/admin_server.h"
#include "libphi/dicom/dicom_server.h"
#include "libphi/services/storage_stack.h"

namespace phi::daemon {

dicom::DicomServerOptions DicomOptions(services::StorageStack& stack);

void RegisterIngestCommands(admin::AdminServer& admin, services::StorageStack& stack);

}  // namespace phi::daemon
