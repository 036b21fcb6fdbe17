#!/usr/bin/python3
"""Benchmark of --net allow (not a test): throughput of an allowed download and latency per small
request through kbox's proxy (sandbox -> relay -> proxy -> server) against the same client fetching
the same server directly on the host's loopback, and kbox's memory per open proxied connection.

  tools/bench-net.py [--kbox build/src/kbox] [--mb 256] [--requests 300] [--conns 200]

Everything runs on 127.0.0.1 (the name bench.test is mapped there by the test-only resolver).
Prints one JSON object."""
import argparse
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CLIENT = r"""
import json, socket, sys, time, urllib.request
base, mb, n, conns = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
op = urllib.request.build_opener() if len(sys.argv) < 6 else urllib.request.build_opener(urllib.request.ProxyHandler({}))
t = time.perf_counter(); got = 0
r = op.open(base + '/big?mb=%d' % mb)
while True:
    b = r.read(1 << 20)
    if not b: break
    got += len(b)
big = time.perf_counter() - t
lat = []
for _ in range(n):
    t = time.perf_counter(); op.open(base + '/small').read(); lat.append(time.perf_counter() - t)
lat.sort()
res = {"mb_per_s": got / big / 1e6, "small_p50_ms": lat[len(lat) // 2] * 1e3, "small_p90_ms": lat[int(len(lat) * .9)] * 1e3}
print(json.dumps(res), flush=True)
if conns and len(sys.argv) < 6:
    host = base.split('//')[1]
    print("READY", flush=True); sys.stdin.readline()
    held = []
    for _ in range(conns):
        s = socket.create_connection(('127.0.0.1', 3128)); s.sendall(b'CONNECT ' + host.encode() + b' HTTP/1.1\r\n\r\n')
        assert b' 200 ' in s.recv(100); held.append(s)
    print("HELD", flush=True); sys.stdin.readline()
"""


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):
        if self.path.startswith("/big"):
            n = int(self.path.split("mb=")[1]) << 20
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            chunk = b"x" * (1 << 20)
            for _ in range(n >> 20):
                self.wfile.write(chunk)
        else:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kbox", default=os.path.join(os.path.dirname(__file__), "..", "build", "src", "kbox"))
    ap.add_argument("--mb", type=int, default=256)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--conns", type=int, default=50)
    a = ap.parse_args()
    if a.conns > 64:
        sys.exit("--conns: at most 64 (the proxy's connection limit)")
    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    port = srv.server_address[1]
    args = [str(a.mb), str(a.requests), str(a.conns)]
    direct = subprocess.run(["/usr/bin/python3", "-c", CLIENT, "http://127.0.0.1:%d" % port] + args + ["direct"],
                            capture_output=True, text=True, check=True)
    d = json.loads(direct.stdout.splitlines()[0])
    env = dict(os.environ, KBOX_TEST_RESOLVE="bench.test=127.0.0.1")
    p = subprocess.Popen([a.kbox, "run", "--rootfs", "/", "--net", "allow=bench.test:%d" % port, "--", "/usr/bin/python3",
                          "-c", CLIENT, "http://bench.test:%d" % port] + args, env=env, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    k = json.loads(p.stdout.readline())
    mem = None
    if a.conns:
        assert p.stdout.readline().strip() == "READY"
        time.sleep(0.5)
        before = rss_kib(p.pid)
        p.stdin.write("\n"); p.stdin.flush()
        assert p.stdout.readline().strip() == "HELD"
        time.sleep(0.5)
        after = rss_kib(p.pid)
        p.stdin.write("\n"); p.stdin.flush()
        mem = (after - before) / a.conns
    p.wait(timeout=120)
    print(json.dumps({
        "download_mb": a.mb,
        "direct_mb_per_s": round(d["mb_per_s"], 1), "proxy_mb_per_s": round(k["mb_per_s"], 1),
        "direct_small_p50_ms": round(d["small_p50_ms"], 3), "proxy_small_p50_ms": round(k["small_p50_ms"], 3),
        "added_latency_p50_ms": round(k["small_p50_ms"] - d["small_p50_ms"], 3),
        "proxy_small_p90_ms": round(k["small_p90_ms"], 3),
        "kbox_rss_kib_per_connection": None if mem is None else round(mem, 1),
        "connections_held": a.conns,
    }, indent=2))


if __name__ == "__main__":
    main()
