#!/usr/bin/python3
"""bench-pod: start-up time of the kbox image in podman (root), as jupyter-kernel-controller runs it.

  tools/bench-pod.py [--image localhost/kbox-kernel:latest] [--runs 5] [--opts '--security-opt ...']
  tools/bench-pod.py --eg [--log] [--image ...] [--runs 5] [--ab SPEC,SPEC...] [--image-b IMAGE]

For each run: `podman run -d` of a controller-style container (kbox with -v), then kernel_info
requests from a host jupyter_client until one is answered, then `1+1`. Prints, per run and as
medians: podman's own part (from `podman run` until the container's process starts, podman's
State.StartedAt), then from that start: kbox's first log line, the sandbox running (kbox's
"protections active" line), ipykernel's banner (its imports done), the first kernel_info reply,
and the first `1+1` after it (it waits for the startup scripts the kernel runs after readiness).
Log times are podman's (`podman logs -t`); no `podman exec` polls during a run (they cost CPU).
With --eg: the real Enterprise Gateway (vendored, as the pods suite runs it) creates kernels
through podman's API; per run, from POST /api/kernels: until the container starts, then from that
start: sandbox running, banner, EG's 201, kernel_info over EG's websocket, then the first `1+1`;
EG's own log lines (launcher started, container seen running, connection info received);
--log prints each kernel container's log and environment names; --ab alternates kernelspecs
run by run (A/B in the same minute): kbox (the image; the connection info once the kernel
answered, the default), kbox_respond_listening (KBOX_EG_RESPOND=listening: once it listens),
kbox_b (--image-b, e.g. an older build), kbox_b_listening; --runs is then per kernelspec, medians per kernelspec. Load the image first
(tools/mkoci build --archive X --tag T && podman load -i X). Benchmarks are not
tests: numbers depend on the machine and its load."""

import argparse
import json
import os
import shutil
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "pods"))
import podlib  # noqa: E402


def started_at(p, name):
    """When the container's process started (podman's State.StartedAt), as time.time()."""
    return int(p.run("inspect", name, "--format", "{{.State.StartedAt.UnixNano}}").stdout.strip()) / 1e9


def log_times(p, name):
    """(time, text) of each line of the container's log (podman logs -t: when conmon read it)."""
    import datetime
    r = p.run("logs", "-t", name, check=False)
    out = []
    for line in (r.stdout + r.stderr).splitlines():
        stamp, _, text = line.partition(" ")
        try:
            when = datetime.datetime.strptime(stamp[:26].rstrip("Z"), "%Y-%m-%dT%H:%M:%S.%f")
        except ValueError:
            continue
        out.append((when.replace(tzinfo=datetime.timezone.utc).timestamp(), text))
    return sorted(out)


def one_run(p, image, opts, i):
    """One controller-style container; times relative to `podman run` and to the container's start."""
    name = "kbox-bench-%d-%d" % (os.getpid(), i)
    t0 = time.time()
    p.run("run", "-d", "--name", name, *opts, *podlib.controller_env("bench-key"), image, "-v")
    try:
        ip = p.ip_of(name)
        kc = podlib.kernel_client(ip, "bench-key")
        answered = podlib.wait_kernel_info(kc, 120)  # no podman exec meanwhile: it costs CPU the kernel needs
        t_ready = time.time()
        t_first = float("nan")
        if answered:  # the first cell waits for the start-up scripts deferred past readiness
            content, _ = podlib.execute(kc, "1+1", timeout=120)
            t_first = time.time() - t_ready if content["status"] == "ok" else float("nan")
        kc.stop_channels()
        start = started_at(p, name)
        lines = log_times(p, name)
    finally:
        p.run("rm", "-f", "-t", "0", name, check=False)
    if not answered:
        raise SystemExit("run %d: no kernel_info reply within 120 s" % i)
    first_line = lines[0][0] - start if lines else float("nan")
    # kbox logs what the sandbox achieved once it runs, then ipykernel prints its banner
    running = next((t - start for t, x in lines if "protections active" in x), float("nan"))
    banner = next((t - start for t, x in lines if "NOTE: When using the" in x), float("nan"))
    return (start - t0, first_line, running, banner, t_ready - start, t_first)


KUBE_FMT = ("podman until the container starts %.2f s; from the container's start: kbox's first line %.2f s, "
            "sandbox running %.2f s, ipykernel's banner %.2f s, kernel_info reply %.2f s; then first `1+1` %.2f s")


def eg_runs(p, work, image, runs, show_log=False, specs=("kbox",), image_b=None, eg_poll=None):
    """POST /api/kernels timings through the real Enterprise Gateway, kernelspecs alternated."""
    import re
    p.start_service()
    p.run("run", "-d", "--name", podlib.TAG + "-keeper", "--entrypoint", "/bin/sleep", image, "infinity")
    podlib.IMAGE = image
    eg = podlib.Gateway(work, p)
    rows = {s: [] for s in specs}
    extra = {}
    if image_b:
        extra = {"kbox_b": (image_b, None), "kbox_b_listening": (image_b, {"KBOX_EG_RESPOND": "listening"})}
    try:
        eg.start(launch_timeout=120, extra_specs=extra, extra_env={"EG_POLL_INTERVAL": eg_poll} if eg_poll else None)
        for i in range(runs * len(specs)):
            spec = specs[i % len(specs)]
            mark = len(eg.text())
            t0 = time.time()
            status, body, reason = eg.rest("POST", "/api/kernels", {"name": spec})
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
            # the container EG started (named KERNEL_USERNAME-KERNEL_ID): its process start
            cid = p.containers("name=" + body["id"])
            start = started_at(p, cid[0]) if cid else float("nan")
            ws = podlib.KernelSocket(eg.port, body["id"])
            try:
                ws.collect(ws.send("kernel_info_request", {}), timeout=120)
                t2 = time.time()
                reply, _ = ws.execute("1+1", timeout=120)
                t3 = time.time()
            finally:
                ws.close()
            clines = log_times(p, cid[0]) if cid else []
            running = next((t - start for t, x in clines if "protections active" in x), float("nan"))
            banner = next((t - start for t, x in clines if "NOTE: When using the" in x), float("nan"))
            rows[spec].append((start - t0, running, banner, t1 - start, t2 - start, t3 - t2))
            if show_log and cid:
                env = json.loads(p.run("inspect", cid[0], "--format", "{{json .Config.Env}}").stdout)
                print("  environment (names): " + " ".join(sorted(e.split("=", 1)[0] for e in env)))
                for when, text in clines:
                    print("  +%.3f %s" % (when - start, text[:150]))
            print(("eg run %d (%s): " % (i, spec)) + EG_FMT % rows[spec][-1] + " (EG log, from POST: launcher %.2f, container seen running "
                  "%.2f, connection info %.2f)" % (at("kernel launched"), at("Using assigned_ip"), at("Received connection info")))
            eg.rest("DELETE", "/api/kernels/" + body["id"])
        for spec in specs:
            print("eg median (%s): " % spec + EG_FMT % tuple(statistics.median(col) for col in zip(*rows[spec])))
            # what follows the kernel's banner (its imports done), less sensitive to the load than the totals
            print("  after the banner (median per run): 201 +%.2f s, kernel_info over the websocket +%.2f s" %
                  (statistics.median(r[3] - r[2] for r in rows[spec]), statistics.median(r[4] - r[2] for r in rows[spec])))
        with open("/proc/loadavg") as f:
            print("load average: " + f.read().split()[0])
    finally:
        eg.stop()
        p.cleanup()


EG_FMT = ("POST until the container starts %.2f s; from the container's start: sandbox running %.2f s, "
          "ipykernel's banner %.2f s, 201 %.2f s, "
          "kernel_info reply over the websocket %.2f s; then first `1+1` %.2f s")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", default="localhost/kbox-kernel:latest")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--opts", default="", help="extra podman run options")
    ap.add_argument("--eg", action="store_true", help="time kernel creation through Enterprise Gateway")
    ap.add_argument("--log", action="store_true", help="--eg: print each kernel container's log, times from its start")
    ap.add_argument("--ab", default="kbox", help="--eg: kernelspecs to alternate, comma-separated (see above)")
    ap.add_argument("--image-b", default=None, help="--eg: the image of the kbox_b* kernelspecs")
    ap.add_argument("--eg-poll", default=None, help="--eg: EG_POLL_INTERVAL for the gateway (its default 0.5 s)")
    args = ap.parse_args()
    work = podlib.make_work()
    p = podlib.Podman(work)
    try:
        if args.eg:
            eg_runs(p, work, args.image, args.runs, args.log, tuple(args.ab.split(",")), args.image_b, args.eg_poll)
        else:
            kube_runs(p, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def kube_runs(p, args):
    rows = [one_run(p, args.image, args.opts.split(), i) for i in range(args.runs)]
    for i, row in enumerate(rows):
        print(("run %d: " % i) + KUBE_FMT % row)
    med = [statistics.median(col) for col in zip(*rows)]
    print("median: " + KUBE_FMT % tuple(med))
    with open("/proc/loadavg") as f:
        print("load average: " + f.read().split()[0])


if __name__ == "__main__":
    main()
