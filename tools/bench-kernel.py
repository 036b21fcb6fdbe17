#!/usr/bin/python3
"""Benchmark (not a test): unsandboxed ipykernel via jupyter_client vs `kbox run` (kernel mode) on
the same Python, one run each: time to ready (kernel_info_reply), execute round trip of `1`
(p50/p99), iopub throughput of a large print, kbox's RSS.

Usage: tools/bench-kernel.py [--kbox PATH] [--n 300] [--rootfs /]"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from jupyter_client import BlockingKernelClient, KernelManager

PY = "/usr/bin/python3"


def measure(kc, n):
    kc.execute_interactive("1", timeout=30, output_hook=lambda m: None)
    lat = []
    for _ in range(n):
        t = time.perf_counter()
        kc.execute_interactive("1", timeout=30, output_hook=lambda m: None)
        lat.append((time.perf_counter() - t) * 1e6)
    lat.sort()
    p50, p99 = lat[len(lat) // 2], lat[int(len(lat) * 0.99) - 1]
    size = 50 << 20
    got = [0]

    def hook(m):
        if m["msg_type"] == "stream":
            got[0] += len(m["content"]["text"])
    t = time.perf_counter()
    kc.execute_interactive("import sys\nline = 'x' * 1023 + '\\n'\nfor _ in range(%d): sys.stdout.write(line)" % (size // 1024),
                           timeout=300, output_hook=hook)
    dt = time.perf_counter() - t
    return p50, p99, got[0] / dt / 1e6


def native(n):
    t = time.perf_counter()
    km = KernelManager(kernel_cmd=[PY, "-m", "ipykernel_launcher", "-f", "{connection_file}"])
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    ready = time.perf_counter() - t
    r = measure(kc, n)
    kc.stop_channels()
    km.shutdown_kernel(now=True)
    return (ready,) + r + (None,)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def kbox(path, rootfs, n):
    t = time.perf_counter()
    p = subprocess.Popen([path, "run", "--rootfs", rootfs, "--kernel-cmd",
                          PY + " -m ipykernel_launcher -f {connection_file}"], stdout=subprocess.PIPE)
    info = json.loads(p.stdout.readline())
    kc = BlockingKernelClient()
    kc.load_connection_info(info)
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    ready = time.perf_counter() - t
    r = measure(kc, n)
    rss = rss_kib(p.pid)
    kc.shutdown()
    p.wait(timeout=30)
    kc.stop_channels()
    return (ready,) + r + (rss,)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kbox", default=os.environ.get("KBOX_BIN", "build/src/kbox"))
    ap.add_argument("--rootfs", default="/")
    ap.add_argument("--n", type=int, default=300)
    a = ap.parse_args()
    nat = native(a.n)
    kb = kbox(a.kbox, a.rootfs, a.n)
    names = ["ready_s", "rt_p50_us", "rt_p99_us", "iopub_MBps", "kbox_rss_kib"]
    print("%-14s %12s %12s %8s" % ("metric", "native", "kbox", "ratio"))
    for i, name in enumerate(names):
        nv, kv = nat[i], kb[i]
        ratio = "" if nv is None else "%.3f" % (kv / nv)
        print("%-14s %12s %12.4g %8s" % (name, "-" if nv is None else "%.4g" % nv, kv, ratio))
    print("added round trip p50: %.0f us" % (kb[1] - nat[1]))


if __name__ == "__main__":
    sys.exit(main())
