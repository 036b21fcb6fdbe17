#!/usr/bin/python3
"""bench-pod: start-up time of the kbox image in podman (root), as jupyter-kernel-controller runs it.

  tools/bench-pod.py [--image localhost/kbox-kernel:latest] [--runs 5] [--opts '--security-opt ...']

For each run: `podman run -d` of a controller-style container, then kernel_info requests from a
host jupyter_client until one is answered. Prints, per run and as medians: podman's own part (until
`podman run -d` returns), until kbox wrote "running" (sandbox built), until the first kernel_info
reply. Load the image first (tools/mkoci build --archive X && podman load -i X). Benchmarks are not
tests: numbers depend on the machine and its load."""

import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "pods"))
import podlib  # noqa: E402


def one_run(p, image, opts, i):
    name = "kbox-bench-%d-%d" % (os.getpid(), i)
    t0 = time.monotonic()
    p.run("run", "-d", "--name", name, *opts, *podlib.controller_env("bench-key"), image)
    t_run = time.monotonic() - t0
    ip = p.ip_of(name)
    kc = podlib.kernel_client(ip, "bench-key")
    t_running = None
    end = t0 + 120
    answered = False
    while time.monotonic() < end and not answered:
        if t_running is None and p.run("exec", name, "grep", "-q", "running\\|ready", "/tmp/kbox-status.json",
                                       check=False).returncode == 0:
            t_running = time.monotonic() - t0
        answered = podlib.wait_kernel_info(kc, 0.2)
    t_ready = time.monotonic() - t0
    kc.stop_channels()
    p.run("rm", "-f", "-t", "0", name, check=False)
    if not answered:
        raise SystemExit("run %d: no kernel_info reply within 120 s" % i)
    return t_run, t_running or float("nan"), t_ready


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", default="localhost/kbox-kernel:latest")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--opts", default="", help="extra podman run options")
    args = ap.parse_args()
    work = podlib.make_work()
    p = podlib.Podman(work)
    rows = [one_run(p, args.image, args.opts.split(), i) for i in range(args.runs)]
    for i, (a, b, c) in enumerate(rows):
        print("run %d: podman run -d %.2f s, sandbox running %.2f s, kernel_info reply %.2f s" % (i, a, b, c))
    med = [statistics.median(col) for col in zip(*rows)]
    print("median: podman run -d %.2f s, sandbox running %.2f s, kernel_info reply %.2f s" % tuple(med))
    with open("/proc/loadavg") as f:
        print("load average: " + f.read().split()[0])


if __name__ == "__main__":
    main()
