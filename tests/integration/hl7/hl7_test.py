#!/usr/bin/env python3
"""HL7 v2 against a real phigated, with real clients.

- python3-hl7's mllp_send sends the corpus (HL7 2.3, 2.3.1, 2.5.1; escapes,
  repetitions, Z-segments, enhanced mode) to the plain listener: AA/CA each.
- socat (OpenSSL) over TLS with the dev PKI: AA; no certificate, untrusted,
  expired and revoked certificates: handshake refused, no ACK.
- A study stored with storescu, then ADT^A08: its sealed PHI is rewritten;
  A40 moves it to the surviving patient ID token; ORM creates a worklist
  row and ORC CA removes it; ORU stores a report (checked with sqlite3 on
  the live catalog: counts and tokens only, the content is sealed).
- Bad input: garbage between frames, no MSH, wrong delimiters, a 10 MB
  segment, invalid UTF-8, over the size limit, a frame without end: the
  right refusal, and the daemon keeps serving other connections.
- Nothing of the messages is in clear anywhere under the storage root.
"""
import argparse
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "common"))
import phigated_harness as h  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "messages")
SB, EB = b"\x0b", b"\x1c\x0d"

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def corpus(name):
    with open(os.path.join(CORPUS, name), "rb") as f:
        return f.read()


def msa_codes(text):
    return [seg.split("|")[1] for seg in text.replace("\n", "\r").split("\r")
            if seg.startswith("MSA|")]


def err_codes(text):
    out = []
    for seg in text.replace("\n", "\r").split("\r"):
        if seg.startswith("ERR|"):
            f = seg.split("|")
            out.append(f[3].split("^")[0] if len(f) > 3 and f[3] else f[1].split("^")[3].split("&")[0])
    return out


def exchange(port, payload, timeout=10.0, expect_acks=1):
    """Sends raw bytes on a plain connection; returns (acks text, closed_by_server)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(payload)
    got = b""
    closed = False
    deadline = time.monotonic() + timeout
    while got.count(EB) < expect_acks and time.monotonic() < deadline:
        try:
            d = s.recv(65536)
        except socket.timeout:
            break
        if not d:
            closed = True
            break
        got += d
    s.close()
    return got.replace(SB, b"").replace(EB, b"\r").decode("utf-8", "replace"), closed


def sql(dev, query):
    r = subprocess.run(["sqlite3", "-readonly", dev.dir + "/storage/catalog.db", query],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def make_dicom(path, tmp):
    dump = tmp + "/study.dump"
    with open(dump, "w") as f:
        f.write("\n".join([
            "(0008,0016) UI =CTImageStorage",
            "(0008,0018) UI [1.2.826.0.1.3680043.9.7.1.1.1]",
            "(0008,0020) DA [20240315]",
            "(0008,0050) SH [ACC-0001]",
            "(0008,0060) CS [CT]",
            "(0010,0010) PN [SMITH^JOHN]",
            "(0010,0020) LO [PID-4711]",
            "(0010,0030) DA [19600101]",
            "(0020,000d) UI [1.2.826.0.1.3680043.9.7.1]",
            "(0020,000e) UI [1.2.826.0.1.3680043.9.7.1.1]",
            "(7fe0,0010) OW 0000\\0000",
        ]) + "\n")
    subprocess.run(["dump2dcm", "--write-file", dump, path], check=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--phigated", required=True)
    ap.add_argument("--dev-pki", required=True)
    args = ap.parse_args()

    def small_limit(yaml):
        # 12 MiB: the 10 MB segment fits in a frame (the parser refuses it),
        # a 13 MB message does not (the framer closes the connection).
        return yaml.replace("hl7:\n", "hl7:\n  max_message_bytes: 12582912\n", 1)

    dev = h.DevDir(args.phigated, args.dev_pki, prefix="phigated-hl7.", transform=small_limit)
    d = h.Daemon(args.phigated, dev)
    try:
        d.wait_ready()
        plain, tls = dev.ports[2575], dev.ports[2576]

        # --- mllp_send (python3-hl7), the whole corpus in order
        order = ["adt_a01_v23.hl7", "adt_a08_v231.hl7", "orm_o01_v231.hl7", "omi_o23_v251.hl7",
                 "oru_r01_v251.hl7"]
        # A study of PID-4711 stored first, so the ADT reaches it.
        make_dicom(dev.dir + "/study.dcm", dev.dir)
        r = subprocess.run(["storescu", "-aet", "MODALITY1", "-aec", "PHIGATE", "127.0.0.1",
                            str(dev.ports[11112]), dev.dir + "/study.dcm"],
                           capture_output=True, text=True, timeout=60)
        check(r.returncode == 0, "storescu stores the study (%s)" % r.stderr.strip()[-200:])
        phi_before = sql(dev, "SELECT hex(phi) FROM studies")
        batch = dev.dir + "/batch.hl7"
        with open(batch, "wb") as f:
            for n in order:
                f.write(corpus(n).replace(b"\r", b"\n") + b"\n")
        r = subprocess.run(["mllp_send", "--loose", "--port", str(plain), "--file", batch,
                            "127.0.0.1"], capture_output=True, text=True, timeout=60)
        codes = msa_codes(r.stdout)
        check(codes == ["AA", "AA", "AA", "CA", "AA"],
              "mllp_send: AA for each v2.3/2.3.1/2.5.1 message (CA in enhanced mode): %s" % codes)
        check(sql(dev, "SELECT count(*) FROM hl7_messages") == "5", "5 messages stored")
        check(sql(dev, "SELECT count(*) FROM worklist") == "2", "ORM and OMI created 2 worklist rows")
        check(sql(dev, "SELECT count(*) FROM reports") == "1", "ORU stored a report")
        phi_after = sql(dev, "SELECT hex(phi) FROM studies")
        check(phi_before != phi_after and phi_after != "",
              "ADT^A01/A08 re-sealed the stored study's PHI")
        check(sql(dev, "SELECT count(*) FROM patient_keys") == "2", "one patient key per patient")

        # Latin-1 message (MSH-18 8859/1), raw socket.
        acks, _ = exchange(plain, SB + corpus("adt_a31_latin1_v231.hl7") + EB)
        check(msa_codes(acks) == ["AA"], "ISO 8859-1 ADT^A31: AA")

        # --- TLS with a real OpenSSL client (socat)
        framed = dev.dir + "/framed.bin"
        with open(framed, "wb") as f:
            f.write(SB + corpus("adt_a08_v231.hl7") + EB)

        def socat(cert):
            opts = "cafile=%s/ca.pem" % dev.pki
            if cert:
                opts += ",cert=%s/%s.pem,key=%s/%s.key" % (dev.pki, cert, dev.pki, cert)
            else:
                opts += ",verify=1"
            cmd = "(cat %s; sleep 2) | socat -t 3 - OPENSSL:127.0.0.1:%d,%s" % (framed, tls, opts)
            return subprocess.run(["bash", "-c", cmd], capture_output=True, timeout=60)

        r = socat("clinician")
        check(msa_codes(r.stdout.replace(SB, b"").decode()) == ["AA"], "TLS (socat, dev PKI): AA")
        for bad in [None, "untrusted", "expired", "revoked"]:
            r = socat(bad)
            check(b"MSA|" not in r.stdout, "TLS with %s: refused, no ACK" % (bad or "no certificate"))

        # --- merge: the study moves to PID-9999; cancel removes the order
        old_tok = sql(dev, "SELECT hex(patient_id_token) FROM studies")
        acks, _ = exchange(plain, SB + corpus("adt_a40_v251.hl7") + EB + SB +
                           corpus("orm_o01_cancel_v231.hl7") + EB, expect_acks=2)
        check(msa_codes(acks) == ["AA", "AA"], "A40 and ORC CA: AA (%s)" % msa_codes(acks))
        check(sql(dev, "SELECT hex(patient_id_token) FROM studies") != old_tok,
              "A40 moved the study to the surviving patient ID token")
        check(sql(dev, "SELECT count(*) FROM worklist") == "1", "ORC CA removed its worklist row")

        # --- bad input
        n_msgs = sql(dev, "SELECT count(*) FROM hl7_messages")
        adt = corpus("adt_a08_v231.hl7")
        acks, _ = exchange(plain, b"garbage" + SB + adt + EB + b"\r\nmore garbage" + SB + adt + EB,
                           expect_acks=2)
        check(msa_codes(acks) == ["AA", "AA"], "garbage between frames skipped: AA, AA")
        acks, closed = exchange(plain, SB + b"PID|1||X\r" + EB)
        check(acks == "" and closed, "no MSH: connection closed without ACK")
        acks, closed = exchange(plain, SB + b"MSH|^^\\&|A|B|C|D|1||ADT^A08|W1|P|2.5\rPID|1||X\r" + EB)
        check(acks == "" and closed, "wrong delimiters (unreadable MSH): closed without ACK")
        seg = b"MSH|^~\\&|A|B|C|D|1||ADT^A08|BIG1|P|2.5\rPID|1||PID-4711\rOBX|1|TX|||" + \
            b"x" * (10 * 1000 * 1000) + b"\r"
        acks, _ = exchange(plain, SB + seg + EB, timeout=30)
        check(msa_codes(acks) == ["AE"] and err_codes(acks) == ["102"],
              "10 MB segment: AE with ERR 102 (%s %s)" % (msa_codes(acks), err_codes(acks)))
        acks, _ = exchange(plain, SB + b"MSH|^~\\&|A|B|C|D|1||ADT^A08|U1|P|2.5\rPID|1||\xff\xfe\r" + EB)
        check(msa_codes(acks) == ["AE"] and err_codes(acks) == ["102"], "invalid UTF-8: AE 102")
        acks, _ = exchange(plain, SB + b"MSH|^~\\&|A|B|C|D|1||ADT^A03|N1|P|2.5\rPID|1||X\r" + EB)
        check(msa_codes(acks) == ["AR"] and err_codes(acks) == ["201"], "ADT^A03: AR 201")
        acks, _ = exchange(plain, SB + b"MSH|^~\\&|A|B|C|D|1||XYZ^Z99|N2|P|2.5\r" + EB)
        check(msa_codes(acks) == ["AR"] and err_codes(acks) == ["200"],
              "unknown type: AR 200 unsupported message type")
        acks, closed = exchange(plain, SB + b"MSH|^~\\&|" + b"y" * (13 * 1024 * 1024), timeout=30)
        check(acks == "" and closed, "over the size limit: closed while reading")
        # A frame without end: the other connections are unaffected meanwhile.
        hang = socket.create_connection(("127.0.0.1", plain))
        hang.sendall(SB + adt)
        acks, _ = exchange(plain, SB + adt + EB)
        check(msa_codes(acks) == ["AA"], "a frame without end does not block other connections")
        hang.close()
        check(sql(dev, "SELECT count(*) FROM hl7_messages") == str(int(n_msgs) + 3),
              "refused messages stored nothing (only the 3 accepted ones)")
        check(d.proc.poll() is None, "daemon still running")

        # --- nothing in clear on disk
        needles = [b"SMITH", b"PID-4711", b"FINDINGS", b"ACC-0001", b"WELBY", b"M\xc3\x9cLLER"]
        leaks = []
        for root, _, files in os.walk(dev.dir + "/storage"):
            for fn in files:
                with open(os.path.join(root, fn), "rb") as f:
                    data = f.read()
                leaks += ["%s in %s" % (n, fn) for n in needles if n in data]
        check(leaks == [], "no message content in clear under the storage root %s" % leaks)
        log = d.log()
        check(b"SMITH" not in log.encode() and "PID-4711" not in log, "no PHI in the log")
        check(d.terminate() == 0, "clean shutdown")
    finally:
        if d.proc.poll() is None:
            d.kill()
        if failures:
            print(d.log()[-4000:])
        else:
            dev.cleanup()
    print("%d failure(s)" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
