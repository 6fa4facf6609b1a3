#!/usr/bin/env python3
"""DICOMweb over HTTPS against the real phigated, with real clients.

curl with the dev certificates for every role (STOW, QIDO, WADO, metadata,
DELETE, /metrics, /healthz), openssl s_client for the handshake refusals,
and the npm dicomweb-client library (what OHIF uses) driven by node with a
client certificate: searchForStudies -> retrieveStudyMetadata ->
retrieveInstance, as clinician and as share. No byte of any `share`
response holds an original PHI string.
"""
import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import phigated_harness as h  # noqa: E402

ARGS = None
HERE = os.path.dirname(os.path.abspath(__file__))

PATIENT = {
    "name": "SMITH^JOHN^QUINCY", "id": "PIDX-4711-Q", "birth": "19570814",
    "acc": "ACCN-99231", "study": "1.2.826.0.1.3680043.9.4242.7",
    "desc": "SECRET CHEST PROTOCOL", "ref": "WELBY^MARCUS",
}
SECRETS = [PATIENT["name"], "SMITH", PATIENT["id"], PATIENT["birth"], PATIENT["acc"],
           PATIENT["study"], PATIENT["desc"], PATIENT["ref"], "WELBY"]


def make_instance(tmp, series, instance, burned=False):
    """A real Part 10 CT file via dcmtk's dump2dcm."""
    p = PATIENT
    series_uid = "%s.%d" % (p["study"], series)
    sop = "%s.%d" % (series_uid, instance)
    pixels = "\\".join(str(i * 3 + instance) for i in range(16))
    dump = "\n".join([
        "(0008,0016) UI =CTImageStorage",
        "(0008,0018) UI [%s]" % sop,
        "(0008,0020) DA [20240315]",
        "(0008,0030) TM [101500]",
        "(0008,0050) SH [%s]" % p["acc"],
        "(0008,0060) CS [CT]",
        "(0008,0090) PN [%s]" % p["ref"],
        "(0008,1030) LO [%s]" % p["desc"],
        "(0010,0010) PN [%s]" % p["name"],
        "(0010,0020) LO [%s]" % p["id"],
        "(0010,0030) DA [%s]" % p["birth"],
        "(0010,0040) CS [M]",
        "(0020,000d) UI [%s]" % p["study"],
        "(0020,000e) UI [%s]" % series_uid,
        "(0020,0011) IS [%d]" % series,
        "(0020,0013) IS [%d]" % instance,
        "(0028,0002) US 1",
        "(0028,0004) CS [MONOCHROME2]",
        "(0028,0010) US 4",
        "(0028,0011) US 4",
        "(0028,0100) US 16",
        "(0028,0101) US 16",
        "(0028,0102) US 15",
        "(0028,0103) US 0",
        "(0028,0301) CS [%s]" % ("YES" if burned else "NO"),
        "(7fe0,0010) OW %s" % pixels,
    ]) + "\n"
    dump_path = os.path.join(tmp, "i%d_%d.dump" % (series, instance))
    out = os.path.join(tmp, "i%d_%d.dcm" % (series, instance))
    with open(dump_path, "w") as f:
        f.write(dump)
    subprocess.run(["dump2dcm", "+te", dump_path, out], check=True)
    with open(out, "rb") as f:
        return sop, f.read()


class WebTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dev = h.DevDir(ARGS.phigated, ARGS.dev_pki, prefix="phigated-web.")
        cls.daemon = h.Daemon(ARGS.phigated, cls.dev)
        cls.daemon.wait_ready()
        cls.base = "https://localhost:%d" % cls.dev.ports[8443]
        cls.tmp = tempfile.mkdtemp(prefix="web-it.")
        cls.instances = [make_instance(cls.tmp, 1, 1), make_instance(cls.tmp, 1, 2),
                         make_instance(cls.tmp, 2, 1, burned=True)]
        boundary = "itBoundary7f3a"
        body = b""
        for _, data in cls.instances:
            body += b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n"
            body += data + b"\r\n"
        body += b"--" + boundary.encode() + b"--\r\n"
        cls.stow_body = os.path.join(cls.tmp, "stow.bin")
        with open(cls.stow_body, "wb") as f:
            f.write(body)
        cls.stow_type = 'multipart/related; type="application/dicom"; boundary=' + boundary

    @classmethod
    def tearDownClass(cls):
        cls.daemon.terminate()
        cls.dev.cleanup()

    def curl(self, role, path, method="GET", headers=(), data_file=None):
        pki = self.dev.pki
        out = os.path.join(self.tmp, "out.bin")
        cmd = ["curl", "-sS", "-o", out, "-w", "%{http_code}\n%{content_type}",
               "--cacert", pki + "/ca.pem", "--cert", "%s/%s.pem" % (pki, role),
               "--key", "%s/%s.key" % (pki, role), "-X", method, "--path-as-is",
               self.base + path]
        for hd in headers:
            cmd += ["-H", hd]
        if data_file:
            cmd += ["--data-binary", "@" + data_file]
        r = subprocess.run(cmd, capture_output=True, timeout=60)
        code, _, ctype = r.stdout.decode().partition("\n")
        with open(out, "rb") as f:
            body = f.read()
        return int(code or 0), ctype, body

    def assertNoPhi(self, data, what):
        for s in SECRETS:
            self.assertNotIn(s.encode(), data, "%s leaks %r" % (what, s))

    def test_1_stow_then_roles(self):
        code, _, body = self.curl("clinician", "/studies", "POST",
                                  ["Content-Type: " + self.stow_type], self.stow_body)
        self.assertEqual(code, 403)
        code, ctype, body = self.curl("modality", "/studies", "POST",
                                      ["Content-Type: " + self.stow_type], self.stow_body)
        self.assertEqual(code, 200, body)
        res = json.loads(body)
        self.assertEqual(len(res["00081199"]["Value"]), 3)

        # clinician: full PHI
        code, ctype, body = self.curl("clinician", "/studies?PatientName=smith*")
        self.assertEqual(code, 200, body)
        self.assertEqual(ctype, "application/dicom+json")
        studies = json.loads(body)
        self.assertEqual(len(studies), 1)
        self.assertEqual(studies[0]["00100010"]["Value"][0]["Alphabetic"], PATIENT["name"])
        code, _, body = self.curl("clinician", "/studies?PatientID=" + PATIENT["id"])
        self.assertEqual(code, 200)
        code, _, body = self.curl("clinician", "/studies?PatientName=NOBODY*")
        self.assertEqual(code, 204)
        # modality and admin do not read studies; only admin reads metrics
        self.assertEqual(self.curl("modality", "/studies")[0], 403)
        self.assertEqual(self.curl("admin", "/studies")[0], 403)
        self.assertEqual(self.curl("clinician", "/metrics")[0], 403)
        code, ctype, body = self.curl("admin", "/metrics")
        self.assertEqual(code, 200)
        self.assertIn(b'phigate_ingest_total{outcome="stored"} 3', body)
        self.assertIn(b"phigate_https_request_duration_seconds_bucket", body)
        for role in ("clinician", "share", "admin", "modality"):
            self.assertEqual(self.curl(role, "/healthz")[0], 200, role)

    def test_2_wado_clinician(self):
        p = PATIENT
        code, ctype, body = self.curl(
            "clinician", "/studies/" + p["study"],
            headers=['Accept: multipart/related; type="application/dicom"'])
        self.assertEqual(code, 200)
        self.assertTrue(ctype.startswith("multipart/related"), ctype)
        for _, data in self.instances:
            self.assertIn(data, body)  # byte-identical parts
        code, _, body = self.curl("clinician", "/studies/%s/metadata" % p["study"])
        self.assertEqual(code, 200)
        meta = json.loads(body)
        self.assertEqual(len(meta), 3)
        self.assertIn("BulkDataURI", meta[0]["7FE00010"])
        inst = "/studies/{0}/series/{0}.1/instances/{0}.1.1".format(p["study"])
        code, _, body = self.curl(
            "clinician", inst + "/frames/1",
            headers=['Accept: multipart/related; type="application/octet-stream"'])
        self.assertEqual(code, 200)
        code, _, body = self.curl("clinician", "/studies/" + p["study"],
                                  headers=["Accept: image/png"])
        self.assertEqual(code, 406)
        # One instance: a fixed representation that curl can fetch in two ranges
        # (as a viewer resumes a broken download) and glue back together.
        code, ctype, whole = self.curl("clinician", inst)
        self.assertEqual(code, 200)
        self.assertIn(dict(self.instances)["%s.1.1" % p["study"]], whole)
        code, ctype2, head = self.curl("clinician", inst, headers=["Range: bytes=0-99"])
        self.assertEqual((code, ctype2, head), (206, ctype, whole[:100]))
        code, _, tail = self.curl("clinician", inst, headers=["Range: bytes=100-"])
        self.assertEqual((code, head + tail), (206, whole))
        code, _, _ = self.curl("clinician", inst, headers=["Range: bytes=%d-" % len(whole)])
        self.assertEqual(code, 416)

    def test_3_share_is_deidentified(self):
        seen = b""
        code, _, body = self.curl("share", "/studies")
        self.assertEqual(code, 200)
        seen += body
        study = json.loads(body)[0]["0020000D"]["Value"][0]
        self.assertTrue(study.startswith("2.25."))
        code, _, body = self.curl("share", "/studies/%s/series" % study)
        self.assertEqual(code, 200)
        seen += body
        series = [s["0020000E"]["Value"][0] for s in json.loads(body)]
        for se in series:
            code, _, body = self.curl("share", "/studies/%s/series/%s/instances" % (study, se))
            self.assertIn(code, (200, 204))
            seen += body
        for path in ("/studies/%s/metadata" % study, "/studies/%s" % study):
            code, _, body = self.curl("share", path)
            self.assertEqual(code, 200, path)
            seen += body
        # 2 parts: the instance flagged BurnedInAnnotation=YES is withheld
        self.assertEqual(seen.count(b"\r\nContent-Type: application/dicom\r\n"), 2)
        self.assertEqual(self.curl("share", "/studies?PatientName=SMITH*")[0], 400)
        self.assertNoPhi(seen, "share responses")

    def test_4_dicomweb_client(self):
        env = dict(os.environ)
        env["NODE_PATH"] = os.path.join(HERE, "node_modules")
        pki = self.dev.pki
        results = {}
        for role in ("clinician", "share"):
            r = subprocess.run(
                ["node", os.path.join(HERE, "dicomweb_client.js"), self.base,
                 "%s/%s.pem" % (pki, role), "%s/%s.key" % (pki, role), pki + "/ca.pem"],
                capture_output=True, text=True, timeout=120, env=env)
            self.assertEqual(r.returncode, 0, r.stderr)
            results[role] = json.loads(r.stdout.strip().splitlines()[-1])
        c = results["clinician"]
        self.assertEqual(c["studies"], 1)
        self.assertEqual(c["metadata"], 3)
        self.assertEqual(c["dicm"], "DICM")
        self.assertEqual(c["names"], [PATIENT["name"]])
        s = results["share"]
        self.assertEqual(s["metadata"], 2)  # burned-in annotation withheld
        self.assertEqual(s["dicm"], "DICM")
        self.assertNoPhi(base64.b64decode(s["raw"]), "dicomweb-client share")

    def test_5_bad_input(self):
        for path in ("/studies/..%2f..%2fetc", "/studies/%2e%2e/series", "/studies?limit=-1",
                     "/studies?NoSuchAttr=1", "/studies/1.2.3/../4"):
            code, ctype, body = self.curl("clinician", path)
            self.assertEqual(code // 100, 4, path)
            self.assertNotIn(b"etc", body)
        code, _, body = self.curl("clinician", "/studies/1.2.999/metadata")
        self.assertEqual(code, 404)
        bad = os.path.join(self.tmp, "bad.bin")
        with open(bad, "wb") as f:
            f.write(b"--zz\r\nContent-Type: application/dicom\r\n\r\nDICMgarbage")
        code, _, _ = self.curl("modality", "/studies", "POST",
                               ["Content-Type: multipart/related; boundary=zz"], bad)
        self.assertEqual(code, 400)

    def test_6_handshake_refusals(self):
        pki = self.dev.pki
        for name in (None, "untrusted", "expired", "revoked"):
            cmd = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % self.dev.ports[8443],
                   "-CAfile", pki + "/ca.pem", "-quiet", "-verify_return_error"]
            if name:
                cmd += ["-cert", "%s/%s.pem" % (pki, name), "-key", "%s/%s.key" % (pki, name)]
            r = subprocess.run(cmd, input=b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
                               capture_output=True, timeout=30)
            self.assertNotIn(b"HTTP/1.1 200", r.stdout, name)

    def test_7_delete_admin_only(self):
        # Last (unittest orders by name): erases the study.
        study = PATIENT["study"]
        self.assertEqual(self.curl("clinician", "/studies/" + study, "DELETE")[0], 403)
        code, _, body = self.curl("admin", "/studies/" + study, "DELETE")
        self.assertEqual(code, 202, body)
        self.assertGreater(json.loads(body)["erasure_certificate"]["audit_seq"], 0)
        self.assertEqual(self.curl("clinician", "/studies")[0], 204)


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--phigated", required=True)
    ap.add_argument("--dev-pki", required=True)
    ARGS, rest = ap.parse_known_args()
    # dicomweb-client from the lock file (offline first).
    if not os.path.isdir(os.path.join(HERE, "node_modules", "dicomweb-client")):
        r = subprocess.run(["npm", "ci", "--offline", "--no-audit", "--no-fund"], cwd=HERE)
        if r.returncode != 0:
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=HERE, check=True)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
