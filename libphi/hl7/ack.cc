#include "libphi/hl7/ack.h"

#include <cctype>
#include <chrono>
#include <ctime>
#include <vector>

namespace phi::hl7 {
namespace {

constexpr size_t kMaxControlId = 199;  // ST, HL7 v2.5+
constexpr size_t kMaxField = 256;

bool Clean(std::string_view s, size_t max) {
  if (s.size() > max) return false;
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return false;
  }
  return true;
}

std::vector<std::string_view> Split(std::string_view s, char sep) {
  std::vector<std::string_view> r;
  size_t b = 0;
  for (;;) {
    size_t e = s.find(sep, b);
    r.push_back(s.substr(b, e == std::string_view::npos ? std::string_view::npos : e - b));
    if (e == std::string_view::npos) return r;
    b = e + 1;
  }
}

std::string_view Component(std::string_view field, char sep, size_t index) {
  auto parts = Split(field, sep);
  return index < parts.size() ? parts[index] : std::string_view();
}

std::string Timestamp(SystemTime now) {
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y%m%d%H%M%S+0000", &tm);
  return buf;
}

// True for versions before 2.5 ("2.1" .. "2.4"), which use ERR-1.
bool OldErrSegment(std::string_view version) {
  return version.size() >= 3 && version[0] == '2' && version[1] == '.' && version[2] >= '1' &&
         version[2] <= '4' && (version.size() == 3 || version[3] == '.');
}

std::string_view ErrorName(int code) {
  switch (code) {
    case 0:
      return "Message accepted";
    case 100:
      return "Segment sequence error";
    case 101:
      return "Required field missing";
    case 102:
      return "Data type error";
    case 103:
      return "Table value not found";
    case 200:
      return "Unsupported message type";
    case 201:
      return "Unsupported event code";
    case 202:
      return "Unsupported processing id";
    case 203:
      return "Unsupported version id";
    case 204:
      return "Unknown key identifier";
    case 205:
      return "Duplicate key identifier";
    case 206:
      return "Application record locked";
    case 207:
      return "Application internal error";
    default:
      return "Application error";
  }
}

}  // namespace

Result<MshHeader> ParseMsh(std::string_view message) {
  size_t seg_end = message.find_first_of("\r\n");
  std::string_view seg = message.substr(0, seg_end);
  if (seg.size() < 8 || seg.substr(0, 3) != "MSH") {
    return Status::InvalidArgument("hl7: no MSH segment");
  }
  MshHeader h;
  h.field_sep = seg[3];
  unsigned char fs = static_cast<unsigned char>(h.field_sep);
  if (fs < 0x21 || fs > 0x7e || std::isalnum(fs)) {
    return Status::InvalidArgument("hl7: bad field separator");
  }
  auto fields = Split(seg, h.field_sep);
  // fields[0] = "MSH", fields[1] = MSH-2, fields[n] = MSH-(n+1).
  if (fields.size() < 10) return Status::InvalidArgument("hl7: MSH too short");
  std::string_view enc = fields[1];
  if (enc.size() < 4 || enc.size() > 5 || !Clean(enc, 5)) {
    return Status::InvalidArgument("hl7: bad encoding characters");
  }
  for (size_t a = 0; a < enc.size(); ++a) {
    if (enc[a] == h.field_sep || std::isalnum(static_cast<unsigned char>(enc[a]))) {
      return Status::InvalidArgument("hl7: bad encoding characters");
    }
    for (size_t b = a + 1; b < enc.size(); ++b) {
      if (enc[a] == enc[b]) return Status::InvalidArgument("hl7: bad encoding characters");
    }
  }
  h.encoding = std::string(enc);
  auto field = [&](size_t msh_n) -> std::string_view {
    size_t i = msh_n - 1;
    return i < fields.size() ? fields[i] : std::string_view();
  };
  for (size_t n : {3, 4, 5, 6, 9, 11, 12}) {
    if (!Clean(field(n), kMaxField)) return Status::InvalidArgument("hl7: bad MSH field");
  }
  if (field(10).empty() || !Clean(field(10), kMaxControlId)) {
    return Status::InvalidArgument("hl7: bad MSH-10");
  }
  h.sending_application = field(3);
  h.sending_facility = field(4);
  h.receiving_application = field(5);
  h.receiving_facility = field(6);
  h.message_code = Component(field(9), h.component_sep(), 0);
  h.trigger_event = Component(field(9), h.component_sep(), 1);
  h.control_id = field(10);
  h.processing_id = field(11);
  h.version = Component(field(12), h.component_sep(), 0);
  for (size_t n : {15, 16}) {
    if (!Clean(field(n), 8)) return Status::InvalidArgument("hl7: bad MSH-15/16");
  }
  h.accept_ack_type = field(15);
  h.application_ack_type = field(16);
  return h;
}

std::string BuildAck(const MshHeader& msh, std::string_view code, std::string_view ack_control_id,
                     SystemTime now, int error_code, std::string_view error_text) {
  if (code == "AA" || code == "CA") return BuildAck(msh, code, ack_control_id, now, nullptr);
  AckError e;
  e.code = error_code;
  e.text = std::string(error_text);
  return BuildAck(msh, code, ack_control_id, now, &e);
}

bool WantsAcceptAck(const MshHeader& msh, bool success) {
  if (!msh.enhanced() || msh.accept_ack_type.empty()) return true;
  const std::string& t = msh.accept_ack_type;
  if (t == "NE") return false;
  if (t == "ER") return !success;
  if (t == "SU") return success;
  return true;  // AL or unknown: always
}

std::string BuildAck(const MshHeader& msh, std::string_view code, std::string_view ack_control_id,
                     SystemTime now, const AckError* error) {
  const char f = msh.field_sep;
  const char c = msh.component_sep();
  const char s = msh.subcomponent_sep();
  std::string a;
  a += "MSH";
  a += f;
  a += msh.encoding;
  for (const std::string* v : {&msh.receiving_application, &msh.receiving_facility,
                               &msh.sending_application, &msh.sending_facility}) {
    a += f;
    a += *v;
  }
  a += f;
  a += Timestamp(now);
  a += f;  // MSH-8 security
  a += f;
  a += "ACK";
  a += c;
  a += msh.trigger_event;
  a += c;
  a += "ACK";
  a += f;
  a += ack_control_id;
  a += f;
  a += msh.processing_id;
  a += f;
  a += msh.version;
  if (msh.enhanced()) {
    a += std::string(3, f);
    a += "NE";  // MSH-15: no accept ack for this ACK
    a += f;
    a += "NE";  // MSH-16
  }
  a += '\r';

  const bool old = OldErrSegment(msh.version);
  a += "MSA";
  a += f;
  a += code;
  a += f;
  a += msh.control_id;
  if (old && error != nullptr && !error->text.empty()) {
    a += f;
    a += error->text;  // MSA-3 text message (withdrawn in v2.5)
  }
  a += '\r';
  if (error != nullptr) {
    std::string err_code = std::to_string(error->code);
    std::string_view err_name = ErrorName(error->code);
    std::string seq = std::to_string(error->sequence);
    std::string fld = std::to_string(error->field);
    a += "ERR";
    a += f;
    if (old) {
      // ERR-1 (ELD): segment ID ^ sequence ^ field position ^ code&text&table.
      a += error->segment + c + seq + c + fld + c + err_code + s + std::string(err_name) + s +
           "HL70357";
    } else {
      // ERR-2 location, ERR-3 error code (CWE), ERR-4 severity, ERR-8 user message.
      a += f;
      a += error->segment + c + seq;
      if (error->field > 0) a += c + fld;
      a += f;
      a += err_code + c + std::string(err_name) + c + "HL70357";
      a += f;
      a += "E";
      a += std::string(4, f);
      a += error->text;
    }
    a += '\r';
  }
  return a;
}

std::string NotImplementedHandler::Handle(std::string_view message, const ConnectionInfo& conn) {
  (void)conn;
  auto msh = ParseMsh(message);
  if (!msh.ok()) return {};
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(env_.Now().time_since_epoch());
  std::string id = "PHI" + std::to_string(ms.count()) + "." + std::to_string(next_id_.fetch_add(1));
  return BuildAck(*msh, "AR", id, env_.Now(), 200, "unsupported / not implemented yet");
}

}  // namespace phi::hl7
