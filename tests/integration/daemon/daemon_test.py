#!/usr/bin/env python3
"""phigated lifecycle, end to end: the real daemon on a temp dev dir.

Starts phigated with a NOTIFY_SOCKET we own (so READY=1 / STATUS= / RELOADING=1 /
STOPPING=1 are observed exactly as systemd would see them), talks to it with the
real phigatectl, sends SIGHUP with a broken and then a good config, and SIGTERM.
Also: --check-config exit codes, bad config at start, a port (or the admin socket
path) already in use, require_encrypted_volume on a non-LUKS dir, and an
unprivileged peer on the admin socket.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

ARGS = None
READY_TIMEOUT = 30


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
from phigated_harness import Notify as _HarnessNotify  # noqa: E402
from phigated_harness import free_port  # noqa: E402,F401


class Notify(_HarnessNotify):
    """The harness's NOTIFY_SOCKET receiver, plus everything received so far."""

    def all_text(self):
        self.sock.settimeout(0.05)
        try:
            while True:
                self.messages.append(self.sock.recv(65536).decode())
        except (socket.timeout, BlockingIOError):
            pass
        return "\n".join(self.messages)


class DevDir:
    """A dev dir like scripts/dev-run.sh makes, with free ports."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="phigated-it.")
        os.chmod(self.dir, 0o755)  # traversable: the unprivileged-peer test connects as nobody
        subprocess.run(["bash", ARGS.dev_pki, self.dir + "/pki"], check=True,
                       stdout=subprocess.DEVNULL)
        kek = self.dir + "/kek"
        with open(kek, "wb") as f:
            f.write(os.urandom(32))
        os.chmod(kek, 0o400)
        os.mkdir(self.dir + "/storage", 0o700)
        out = subprocess.run([ARGS.phigated, "--print-dev-config", self.dir], check=True,
                             capture_output=True, text=True).stdout
        self.ports = {}
        for default in (2762, 11112, 2576, 2575, 8443):
            p = free_port()
            self.ports[default] = p
            out = re.sub(r"\bport: %d\b" % default, "port: %d" % p, out)
        out = out.replace("level: debug", "level: info")
        self.good_yaml = out
        self.config = self.dir + "/phigate.yaml"
        self.write(out)
        self.socket = self.dir + "/admin.sock"

    def write(self, text, path=None):
        with open(path or self.config, "w") as f:
            f.write(text)

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def ctl(socket_path, *args, user=None):
    cmd = [ARGS.phigatectl, "--socket", socket_path] + list(args)
    if user:
        cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"] + cmd
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


class Daemon:
    count = 0

    def __init__(self, dev, extra_env=None):
        self.dev = dev
        Daemon.count += 1
        self.notify = Notify("%s/notify-%d.sock" % (dev.dir, Daemon.count))
        self.notify_text = None
        env = dict(os.environ)
        env["NOTIFY_SOCKET"] = self.notify.path
        env.pop("JOURNAL_STREAM", None)
        env.pop("WATCHDOG_USEC", None)
        env.update(extra_env or {})
        self.stderr_path = dev.dir + "/stderr.log"
        self.stderr = open(self.stderr_path, "w")
        self.proc = subprocess.Popen([ARGS.phigated, "--config", dev.config],
                                     stdout=self.stderr, stderr=self.stderr, env=env)

    def log(self):
        if not self.stderr.closed:
            self.stderr.flush()
        with open(self.stderr_path) as f:
            return f.read()

    def wait(self, timeout=60):
        try:
            return self.proc.wait(timeout)
        finally:
            self.stderr.close()
            self.notify_text = self.notify.all_text()
            self.notify.close()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if not self.stderr.closed:
            self.stderr.close()
        self.notify.close()


class CheckConfigTest(unittest.TestCase):
    def setUp(self):
        self.dev = DevDir()

    def tearDown(self):
        self.dev.cleanup()

    def test_good_config(self):
        r = subprocess.run([ARGS.phigated, "--check-config", self.dev.config],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("configuration OK", r.stdout)
        self.assertFalse(os.path.exists(self.dev.socket), "--check-config must bind nothing")
        self.assertEqual(os.listdir(self.dev.dir + "/storage"), [], "must open no storage")

    def test_bad_config_lists_every_error(self):
        bad = self.dev.good_yaml.replace("port: %d" % self.dev.ports[2762], "port: 99999", 1)
        bad = bad.replace("level: info", "level: loud")
        self.dev.write(bad)
        r = subprocess.run([ARGS.phigated, "--check-config", self.dev.config],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, re.escape(self.dev.config) + r":\d+: dicom\.tls\.port: ")
        self.assertRegex(r.stderr, re.escape(self.dev.config) + r":\d+: logging\.level: ")
        self.assertNotIn("configuration OK", r.stdout)

    def test_missing_certificate(self):
        os.unlink(self.dev.dir + "/pki/server.pem")
        r = subprocess.run([ARGS.phigated, "--check-config", self.dev.config],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 1)
        self.assertIn("server.pem", r.stderr)

    def test_missing_file(self):
        r = subprocess.run([ARGS.phigated, "--check-config", self.dev.dir + "/nope.yaml"],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 1)
        self.assertIn("nope.yaml", r.stderr)

    def test_usage_and_version(self):
        r = subprocess.run([ARGS.phigated, "--version"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"phigated \d+\.\d+\.\d+")
        r = subprocess.run([ARGS.phigated, "--no-such-option"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)


class LifecycleTest(unittest.TestCase):
    def setUp(self):
        self.dev = DevDir()
        self.d = None

    def tearDown(self):
        if self.d:
            self.d.kill()
        self.dev.cleanup()

    def status_json(self):
        r = ctl(self.dev.socket, "--json", "status")
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def test_full_lifecycle(self):
        self.d = Daemon(self.dev)
        ready = self.d.notify.wait_for("READY=1", proc=self.d.proc)
        self.assertRegex(ready, r"STATUS=listening:.*; storage encrypted=no")
        for m in os.listdir(self.dev.dir + "/storage"):
            self.assertIn(m, ("tmp", "objects", "catalog.db", "catalog.db-wal", "catalog.db-shm"))
        self.assertEqual(os.stat(self.dev.dir + "/storage/catalog.db").st_mode & 0o777, 0o600)
        for sub in ("tmp", "objects"):
            self.assertEqual(os.stat(self.dev.dir + "/storage/" + sub).st_mode & 0o777, 0o700)
        self.assertEqual(os.stat(self.dev.socket).st_mode & 0o777, 0o660)

        st = self.status_json()
        self.assertEqual(st["pid"], self.d.proc.pid)
        self.assertEqual(st["config_file"], self.dev.config)
        self.assertEqual(st["storage"]["root"], self.dev.dir + "/storage")
        self.assertIs(st["storage"]["volume"]["encrypted"], False)
        self.assertIs(st["storage"]["volume"]["required"], False)
        self.assertGreater(st["storage"]["disk"]["total_bytes"], 0)
        self.assertGreaterEqual(st["uptime_seconds"], 0)
        self.assertEqual(st["counts"]["studies"], 0)
        self.assertEqual(st["counts"]["instances"], 0)
        # The audit chain exists (the derivation secret's creation) and verifies.
        r = ctl(self.dev.socket, "--json", "audit", "verify")
        self.assertEqual(r.returncode, 0, r.stderr)
        v = json.loads(r.stdout)
        self.assertIs(v["ok"], True)
        self.assertGreaterEqual(v["records"], 1)
        self.assertEqual(st["log_level"], "info")
        self.assertIn("storage volume is not encrypted (storage.require_encrypted_volume: false)",
                      st["warnings"])
        names = {l["name"]: l for l in st["listeners"]}
        self.assertEqual(names["admin"]["state"], "listening")
        self.assertEqual(names["admin"]["address"], self.dev.socket)
        for l in st["listeners"]:  # every TCP listener in the STATUS= line and listening
            if l["name"] != "admin" and l["state"] == "listening":
                self.assertIn("%s:%s" % (l["name"], l["address"].rsplit(":", 1)[1]), ready)

        human = ctl(self.dev.socket, "status")
        self.assertEqual(human.returncode, 0, human.stderr)
        self.assertIn("NOT ENCRYPTED", human.stdout)
        self.assertIn("admin", human.stdout)
        self.assertEqual(ctl(self.dev.socket, "no-such-command").returncode, 1)
        self.assertEqual(ctl(self.dev.socket).returncode, 2)

        # SIGHUP with a broken config: still running, old config kept, error with file:line.
        bad = self.dev.good_yaml.replace("level: info", "level: loud")
        self.dev.write(bad)
        self.d.proc.send_signal(signal.SIGHUP)
        self.d.notify.wait_for("RELOADING=1", proc=self.d.proc)
        self.d.notify.wait_for("READY=1", proc=self.d.proc)
        self.assertIsNone(self.d.proc.poll())
        self.assertRegex(self.d.log(), re.escape(self.dev.config) + r":\d+: logging\.level: ")
        self.assertEqual(self.status_json()["log_level"], "info")

        # SIGHUP with a good config: applied.
        self.dev.write(self.dev.good_yaml.replace("level: info", "level: warning"))
        self.d.proc.send_signal(signal.SIGHUP)
        self.d.notify.wait_for("RELOADING=1", proc=self.d.proc)
        self.d.notify.wait_for("READY=1", proc=self.d.proc)
        self.assertEqual(self.status_json()["log_level"], "warning")

        # SIGTERM: STOPPING=1, exit 0, socket gone.
        self.d.proc.send_signal(signal.SIGTERM)
        self.d.notify.wait_for("STOPPING=1")
        self.assertEqual(self.d.wait(), 0)
        self.assertFalse(os.path.exists(self.dev.socket))
        r = ctl(self.dev.socket, "status")
        self.assertEqual(r.returncode, 3)
        self.assertIn(self.dev.socket, r.stderr)
        self.assertIn("No such file", r.stderr)

    def test_unprivileged_peer_is_refused(self):
        if os.geteuid() != 0 or shutil.which("setpriv") is None:
            self.skipTest("needs root and setpriv")
        self.d = Daemon(self.dev)
        self.d.notify.wait_for("READY=1", proc=self.d.proc)
        # Socket mode 0660 stops nobody at connect(2) ...
        r = ctl(self.dev.socket, "status", user="nobody")
        self.assertEqual(r.returncode, 4, r.stderr)
        # ... and SO_PEERCRED stops them when the mode is wrong.
        os.chmod(self.dev.socket, 0o666)
        r = ctl(self.dev.socket, "status", user="nobody")
        self.assertEqual(r.returncode, 4, r.stdout + r.stderr)
        self.assertIn("PermissionDenied", r.stderr)
        self.assertEqual(ctl(self.dev.socket, "status").returncode, 0)
        self.assertRegex(self.d.log(), r"admin connection refused uid=65534")

    def test_bad_config_at_start(self):
        self.dev.write(self.dev.good_yaml.replace("port: %d" % self.dev.ports[8443],
                                                  "port: 0x", 1))
        self.d = Daemon(self.dev)
        rc = self.d.wait(60)
        self.assertNotEqual(rc, 0)
        self.assertRegex(self.d.log(), re.escape(self.dev.config) + r":\d+: web\.https\.port: ")
        self.assertNotIn("READY=1", self.d.notify_text)
        self.assertFalse(os.path.exists(self.dev.socket))

    def test_address_in_use(self):
        self.d = Daemon(self.dev)
        self.d.notify.wait_for("READY=1", proc=self.d.proc)
        tcp = [l for l in self.status_json()["listeners"]
               if l["name"] != "admin" and l["state"] == "listening"]
        self.d.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.d.wait(), 0)
        if tcp:
            addr = tcp[0]["address"]
            host, port = addr.rsplit(":", 1)
            blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            blocker.bind((host, int(port)))
            blocker.listen(1)
            try:
                self.d = Daemon(self.dev)
                self.assertEqual(self.d.wait(60), 1)
                self.assertIn(addr, self.d.log())
                self.assertIn("in use", self.d.log())
            finally:
                blocker.close()
        # The admin socket path taken by something that is not a socket.
        with open(self.dev.socket, "w") as f:
            f.write("not a socket")
        self.d = Daemon(self.dev)
        self.assertEqual(self.d.wait(60), 1)
        self.assertIn(self.dev.socket, self.d.log())
        self.assertIn("not a socket", self.d.log())
        with open(self.dev.socket) as f:
            self.assertEqual(f.read(), "not a socket")

    def test_watchdog_pings(self):
        # Under WatchdogSec=, systemd sets WATCHDOG_USEC; phigated must ping at
        # least every half interval, from READY until it stops.
        self.d = Daemon(self.dev, extra_env={"WATCHDOG_USEC": "400000"})
        self.d.notify.wait_for("READY=1", proc=self.d.proc)
        for _ in range(3):
            self.d.notify.wait_for("WATCHDOG=1", timeout=2, proc=self.d.proc)
        self.d.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.d.wait(), 0)

    def test_unwritable_storage_root(self):
        os.rmdir(self.dev.dir + "/storage")
        self.d = Daemon(self.dev)
        rc = self.d.wait(60)
        self.assertEqual(rc, 1)
        self.assertIn(self.dev.dir + "/storage", self.d.log())

    def test_encrypted_volume_required_on_plain_dir(self):
        # The KEK must not share the storage filesystem when the volume is required:
        # keep it on a tmpfs.
        shm = "/dev/shm"
        if not os.path.isdir(shm) or os.stat(shm).st_dev == os.stat(self.dev.dir).st_dev:
            self.skipTest("no separate tmpfs for the KEK")
        kdir = tempfile.mkdtemp(prefix="phigated-it-kek.", dir=shm)
        try:
            kek = kdir + "/kek"
            shutil.copy(self.dev.dir + "/kek", kek)
            os.chmod(kek, 0o400)
            y = self.dev.good_yaml.replace("require_encrypted_volume: false",
                                           "require_encrypted_volume: true")
            y = y.replace('file: "%s/kek"' % self.dev.dir, 'file: "%s"' % kek)
            self.dev.write(y)
            self.d = Daemon(self.dev)
            rc = self.d.wait(60)
            self.assertEqual(rc, 1, self.d.log())
            log = self.d.log()
            self.assertIn("not a dm-crypt LUKS volume", log)
            self.assertIn(self.dev.dir + "/storage", log)
            self.assertFalse(os.path.exists(self.dev.socket))
            self.assertEqual(os.listdir(self.dev.dir + "/storage"), [])
        finally:
            shutil.rmtree(kdir, ignore_errors=True)


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
