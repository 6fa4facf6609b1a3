#!/usr/bin/env python3
"""Ingest benchmark (issue 4): the same corpus sent with DCMTK storescu over 1 and
4 parallel associations, plain and TLS, to
  (a) phigated   - dev config, durable (encrypted, fsync'd, indexed, audited)
  (b) storescp   - DCMTK, plain files, no fsync, --fork (speed of light)
  (c) Orthanc    - Debian's package, default SQLite index, as shipped (Nagle on)
  (c') Orthanc   - the same with TCP_NODELAY=1
Every server gets a fresh storage directory per run (phigated keeps the first
copy of a duplicate, so re-sending into the same store would measure nothing).
storescu always runs with TCP_NODELAY=1. Prints images/s and MB/s, a/b and a/c.
--rounds N repeats every run N times, round-robin over the targets, and reports
medians with their range; the ratios are medians of ratios taken within a round
(one run sends 400 CT images in 1-3 s, and this VM's noise is +-30-50%).
Not a ctest test; run by hand via tests/bench/ingest.sh.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen_corpus  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def corpus_files(d, subsets):
    files = []
    for sub in subsets:
        p = os.path.join(d, sub)
        files += [os.path.join(p, f) for f in sorted(os.listdir(p)) if f.endswith(".dcm")]
    return files


def wait_echo(port, aec, tls, pki, proc, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited with %s" % proc.returncode)
        cmd = ["echoscu", "-aet", "BENCH", "-aec", aec] + tls_client(tls, pki) + \
              ["127.0.0.1", str(port)]
        if subprocess.run(cmd, capture_output=True, env=dict(os.environ, TCP_NODELAY="1")
                          ).returncode == 0:
            return
        time.sleep(0.2)
    raise RuntimeError("server did not answer C-ECHO on %d" % port)


def tls_client(tls, pki):
    if not tls:
        return []
    return ["+tls", pki + "/modality.key", pki + "/modality.pem", "+cf", pki + "/ca.pem"]


def send(files, port, aec, tls, pki, nassoc, logdir):
    lists = [files[i::nassoc] for i in range(nassoc)]
    env = dict(os.environ, TCP_NODELAY="1")
    t0 = time.monotonic()
    procs = []
    for i, lst in enumerate(lists):
        log = open(os.path.join(logdir, "storescu-%d.log" % i), "w")
        cmd = ["storescu", "-aet", "BENCH", "-aec", aec] + tls_client(tls, pki) + \
              ["127.0.0.1", str(port)] + lst
        procs.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log))
    bad = 0
    for p, log in procs:
        bad += p.wait() != 0
        log.close()
    dt = time.monotonic() - t0
    if bad:
        raise RuntimeError("%d storescu failed; see %s" % (bad, logdir))
    return dt


class Phigated:
    name = "phigated"
    aec = "PHIGATE"

    def __init__(self, binary, work, pki_script):
        self.binary, self.work = binary, work
        self.dir = os.path.join(work, "phigated")
        os.makedirs(self.dir)
        subprocess.run(["bash", pki_script, self.dir + "/pki"], check=True,
                       stdout=subprocess.DEVNULL)
        self.pki = self.dir + "/pki"
        kek = self.dir + "/kek"
        with open(kek, "wb") as f:
            f.write(os.urandom(32))
        os.chmod(kek, 0o400)
        y = subprocess.run([binary, "--print-dev-config", self.dir], check=True,
                           capture_output=True, text=True).stdout
        self.ports = {}
        for default in (2762, 11112, 2576, 2575, 8443):
            self.ports[default] = free_port()
            y = re.sub(r"\bport: %d\b" % default, "port: %d" % self.ports[default], y)
        y = y.replace("level: debug", "level: notice").replace("level: info", "level: notice")
        self.config = self.dir + "/phigate.yaml"
        with open(self.config, "w") as f:
            f.write(y)
        self.proc = None

    def start(self, tls):
        st = self.dir + "/storage"
        shutil.rmtree(st, ignore_errors=True)
        os.mkdir(st, 0o700)
        self.log = open(self.dir + "/phigated.log", "a")
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        self.proc = subprocess.Popen([self.binary, "--config", self.config], stdout=self.log,
                                     stderr=self.log, env=env)
        self.port = self.ports[2762] if tls else self.ports[11112]
        wait_echo(self.port, self.aec, tls, self.pki, self.proc)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(120)
        self.log.close()


class StoreScp:
    name = "storescp"
    aec = "ANY-SCP"

    def __init__(self, work, pki):
        self.dir = os.path.join(work, "storescp")
        os.makedirs(self.dir)
        self.pki = pki

    def start(self, tls):
        out = self.dir + "/out"
        shutil.rmtree(out, ignore_errors=True)
        os.mkdir(out)
        self.port = free_port()
        cmd = ["storescp", "--fork", "-pdu", "131072", "-od", out]
        if tls:
            cmd += ["+tls", self.pki + "/server.key", self.pki + "/server.pem", "+cf",
                    self.pki + "/ca.pem"]
        self.log = open(self.dir + "/storescp.log", "a")
        self.proc = subprocess.Popen(cmd + [str(self.port)], stdout=self.log,
                                     stderr=self.log, env=dict(os.environ, TCP_NODELAY="1"),
                                     start_new_session=True)
        wait_echo(self.port, self.aec, tls, self.pki, self.proc)

    def stop(self):
        os.killpg(self.proc.pid, signal.SIGTERM)  # storescp --fork: its own process group
        self.proc.wait(60)
        self.log.close()


class Orthanc:
    aec = "ORTHANC"

    def __init__(self, work, pki, nodelay):
        self.nodelay = nodelay
        self.name = "orthanc-nodelay" if nodelay else "orthanc"
        self.dir = os.path.join(work, self.name)
        os.makedirs(self.dir)
        self.pki = pki

    def start(self, tls):
        st = self.dir + "/db"
        shutil.rmtree(st, ignore_errors=True)
        os.mkdir(st)
        self.port = free_port()
        cfg = {
            "Name": "bench", "StorageDirectory": st, "IndexDirectory": st,
            "DicomAet": "ORTHANC", "DicomPort": self.port, "DicomCheckCalledAet": False,
            "HttpServerEnabled": False, "HttpPort": free_port(), "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False, "Plugins": [],
        }
        if tls:
            cfg.update({"DicomTlsEnabled": True,
                        "DicomTlsCertificate": self.pki + "/server.pem",
                        "DicomTlsPrivateKey": self.pki + "/server.key",
                        "DicomTlsTrustedCertificates": self.pki + "/ca.pem",
                        "DicomTlsRemoteCertificateRequired": True})
        path = self.dir + "/orthanc.json"
        with open(path, "w") as f:
            json.dump(cfg, f)
        env = dict(os.environ)
        env.pop("TCP_NODELAY", None)
        if self.nodelay:
            env["TCP_NODELAY"] = "1"
        self.log = open(self.dir + "/orthanc.log", "a")
        self.proc = subprocess.Popen(["Orthanc", path], stdout=self.log, stderr=self.log, env=env)
        wait_echo(self.port, self.aec, tls, self.pki, self.proc)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--phigated", required=True)
    ap.add_argument("--dev-pki", required=True)
    ap.add_argument("--corpus", default="/tmp/phigate-bench-corpus")
    ap.add_argument("--ct", type=int, default=400)
    ap.add_argument("--mr", type=int, default=200)
    ap.add_argument("--mf", type=int, default=3)
    ap.add_argument("--mf-mb", type=int, default=50)
    ap.add_argument("--targets", default="phigated,storescp,orthanc,orthanc-nodelay")
    ap.add_argument("--assoc", default="1,4")
    ap.add_argument("--transports", default="plain,tls")
    ap.add_argument("--subsets", default="ct,mr,mf")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--rounds", type=int, default=1,
                    help="repeat every run this many times, round-robin over the targets, "
                         "and report medians (ratios: median of the per-round ratios)")
    a = ap.parse_args()

    stamp = os.path.join(a.corpus, ".done-%d-%d-%d-%d" % (a.ct, a.mr, a.mf, a.mf_mb))
    if not os.path.exists(stamp):
        shutil.rmtree(a.corpus, ignore_errors=True)
        t = time.monotonic()
        subprocess.run([sys.executable, os.path.join(HERE, "gen_corpus.py"), a.corpus,
                        "--ct", str(a.ct), "--mr", str(a.mr), "--mf", str(a.mf),
                        "--mf-mb", str(a.mf_mb)], check=True)
        open(stamp, "w").close()
        print("corpus generated in %.1f s" % (time.monotonic() - t), file=sys.stderr)
    files = corpus_files(a.corpus, a.subsets.split(","))
    total = sum(os.path.getsize(f) for f in files)
    print("corpus: %d objects, %.1f MB (%s)" % (len(files), total / 1e6, a.subsets))

    work = tempfile.mkdtemp(prefix="phigate-ingest-bench.")
    pg = Phigated(a.phigated, work, a.dev_pki)
    servers = {"phigated": pg, "storescp": StoreScp(work, pg.pki),
               "orthanc": Orthanc(work, pg.pki, False),
               "orthanc-nodelay": Orthanc(work, pg.pki, True)}
    results = {}  # (name, transport, n) -> [seconds per round]
    configs = [(t, int(n)) for t in a.transports.split(",") for n in a.assoc.split(",")]
    try:
        for rnd in range(a.rounds):
            for name in a.targets.split(","):
                srv = servers[name]
                for transport, n in configs:
                    srv.start(transport == "tls")
                    logdir = tempfile.mkdtemp(prefix="%s-%s-%d." % (name, transport, n), dir=work)
                    try:
                        dt = send(files, srv.port, srv.aec, transport == "tls", pg.pki, n, logdir)
                    finally:
                        srv.stop()
                    results.setdefault((name, transport, n), []).append(dt)
                    print("%s%-16s %-5s %d assoc: %7.2f s  %7.1f images/s  %7.1f MB/s" %
                          ("round %d: " % (rnd + 1) if a.rounds > 1 else "", name, transport, n,
                           dt, len(files) / dt, total / 1e6 / dt), flush=True)
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print("kept", work)

    def rates(k):
        return [len(files) / dt for dt in results.get(k, [])]

    def paired(k1, k2):
        # Ratios of runs made in the same round (close in time: the noise is shared).
        return [x / y for x, y in zip(rates(k1), rates(k2))]

    def fmt(values, spec):
        if len(values) == 1:
            return spec % values[0]
        return (spec + " (%s)") % (statistics.median(values),
                                   " to ".join(spec % v for v in (min(values), max(values))))

    print()
    print("%-16s %-5s %5s %10s %8s%s" % ("server", "tls", "assoc", "images/s", "MB/s",
                                         "  (median of %d rounds; min to max)" % a.rounds
                                         if a.rounds > 1 else ""))
    for (name, transport, n), dts in results.items():
        r = rates((name, transport, n))
        print("%-16s %-5s %5d %10s %8.1f" % (name, transport, n, fmt(r, "%.1f"),
                                              statistics.median(r) * total / 1e6 / len(files)))
    print()
    for transport, n in configs:
        if not results.get(("phigated", transport, n)):
            continue
        parts = []
        for other, label in (("storescp", "a/b"), ("orthanc", "a/c(shipped)"),
                             ("orthanc-nodelay", "a/c(nodelay)")):
            r = paired(("phigated", transport, n), (other, transport, n))
            if r:
                parts.append("%s=%s" % (label, fmt(r, "%.2f")))
        print("%-5s %d assoc: %s" % (transport, n, "  ".join(parts)))
    for n in [int(x) for x in a.assoc.split(",")]:
        r = paired(("phigated", "tls", n), ("phigated", "plain", n))
        if r:
            print("phigated TLS slowdown vs plain, %d assoc: %s%%" %
                  (n, fmt([100 * (1 - x) for x in r], "%.1f")))


if __name__ == "__main__":
    main()
