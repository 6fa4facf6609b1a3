"""Helpers to run a real phigated in tests: a temp dev dir with free ports and
the dev PKI, a NOTIFY_SOCKET receiver, the daemon process, and phigatectl.

Factored out of tests/integration/daemon/daemon_test.py; import it with
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "common"))
    import phigated_harness as h
"""
import os
import random
import re
import shutil
import socket
import subprocess
import tempfile
import time

READY_TIMEOUT = 30


def make_tiny_ct(tmp, study, n, patient_name, patient_id, accession, date="20240315",
                 modality="CT", birth_date=None, pixels="1\\2\\3\\4", prefix="i"):
    """A 2x2 16-bit CT Image Storage instance (series study.1, SOP study.1.n) made
    with DCMTK's dump2dcm in tmp; returns (sop_instance_uid, path)."""
    sop = "%s.1.%d" % (study, n)
    lines = [
        "(0008,0016) UI =CTImageStorage",
        "(0008,0018) UI [%s]" % sop,
        "(0008,0020) DA [%s]" % date,
        "(0008,0050) SH [%s]" % accession,
        "(0008,0060) CS [%s]" % modality,
        "(0010,0010) PN [%s]" % patient_name,
        "(0010,0020) LO [%s]" % patient_id,
    ]
    if birth_date:
        lines.append("(0010,0030) DA [%s]" % birth_date)
    lines += [
        "(0020,000d) UI [%s]" % study,
        "(0020,000e) UI [%s.1]" % study,
        "(0020,0013) IS [%d]" % n,
        "(0028,0002) US 1",
        "(0028,0004) CS [MONOCHROME2]",
        "(0028,0010) US 2",
        "(0028,0011) US 2",
        "(0028,0100) US 16",
        "(0028,0101) US 16",
        "(0028,0102) US 15",
        "(0028,0103) US 0",
        "(7fe0,0010) OW %s" % pixels,
    ]
    d = os.path.join(tmp, "%s%s_%d.dump" % (prefix, study[-4:], n))
    out = d[:-5] + ".dcm"
    with open(d, "w") as f:
        f.write("\n".join(lines) + "\n")
    subprocess.run(["dump2dcm", "+te", d, out], check=True)
    return sop, out


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port():
    """A port free now on 127.0.0.1, below the kernel's ephemeral range.

    A port the kernel hands out (bind to 0) is also where it puts the local end of
    outgoing connections: between this call and the daemon's bind, a client of a
    test running in parallel could take it. Ports below ip_local_port_range are
    only ever taken by an explicit bind; they are drawn at random so that tests
    running in parallel seldom draw the same one.
    """
    low = _ephemeral_low()
    first = max(1024, min(15000, low - 2000))
    for _ in range(200):
        p = random.randrange(first, low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                continue
            return p
    raise AssertionError("no free port in %d-%d" % (first, low - 1))


class Notify:
    """A NOTIFY_SOCKET receiver (unix datagram), like systemd's."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.messages = []

    def wait_for(self, key, timeout=READY_TIMEOUT, proc=None):
        """Waits for a message containing line `key` (e.g. "READY=1"); returns that message."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, m in enumerate(self.messages):
                if key in m.split("\n"):
                    del self.messages[: i + 1]
                    return m
            if proc is not None and proc.poll() is not None:
                raise AssertionError("phigated exited (%s) before %s" % (proc.returncode, key))
            self.sock.settimeout(0.2)
            try:
                data = self.sock.recv(65536)
                self.messages.append(data.decode())
            except socket.timeout:
                pass
        raise AssertionError("no %s within %ss; got %r" % (key, timeout, self.messages))

    def close(self):
        self.sock.close()


class DevDir:
    """A dev dir like scripts/dev-run.sh makes (PKI, KEK, storage), with free ports.

    `ports` maps the default port (2762, 11112, 2576, 2575, 8443) to the one used.
    `transform(yaml) -> yaml` may edit the generated config before it is written.
    """

    def __init__(self, phigated, dev_pki, prefix="phigated-it.", transform=None):
        self.phigated = phigated
        self.dir = tempfile.mkdtemp(prefix=prefix)
        os.chmod(self.dir, 0o755)
        subprocess.run(["bash", dev_pki, self.dir + "/pki"], check=True,
                       stdout=subprocess.DEVNULL)
        kek = self.dir + "/kek"
        with open(kek, "wb") as f:
            f.write(os.urandom(32))
        os.chmod(kek, 0o400)
        os.mkdir(self.dir + "/storage", 0o700)
        out = subprocess.run([phigated, "--print-dev-config", self.dir], check=True,
                             capture_output=True, text=True).stdout
        self.ports = {}
        for default in (2762, 11112, 2576, 2575, 8443):
            p = free_port()
            self.ports[default] = p
            out = re.sub(r"\bport: %d\b" % default, "port: %d" % p, out)
        out = out.replace("level: debug", "level: info")
        if transform:
            out = transform(out)
        self.good_yaml = out
        self.config = self.dir + "/phigate.yaml"
        self.write(out)
        self.socket = self.dir + "/admin.sock"
        self.pki = self.dir + "/pki"

    def write(self, text, path=None):
        with open(path or self.config, "w") as f:
            f.write(text)

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def ctl(phigatectl, socket_path, *args, user=None):
    cmd = [phigatectl, "--socket", socket_path] + list(args)
    if user:
        cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"] + cmd
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


class Daemon:
    """phigated on a DevDir, stderr to DIR/stderr-N.log, NOTIFY_SOCKET owned by us."""

    count = 0

    def __init__(self, phigated, dev, extra_env=None):
        self.dev = dev
        Daemon.count += 1
        self.notify = Notify("%s/notify-%d.sock" % (dev.dir, Daemon.count))
        env = dict(os.environ)
        env["NOTIFY_SOCKET"] = self.notify.path
        env.pop("JOURNAL_STREAM", None)
        env.pop("WATCHDOG_USEC", None)
        env.update(extra_env or {})
        self.stderr_path = "%s/stderr-%d.log" % (dev.dir, Daemon.count)
        self.stderr = open(self.stderr_path, "w")
        self.proc = subprocess.Popen([phigated, "--config", dev.config],
                                     stdout=self.stderr, stderr=self.stderr, env=env)

    def wait_ready(self, timeout=READY_TIMEOUT):
        return self.notify.wait_for("READY=1", timeout=timeout, proc=self.proc)

    def log(self):
        if not self.stderr.closed:
            self.stderr.flush()
        with open(self.stderr_path, errors="replace") as f:
            return f.read()

    def terminate(self, timeout=60):
        """SIGTERM, wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(timeout)
        finally:
            self._close()

    def kill(self):
        """SIGKILL (kill -9), wait."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._close()

    def _close(self):
        if not self.stderr.closed:
            self.stderr.close()
        self.notify.close()
