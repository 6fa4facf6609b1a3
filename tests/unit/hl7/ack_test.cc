#include "libphi/hl7/ack.h"

#include <gtest/gtest.h>

namespace phi::hl7 {
namespace {

const char kAdt[] =
    "MSH|^~\\&|RIS|HOSP|PHIGATE|RAD|20240101120000||ADT^A08^ADT_A01|CTRL-42|P|2.5.1\r"
    "EVN|A08|20240101120000\rPID|1||12345^^^HOSP||DOE^JOHN\r";

std::vector<std::string> Segments(const std::string& s) {
  std::vector<std::string> r;
  size_t b = 0, e;
  while ((e = s.find('\r', b)) != std::string::npos) {
    r.push_back(s.substr(b, e - b));
    b = e + 1;
  }
  EXPECT_EQ(b, s.size()) << "every segment ends in CR";
  return r;
}

TEST(Msh, ParsesTheFieldsAnAckNeeds) {
  auto h = ParseMsh(kAdt);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  EXPECT_EQ(h->encoding, "^~\\&");
  EXPECT_EQ(h->sending_application, "RIS");
  EXPECT_EQ(h->receiving_facility, "RAD");
  EXPECT_EQ(h->message_code, "ADT");
  EXPECT_EQ(h->trigger_event, "A08");
  EXPECT_EQ(h->control_id, "CTRL-42");
  EXPECT_EQ(h->processing_id, "P");
  EXPECT_EQ(h->version, "2.5.1");
}

TEST(Msh, RejectsWhatCannotBeAcked) {
  EXPECT_FALSE(ParseMsh("").ok());
  EXPECT_FALSE(ParseMsh("PID|1||x\r").ok());
  EXPECT_FALSE(ParseMsh("MSH|^~\\&|A|B|C|D|E||ADT^A01||P|2.5\r").ok());   // empty MSH-10
  EXPECT_FALSE(ParseMsh("MSHa^~\\&|A|B|C|D|E||ADT^A01|1|P|2.5\r").ok());  // alnum separator
  EXPECT_FALSE(ParseMsh("MSH|^^\\&|A|B|C|D|E||ADT^A01|1|P|2.5\r").ok());  // repeated enc char
  EXPECT_FALSE(ParseMsh("MSH|^~\\&|A\x01|B|C|D|E||ADT^A01|1|P|2.5\r").ok());
  EXPECT_FALSE(ParseMsh("MSH|^~\\&|A|B|C|D|E||ADT^A01|" + std::string(200, '9') + "|P|2.5\r").ok());
}

TEST(Ack, ArWithSwappedPartiesAndErr) {
  auto h = ParseMsh(kAdt);
  ASSERT_TRUE(h.ok());
  std::string ack = BuildAck(*h, "AR", "ACK-1", SystemTime{}, 200, "not implemented yet");
  auto seg = Segments(ack);
  ASSERT_EQ(seg.size(), 3u);
  EXPECT_EQ(seg[0],
            "MSH|^~\\&|PHIGATE|RAD|RIS|HOSP|19700101000000+0000||ACK^A08^ACK|ACK-1|P|2.5.1");
  EXPECT_EQ(seg[1], "MSA|AR|CTRL-42");
  EXPECT_EQ(seg[2], "ERR||MSH^1^9|200^Unsupported message type^HL70357|E||||not implemented yet");
  // No PHI from the message body leaks into the ACK.
  EXPECT_EQ(ack.find("DOE"), std::string::npos);
  EXPECT_EQ(ack.find("12345"), std::string::npos);
}

TEST(Ack, OldVersionsUseErr1AndMsa3AndTheSendersDelimiters) {
  auto h = ParseMsh("MSH#*~\\&#LAB#F1#GW#F2#2020##ORU*R01#77#T#2.3\r");
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  auto seg = Segments(BuildAck(*h, "AR", "A9", SystemTime{}, 200, "nope"));
  ASSERT_EQ(seg.size(), 3u);
  EXPECT_EQ(seg[0], "MSH#*~\\&#GW#F2#LAB#F1#19700101000000+0000##ACK*R01*ACK#A9#T#2.3");
  EXPECT_EQ(seg[1], "MSA#AR#77#nope");
  EXPECT_EQ(seg[2], "ERR#MSH*1*9*200&Unsupported message type&HL70357");
}

TEST(NotImplementedHandler, AnswersArOrNothing) {
  NotImplementedHandler h(Env::Default());
  ConnectionInfo conn;
  std::string a = h.Handle(kAdt, conn);
  EXPECT_NE(a.find("\rMSA|AR|CTRL-42\r"), std::string::npos) << a;
  std::string b = h.Handle(kAdt, conn);
  EXPECT_NE(Segments(a)[0], Segments(b)[0]) << "each ACK has its own control id";
  EXPECT_EQ(h.Handle("garbage", conn), "");
}

}  // namespace
}  // namespace phi::hl7
