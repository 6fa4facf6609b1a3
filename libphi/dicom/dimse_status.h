// phi::dicom DIMSE status codes and the one mapping from phi::Status to a
// C-STORE response status (STYLE.md: each edge has exactly one mapping).
// Thread-safety: pure functions.
//
// Duplicates (PS3.4 B.2.3): a duplicate SOP Instance UID that the ingest
// service kept (policy keep_first) is reported as Success 0x0000, since the
// object the peer sent is durably held (identical UID), and some modalities
// treat any warning as a reason to resend. A replaced instance or one stored
// but flagged for a patient conflict is Success as well; the outcome is
// logged and audited by the ingest service.
#pragma once

#include <cstdint>

#include "libphi/services/ingest.h"
#include "libphi/util/status.h"

namespace phi::dicom {

inline constexpr uint16_t kDimseSuccess = 0x0000;
inline constexpr uint16_t kDimseOutOfResources = 0xA700;          // C-STORE refused
inline constexpr uint16_t kDimseDataSetDoesNotMatchSop = 0xA900;  // C-STORE error
inline constexpr uint16_t kDimseCannotUnderstand = 0xC000;        // C-STORE error
inline constexpr uint16_t kDimseProcessingFailure = 0x0110;       // N-ACTION failure
inline constexpr uint16_t kDimseNoSuchObjectInstance = 0x0112;    // Storage Commitment reason
inline constexpr uint16_t kDimseNoSuchActionType = 0x0123;

// Maps the result of services::Ingest::Store to a C-STORE response status.
//  OK (any outcome)                      -> 0x0000
//  ResourceExhausted, Unavailable        -> 0xA700 Refused: Out of Resources
//  InvalidArgument, Corruption           -> 0xC000 Error: Cannot understand
//  IOError, Internal, anything else      -> 0xA700 (transient: the SCU may retry)
uint16_t StoreStatusToDimse(const Status& s);

}  // namespace phi::dicom
