#include "libphi/hl7/hl7_handler.h"

#include <openssl/crypto.h>

#include <chrono>
#include <future>

#include "libphi/util/log.h"

namespace phi::hl7 {
namespace {

using services::Hl7Event;
using services::OrderControl;
using services::OrderInfo;

Status Refuse(Refusal* r, bool reject, int code, std::string text, std::string segment, size_t seq,
              size_t field) {
  if (r) {
    r->reject = reject;
    r->error.code = code;
    r->error.text = text;
    r->error.segment = std::move(segment);
    r->error.sequence = seq;
    r->error.field = field;
  }
  return Status::InvalidArgument("hl7: " + text);
}

// 1-based sequence number of a segment within the message.
size_t SeqOf(const Message& m, const Segment* s) {
  for (size_t i = 0; i < m.segments.size(); ++i) {
    if (&m.segments[i] == s) return i + 1;
  }
  return 0;
}

// HL7 null ("") is passed on as kHl7Null; trailing empty PN components trimmed.
std::string PersonName(const Segment& s, size_t field) {
  if (s.Get(field) == services::kHl7Null && s.Get(field, 2).empty()) return services::kHl7Null;
  // XPN: family ^ given ^ middle ^ suffix ^ prefix -> PN family^given^middle^prefix^suffix.
  std::string pn = s.Get(field, 1) + "^" + s.Get(field, 2) + "^" + s.Get(field, 3) + "^" +
                   s.Get(field, 5) + "^" + s.Get(field, 4);
  while (!pn.empty() && pn.back() == '^') pn.pop_back();
  return pn;
}

// XCN: id ^ family ^ given ^ middle ^ suffix ^ prefix -> PN.
std::string PhysicianName(const Segment& s, size_t field) {
  std::string pn = s.Get(field, 2) + "^" + s.Get(field, 3) + "^" + s.Get(field, 4) + "^" +
                   s.Get(field, 6) + "^" + s.Get(field, 5);
  while (!pn.empty() && pn.back() == '^') pn.pop_back();
  return pn;
}

std::string DateOnly(const std::string& ts) {
  if (ts == services::kHl7Null) return ts;
  return ts.substr(0, 8);
}

std::string FirstNonEmpty(std::initializer_list<const std::string*> v) {
  for (const std::string* s : v) {
    if (!s->empty()) return *s;
  }
  return {};
}

Status Patient(const Message& m, Hl7Event* ev, Refusal* r) {
  const Segment* pid = m.Find("PID");
  if (pid == nullptr) return Refuse(r, false, 100, "PID segment missing", "PID", 0, 0);
  services::PatientDemographics& p = ev->patient;
  p.patient_id = pid->Get(3);
  p.issuer = pid->Get(3, 4);
  if (p.patient_id.empty()) p.patient_id = pid->Get(2);
  if (p.patient_id.empty() || p.patient_id == services::kHl7Null) {
    return Refuse(r, false, 101, "patient ID missing", "PID", SeqOf(m, pid), 3);
  }
  p.name = PersonName(*pid, 5);
  p.birth_date = DateOnly(pid->Get(7));
  p.sex = pid->Get(8);
  return Status::Ok();
}

Result<OrderControl> Control(const std::string& c) {
  if (c == "NW") return OrderControl::kNew;
  if (c == "CA" || c == "DC" || c == "OC" || c == "CR" || c == "OD") return OrderControl::kCancel;
  if (c == "XO" || c == "XX" || c == "SC") return OrderControl::kChange;
  return Status::InvalidArgument("unknown order control");
}

Status Orders(const Message& m, bool omi, Hl7Event* ev, Refusal* r) {
  std::vector<const Segment*> orcs = m.FindAll("ORC");
  if (orcs.empty()) return Refuse(r, false, 100, "ORC segment missing", "ORC", 0, 0);
  const Segment* zds = m.Find("ZDS");
  // Each ORC owns the OBR / TQ1 / IPC segments that follow it.
  for (size_t i = 0; i < m.segments.size(); ++i) {
    if (m.segments[i].name != "ORC") continue;
    const Segment& orc = m.segments[i];
    const Segment *obr = nullptr, *tq1 = nullptr, *ipc = nullptr;
    for (size_t j = i + 1; j < m.segments.size() && m.segments[j].name != "ORC"; ++j) {
      const std::string& n = m.segments[j].name;
      if (n == "OBR" && !obr) obr = &m.segments[j];
      if (n == "TQ1" && !tq1) tq1 = &m.segments[j];
      if (n == "IPC" && !ipc) ipc = &m.segments[j];
    }
    static const Segment kNone;
    const Segment& b = obr ? *obr : kNone;
    const Segment& t = tq1 ? *tq1 : kNone;
    const Segment& c = ipc ? *ipc : kNone;
    Result<OrderControl> ctl = Control(orc.Get(1));
    if (!ctl.ok()) return Refuse(r, false, 103, "unknown order control", "ORC", i + 1, 1);
    OrderInfo o;
    o.control = *ctl;
    o.accession_number = FirstNonEmpty({&c.Get(1), &b.Get(18), &orc.Get(3), &b.Get(3)});
    if (o.accession_number.empty()) {
      return Refuse(r, false, 101, "accession number missing", omi ? "IPC" : "OBR",
                    obr ? SeqOf(m, obr) : i + 1, omi ? 1 : 18);
    }
    o.requested_procedure_id = FirstNonEmpty({&c.Get(2), &b.Get(19)});
    o.requested_procedure_description = FirstNonEmpty({&b.Get(4, 2), &b.Get(4, 1)});
    o.scheduled_step_id = FirstNonEmpty({&c.Get(4), &b.Get(20)});
    o.modality = FirstNonEmpty({&c.Get(5), &b.Get(24)});
    o.scheduled_ae = FirstNonEmpty({&c.Get(9), &b.Get(21)});
    o.scheduled_datetime = FirstNonEmpty({&t.Get(7), &b.Get(36), &orc.Get(7, 4), &b.Get(7)});
    o.study_instance_uid = FirstNonEmpty({&c.Get(3), zds ? &zds->Get(1) : &kNone.Get(1)});
    o.referring_physician = PhysicianName(b, 16);
    o.placer_order_number = FirstNonEmpty({&orc.Get(2), &b.Get(2)});
    o.filler_order_number = FirstNonEmpty({&orc.Get(3), &b.Get(3)});
    if (o.modality.size() > 16 || o.scheduled_ae.size() > 16) {
      return Refuse(r, false, 102, "modality or AE title too long", omi ? "IPC" : "OBR",
                    obr ? SeqOf(m, obr) : i + 1, omi ? 5 : 24);
    }
    ev->orders.push_back(std::move(o));
  }
  return Status::Ok();
}

Status Report(const Message& m, Hl7Event* ev, Refusal* r) {
  const Segment* obr = m.Find("OBR");
  if (obr == nullptr) return Refuse(r, false, 100, "OBR segment missing", "OBR", 0, 0);
  const Segment* orc = m.Find("ORC");
  static const Segment kNone;
  const Segment& c = orc ? *orc : kNone;
  services::ReportInfo& rep = ev->report;
  rep.accession_number = FirstNonEmpty({&obr->Get(18), &obr->Get(3), &c.Get(3), &obr->Get(2)});
  if (rep.accession_number.empty()) {
    return Refuse(r, false, 101, "accession number missing", "OBR", SeqOf(m, obr), 18);
  }
  rep.status = obr->Get(25);
  rep.observation_datetime = obr->Get(7);
  for (const Segment* obx : m.FindAll("OBX")) {
    const std::string& type = obx->Get(2);
    if (type != "TX" && type != "FT" && type != "ST" && type != "CE" && type != "CWE" &&
        !type.empty()) {
      continue;  // ED, RP, NM ...: kept in the stored message only
    }
    if (rep.status.empty()) rep.status = obx->Get(11);
    if (obx->fields.size() < 5) continue;
    for (const Repetition& rp : obx->fields[4]) {
      std::string line;
      for (size_t k = 0; k < rp.size(); ++k) {
        if (k > 0) line += '^';
        for (size_t s = 0; s < rp[k].size(); ++s) {
          if (s > 0) line += '&';
          line += rp[k][s];
        }
      }
      // FT line breaks.
      for (size_t p; (p = line.find("\\.br\\")) != std::string::npos;) line.replace(p, 5, "\n");
      if (!rep.text.empty()) rep.text += '\n';
      rep.text += line;
    }
  }
  return Status::Ok();
}

}  // namespace

Result<services::Hl7Event> ToEvent(const Message& m, std::string_view raw, Refusal* r) {
  const Segment& msh = m.segments.at(0);
  const std::string& code = msh.Get(9, 1);
  const std::string& trigger = msh.Get(9, 2);
  const std::string& version = msh.Get(12);
  if (version.size() < 3 || version.substr(0, 2) != "2.") {
    return Refuse(r, true, 203, "unsupported version", "MSH", 1, 12);
  }
  const std::string& pid = msh.Get(11);
  if (!pid.empty() && pid != "P" && pid != "D" && pid != "T") {
    return Refuse(r, true, 202, "unsupported processing id", "MSH", 1, 11);
  }
  Hl7Event ev;
  ev.message_type = code + "^" + trigger;
  ev.raw = std::string(raw);
  if (code == "ADT") {
    if (trigger == "A01" || trigger == "A04" || trigger == "A05" || trigger == "A08" ||
        trigger == "A28" || trigger == "A31") {
      ev.kind = Hl7Event::Kind::kPatientUpdate;
    } else if (trigger == "A40" || trigger == "A34" || trigger == "A18") {
      ev.kind = Hl7Event::Kind::kPatientMerge;
      const Segment* mrg = m.Find("MRG");
      if (mrg == nullptr) return Refuse(r, false, 100, "MRG segment missing", "MRG", 0, 0);
      ev.prior_patient_id = mrg->Get(1);
      if (ev.prior_patient_id.empty()) {
        return Refuse(r, false, 101, "prior patient ID missing", "MRG", SeqOf(m, mrg), 1);
      }
    } else {
      return Refuse(r, true, 201, "unsupported event code", "MSH", 1, 9);
    }
    PHI_RETURN_IF_ERROR(Patient(m, &ev, r));
    return ev;
  }
  if ((code == "ORM" && trigger == "O01") || (code == "OMI" && trigger == "O23")) {
    ev.kind = Hl7Event::Kind::kOrder;
    PHI_RETURN_IF_ERROR(Patient(m, &ev, r));
    PHI_RETURN_IF_ERROR(Orders(m, code == "OMI", &ev, r));
    return ev;
  }
  if (code == "ORU" && trigger == "R01") {
    ev.kind = Hl7Event::Kind::kReport;
    PHI_RETURN_IF_ERROR(Patient(m, &ev, r));
    PHI_RETURN_IF_ERROR(Report(m, &ev, r));
    return ev;
  }
  return Refuse(r, true, 200, "unsupported message type", "MSH", 1, 9);
}

std::string Hl7MessageHandler::NextControlId() {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(env_.Now().time_since_epoch());
  return "PHI" + std::to_string(ms.count()) + "." + std::to_string(next_id_.fetch_add(1));
}

Hl7HandlerStats Hl7MessageHandler::stats() const {
  Hl7HandlerStats s;
#define PHI_HL7_HANDLER_LOAD(n) s.n = n##_.load();
  PHI_HL7_HANDLER_STATS(PHI_HL7_HANDLER_LOAD)
#undef PHI_HL7_HANDLER_LOAD
  return s;
}

std::string Hl7MessageHandler::Handle(std::string_view message, const ConnectionInfo& conn) {
  std::promise<std::string> p;
  std::future<std::string> f = p.get_future();
  HandleAsync(std::string(message), conn, [&p](std::string ack) { p.set_value(std::move(ack)); });
  return f.get();
}

std::string Hl7MessageHandler::Answer(const MshHeader& msh, bool ok, bool reject,
                                      const AckError* err) {
  if (!WantsAcceptAck(msh, ok)) return kNoReply;
  const bool enhanced = msh.enhanced();
  std::string_view code = ok       ? (enhanced ? "CA" : "AA")
                          : reject ? (enhanced ? "CR" : "AR")
                                   : (enhanced ? "CE" : "AE");
  return BuildAck(msh, code, NextControlId(), env_.Now(), err);
}

void Hl7MessageHandler::HandleAsync(std::string message, const ConnectionInfo& conn,
                                    AckCallback done) {
  ++messages_;
  // The caller's copy of the message is ours: wipe it on every path.
  struct Wipe {
    std::string& s;
    ~Wipe() { OPENSSL_cleanse(s.data(), s.size()); }
  } wipe{message};
  Result<MshHeader> msh = ParseMsh(message);
  if (!msh.ok()) {
    ++unreadable_;
    done({});
    return;
  }

  ParseError perr;
  Result<Message> m = Parse(message, &perr);
  if (!m.ok()) {
    ++errors_;
    AckError e;
    e.code = perr.code;
    e.text = perr.text;
    e.segment = perr.segment.empty() ? "MSH" : perr.segment;
    e.sequence = perr.sequence;
    e.field = perr.field;
    PHI_LOG(kWarning, "hl7 message refused: parse error",
            {{"conn", conn.id}, {"code", perr.code}, {"reason", log::Safe(perr.text)}});
    done(Answer(*msh, false, false, &e));
    return;
  }
  Refusal refusal;
  Result<services::Hl7Event> ev = ToEvent(*m, message, &refusal);
  if (!ev.ok()) {
    ++(refusal.reject ? rejected_ : errors_);
    PHI_LOG(kInfo, "hl7 message refused",
            {{"conn", conn.id},
             {"type", log::Safe(msh->message_code + "^" + msh->trigger_event)},
             {"code", refusal.error.code},
             {"reason", log::Safe(refusal.error.text)}});
    done(Answer(*msh, false, refusal.reject, &refusal.error));
    return;
  }
  services::Hl7Context ctx;
  ctx.actor = conn.identity ? "hl7:" + conn.identity->subject : "hl7:" + msh->sending_application;
  ctx.peer = conn.peer_address + ":" + std::to_string(conn.peer_port);
  // The ACK is built when the commit completes (on the catalog's writer
  // thread: a few string appends), so no thread waits for the fsync.
  service_.ApplyAsync(std::move(ctx), std::move(ev).value(),
                      [this, msh = std::move(msh).value(),
                       done = std::move(done)](Result<services::Hl7Outcome> out) {
                        if (!out.ok()) {
                          ++errors_;
                          AckError e;
                          if (out.status().code() == Code::kInvalidArgument) {
                            e.code = 101;
                            e.text = "required field missing or malformed";
                            e.segment = "PID";
                            e.sequence = 0;
                            e.field = 0;
                          } else {
                            e.code = 207;
                            e.text = "not stored; retry later";
                          }
                          done(Answer(msh, false, false, &e));
                          return;
                        }
                        ++accepted_;
                        done(Answer(msh, true, false, nullptr));
                      });
}

}  // namespace phi::hl7
