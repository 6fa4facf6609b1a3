#!/usr/bin/env python3
"""Audit trail, disposal and legal hold, end to end on a real phigated.

- a study stored with storescu, erased with `phigatectl erase`, its erasure
  certificate fetched with `phigatectl erasure-certificate SEQ --out` and
  verified with plain `openssl cms -verify` (CA file, and -noverify with the
  signer cert), a tampered certificate refused;
- `phigatectl audit export` as JSON lines and as ATNA (RFC 5424 + DICOM
  PS3.15 A.5 XML, parsed), with --since/--until;
- `phigatectl hold/release`: erasure refused under hold, allowed after;
- `phigatectl audit prune`: nothing younger than the retention goes, the chain
  still verifies;
- tampering with the audit table with the sqlite3 CLI while phigated is
  stopped (edit, delete, reorder, truncate the tail): `phigatectl audit verify`
  on the restarted daemon reports each, exit code 5.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import unittest
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import phigated_harness as h  # noqa: E402

ARGS = None
STUDY = "1.2.826.0.1.3680043.8.498.7001"
STUDY2 = "1.2.826.0.1.3680043.8.498.7002"


def make_instance(tmp, study, n, date="20240315", modality="CT"):
    return h.make_tiny_ct(tmp, study, n, "AUDIT^PATIENT", "PID-AUDIT-1", "ACC%d" % n, date=date,
                          modality=modality)[1]


class AuditTest(unittest.TestCase):
    def setUp(self):
        # Retention configured (studies kept 5 years after their StudyDate) but
        # the daily scheduler off: the tests drive `retention plan` / `run`.
        self.dev = h.DevDir(ARGS.phigated, ARGS.dev_pki, prefix="phigated-audit.",
                            transform=lambda y: y + "\nretention:\n  enabled: false\n"
                            "  keep_years: 5\n  rules:\n    - modality: MG\n      keep_years: 0\n")
        self.d = None
        self.start()

    def tearDown(self):
        if self.d is not None:
            self.d.kill()
        self.dev.cleanup()

    def start(self):
        self.d = h.Daemon(ARGS.phigated, self.dev)
        self.d.wait_ready()

    def stop(self):
        self.assertEqual(self.d.terminate(), 0, self.d.log())
        self.d = None

    def ctl(self, *args):
        return h.ctl(ARGS.phigatectl, self.dev.socket, *args)

    def ctl_json(self, *args):
        r = self.ctl("--json", *args)
        self.assertEqual(r.returncode, 0, r.stderr + r.stdout)
        return json.loads(r.stdout)

    def store(self, study, count=2, date="20240315", modality="CT"):
        files = [make_instance(self.dev.dir, study, i + 1, date, modality) for i in range(count)]
        r = subprocess.run(["storescu", "-aet", "AUDITSCU", "-aec", "PHIGATE", "127.0.0.1",
                            str(self.dev.ports[11112])] + files, capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def verify(self):
        return self.ctl("audit", "verify")

    # -- erasure certificate -------------------------------------------------

    def test_erasure_certificate_verifies_with_plain_openssl(self):
        self.store(STUDY)
        cert = self.ctl_json("erase", "--study", STUDY, "--reason", "retention test", "--yes")
        seq = cert["audit_seq"]
        self.assertGreater(seq, 0)
        prefix = os.path.join(self.dev.dir, "cert")
        r = self.ctl("erasure-certificate", str(seq), "--out", prefix)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(prefix + ".json", "rb") as f:
            raw = f.read()
        doc = json.loads(raw)
        self.assertEqual(doc["type"], "phigate-erasure-certificate")
        self.assertEqual(doc["audit_seq"], seq)
        self.assertEqual(doc["objects"], 2)
        self.assertEqual(doc["reason"], "retention test")
        self.assertEqual(len(doc["wrapped_key_sha256"]), 64)
        self.assertEqual(len(doc["audit_record_sha256"]), 64)
        self.assertNotIn(b"AUDIT^PATIENT", raw)
        self.assertNotIn(b"PID-AUDIT-1", raw)
        ca = os.path.join(self.dev.pki, "ca.pem")
        # What a third party runs: the CA file alone.
        v = subprocess.run(["openssl", "cms", "-verify", "-binary", "-inform", "PEM", "-in",
                            prefix + ".p7s", "-content", prefix + ".json", "-CAfile", ca,
                            "-purpose", "any", "-out", "/dev/null"], capture_output=True,
                           text=True)
        self.assertEqual(v.returncode, 0, v.stderr)
        self.assertIn("Verification successful", v.stderr)
        # Or, without a CA, trusting the server certificate given out of band.
        v = subprocess.run(["openssl", "cms", "-verify", "-binary", "-inform", "PEM", "-in",
                            prefix + ".p7s", "-content", prefix + ".json", "-noverify",
                            "-certfile", os.path.join(self.dev.pki, "server.pem"),
                            "-out", "/dev/null"], capture_output=True, text=True)
        self.assertEqual(v.returncode, 0, v.stderr)
        # The signer is the server certificate.
        with open(prefix + ".signer.pem") as f, open(os.path.join(self.dev.pki,
                                                                   "server.pem")) as g:
            self.assertEqual(f.read(), g.read())
        # One byte changed: refused.
        with open(prefix + ".json", "wb") as f:
            f.write(raw.replace(b'"objects":2', b'"objects":3'))
        v = subprocess.run(["openssl", "cms", "-verify", "-binary", "-inform", "PEM", "-in",
                            prefix + ".p7s", "-content", prefix + ".json", "-CAfile", ca,
                            "-purpose", "any", "-out", "/dev/null"], capture_output=True)
        self.assertNotEqual(v.returncode, 0)
        # Not an erasure record / unknown seq.
        self.assertEqual(self.ctl("erasure-certificate", "1").returncode, 1)
        self.assertEqual(self.ctl("erasure-certificate", "999999").returncode, 1)

    # -- export -------------------------------------------------------------

    def test_export_jsonl_and_atna(self):
        self.store(STUDY)
        self.ctl_json("erase", "--study", STUDY, "--reason", "export test", "--yes")
        r = self.ctl("audit", "export")
        self.assertEqual(r.returncode, 0, r.stderr)
        recs = [json.loads(line) for line in r.stdout.splitlines()]
        self.assertGreater(len(recs), 2)
        self.assertEqual([x["seq"] for x in recs], list(range(1, len(recs) + 1)))
        actions = {x["action"] for x in recs}
        self.assertIn("store", actions)
        self.assertIn("erase", actions)
        self.assertNotIn("AUDIT^PATIENT", r.stdout)
        self.assertNotIn("PID-AUDIT-1", r.stdout)

        r = self.ctl("audit", "export", "--format", "atna")
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        self.assertEqual(len(lines), len(recs))
        codes = set()
        for line in lines:
            self.assertRegex(line, r"^<8[45]>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z \S+ phigated - "
                                   r"IHE\+RFC-3881 \[phigate@32473 seq=\"\d+\" mac=\"[0-9a-f]{64}\"\] <\?xml")
            msg = ET.fromstring(line[line.index("<?xml"):].encode())
            self.assertEqual(msg.tag, "AuditMessage")
            ev = msg.find("EventIdentification")
            self.assertIn(ev.get("EventOutcomeIndicator"), ("0", "4", "8"))
            codes.add(ev.find("EventID").get("csd-code"))
            self.assertIsNotNone(msg.find("AuditSourceIdentification"))
        self.assertIn("110104", codes)  # instances transferred (store)
        self.assertIn("110105", codes)  # study deleted (erase)

        # Time windows: everything is after 2000 and before 2100.
        r = self.ctl("audit", "export", "--since", "2100-01-01")
        self.assertEqual((r.returncode, r.stdout), (0, ""))
        r = self.ctl("audit", "export", "--since", "2000-01-01", "--until", "2100-01-01T00:00:00Z")
        self.assertEqual(len(r.stdout.splitlines()), len(recs))
        self.assertEqual(self.ctl("audit", "export", "--since", "yesterday").returncode, 1)
        self.assertEqual(self.ctl("audit", "export", "--format", "xml").returncode, 1)

    # -- legal hold ---------------------------------------------------------

    def test_legal_hold_blocks_erasure(self):
        self.store(STUDY)
        held = self.ctl_json("hold", "--study", STUDY, "--reason", "litigation 42")
        self.assertTrue(held["legal_hold"])
        r = self.ctl("erase", "--study", STUDY, "--reason", "x", "--yes")
        self.assertEqual(r.returncode, 4)  # PermissionDenied
        self.assertIn("legal hold", r.stderr)
        self.assertEqual(self.ctl("hold", "--study", "1.2.3.404").returncode, 1)
        self.ctl_json("release", "--study", STUDY)
        cert = self.ctl_json("erase", "--study", STUDY, "--reason", "x", "--yes")
        self.assertEqual(cert["objects"], 2)
        recs = [json.loads(x) for x in self.ctl("audit", "export").stdout.splitlines()]
        holds = [x for x in recs if x["action"] == "legal_hold"]
        self.assertEqual([x["detail"] for x in holds], ["hold: litigation 42", "release"])

    # -- retention --------------------------------------------------------------

    def test_retention_plan_then_run(self):
        old, held, mg, recent = (STUDY + ".1", STUDY + ".2", STUDY + ".3", STUDY + ".4")
        self.store(old, 1, date="20100101")
        self.store(held, 1, date="20100101")
        self.store(mg, 1, date="20100101", modality="MG")  # MG kept forever
        self.store(recent, 1, date="20250101")
        self.ctl_json("hold", "--study", held)
        plan = self.ctl_json("retention", "plan")
        self.assertEqual(plan["basis"], "study_date")
        self.assertEqual([d["study_instance_uid"] for d in plan["due"]], [old])
        self.assertEqual(plan["due"][0]["year"], 2010)
        self.assertEqual(plan["due"][0]["keep_years"], 5)
        # The dry run changed nothing.
        self.assertEqual(self.ctl_json("retention", "plan")["count"], 1)
        run = self.ctl_json("retention", "run")
        self.assertEqual((run["erased"], run["failed"]), (1, 0))
        self.assertEqual(self.ctl_json("retention", "plan")["count"], 0)
        # Erased through the same service as an admin erasure: a certificate.
        r = self.ctl("erasure-certificate", str(run["audit_seqs"][0]))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('"actor":"system:retention"', r.stdout)
        self.assertIn("-----BEGIN CMS-----", r.stdout)

    # -- integrity ------------------------------------------------------------

    def test_verify_reads_every_object(self):
        self.store(STUDY, 3)
        r = self.ctl("verify")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertRegex(r.stdout, r"^storage OK: 1 studies, 3 instances, .* 0 problems")
        # An object file damaged on disk: found, reported, exit status 5.
        objs = []
        for root, _, files in os.walk(os.path.join(self.dev.dir, "storage", "objects")):
            objs += [os.path.join(root, f) for f in files if f.endswith(".phg")]
        self.assertEqual(len(objs), 3)
        with open(objs[0], "r+b") as f:
            f.seek(os.path.getsize(objs[0]) // 2)
            b = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([b[0] ^ 1]))
        r = self.ctl("verify", "--study", STUDY)
        self.assertEqual(r.returncode, 5, r.stdout + r.stderr)
        self.assertIn("object_unreadable", r.stdout)

    # -- pruning --------------------------------------------------------------

    def test_prune_keeps_everything_younger_than_retention(self):
        self.store(STUDY)
        before = self.ctl_json("audit", "verify")
        r = self.ctl_json("audit", "prune")
        self.assertEqual(r["pruned"], 0)
        self.assertEqual(r["retention_years"], 6)
        # --before can only narrow the retention, never widen it.
        r = self.ctl_json("audit", "prune", "--before", "2999-01-01")
        self.assertEqual(r["pruned"], 0)
        after = self.ctl_json("audit", "verify")
        self.assertTrue(after["ok"])
        self.assertEqual(after["records"], before["records"] + 2)  # the two prune records

    # -- tampering ------------------------------------------------------------

    def tamper_and_verify(self, sql):
        """Stops phigated, runs sql on a copy of the clean catalog, restarts, verifies."""
        db = os.path.join(self.dev.dir, "storage", "catalog.db")
        subprocess.run(["sqlite3", db, sql], check=True)
        self.start()
        try:
            r = self.verify()
            rj = json.loads(self.ctl("--json", "audit", "verify").stdout)
        finally:
            self.stop()
        return r, rj

    def test_tampering_is_found_through_phigatectl(self):
        self.store(STUDY)
        self.store(STUDY2)
        ok = self.verify()
        self.assertEqual(ok.returncode, 0, ok.stdout + ok.stderr)
        self.assertRegex(ok.stdout, r"^audit chain OK: \d+ records")
        n = self.ctl_json("audit", "verify")["records"]
        self.assertGreaterEqual(n, 5)
        self.stop()
        storage = os.path.join(self.dev.dir, "storage")
        clean = os.path.join(self.dev.dir, "storage.clean")
        shutil.copytree(storage, clean)

        cases = [
            ("UPDATE audit SET actor = 'admin:uid=0' WHERE seq = 2;", 2, "mac_mismatch"),
            ("DELETE FROM audit WHERE seq = 3;", 3, "seq_gap"),
            ("UPDATE audit SET seq = -1 WHERE seq = 2; UPDATE audit SET seq = 2 WHERE seq = 3;"
             " UPDATE audit SET seq = 3 WHERE seq = -1;", 2, "prev_hash_mismatch"),
        ]
        for sql, broken, reason in cases:
            with self.subTest(reason=reason):
                shutil.rmtree(storage)
                shutil.copytree(clean, storage)
                r, rj = self.tamper_and_verify(sql)
                self.assertEqual(r.returncode, 5, r.stdout + r.stderr)
                self.assertIn("BROKEN at seq %d: %s" % (broken, reason), r.stdout)
                self.assertFalse(rj["ok"])
                self.assertEqual((rj["broken_seq"], rj["reason"]), (broken, reason))
        # The tail deleted: the signed head finds it (and new records after
        # restart keep it visible as a gap).
        shutil.rmtree(storage)
        shutil.copytree(clean, storage)
        r, rj = self.tamper_and_verify("DELETE FROM audit WHERE seq = (SELECT max(seq) FROM audit);")
        self.assertEqual(r.returncode, 5, r.stdout)
        self.assertIn(rj["reason"], ("truncated", "seq_gap"))


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
