#include "libphi/audit/audit_atna.h"

#include <openssl/evp.h>

#include <cstdio>
#include <string_view>

#include "libphi/audit/audit_export.h"

namespace phi::audit {
namespace {

struct EventCode {
  const char* code;
  const char* text;
  char action;  // EventActionCode
};

// DICOM PS3.16 CID 400 (Audit Event ID) codes, by our action vocabulary.
EventCode CodeFor(std::string_view action) {
  if (action == "store" || action == "stow" || action == "forward") {
    return {"110104", "DICOM Instances Transferred", 'C'};
  }
  if (action == "retrieve" || action == "read" || action == "open" || action == "wado") {
    return {"110103", "DICOM Instances Accessed", 'R'};
  }
  if (action == "query" || action == "find" || action == "qido") return {"110112", "Query", 'E'};
  if (action == "erase" || action == "retention_erase") {
    return {"110105", "DICOM Study Deleted", 'D'};
  }
  if (action == "login_failure" || action == "admin_connect" || action == "handshake_failure" ||
      action == "login") {
    return {"110114", "User Authentication", 'E'};
  }
  if (action.rfind("audit", 0) == 0) return {"110101", "Audit Log Used", 'R'};
  if (action == "config_reload" || action == "rotate_kek" || action == "legal_hold" ||
      action.rfind("admin", 0) == 0) {
    return {"110113", "Security Alert", 'E'};
  }
  if (action == "update" || action == "hl7_update") {
    return {"110103", "DICOM Instances Accessed", 'U'};
  }
  return {"110100", "Application Activity", 'E'};
}

int OutcomeIndicator(std::string_view outcome) {
  if (outcome == "ok") return 0;
  if (outcome == "denied") return 4;
  return 8;
}

// XML attribute value: escapes markup, drops control characters (XML 1.0
// cannot carry them, and they would break the one-line framing).
std::string Attr(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        if (u < 0x20 || u == 0x7f) {
          out += ' ';
        } else {
          out += c;
        }
    }
  }
  return out;
}

// RFC 5424 PARAM-VALUE: escape '"', '\' and ']'.
std::string SdValue(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\' || c == ']') out += '\\';
    out += c;
  }
  return out;
}

// RFC 5424 HOSTNAME / APP-NAME: PRINTUSASCII without spaces, bounded; "-" if empty.
std::string Token(std::string_view s, size_t max) {
  std::string out;
  for (char c : s) {
    if (out.size() >= max) break;
    if (c > 32 && c < 127) out += c;
  }
  return out.empty() ? "-" : out;
}

std::string Base64(std::string_view s) {
  std::string out(4 * ((s.size() + 2) / 3) + 1, '\0');
  int n =
      EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                      reinterpret_cast<const unsigned char*>(s.data()), static_cast<int>(s.size()));
  out.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return out;
}

std::string Hex(const crypto::Digest& d) {
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (std::byte b : d) {
    out += kHex[static_cast<uint8_t>(b) >> 4];
    out += kHex[static_cast<uint8_t>(b) & 0xf];
  }
  return out;
}

}  // namespace

std::string ToAtnaXml(const AuditRecord& r, const AtnaOptions& opts) {
  const EventCode ev = CodeFor(r.action);
  const std::string source = opts.audit_source_id.empty()
                                 ? Token(opts.app_name, 48) + "@" + Token(opts.hostname, 255)
                                 : opts.audit_source_id;
  std::string x = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><AuditMessage>";
  x += "<EventIdentification EventActionCode=\"";
  x += ev.action;
  x += "\" EventDateTime=\"" + FormatTimeUs(r.time_us) + "\" EventOutcomeIndicator=\"" +
       std::to_string(OutcomeIndicator(r.outcome)) + "\">";
  x += "<EventID csd-code=\"" + std::string(ev.code) + "\" codeSystemName=\"DCM\" originalText=\"" +
       ev.text + "\"/>";
  x += "<EventTypeCode csd-code=\"" + Attr(r.action) +
       "\" codeSystemName=\"phigate\" originalText=\"" + Attr(r.action) + "\"/>";
  x += "</EventIdentification>";
  x += "<ActiveParticipant UserID=\"" + Attr(r.actor) + "\" UserIsRequestor=\"true\"";
  if (!r.peer.empty()) {
    std::string host = r.peer;
    // "10.1.2.3:51234" / "[::1]:5" -> the address only.
    if (host[0] == '[') {
      size_t e = host.find(']');
      host = host.substr(1, e == std::string::npos ? std::string::npos : e - 1);
    } else if (size_t c = host.rfind(':'); c != std::string::npos && host.find(':') == c) {
      host.resize(c);
    }
    x += " NetworkAccessPointID=\"" + Attr(host) + "\" NetworkAccessPointTypeCode=\"2\"";
  }
  x += "/>";
  x += "<ActiveParticipant UserID=\"" + Attr(source) +
       "\" UserIsRequestor=\"false\"><RoleIDCode csd-code=\"110153\" codeSystemName=\"DCM\" "
       "originalText=\"Source Role ID\"/></ActiveParticipant>";
  x += "<AuditSourceIdentification AuditSourceID=\"" + Attr(source) +
       "\"><AuditSourceTypeCode csd-code=\"4\" codeSystemName=\"DCM\" originalText=\"Application "
       "Server Process\"/></AuditSourceIdentification>";
  if (!r.object.empty() || !r.detail.empty()) {
    x += "<ParticipantObjectIdentification ParticipantObjectID=\"" +
         Attr(r.object.empty() ? "-" : r.object) +
         "\" ParticipantObjectTypeCode=\"2\" ParticipantObjectTypeCodeRole=\"13\">";
    x += "<ParticipantObjectIDTypeCode csd-code=\"phigate-id\" codeSystemName=\"phigate\" "
         "originalText=\"phigate internal id\"/>";
    x += "<ParticipantObjectName>" + Attr(r.object.empty() ? "-" : r.object) +
         "</ParticipantObjectName>";
    if (!r.detail.empty()) {
      x += "<ParticipantObjectDetail type=\"detail\" value=\"" + Base64(r.detail) + "\"/>";
    }
    x += "</ParticipantObjectIdentification>";
  }
  x += "</AuditMessage>";
  return x;
}

namespace {

// RFC 5424 HEADER SP STRUCTURED-DATA SP, shared by both payloads. Built with
// appends (GCC 12 -O3 warns falsely, -Wrestrict, on "<" + std::string&&).
std::string SyslogPrefix(const AuditRecord& r, const AtnaOptions& opts, std::string_view msgid) {
  const int pri = 10 * 8 + (OutcomeIndicator(r.outcome) == 0 ? 5 : 4);
  std::string s;
  s.reserve(256);
  s += '<';
  s += std::to_string(pri);
  s += ">1 ";
  s += FormatTimeUs(r.time_us);
  s += ' ';
  s += Token(opts.hostname, 255);
  s += ' ';
  s += Token(opts.app_name, 48);
  s += " - ";
  s += msgid;
  s += " [phigate@32473 seq=\"";
  s += std::to_string(r.seq);
  s += "\" mac=\"";
  s += SdValue(Hex(r.mac));
  s += "\"] ";
  return s;
}

}  // namespace

std::string ToAtnaSyslog(const AuditRecord& r, const AtnaOptions& opts) {
  std::string s = SyslogPrefix(r, opts, "IHE+RFC-3881");
  s += ToAtnaXml(r, opts);
  return s;
}

std::string ToJsonSyslog(const AuditRecord& r, const AtnaOptions& opts) {
  std::string s = SyslogPrefix(r, opts, "phigate-audit");
  s += ToJsonLine(r);
  return s;
}

}  // namespace phi::audit
