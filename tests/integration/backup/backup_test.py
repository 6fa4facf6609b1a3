#!/usr/bin/env python3
"""Backup during ingest, restore, everything reads back (issue 7, item 6).

- phigated A on a dev dir; four threads run storescu in a loop (one
  association per instance, four studies, concurrently);
- while they run: `phigatectl backup DIR` (a daemon job, polled);
- ingest ends; A keeps running. The backup's MANIFEST and catalog.db agree
  on the object count, which is a point-in-time subset of what was sent;
- `phigatectl restore DIR --config B.yaml` onto B's empty storage root (same
  KEK) succeeds; a second restore onto the now non-empty root is refused;
- phigated B starts on it: `phigatectl verify` finds exactly the backed-up
  objects, all intact; `phigatectl audit verify` is OK and the backup and
  restore are in the audit trails; every instance B lists (QIDO) reads back
  over WADO-RS byte-identical to A's copy, and its dataset is the sent one;
- a copy of the backup with one object byte changed is refused by restore,
  naming the file, and leaves the root empty.
"""
import argparse
import json
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import phigated_harness as h  # noqa: E402

ARGS = None
THREADS = 4
PER_THREAD = 25
STUDY = "1.2.826.0.1.3680043.8.498.9%d"


def make_instance(tmp, study, n):
    return h.make_tiny_ct(tmp, study, n, "BACKUP^PATIENT", "PID-BACKUP-1", "ACCB%d" % n,
                          pixels="%d\\%d\\3\\4" % (n, n * 7 % 65536), prefix="b")


def dataset_of(part10):
    """The dataset after the file meta group (what storescu transmits)."""
    assert part10[128:132] == b"DICM"
    assert part10[132:136] == b"\x02\x00\x00\x00" and part10[136:138] == b"UL"
    (group_len,) = struct.unpack("<I", part10[140:144])
    return part10[144 + group_len:]


def multipart_parts(ctype, body):
    boundary = None
    for p in ctype.split(";"):
        p = p.strip()
        if p.startswith("boundary="):
            boundary = p[len("boundary="):].strip('"')
    assert boundary, ctype
    parts = []
    for chunk in body.split(b"--" + boundary.encode())[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, data = chunk.partition(b"\r\n\r\n")
        if data.endswith(b"\r\n"):
            data = data[:-2]
        parts.append(data)
    return parts


class BackupTest(unittest.TestCase):
    def setUp(self):
        self.a_dev = h.DevDir(ARGS.phigated, ARGS.dev_pki, prefix="phigated-backup-a.")
        self.b_dev = h.DevDir(ARGS.phigated, ARGS.dev_pki, prefix="phigated-backup-b.")
        # Same KEK on B (the backup does not contain it).
        os.chmod(self.b_dev.dir + "/kek", 0o600)
        shutil.copyfile(self.a_dev.dir + "/kek", self.b_dev.dir + "/kek")
        os.chmod(self.b_dev.dir + "/kek", 0o400)
        self.backups = self.a_dev.dir + "-backups"
        os.mkdir(self.backups, 0o700)
        self.daemons = []

    def tearDown(self):
        for d in self.daemons:
            d.kill()
        for dev in (self.a_dev, self.b_dev):
            dev.cleanup()
        shutil.rmtree(self.backups, ignore_errors=True)

    def start(self, dev):
        d = h.Daemon(ARGS.phigated, dev)
        self.daemons.append(d)
        d.wait_ready()
        return d

    def ctl(self, dev, *args):
        return h.ctl(ARGS.phigatectl, dev.socket, *args)

    def ctl_json(self, dev, *args):
        r = self.ctl(dev, "--json", *args)
        self.assertEqual(r.returncode, 0, r.stderr + r.stdout)
        return json.loads(r.stdout)

    def curl(self, dev, path, accept=None):
        out = os.path.join(dev.dir, "curl.out")
        cmd = ["curl", "-sS", "-o", out, "-w", "%{http_code}\n%{content_type}",
               "--cacert", dev.pki + "/ca.pem", "--cert", dev.pki + "/clinician.pem",
               "--key", dev.pki + "/clinician.key",
               "https://localhost:%d%s" % (dev.ports[8443], path)]
        if accept:
            cmd += ["-H", "Accept: " + accept]
        r = subprocess.run(cmd, capture_output=True, timeout=60)
        code, _, ctype = r.stdout.decode().partition("\n")
        with open(out, "rb") as f:
            return int(code or 0), ctype, f.read()

    def wado_instance(self, dev, study, sop):
        code, ctype, body = self.curl(
            dev, "/studies/%s/series/%s.1/instances/%s" % (study, study, sop),
            'multipart/related; type="application/dicom"')
        self.assertEqual(code, 200, body[:200])
        parts = multipart_parts(ctype, body)
        self.assertEqual(len(parts), 1)
        return parts[0]

    def test_backup_during_ingest_restores_intact(self):
        a = self.start(self.a_dev)
        sent = {}  # sop -> (study, file)
        batches = []
        for t in range(THREADS):
            study = STUDY % t
            batch = []
            for n in range(1, PER_THREAD + 1):
                sop, path = make_instance(self.a_dev.dir, study, n)
                sent[sop] = (study, path)
                batch.append(path)
            batches.append(batch)
        failures = []
        done = threading.Event()

        def ingest(batch):
            for path in batch:  # storescu in a loop: one association per instance
                r = subprocess.run(["storescu", "-aet", "BACKUPSCU", "-aec", "PHIGATE",
                                    "127.0.0.1", str(self.a_dev.ports[11112]), path],
                                   capture_output=True, text=True, timeout=60)
                if r.returncode != 0:
                    failures.append(r.stdout + r.stderr)

        threads = [threading.Thread(target=ingest, args=(b,)) for b in batches]
        for t in threads:
            t.start()
        # Back up once some instances are in, while the loops keep storing.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            st = self.ctl_json(self.a_dev, "status")
            if (st.get("counts") or {}).get("instances", 0) >= 10:
                break
            time.sleep(0.05)
        bdir = os.path.join(self.backups, "full")
        ingest_running = any(t.is_alive() for t in threads)
        r = self.ctl(self.a_dev, "--json", "backup", bdir)
        ingest_running_after = any(t.is_alive() for t in threads)
        self.assertEqual(r.returncode, 0, r.stderr + r.stdout + a.log())
        rep = json.loads(r.stdout)
        for t in threads:
            t.join()
        done.set()
        self.assertEqual(failures, [])
        self.assertTrue(ingest_running, "ingest finished before the backup started")
        print("backup: %d objects, ingest still running after it: %s"
              % (rep["objects"], ingest_running_after))

        # MANIFEST and the snapshot agree; a point-in-time subset of what was sent.
        with open(os.path.join(bdir, "MANIFEST")) as f:
            manifest = f.read().splitlines()
        self.assertEqual(manifest[0], "phigate-backup-manifest 1")
        files = [l.split(" ") for l in manifest if l.startswith("file ")]
        self.assertEqual(files[0][3], "catalog.db")
        self.assertEqual(len(files) - 1, rep["objects"])
        self.assertIn("kek_ids dev-kek-1", manifest)
        db = sqlite3.connect("file:%s/catalog.db?mode=ro" % bdir, uri=True)
        (n_inst,) = db.execute("SELECT count(*) FROM instances").fetchone()
        (n_orphan,) = db.execute(
            "SELECT count(*) FROM instances i JOIN series se USING (series_pk) "
            "JOIN studies s ON s.study_pk = se.study_pk "
            "LEFT JOIN study_keys k ON k.key_id = s.key_id WHERE k.key_id IS NULL").fetchone()
        db.close()
        self.assertEqual(n_inst, rep["objects"])
        self.assertEqual(n_orphan, 0)
        self.assertGreaterEqual(rep["objects"], 10)
        self.assertLessEqual(rep["objects"], len(sent))
        final = self.ctl_json(self.a_dev, "status")["counts"]["instances"]
        self.assertEqual(final, len(sent))

        # The backup is audited on A.
        lines = self.ctl(self.a_dev, "audit", "export").stdout.splitlines()
        backups = [json.loads(l) for l in lines if json.loads(l)["action"] == "backup"]
        self.assertEqual(len(backups), 1)
        self.assertEqual(backups[0]["outcome"], "ok")
        self.assertTrue(backups[0]["actor"].startswith("admin:uid="))

        # A tampered copy is refused, naming the file, and writes nothing.
        bad = os.path.join(self.backups, "tampered")
        shutil.copytree(bdir, bad)
        victim = files[1][3]
        with open(os.path.join(bad, victim), "r+b") as f:
            f.seek(40)
            b = f.read(1)
            f.seek(40)
            f.write(bytes([b[0] ^ 0x20]))
        r = subprocess.run([ARGS.phigatectl, "restore", bad, "--config", self.b_dev.config],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn(victim, r.stderr)
        self.assertEqual(sorted(os.listdir(self.b_dev.dir + "/storage")), ["objects", "tmp"])
        self.assertEqual(os.listdir(self.b_dev.dir + "/storage/objects"), [])

        # Restore onto B's empty root (offline), then a second one is refused.
        r = subprocess.run([ARGS.phigatectl, "restore", bdir, "--config", self.b_dev.config],
                           capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("restore OK", r.stdout)
        r2 = subprocess.run([ARGS.phigatectl, "restore", bdir, "--config", self.b_dev.config],
                            capture_output=True, text=True, timeout=120)
        self.assertEqual(r2.returncode, 1)
        self.assertIn("not empty", r2.stderr)

        b = self.start(self.b_dev)
        # Restore refused while B runs on the root (the storage lock).
        r3 = subprocess.run([ARGS.phigatectl, "restore", bdir, "--config", self.b_dev.config],
                            capture_output=True, text=True, timeout=120)
        self.assertEqual(r3.returncode, 1)
        self.assertIn("in use", r3.stderr)

        v = self.ctl_json(self.b_dev, "verify")
        self.assertTrue(v["ok"], v)
        self.assertEqual(v["instances"], rep["objects"])
        self.assertEqual(v["problem_count"], 0)
        av = self.ctl(self.b_dev, "audit", "verify")
        self.assertEqual(av.returncode, 0, av.stdout + av.stderr)
        self.assertIn("audit chain OK", av.stdout)
        lines = self.ctl(self.b_dev, "audit", "export").stdout.splitlines()
        actions = [json.loads(l)["action"] for l in lines]
        self.assertIn("restore", actions)
        self.assertNotIn("backup", actions)  # appended after the snapshot
        self.assertTrue(b.proc.poll() is None)

        # Every instance B has reads back byte-identical to A's copy and carries
        # the sent dataset.
        seen = 0
        for t in range(THREADS):
            study = STUDY % t
            code, _, body = self.curl(self.b_dev, "/studies/%s/instances" % study)
            if code == 204 or (code == 200 and body.strip() in (b"", b"[]")):
                continue
            self.assertEqual(code, 200, body[:200])
            for inst in json.loads(body):
                sop = inst["00080018"]["Value"][0]
                self.assertIn(sop, sent)
                restored = self.wado_instance(self.b_dev, study, sop)
                original = self.wado_instance(self.a_dev, study, sop)
                self.assertEqual(restored, original, sop)
                with open(sent[sop][1], "rb") as f:
                    self.assertTrue(restored.endswith(dataset_of(f.read())), sop)
                seen += 1
        self.assertEqual(seen, rep["objects"])

        # `phigatectl status` shows the scrub.
        st = self.ctl_json(self.b_dev, "status")
        self.assertIn("scrub", st["integrity"])
        self.assertEqual(self.ctl(self.b_dev, "status").returncode, 0)
        self.assertEqual(b.terminate(), 0, b.log())
        self.assertEqual(a.terminate(), 0, a.log())
        self.daemons = []


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--phigated", required=True)
    p.add_argument("--phigatectl", required=True)
    p.add_argument("--dev-pki", required=True)
    ARGS, rest = p.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)
