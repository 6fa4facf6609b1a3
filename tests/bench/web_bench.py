#!/usr/bin/env python3
"""HTTP(S) load driver for web_bench.sh: N requests of one URL from C
concurrent keep-alive clients; prints p50/p99 latency (ms), or MB/s for
bulk retrievals. TLS with a client certificate when --cert is given.

Each client first opens its connection and sends one untimed request (TCP,
the TLS handshake with the client certificate, whose verification the
server finishes while reading that request; with --throughput only the
connection), as a viewer keeps its
connections open: the latencies are those of requests on open connections.
The first requests (all C clients connecting at once, set-up included) are
printed on the same line ("first p50/max"); with --reconnect every timed
request opens a new connection instead and its latency includes the set-up."""
import argparse
import http.client
import ssl
import statistics
import threading
import time
import urllib.parse


def conn_factory(base, cert, key, ca):
    u = urllib.parse.urlparse(base)
    if u.scheme == "https":
        ctx = ssl.create_default_context(cafile=ca)
        ctx.load_cert_chain(cert, key)
        return lambda: http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=300)
    return lambda: http.client.HTTPConnection(u.hostname, u.port, timeout=300)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--path", required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--ca")
    ap.add_argument("--accept", default="")
    ap.add_argument("-c", type=int, default=16)
    ap.add_argument("-n", type=int, default=400)
    ap.add_argument("--label", default="")
    ap.add_argument("--throughput", action="store_true")
    ap.add_argument("--reconnect", action="store_true",
                    help="a new connection (and TLS handshake) for every request")
    a = ap.parse_args()
    prefix = urllib.parse.urlparse(a.base).path.rstrip("/")
    make = conn_factory(a.base, a.cert, a.key, a.ca)
    lat, sizes, errors, connects = [], [], [], []
    lock = threading.Lock()
    per = max(1, a.n // a.c)
    ready = threading.Barrier(a.c + 1)

    headers = {"Accept": a.accept} if a.accept else {}

    def get(c):
        c.request("GET", prefix + a.path, headers=headers)
        r = c.getresponse()
        n = 0
        while True:
            chunk = r.read(1 << 20)
            if not chunk:
                break
            n += len(chunk)
        return r.status, n

    def worker():
        c = make()
        t0 = time.perf_counter()
        try:
            if a.throughput:
                c.connect()  # (bulk: no untimed retrieval, only the set-up)
            else:
                get(c)
            with lock:
                connects.append(time.perf_counter() - t0)
        except Exception as e:  # noqa: BLE001
            with lock:
                errors.append(str(e))
            c = make()
        ready.wait()
        for _ in range(per):
            if a.reconnect:
                c.close()
                c = make()
            t0 = time.perf_counter()
            try:
                status, n = get(c)
            except Exception as e:  # noqa: BLE001
                with lock:
                    errors.append(str(e))
                c = make()
                continue
            dt = time.perf_counter() - t0
            with lock:
                if status >= 300:
                    errors.append(str(status))
                lat.append(dt)
                sizes.append(n)

    ths = [threading.Thread(target=worker) for _ in range(a.c)]
    for t in ths:
        t.start()
    ready.wait()
    t0 = time.perf_counter()
    for t in ths:
        t.join()
    wall = time.perf_counter() - t0
    if not lat:
        print("%-48s FAILED %s" % (a.label, errors[:3]))
        return
    lat.sort()
    p50 = statistics.median(lat) * 1000
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
    if a.throughput:
        mb = sum(sizes) / 1e6
        print("%-48s %8.1f MB/s  (%d x %.1f MB, %d clients, p50 %.0f ms)%s" %
              (a.label, mb / wall, len(sizes), sizes[0] / 1e6, a.c, p50,
               "  errors=%d" % len(errors) if errors else ""))
    else:
        connects.sort()
        setup = ("; first p50 %.0f max %.0f ms" %
                 (statistics.median(connects) * 1000, connects[-1] * 1000)) if connects else ""
        print("%-48s p50 %7.1f ms  p99 %7.1f ms  (%d req, %d clients, %d B%s%s)%s" %
              (a.label, p50, p99, len(lat), a.c, sizes[0], setup,
               ", new connection per request" if a.reconnect else "",
               "  errors=%d %s" % (len(errors), errors[:2]) if errors else ""))


if __name__ == "__main__":
    main()
