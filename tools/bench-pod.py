#!/usr/bin/python3
"""bench-pod: start-up time of the kbox image in podman (root), as jupyter-kernel-controller runs it.

  tools/bench-pod.py [--image localhost/kbox-kernel:latest] [--runs 5] [--opts '--security-opt ...']
  tools/bench-pod.py --eg [--image ...] [--runs 5]

For each run: `podman run -d` of a controller-style container, then kernel_info requests from a
host jupyter_client until one is answered. Prints, per run and as medians: podman's own part (until
`podman run -d` returns), until kbox wrote "running" (sandbox built), until the first kernel_info
reply. With --eg: the real Enterprise Gateway (vendored, as the pods suite runs it) creates kernels
through podman's API; per run, POST /api/kernels until 201, split by EG's own log lines (launcher
started, container seen running, connection info received). Load the image first (tools/mkoci build --archive X && podman load -i X). Benchmarks are not
tests: numbers depend on the machine and its load."""

import argparse
import os
import shutil
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


def eg_runs(p, work, image, runs):
    """POST /api/kernels timings through the real Enterprise Gateway."""
    import re
    p.start_service()
    p.run("run", "-d", "--name", podlib.TAG + "-keeper", "--entrypoint", "/bin/sleep", image, "infinity")
    podlib.IMAGE = image
    eg = podlib.Gateway(work, p)
    try:
        eg.start(launch_timeout=120)
        for i in range(runs):
            mark = len(eg.text())
            t0 = time.time()
            status, body, reason = eg.rest("POST", "/api/kernels", {"name": "kbox"})
            t1 = time.time()
            if status != 201:
                raise SystemExit("POST /api/kernels: %s %s" % (status, reason))
            lines = eg.text()[mark:].splitlines()

            def at(pattern):
                for line in lines:
                    if re.search(pattern, line):
                        m = re.match(r"\[\w (\S+ \S+)", line)
                        return time.mktime(time.strptime(m.group(1)[:19], "%Y-%m-%d %H:%M:%S")) + float("0" + m.group(1)[19:]) - t0
                return float("nan")
            print("eg run %d: 201 after %.2f s (launcher %.2f, container running %.2f, connection info %.2f)" % (
                i, t1 - t0, at("kernel launched"), at("Using assigned_ip"), at("Received connection info")))
            eg.rest("DELETE", "/api/kernels/" + body["id"])
    finally:
        eg.stop()
        p.cleanup()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", default="localhost/kbox-kernel:latest")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--opts", default="", help="extra podman run options")
    ap.add_argument("--eg", action="store_true", help="time kernel creation through Enterprise Gateway")
    args = ap.parse_args()
    work = podlib.make_work()
    p = podlib.Podman(work)
    try:
        if args.eg:
            eg_runs(p, work, args.image, args.runs)
        else:
            kube_runs(p, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def kube_runs(p, args):
    rows = [one_run(p, args.image, args.opts.split(), i) for i in range(args.runs)]
    for i, (a, b, c) in enumerate(rows):
        print("run %d: podman run -d %.2f s, sandbox running %.2f s, kernel_info reply %.2f s" % (i, a, b, c))
    med = [statistics.median(col) for col in zip(*rows)]
    print("median: podman run -d %.2f s, sandbox running %.2f s, kernel_info reply %.2f s" % tuple(med))
    with open("/proc/loadavg") as f:
        print("load average: " + f.read().split()[0])


if __name__ == "__main__":
    main()
