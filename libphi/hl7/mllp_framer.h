// phi::hl7::MllpFramer: incremental decoder of MLLP (HL7 v2 Minimal Lower
// Layer Protocol: <VT=0x0B> message <FS=0x1C><CR=0x0D>) and its encoder.
//
// The size cap is enforced while reading: the framer never holds more than
// max_message_bytes of one message, so a peer that never sends FS costs at
// most that much memory before the stream is declared broken. Bytes outside a
// frame (e.g. CR LF between frames) are skipped and counted; more than
// max_message_bytes of them in a row is an error too. Errors are sticky: the
// connection is beyond repair once framing is lost.
// Thread-safety: none; one framer per connection.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>

#include "libphi/util/status.h"

namespace phi::hl7 {

inline constexpr char kMllpStart = 0x0B;
inline constexpr char kMllpEnd1 = 0x1C;
inline constexpr char kMllpEnd2 = 0x0D;

class MllpFramer {
 public:
  // REQUIRES: max_message_bytes > 0.
  explicit MllpFramer(size_t max_message_bytes) : max_(max_message_bytes) {}

  // Consumes `bytes`, appending every message completed by them (framing
  // removed) to `out`. ResourceExhausted when a message exceeds the cap,
  // InvalidArgument on broken framing (VT inside a frame, FS not followed by CR).
  Status Feed(std::string_view bytes, std::deque<std::string>* out);

  bool in_frame() const { return state_ != State::kIdle; }
  size_t buffered_bytes() const { return msg_.size(); }
  uint64_t skipped_bytes() const { return skipped_total_; }
  uint64_t messages() const { return messages_; }
  const Status& error() const { return error_; }

 private:
  enum class State { kIdle, kInFrame, kSawFs };
  Status Fail(Status s);

  const size_t max_;
  State state_ = State::kIdle;
  std::string msg_;
  uint64_t skipped_run_ = 0;
  uint64_t skipped_total_ = 0;
  uint64_t messages_ = 0;
  Status error_;
};

// <VT> message <FS><CR>.
std::string MllpEncode(std::string_view message);

}  // namespace phi::hl7
