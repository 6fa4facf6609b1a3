#!/usr/bin/env python3
"""Live audit forwarding over syslog-TLS (RFC 5425), end to end on a real phigated.

The collector is socat's OPENSSL-LISTEN (real TLS, the dev PKI) appending
every byte it receives to a file; it runs in its own process group so that
killing it also kills the forked child holding the connection.

- records of real stores (storescu) and admin commands (hold / release)
  arrive as RFC 5425 octet-counted frames that exactly cover the file, each
  an RFC 5424 message equal to `phigatectl audit export --format atna`'s line
  for that seq, whose MSG parses as a DICOM PS3.15 A.5 AuditMessage, in seq
  order, with no PHI string;
- the collector killed: more records are made, `phigatectl status` shows the
  forwarder down with a backlog and an error; the collector restarted: the
  missing records arrive, no gap in seq; the same across a phigated restart
  (the acknowledged seq is persisted);
- an untrusted collector certificate, and a certificate that does not match
  the configured host: nothing is written to the collector, the error is in
  `phigatectl status`; a SIGHUP pointing at a good collector (format jsonl)
  then delivers everything that was waiting.
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
import unittest
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import phigated_harness as h  # noqa: E402

ARGS = None
PHI = [b"FWD^PATIENT", b"PID-FWD-1", b"ACCFWD", b"19510101"]
WAIT = 90

SYSLOG_RE = re.compile(
    rb'^<(\d{1,3})>1 (\S+) (\S+) (\S+) - (\S+) \[phigate@32473 seq="(\d+)" mac="([0-9a-f]{64})"\] '
    rb'(.*)$', re.S)


def make_instance(tmp, study, n):
    return h.make_tiny_ct(tmp, study, n, "FWD^PATIENT", "PID-FWD-1", "ACCFWD",
                          birth_date="19510101", prefix="f")[1]


def listening(port, addr_hex):
    """True when a TCP socket listens on addr:port (from /proc/net/tcp)."""
    want = "%s:%04X" % (addr_hex, port)
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            cols = line.split()
            if cols[1] == want and cols[3] == "0A":
                return True
    return False


class Collector:
    """socat OPENSSL-LISTEN on bind:port appending what it receives to `out`."""

    def __init__(self, port, cert, key, out, bind="127.0.0.1"):
        self.port, self.out = port, out
        self.log = open(out + ".socat.log", "a")
        self.proc = subprocess.Popen(
            ["socat", "-u",
             "OPENSSL-LISTEN:%d,bind=%s,reuseaddr,fork,cert=%s,key=%s,verify=0" % (
                 port, bind, cert, key),
             "OPEN:%s,creat,append" % out],
            stdout=subprocess.DEVNULL, stderr=self.log, start_new_session=True)
        hexaddr = "".join("%02X" % int(b) for b in reversed(bind.split(".")))
        deadline = time.monotonic() + 20
        while not listening(port, hexaddr):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("socat did not listen on %s:%d" % (bind, port))
            time.sleep(0.05)

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.log.close()

    def data(self):
        try:
            with open(self.out, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return b""


def parse_frames(data):
    """RFC 5425 octet counting: MSG-LEN SP SYSLOG-MSG, repeated, covering `data` exactly.

    Returns the list of messages; a partial last frame (still arriving) is left out.
    """
    msgs, i = [], 0
    while i < len(data):
        sp = data.find(b" ", i)
        if sp < 0:
            break
        length = data[i:sp]
        if not length.isdigit() or length.startswith(b"0") or len(length) > 9:
            raise AssertionError("bad MSG-LEN at offset %d: %r" % (i, data[i:i + 20]))
        n = int(length)
        if sp + 1 + n > len(data):
            break
        msgs.append(data[sp + 1:sp + 1 + n])
        i = sp + 1 + n
    return msgs


def seq_of(msg):
    m = SYSLOG_RE.match(msg)
    if not m:
        raise AssertionError("not an RFC 5424 message from phigated: %r" % msg[:200])
    return int(m.group(6))


class ForwardTest(unittest.TestCase):
    def setUp(self):
        self.collectors = []
        self.d = None
        self.port = h.free_port()

    def tearDown(self):
        if self.d is not None:
            self.d.kill()
        for c in self.collectors:
            c.kill()
        if hasattr(self, "dev"):
            self.dev.cleanup()

    def make_dev(self, host="localhost", port=None, fmt="atna"):
        self.dev = h.DevDir(ARGS.phigated, ARGS.dev_pki, prefix="phigated-fwd.",
                            transform=lambda y: y + self.forward_yaml(host, port, fmt, "@PKI@"))
        # The PKI path is only known once the dir exists: rewrite with it.
        self.dev.write(self.dev.good_yaml.replace("@PKI@", self.dev.pki))

    def forward_yaml(self, host, port, fmt, pki):
        return ("\naudit:\n  forward:\n    enabled: true\n    host: %s\n    port: %d\n"
                "    ca: %s/ca.pem\n    format: %s\n    queue_max: 1000\n" % (
                    host, port or self.port, pki, fmt))

    def collector(self, name, cert="server", bind="127.0.0.1", port=None):
        c = Collector(port or self.port, "%s/%s.pem" % (self.dev.pki, cert),
                      "%s/%s.key" % (self.dev.pki, cert),
                      os.path.join(self.dev.dir, name), bind)
        self.collectors.append(c)
        return c

    def start(self):
        self.d = h.Daemon(ARGS.phigated, self.dev)
        self.d.wait_ready()

    def ctl(self, *args):
        return h.ctl(ARGS.phigatectl, self.dev.socket, *args)

    def ctl_json(self, *args):
        r = self.ctl("--json", *args)
        self.assertEqual(r.returncode, 0, r.stderr + r.stdout)
        return json.loads(r.stdout)

    def fwd(self):
        return self.ctl_json("status")["audit_forward"]

    def wait_fwd(self, pred, what):
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            s = self.fwd()
            if pred(s):
                return s
            time.sleep(0.2)
        self.fail("audit forward never %s: %s\n%s" % (what, self.fwd(), self.d.log()))

    def store(self, study, count=2):
        files = [make_instance(self.dev.dir, study, i + 1) for i in range(count)]
        r = subprocess.run(["storescu", "-aet", "FWDSCU", "-aec", "PHIGATE", "127.0.0.1",
                            str(self.dev.ports[11112])] + files, capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def head(self):
        return self.fwd()["head_seq"]

    def export_atna(self):
        r = self.ctl("audit", "export", "--format", "atna")
        self.assertEqual(r.returncode, 0, r.stderr)
        out = {}
        for line in r.stdout.splitlines():
            b = line.encode()
            out[seq_of(b)] = b
        return out

    def received(self, *collectors, upto):
        """Waits until the collectors together hold every seq up to `upto`; returns the
        messages by collector."""
        deadline = time.monotonic() + WAIT
        while True:
            per = [parse_frames(c.data()) for c in collectors]
            seqs = {seq_of(m) for msgs in per for m in msgs}
            if seqs and max(seqs) >= upto:
                return per
            if time.monotonic() > deadline:
                self.fail("collector got seqs %s, wanted up to %d; status %s\n%s" % (
                    sorted(seqs), upto, self.fwd(), self.d.log()))
            time.sleep(0.2)

    def check_messages(self, msgs, exported):
        for m in msgs:
            match = SYSLOG_RE.match(m)
            self.assertIsNotNone(match, m[:200])
            pri = int(match.group(1))
            self.assertIn(pri, (84, 85))  # facility 10 (authpriv), notice / warning
            self.assertEqual(match.group(5), b"IHE+RFC-3881")
            seq = int(match.group(6))
            # Exactly what `audit export --format atna` writes for that record.
            self.assertEqual(m, exported[seq])
            root = ET.fromstring(match.group(8))
            self.assertEqual(root.tag, "AuditMessage")
            self.assertIsNotNone(root.find("EventIdentification"))
            for p in PHI:
                self.assertNotIn(p, m)

    def assert_contiguous(self, seqs, first, last):
        """In order (repeats allowed right after a reconnect), every seq first..last."""
        seen = []
        for s in seqs:
            if seen and s <= seen[-1]:
                self.assertIn(s, seen, "seq %d out of order in %s" % (s, seqs))
                continue
            seen.append(s)
        self.assertEqual(seen, list(range(first, last + 1)), seqs)

    # ------------------------------------------------------------------------

    def test_records_arrive_in_order_survive_collector_and_daemon_restarts(self):
        self.make_dev()
        c1 = self.collector("c1.bin")
        self.start()
        s = self.wait_fwd(lambda s: s["connected"], "connected")
        self.assertTrue(s["enabled"])
        self.assertEqual(s["collector"], "localhost:%d" % self.port)
        self.assertEqual(s["format"], "atna")
        start_seq = s["acked_seq"]

        self.store("1.2.826.0.1.3680043.8.498.9101")
        self.assertEqual(self.ctl("hold", "--study", "1.2.826.0.1.3680043.8.498.9101",
                                  "--reason", "fwd test").returncode, 0)
        self.assertEqual(self.ctl("release", "--study", "1.2.826.0.1.3680043.8.498.9101")
                         .returncode, 0)
        head1 = self.head()
        self.assertGreaterEqual(head1, start_seq + 4)  # 2 stores, hold, release
        (msgs1,) = self.received(c1, upto=head1)
        exported = self.export_atna()
        self.check_messages(msgs1, exported)
        seqs1 = [seq_of(m) for m in msgs1]
        self.assert_contiguous(seqs1, start_seq + 1, head1)
        actions = b" ".join(msgs1)
        self.assertIn(b'EventActionCode="C"', actions)  # the stores
        self.wait_fwd(lambda s: s["acked_seq"] == head1 and s["backlog"] == 0, "acked")

        # The collector dies; records keep being made (ingest is not delayed).
        c1.kill()
        s = self.wait_fwd(lambda s: not s["connected"] and s["last_error"], "down")
        self.store("1.2.826.0.1.3680043.8.498.9102")
        self.assertEqual(self.ctl("hold", "--study", "1.2.826.0.1.3680043.8.498.9102")
                         .returncode, 0)
        head2 = self.head()
        self.assertGreater(head2, head1)
        s = self.wait_fwd(lambda s: s["backlog"] >= head2 - head1, "backlogged")
        self.assertEqual(s["acked_seq"], head1)
        self.assertEqual(s["drops"], 0)
        human = self.ctl("status").stdout
        self.assertIn("NOT CONNECTED", human)
        self.assertIn("last error", human)

        # Back: the missing records arrive, nothing skipped.
        c2 = self.collector("c2.bin")
        (msgs2,) = self.received(c2, upto=head2)
        exported = self.export_atna()
        self.check_messages(msgs2, exported)
        seqs2 = [seq_of(m) for m in msgs2]
        self.assert_contiguous(seqs1 + seqs2, start_seq + 1, head2)
        self.wait_fwd(lambda s: s["connected"] and s["last_error"] is None, "reconnected")

        # Across a restart of phigated, with the collector down meanwhile.
        self.wait_fwd(lambda s: s["acked_seq"] == head2, "acked after reconnect")
        c2.kill()
        self.wait_fwd(lambda s: not s["connected"], "down again")
        self.store("1.2.826.0.1.3680043.8.498.9103")
        head3 = self.head()
        self.assertEqual(self.d.terminate(), 0, self.d.log())
        self.d = None
        with open(os.path.join(self.dev.dir, "storage", "audit-forward.state")) as f:
            self.assertIn("acked_seq %d\n" % head2, f.read())
        self.start()
        c3 = self.collector("c3.bin")
        (msgs3,) = self.received(c3, upto=head3)
        exported = self.export_atna()
        self.check_messages(msgs3, exported)
        seqs3 = [seq_of(m) for m in msgs3]
        self.assert_contiguous(seqs1 + seqs2 + seqs3, start_seq + 1, max(seqs3))
        for c in (c1, c2, c3):
            for p in PHI:
                self.assertNotIn(p, c.data())

    def test_untrusted_or_misnamed_collector_gets_nothing_then_sighup_to_a_good_one(self):
        # Untrusted CA.
        self.make_dev()
        bad = self.collector("untrusted.bin", cert="untrusted")
        self.start()
        s = self.wait_fwd(lambda s: s["failures"] >= 2 and s["last_error"], "failing")
        self.assertFalse(s["connected"])
        self.assertIn("certificate verify failed", s["last_error"])
        start_seq = s["acked_seq"]
        self.store("1.2.826.0.1.3680043.8.498.9201")
        self.wait_fwd(lambda s: s["failures"] >= 4, "retrying")
        self.assertEqual(bad.data(), b"")
        self.assertIn("certificate verify failed", self.ctl("status").stdout)

        # A trusted certificate that does not name the configured host (127.0.0.2).
        port2 = h.free_port()
        misnamed = self.collector("misnamed.bin", bind="127.0.0.2", port=port2)
        y = self.dev.good_yaml.replace("@PKI@", self.dev.pki).replace(
            "host: localhost\n    port: %d" % self.port, "host: 127.0.0.2\n    port: %d" % port2)
        self.dev.write(y)
        self.d.proc.send_signal(signal.SIGHUP)
        s = self.wait_fwd(lambda s: s["collector"] == "127.0.0.2:%d" % port2 and
                          s["last_error"] and "mismatch" in s["last_error"], "refusing the name")
        self.assertFalse(s["connected"])
        self.assertEqual(misnamed.data(), b"")

        # SIGHUP to a good collector, as JSON lines: everything waiting arrives.
        port3 = h.free_port()
        good = self.collector("good.bin", port=port3)
        y = self.dev.good_yaml.replace("@PKI@", self.dev.pki).replace(
            "port: %d" % self.port, "port: %d" % port3).replace("format: atna", "format: jsonl")
        self.dev.write(y)
        self.d.proc.send_signal(signal.SIGHUP)
        head = self.head()
        (msgs,) = self.received(good, upto=head)
        seqs = []
        for m in msgs:
            match = SYSLOG_RE.match(m)
            self.assertIsNotNone(match, m[:200])
            self.assertEqual(match.group(5), b"phigate-audit")
            rec = json.loads(match.group(8))
            self.assertEqual(rec["seq"], int(match.group(6)))
            seqs.append(rec["seq"])
            for p in PHI:
                self.assertNotIn(p, m)
        self.assert_contiguous(seqs, start_seq + 1, max(seqs))
        s = self.wait_fwd(lambda s: s["connected"], "connected")
        self.assertEqual(s["format"], "jsonl")
        self.assertEqual(bad.data(), b"")
        self.assertEqual(misnamed.data(), b"")


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--phigated", required=True)
    p.add_argument("--phigatectl", required=True)
    p.add_argument("--dev-pki", required=True)
    ARGS, rest = p.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
