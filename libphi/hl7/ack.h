// phi::hl7 ACK building blocks: just enough MSH parsing to answer any HL7 v2
// message with a protocol-correct acknowledgement, and NotImplementedHandler,
// the built-in handler that refuses everything with AR until message handling
// lands. Field values copied into the ACK are checked (no control characters,
// bounded lengths); nothing here logs message content.
// Thread-safety: free functions are pure; NotImplementedHandler is thread-safe.
#pragma once

#include <atomic>
#include <string>
#include <string_view>

#include "libphi/hl7/message_handler.h"
#include "libphi/util/env.h"
#include "libphi/util/status.h"

namespace phi::hl7 {

struct MshHeader {
  char field_sep = '|';
  std::string encoding;                                   // MSH-2, e.g. "^~\&"
  std::string sending_application, sending_facility;      // MSH-3, MSH-4
  std::string receiving_application, receiving_facility;  // MSH-5, MSH-6
  std::string message_code, trigger_event;                // MSH-9.1, MSH-9.2
  std::string control_id;                                 // MSH-10
  std::string processing_id;                              // MSH-11
  std::string version;                                    // MSH-12 (first component)
  std::string accept_ack_type;       // MSH-15 (AL, NE, ER, SU; "" = original mode)
  std::string application_ack_type;  // MSH-16
  bool enhanced() const { return !accept_ack_type.empty() || !application_ack_type.empty(); }
  char component_sep() const { return encoding.empty() ? '^' : encoding[0]; }
  char subcomponent_sep() const { return encoding.size() < 4 ? '&' : encoding[3]; }
};

// Parses the MSH segment that must open `message`. InvalidArgument when there
// is none, the delimiters are unusable, MSH-10 is empty or a copied field is
// too long or holds control characters.
Result<MshHeader> ParseMsh(std::string_view message);

// An ACK for `msh`: sender and receiver swapped, MSH-9 "ACK^<trigger>^ACK",
// MSH-10 `ack_control_id`, same MSH-11/MSH-12, MSA|<code>|<MSH-10>, and when
// `code` is not "AA" an ERR segment with HL7 table 0357 `error_code` and
// `error_text` (ERR-3/4/8 for v2.5+, ERR-1 for older versions). Segments end in CR.
std::string BuildAck(const MshHeader& msh, std::string_view code, std::string_view ack_control_id,
                     SystemTime now, int error_code = 0, std::string_view error_text = {});

// Where an error was found and what it is (HL7 table 0357 code; `text` is a
// fixed wording, never message content).
struct AckError {
  int code = 207;
  std::string text;
  std::string segment = "MSH";
  size_t sequence = 1;
  size_t field = 9;
};

// Same, with an explicit error location. `code` may be an original mode code
// (AA/AE/AR) or an enhanced mode commit code (CA/CE/CR).
std::string BuildAck(const MshHeader& msh, std::string_view code, std::string_view ack_control_id,
                     SystemTime now, const AckError* error);

// Enhanced mode (MSH-15): whether an accept ACK is sent for this outcome.
// Original mode always answers.
bool WantsAcceptAck(const MshHeader& msh, bool success);

// Refuses every message: MSA|AR with ERR 200 "Unsupported message type" and
// "not implemented yet". Unreadable MSH: returns "" (connection closes).
class NotImplementedHandler : public MessageHandler {
 public:
  explicit NotImplementedHandler(Env& env) : env_(env) {}
  std::string Handle(std::string_view message, const ConnectionInfo& conn) override;

 private:
  Env& env_;
  std::atomic<uint64_t> next_id_{1};
};

}  // namespace phi::hl7
