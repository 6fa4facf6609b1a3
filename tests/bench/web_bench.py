#!/usr/bin/env python3
"""HTTP(S) load driver for web_bench.sh: N requests of one URL from C
concurrent keep-alive clients; prints p50/p99 latency (ms), or MB/s for
bulk retrievals. TLS with a client certificate when --cert is given."""
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
    a = ap.parse_args()
    prefix = urllib.parse.urlparse(a.base).path.rstrip("/")
    make = conn_factory(a.base, a.cert, a.key, a.ca)
    lat, sizes, errors = [], [], []
    lock = threading.Lock()
    per = max(1, a.n // a.c)

    def worker():
        c = make()
        for _ in range(per):
            t0 = time.perf_counter()
            try:
                c.request("GET", prefix + a.path, headers={"Accept": a.accept} if a.accept else {})
                r = c.getresponse()
                n = 0
                while True:
                    chunk = r.read(1 << 20)
                    if not chunk:
                        break
                    n += len(chunk)
                status = r.status
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

    t0 = time.perf_counter()
    ths = [threading.Thread(target=worker) for _ in range(a.c)]
    for t in ths:
        t.start()
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
        print("%-48s p50 %7.1f ms  p99 %7.1f ms  (%d req, %d clients, %d B)%s" %
              (a.label, p50, p99, len(lat), a.c, sizes[0],
               "  errors=%d %s" % (len(errors), errors[:2]) if errors else ""))


if __name__ == "__main__":
    main()
