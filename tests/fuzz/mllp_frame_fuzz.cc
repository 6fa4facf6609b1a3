// libFuzzer target for phi::hl7::MllpFramer and the MSH/ACK path: arbitrary
// bytes, fed in arbitrary chunk sizes, must never crash, never buffer more than
// the cap, and every message produced must respect it.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <string_view>

#include "libphi/hl7/ack.h"
#include "libphi/hl7/mllp_framer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const size_t cap = 1 + data[0] % 64 * 16;  // 1..1009 bytes
  const size_t chunk = 1 + data[1] % 32;
  std::string_view in(reinterpret_cast<const char*>(data + 2), size - 2);
  phi::hl7::MllpFramer framer(cap);
  std::deque<std::string> out;
  for (size_t i = 0; i < in.size(); i += chunk) {
    phi::Status s = framer.Feed(in.substr(i, chunk), &out);
    if (framer.buffered_bytes() > cap) std::abort();
    if (!s.ok()) break;
  }
  for (const auto& m : out) {
    if (m.size() > cap) std::abort();
    auto msh = phi::hl7::ParseMsh(m);
    if (msh.ok()) {
      std::string ack = phi::hl7::BuildAck(*msh, "AR", "X", {}, 200, "t");
      if (ack.find('\x0b') != std::string::npos || ack.find('\x1c') != std::string::npos) {
        std::abort();  // framing bytes must never be echoed into an ACK
      }
    }
  }
  return 0;
}
