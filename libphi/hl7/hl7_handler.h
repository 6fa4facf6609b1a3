// phi::hl7::Hl7MessageHandler: the MessageHandler behind Hl7Server once
// storage is open. For each message: read the MSH (none -> close), parse
// the whole message with the bounded ER7 parser, map ADT / ORM / OMI / ORU
// to typed services::Hl7Event structs (services never parse HL7), call
// services::Hl7Service::Apply (durable, group-committed), and answer:
//   AA (enhanced mode: CA)  only after the commit;
//   AE (CE)  malformed content or missing required fields, with ERR code and location;
//   AR (CR)  unsupported message type / event / version / processing id.
// Enhanced mode (MSH-15/16 present): accept acknowledgement per MSH-15 (AL, NE,
// ER, SU); application acknowledgements are not sent (MSH-16 is answered by
// the accept ACK only). Never logs message content.
//
// Field mapping (see libphi/hl7/README.md): PID-3.1/3.4 patient ID/issuer
// (PID-2 fallback), PID-5 name (XPN -> DICOM PN), PID-7 birth date, PID-8 sex;
// MRG-1.1 prior patient ID; ORC-1 order control (NW; CA, DC, OC, CR; XO, XX);
// accession IPC-1 / OBR-18 / ORC-3 / OBR-3; modality IPC-5 / OBR-24; AE
// IPC-9 / OBR-21; date/time TQ1-7 / OBR-36 / ORC-7.4 / OBR-7; OBX-5 report text.
// Thread-safety: thread-safe (Handle is called concurrently for different connections).
#pragma once

#include <atomic>
#include <string>

#include "libphi/hl7/ack.h"
#include "libphi/hl7/er7.h"
#include "libphi/hl7/message_handler.h"
#include "libphi/services/hl7_service.h"

namespace phi::hl7 {

// A refusal decided while mapping a message (code AE or AR + ERR).
struct Refusal {
  bool reject = false;  // AR (CR) rather than AE (CE)
  AckError error;
};

// Maps a parsed message to the service's typed event, or a refusal.
// Exposed for tests and the fuzzer.
Result<services::Hl7Event> ToEvent(const Message& m, std::string_view raw, Refusal* refusal);

#define PHI_HL7_HANDLER_STATS(X) \
  X(messages)                    \
  X(accepted)                    \
  X(errors)                      \
  X(rejected)                    \
  X(unreadable)

struct Hl7HandlerStats {
#define PHI_HL7_HANDLER_FIELD(n) uint64_t n = 0;
  PHI_HL7_HANDLER_STATS(PHI_HL7_HANDLER_FIELD)
#undef PHI_HL7_HANDLER_FIELD
};

class Hl7MessageHandler : public MessageHandler {
 public:
  Hl7MessageHandler(services::Hl7Service& service, Env& env) : service_(service), env_(env) {}
  // Blocks until the ACK is known (tests, fuzzer); Hl7Server calls HandleAsync.
  std::string Handle(std::string_view message, const ConnectionInfo& conn) override;
  // Parses, maps and validates on the calling thread, queues the durable
  // transaction (services::Hl7Service::ApplyAsync) and returns; `done` gets
  // the ACK once the commit is durable (AA) or failed (AE 207), on the
  // catalog's writer thread - or at once for refusals. Wipes `message`.
  void HandleAsync(std::string message, const ConnectionInfo& conn, AckCallback done) override;
  Hl7HandlerStats stats() const;

 private:
  std::string NextControlId();
  std::string Answer(const MshHeader& msh, bool ok, bool reject, const AckError* err);

  services::Hl7Service& service_;
  Env& env_;
  std::atomic<uint64_t> next_id_{1};
#define PHI_HL7_HANDLER_ATOMIC(n) std::atomic<uint64_t> n##_{0};
  PHI_HL7_HANDLER_STATS(PHI_HL7_HANDLER_ATOMIC)
#undef PHI_HL7_HANDLER_ATOMIC
};

}  // namespace phi::hl7
