#!/usr/bin/env python3
"""DICOM ingest end to end against the REAL phigated (issue 4).

- CorpusTest: a varied corpus (CT implicit VR with ISO_IR 100 names, MR with
  UTF-8 names, private tags and undefined-length sequences, US multi-frame,
  JPEG lossless, JPEG-LS, RLE, deflated) sent with unmodified storescu over
  plain and over TLS (dev PKI client certificates); phigated is stopped with
  SIGTERM and the storage is opened offline with services::StorageStack
  (phi_storage_readback): every instance's dataset reads back byte-identical to
  the sent file's (after the meta header; deflated ones compared inflated).
- RefusalTest: no client certificate, untrusted, expired, revoked, an AE title
  not allowed, an AE title bound to another certificate: refused by the real
  daemon, nothing stored.
- ConflictTest: the same StudyInstanceUID with another PatientID is stored and
  flagged; `phigatectl conflicts` lists it (UID, no patient names or IDs).
- Kill9Test: kill -9 during a push over 4 parallel associations, restart:
  every instance storescu saw acknowledged with Success is there and intact.
All tools run with TCP_NODELAY=1.
"""
import argparse
import concurrent.futures
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import unittest
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import phigated_harness as h  # noqa: E402

ARGS = None
ROOT = "1.2.826.0.1.3680043.10.1137.44"
TOOL_ENV = dict(os.environ, TCP_NODELAY="1")

PEERS = """  allowed_peers:
    - ae_title: STORESCU
      networks: [127.0.0.0/8]
    - ae_title: ECHOSCU
      networks: [127.0.0.0/8]
    - ae_title: CT01
      certificate_subject: "CN=modality,O=phigate-dev"
"""


def restrict_peers(yaml):
    out, n = re.subn(r"  allowed_peers:\n(    .*\n|      .*\n)+", PEERS, yaml, count=1)
    assert n == 1, "dev config has no dicom allowed_peers block"
    return out


def run(cmd, check=False, timeout=120):
    r = subprocess.run(cmd, capture_output=True, text=True, env=TOOL_ENV, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s%s" % (cmd[0], r.returncode, r.stdout, r.stderr))
    return r


def hexbytes(n, mul):
    return "\\".join("%02x" % ((i * mul) & 0xFF) for i in range(n))


def hexwords(n, mul):
    return "\\".join("%04x" % ((i * mul) & 0x0FFF) for i in range(n))


def image_dump(sop_class, uid, study, series, name, pid, modality, rows, cols, bits, frames=1,
               charset="ISO_IR 192", extra=""):
    d = ["(0008,0005) CS [%s]" % charset,
         "(0008,0016) UI =%s" % sop_class,
         "(0008,0018) UI [%s]" % uid,
         "(0008,0020) DA [20240131]",
         "(0008,0050) SH [ACC-%s]" % pid,
         "(0008,0060) CS [%s]" % modality,
         "(0010,0010) PN [%s]" % name,
         "(0010,0020) LO [%s]" % pid,
         "(0010,0030) DA [19700101]",
         "(0020,000d) UI [%s]" % study,
         "(0020,000e) UI [%s]" % series,
         "(0020,0013) IS [1]"]
    d.append(extra.rstrip("\n")) if extra else None
    d += ["(0028,0002) US 1", "(0028,0004) CS [MONOCHROME2]"]
    if frames > 1:
        d.append("(0028,0008) IS [%d]" % frames)
    d += ["(0028,0010) US %d" % rows, "(0028,0011) US %d" % cols,
          "(0028,0100) US %d" % bits, "(0028,0101) US %d" % bits,
          "(0028,0102) US %d" % (bits - 1), "(0028,0103) US 0"]
    n = rows * cols * frames
    if bits == 8:
        d.append("(7fe0,0010) OB " + hexbytes(n, 7))
    else:
        d.append("(7fe0,0010) OW " + hexwords(n, 13))
    return "\n".join(d) + "\n"


SEQ_AND_PRIVATE = (
    "(0008,1140) SQ (Sequence with undefined length)\n"
    "  (fffe,e000) na (Item with undefined length)\n"
    "    (0008,1150) UI =CTImageStorage\n    (0008,1155) UI [1.2.3.4.5]\n"
    "  (fffe,e00d) na (ItemDelimitationItem)\n"
    "(fffe,e0dd) na (SequenceDelimitationItem)\n"
    "(0009,0010) LO [PHITEST]\n(0009,1001) LO [private value]\n")


def make_corpus(d):
    """Returns [(name, path, sop_uid, deflated, storescu options)]; files written into d."""
    study = ROOT + ".1"
    items = [
        # name, dump, dump2dcm opts, post-process, storescu proposal
        ("ct_latin1_implicit",
         image_dump("CTImageStorage", ROOT + ".2.1", study, study + ".1", "J\xf6rg^G\xfcnther",
                    "PID-1", "CT", 64, 64, 16, charset="ISO_IR 100",
                    extra="(0011,0010) LO [PHITEST2]\n(0011,1002) LO [x]"), ["+ti"], None, ["-xi"]),
        ("mr_utf8_seq_private",
         image_dump("MRImageStorage", ROOT + ".2.2", study, study + ".2", "M\u00fcller^Hans",
                    "PID-1", "MR", 32, 32, 16, extra=SEQ_AND_PRIVATE), ["+te"], None, []),
        ("us_multiframe",
         image_dump("UltrasoundMultiframeImageStorage", ROOT + ".2.3", study, study + ".3",
                    "Test^Us", "PID-1", "US", 32, 32, 8, frames=6), ["+te"], None, []),
        ("ct_jpeg_lossless",
         image_dump("CTImageStorage", ROOT + ".2.4", study, study + ".1", "Test^Jpeg", "PID-1",
                    "CT", 64, 64, 16), ["+te"], ["dcmcjpeg"], ["-xs"]),
        ("ct_jpegls",
         image_dump("CTImageStorage", ROOT + ".2.5", study, study + ".1", "Test^Jls", "PID-1",
                    "CT", 64, 64, 16), ["+te"], ["dcmcjpls"], ["-xt"]),
        ("sc_rle",
         image_dump("SecondaryCaptureImageStorage", ROOT + ".2.6", study, study + ".4",
                    "Test^Rle", "PID-1", "OT", 64, 64, 8), ["+te"], ["dcmcrle"], ["-xr"]),
        ("mr_deflated",
         image_dump("MRImageStorage", ROOT + ".2.7", study, study + ".2", "Test^Deflate",
                    "PID-1", "MR", 32, 32, 16), ["+te"], ["dcmconv", "+td"], ["-xd"]),
    ]
    out = []
    for name, dump, opts, post, scu_opts in items:
        dump_path = os.path.join(d, name + ".dump")
        with open(dump_path, "w", encoding="latin-1" if "latin1" in name else "utf-8") as f:
            f.write(dump)
        dcm = os.path.join(d, name + ".dcm")
        raw = dcm if post is None else os.path.join(d, name + ".raw.dcm")
        run(["dump2dcm", "+l", "200000"] + opts + [dump_path, raw], check=True)
        if not os.path.exists(raw):
            raise AssertionError("dump2dcm wrote no " + raw)
        if post is not None:
            run(post + [raw, dcm], check=True)
        uid = re.search(r"\(0008,0018\) UI \[([^\]]+)\]", dump).group(1)
        out.append((name, dcm, uid, name == "mr_deflated", scu_opts))
    return out


def dataset(part10, deflated=False):
    """The dataset bytes after the File Meta Information (inflated when deflated)."""
    assert part10[128:132] == b"DICM", "not a Part 10 file"
    gl = int.from_bytes(part10[140:144], "little")
    ds = part10[144 + gl:]
    return zlib.decompress(ds, -15) if deflated else ds


def meta_ts(part10):
    m = re.search(rb"\x02\x00\x10\x00UI(..)", part10[:4096], re.S)
    n = int.from_bytes(m.group(1), "little")
    return part10[m.end():m.end() + n].rstrip(b"\0 ").decode()


def tls_opts(pki, who):
    return ["+tls", "%s/%s.key" % (pki, who), "%s/%s.pem" % (pki, who), "+cf", pki + "/ca.pem"]


def storescu(dev, files, tls_who=None, aet="STORESCU", extra=None):
    cmd = ["storescu", "-v", "-aet", aet, "-aec", "PHIGATE"] + (extra or [])
    if tls_who:
        cmd += tls_opts(dev.pki, tls_who) + ["127.0.0.1", str(dev.ports[2762])]
    else:
        cmd += ["127.0.0.1", str(dev.ports[11112])]
    return run(cmd + list(files), timeout=300)


def readback(dev, out_dir):
    """Opens the storage offline; returns {sop: (path, study_uid, conflict)}."""
    os.makedirs(out_dir, exist_ok=True)
    r = subprocess.run([ARGS.readback, "--config", dev.config, "--out", out_dir],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise AssertionError("readback failed: " + r.stderr)
    got = {}
    for line in r.stdout.splitlines():
        sop, study, size, conflict = line.split()
        path = os.path.join(out_dir, sop + ".dcm")
        assert os.path.getsize(path) == int(size)
        got[sop] = (path, study, conflict == "1")
    return got


def read(path):
    with open(path, "rb") as f:
        return f.read()


class DaemonCase(unittest.TestCase):
    def setUp(self):
        self.dev = h.DevDir(ARGS.phigated, ARGS.dev_pki, prefix="phigated-ingest.",
                            transform=restrict_peers)
        self.d = None

    def tearDown(self):
        if self.d:
            self.d.kill()
        if os.environ.get("PHI_KEEP_TMP"):
            print("kept", self.dev.dir)
        else:
            self.dev.cleanup()

    def start(self):
        self.d = h.Daemon(ARGS.phigated, self.dev)
        self.d.wait_ready()

    def stop(self):
        rc = self.d.terminate()
        self.assertEqual(rc, 0, self.d.log())

    def ctl_json(self, *args):
        r = h.ctl(ARGS.phigatectl, self.dev.socket, "--json", *args)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return json.loads(r.stdout)

    def assert_no_phi_in_log(self, *phi):
        log = self.d.log() if self.d else ""
        for p in phi:
            self.assertNotIn(p, log)


class CorpusTest(DaemonCase):
    def test_corpus_plain_and_tls_byte_identical(self):
        corpus = make_corpus(self.dev.dir)
        self.start()
        r = run(["echoscu", "-aet", "ECHOSCU", "-aec", "PHIGATE"] + tls_opts(self.dev.pki, "modality")
                + ["127.0.0.1", str(self.dev.ports[2762])])
        self.assertEqual(r.returncode, 0, r.stderr)
        # Half over plain, half over TLS; compressed ones each in their own association
        # proposing the file's transfer syntax.
        for i, (name, path, uid, _, scu_opts) in enumerate(corpus):
            who = "modality" if i % 2 else None
            r = storescu(self.dev, [path], tls_who=who, extra=scu_opts)
            self.assertEqual(r.returncode, 0, name + "\n" + r.stdout + r.stderr)
            self.assertIn("Received Store Response (Success)", r.stdout + r.stderr, name)
        # The same file again: keep-first duplicate, still a success for the peer.
        r = storescu(self.dev, [corpus[0][1]], tls_who="modality", extra=corpus[0][4])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        st = self.ctl_json("status")
        self.assertEqual(st["counts"]["instances"], len(corpus))
        self.stop()
        self.assert_no_phi_in_log("G\u00fcnther", "M\u00fcller", "PID-1", "ACC-PID-1", "19700101")

        got = readback(self.dev, self.dev.dir + "/readback")
        self.assertEqual(set(got), {c[2] for c in corpus})
        for name, path, uid, deflated, _ in corpus:
            sent, back = read(path), read(got[uid][0])
            self.assertEqual(meta_ts(sent), meta_ts(back), name)
            self.assertEqual(dataset(sent, deflated), dataset(back, deflated),
                             name + ": dataset bytes differ")
            self.assertIn(b"PHIGATE", back[:1024], name)  # our meta header
            self.assertFalse(got[uid][2], name)  # no conflict
        # Nothing readable in plaintext on disk: objects are encrypted.
        for root, _, files in os.walk(self.dev.dir + "/storage"):
            for f in files:
                data = read(os.path.join(root, f))
                self.assertNotIn("M\u00fcller".encode(), data, f)
                self.assertNotIn(b"PID-1", data, f)


class RefusalTest(DaemonCase):
    def test_refusals_against_real_daemon(self):
        corpus = make_corpus(self.dev.dir)
        f = corpus[0][1]
        self.start()
        tls_addr = ["127.0.0.1", str(self.dev.ports[2762])]
        # No client certificate (anonymous TLS).
        r = run(["storescu", "-aet", "STORESCU", "-aec", "PHIGATE", "+tla", "+cf",
                 self.dev.pki + "/ca.pem"] + tls_addr + [f])
        self.assertNotEqual(r.returncode, 0, "no client certificate accepted")
        for who in ("untrusted", "expired", "revoked"):
            r = storescu(self.dev, [f], tls_who=who)
            self.assertNotEqual(r.returncode, 0, who + " accepted")
            self.assertNotIn("Received Store Response", r.stdout + r.stderr, who)
        # Calling AE not in the allow-list (plain and TLS).
        r = storescu(self.dev, [f], aet="NOTALLOWED")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("Calling AE Title Not Recognized", r.stdout + r.stderr)
        r = storescu(self.dev, [f], tls_who="modality", aet="NOTALLOWED")
        self.assertIn("Calling AE Title Not Recognized", r.stdout + r.stderr)
        # Called AE not ours.
        r = run(["storescu", "-aet", "STORESCU", "-aec", "OTHER", "127.0.0.1",
                 str(self.dev.ports[11112]), f])
        self.assertIn("Called AE Title Not Recognized", r.stdout + r.stderr)
        # CT01 is bound to the modality certificate: another valid one is refused,
        # and CT01 over plain (no certificate at all) too.
        r = storescu(self.dev, [f], tls_who="clinician", aet="CT01")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("Association Rejected", r.stdout + r.stderr)
        r = storescu(self.dev, [f], aet="CT01")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("Association Rejected", r.stdout + r.stderr)
        self.assertEqual(self.ctl_json("status")["counts"]["instances"], 0)
        # The right certificate for CT01 is accepted.
        r = storescu(self.dev, [f], tls_who="modality", aet="CT01")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(self.ctl_json("status")["counts"]["instances"], 1)
        self.stop()
        # Every refusal is in the audit trail (read offline from the catalog).
        rows = subprocess.run(
            ["sqlite3", "-readonly", self.dev.dir + "/storage/catalog.db",
             "SELECT action, outcome, actor FROM audit WHERE action IN "
             "('login_failure', 'dicom_associate') ORDER BY seq"],
            capture_output=True, text=True, check=True).stdout.splitlines()
        actions = [r.split("|")[0] for r in rows]
        self.assertEqual(actions.count("login_failure"), 4, rows)  # none/untrusted/expired/revoked
        self.assertEqual(actions.count("dicom_associate"), 5, rows)
        self.assertTrue(all(r.split("|")[1] == "denied" for r in rows), rows)
        self.assertTrue(any("dicom:CT01 CN=clinician" in r for r in rows), rows)


class ConflictTest(DaemonCase):
    def test_conflicting_patient_is_flagged_and_listed(self):
        d = self.dev.dir
        study = ROOT + ".9"
        a = image_dump("CTImageStorage", ROOT + ".9.1", study, study + ".1", "First^Patient",
                       "PID-FIRST", "CT", 8, 8, 16)
        b = image_dump("CTImageStorage", ROOT + ".9.2", study, study + ".1", "Second^Patient",
                       "PID-SECOND", "CT", 8, 8, 16)
        c = image_dump("CTImageStorage", ROOT + ".8.1", ROOT + ".8", ROOT + ".8.1",
                       "Other^Patient", "PID-OTHER", "CT", 8, 8, 16)
        files = []
        for n, dump in (("a", a), ("b", b), ("c", c)):
            with open(d + "/%s.dump" % n, "w") as f:
                f.write(dump)
            run(["dump2dcm", "+te", d + "/%s.dump" % n, d + "/%s.dcm" % n], check=True)
            files.append(d + "/%s.dcm" % n)
        self.start()
        self.assertEqual(self.ctl_json("conflicts")["studies"], [])
        r = storescu(self.dev, files)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        out = self.ctl_json("conflicts")
        self.assertEqual(len(out["studies"]), 1, out)
        s = out["studies"][0]
        self.assertEqual(s["study_instance_uid"], study)
        self.assertEqual(s["num_instances"], 2)  # stored, not dropped
        self.assertIs(out["truncated"], False)
        # Human output: no patient names or IDs anywhere.
        r = h.ctl(ARGS.phigatectl, self.dev.socket, "conflicts")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(study, r.stdout)
        for phi in ("PID-FIRST", "PID-SECOND", "First", "Second"):
            self.assertNotIn(phi, r.stdout)
        # Paging arguments are checked.
        self.assertEqual(self.ctl_json("conflicts", "--after", str(s["study_pk"]))["studies"], [])
        r = h.ctl(ARGS.phigatectl, self.dev.socket, "conflicts", "--limit", "0")
        self.assertEqual(r.returncode, 1)
        self.stop()
        self.assert_no_phi_in_log("PID-FIRST", "PID-SECOND", "Second^Patient")
        got = readback(self.dev, d + "/readback")
        self.assertTrue(got[ROOT + ".9.1"][2] and got[ROOT + ".9.2"][2])
        self.assertFalse(got[ROOT + ".8.1"][2])


def write_part10_ct(path, sop, study, series, rows, cols, seed):
    """A CT image, Explicit VR Little Endian, written directly (no DCMTK)."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                    "bench"))
    import gen_corpus  # noqa: E402
    gen_corpus.write_image(path, "1.2.840.10008.5.1.4.1.1.2", sop, study, series, "CT",
                           rows, cols, 16, 1, seed)


class Kill9Test(DaemonCase):
    PER_ASSOC = 60

    def test_kill9_during_four_association_push(self):
        d = self.dev.dir
        batches = []
        for a in range(4):
            os.mkdir("%s/batch%d" % (d, a))
            files = []
            for i in range(self.PER_ASSOC):
                p = "%s/batch%d/%03d.dcm" % (d, a, i)
                write_part10_ct(p, "%s.7.%d.%d" % (ROOT, a, i), ROOT + ".7", "%s.7.%d" % (ROOT, a),
                                256, 256, a * 1000 + i)
                files.append(p)
            batches.append(files)
        self.start()
        procs, logs = [], []
        for a, files in enumerate(batches):
            log = open("%s/storescu-%d.log" % (d, a), "w")
            logs.append(log)
            procs.append(subprocess.Popen(
                ["storescu", "-v", "-aet", "STORESCU", "-aec", "PHIGATE"] +
                (tls_opts(self.dev.pki, "modality") + ["127.0.0.1", str(self.dev.ports[2762])]
                 if a % 2 else ["127.0.0.1", str(self.dev.ports[11112])]) + files,
                stdout=log, stderr=subprocess.STDOUT, env=TOOL_ENV))

        def successes():
            n = 0
            for a in range(4):
                with open("%s/storescu-%d.log" % (d, a), errors="replace") as f:
                    n += f.read().count("Received Store Response (Success)")
            return n

        # Kill once a fair part (but not all) has been acknowledged.
        deadline = time.monotonic() + 60
        while successes() < self.PER_ASSOC and time.monotonic() < deadline:
            time.sleep(0.01)
        self.d.kill()
        for p in procs:
            p.wait(60)
        for log in logs:
            log.close()

        acked = {}
        for a in range(4):
            with open("%s/storescu-%d.log" % (d, a), errors="replace") as f:
                current = None
                for line in f:
                    m = re.search(r"Sending file: (\S+)", line)
                    if m:
                        current = m.group(1)
                    if "Received Store Response (Success)" in line:
                        self.assertIsNotNone(current)
                        acked[current] = True
        total = sum(len(b) for b in batches)
        self.assertGreater(len(acked), 0)
        self.assertLess(len(acked), total, "the kill came after everything was acknowledged")

        # Restart: recovery runs before the listeners; every acknowledged instance is there.
        self.start()
        st = self.ctl_json("status")
        self.assertGreaterEqual(st["counts"]["instances"], len(acked))
        self.assertEqual(os.listdir(self.dev.dir + "/storage/tmp"), [])
        self.stop()
        got = readback(self.dev, d + "/readback")
        self.assertEqual(len(got), st["counts"]["instances"])
        for path in acked:
            sop = "%s.7.%s.%s" % (ROOT, path.split("/batch")[1].split("/")[0],
                                  int(os.path.basename(path)[:3]))
            self.assertIn(sop, got, "acknowledged instance lost: " + path)
            self.assertEqual(dataset(read(path)), dataset(read(got[sop][0])), path)
        # Unacknowledged ones may or may not be there, but whatever is there is intact.
        for sop, (p, _, _) in got.items():
            a, i = sop.split(".7.")[1].split(".")
            self.assertEqual(dataset(read(batches[int(a)][int(i)])), dataset(read(p)), sop)
        print("kill -9: %d of %d acknowledged before the kill, %d present after restart"
              % (len(acked), total, len(got)), file=sys.stderr)


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--phigated", required=True)
    p.add_argument("--phigatectl", required=True)
    p.add_argument("--readback", required=True)
    p.add_argument("--dev-pki", required=True)
    ARGS, rest = p.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
