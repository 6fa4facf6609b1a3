#include "libphi/dicom/dimse_status.h"

namespace phi::dicom {

uint16_t StoreStatusToDimse(const Status& s) {
  switch (s.code()) {
    case Code::kOk:
      return kDimseSuccess;
    case Code::kInvalidArgument:
    case Code::kCorruption:
      return kDimseCannotUnderstand;
    case Code::kResourceExhausted:
    case Code::kUnavailable:
    case Code::kIOError:
    case Code::kInternal:
    default:
      return kDimseOutOfResources;
  }
}

}  // namespace phi::dicom
