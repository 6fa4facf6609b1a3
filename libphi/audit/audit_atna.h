// phi::audit ATNA: audit records as IHE ATNA messages - RFC 5424 syslog lines
// whose MSG is a DICOM PS3.15 A.5 AuditMessage (XML), for
// `phigatectl audit export --format atna` and SIEM / audit repositories.
//
// Mapping (record -> AuditMessage):
//   action   -> EventID (DCM codes) and EventActionCode (C/R/U/D/E)
//   outcome  -> EventOutcomeIndicator: "ok" 0, "denied" 4, anything else 8
//   actor    -> ActiveParticipant UserID (UserIsRequestor=true); peer -> its
//               NetworkAccessPointID (type 2 = IP address)
//   object   -> ParticipantObjectIdentification ParticipantObjectID (an
//               internal id such as "study:12", never a patient identifier)
//   detail   -> ParticipantObjectDetail type="detail" (base64), when set
//   seq, mac -> the syslog STRUCTURED-DATA [phigate@32473 seq=".." mac=".."]
// PRI = facility 10 (security/authorization) with severity 5 (notice), or 4
// (warning) for failures: <85> / <84>. MSGID "IHE+RFC-3881".
// Records carry no PHI by contract (audit_log.h), so neither do the messages.
// Thread-safety: free functions, thread-safe.
#pragma once

#include <string>

#include "libphi/audit/audit_log.h"

namespace phi::audit {

struct AtnaOptions {
  std::string hostname = "-";         // syslog HOSTNAME (RFC 5424: "-" when unknown)
  std::string app_name = "phigated";  // syslog APP-NAME
  std::string audit_source_id;        // AuditSourceIdentification; default: app_name@hostname
};

// The DICOM PS3.15 A.5 AuditMessage for one record (one line of XML).
std::string ToAtnaXml(const AuditRecord& r, const AtnaOptions& opts);

// One RFC 5424 SYSLOG-MSG carrying ToAtnaXml (no trailing newline; the XML
// has no newlines either, so one record = one line).
std::string ToAtnaSyslog(const AuditRecord& r, const AtnaOptions& opts);

// The same RFC 5424 HEADER and STRUCTURED-DATA with MSGID "phigate-audit" and,
// as MSG, the record's JSON line (audit_export.h ToJsonLine): for collectors
// that parse JSON rather than ATNA XML (live forwarding, format jsonl).
std::string ToJsonSyslog(const AuditRecord& r, const AtnaOptions& opts);

}  // namespace phi::audit
