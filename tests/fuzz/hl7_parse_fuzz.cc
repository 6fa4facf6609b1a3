// libFuzzer target for the ER7 parser and the HL7 mapping: arbitrary bytes
// must never crash or allocate without bound; whatever parses must satisfy
// the round-trip property Parse(Write(m)) == m; the mapping to a typed event
// must either succeed or refuse with an HL7 error code; an ACK can always be
// built for a readable MSH.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "libphi/hl7/ack.h"
#include "libphi/hl7/er7.h"
#include "libphi/hl7/hl7_handler.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  phi::hl7::ParseLimits limits;
  limits.max_segment_bytes = 4096;
  limits.max_elements = 5000;
  phi::hl7::ParseError err;
  auto m = phi::hl7::Parse(in, &err, limits);
  auto msh = phi::hl7::ParseMsh(in);
  if (msh.ok()) {
    phi::hl7::AckError e{err.code, err.text, err.segment.empty() ? "MSH" : err.segment,
                         err.sequence, err.field};
    std::string ack = phi::hl7::BuildAck(*msh, "AE", "X", {}, &e);
    if (ack.empty()) abort();
  }
  if (!m.ok()) {
    if (err.code < 100 || err.code > 207) abort();
    return 0;
  }
  std::string w = phi::hl7::Write(*m);
  auto again = phi::hl7::Parse(w);
  if (!again.ok() || !(*again == *m)) abort();
  phi::hl7::Refusal refusal;
  auto ev = phi::hl7::ToEvent(*m, in, &refusal);
  if (!ev.ok() && (refusal.error.code < 100 || refusal.error.code > 207)) abort();
  return 0;
}
