#!/usr/bin/python3
"""Benchmark (not a test): unsandboxed ipykernel via jupyter_client vs `kbox run` (kernel mode) on
the same Python: time to ready (kernel_info_reply), execute round trip of `1` (p50/p99), iopub
throughput of a large print (ipykernel sends it as one big stream message) and of many small
flushed prints (one message each), kbox's memory (RSS, and PSS/USS: RSS counts every shared
library page kbox touched, PSS splits them among the processes mapping them, USS is what only
kbox holds) and the broker's CPU time per execute.

--repeat N alternates native and kbox runs N times and prints medians (the machine is shared:
single runs are noisy). broker_added_p50_us compares, on the same sandboxed kernel, round trips
through the broker with round trips straight to the kernel's ipc sockets: the broker's cost
alone (native vs kbox also differ in cgroup CPU share and transport, which dominate on a loaded
machine).

The lean_* figures come from tools/leanclient.py (raw pyzmq + HMAC, no jupyter_client: its poll
intervals and channel threads weigh more in a round trip than the broker): the same measurements
on plain ipykernel, on the sandboxed kernel's own ipc sockets (direct) and through kbox, plus a
libzmq pass-through (zmq_proxy, no checks, no signing) in front of the same sandboxed kernel, the
floor any libzmq broker pays, and a raw epoll byte relay (tools/bench_relay.c: no ZMTP parsing, read and
write between the client's TCP connections and the kernel's ipc sockets), the floor any userspace
relay pays. Broker CPU comes from the kbox process's own threads (schedstat,
ns; main thread and libzmq's I/O thread apart) over n lean executes, and per MB of one large
print; the sandbox's processes are not counted.

Usage: tools/bench-kernel.py [--kbox PATH] [--n 300] [--rootfs /] [--repeat 3]"""
import argparse
import atexit
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from jupyter_client import BlockingKernelClient, KernelManager

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from leanclient import Lean, thread_cpu_ns  # noqa: E402

PY = "/usr/bin/python3"
BIG = 50 << 20   # bytes printed in one cell
FLUSHES = 2000   # small flushed prints


def quiet(m):
    pass


def measure(kc, n):
    kc.execute_interactive("1", timeout=30, output_hook=quiet)
    lat = []
    for _ in range(n):
        t = time.perf_counter()
        kc.execute_interactive("1", timeout=30, output_hook=quiet)
        lat.append((time.perf_counter() - t) * 1e6)
    lat.sort()
    p50, p99 = lat[len(lat) // 2], lat[int(len(lat) * 0.99) - 1]
    got = [0, 0]

    def hook(m):
        if m["msg_type"] == "stream":
            got[0] += len(m["content"]["text"])
            got[1] += 1
    t = time.perf_counter()
    kc.execute_interactive("import sys\nline = 'x' * 1023 + '\\n'\nfor _ in range(%d): sys.stdout.write(line)" % (BIG // 1024),
                           timeout=300, output_hook=hook)
    mbps = got[0] / (time.perf_counter() - t) / 1e6
    got[1] = 0
    t = time.perf_counter()
    kc.execute_interactive("for i in range(%d): print(i, flush=True)" % FLUSHES, timeout=300, output_hook=hook)
    msgps = got[1] / (time.perf_counter() - t)
    return p50, p99, mbps, msgps


def native(n):
    t = time.perf_counter()
    km = KernelManager(kernel_cmd=[PY, "-m", "ipykernel_launcher", "-f", "{connection_file}"])
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    ready = time.perf_counter() - t
    r = measure(kc, n)
    info = km.get_connection_info()
    if isinstance(info.get("key"), bytes):
        info["key"] = info["key"].decode()
    kc.stop_channels()  # as for kbox: no unread subscriber while the lean client measures
    lean = lean_measure(info, n)
    km.shutdown_kernel(now=True)
    return (ready,) + r + (None, None, None, None, None) + lean + (None,) * (len(NAMES) - 10 - len(lean))


def memory_kib(pid):
    """RSS, PSS and USS (private clean + dirty) of pid in KiB."""
    v = {}
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0].endswith(":"):
                v[parts[0][:-1]] = int(parts[1])
    return v.get("Rss", 0), v.get("Pss", 0), v.get("Private_Clean", 0) + v.get("Private_Dirty", 0)


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_dir_base():
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg) and os.access(xdg, os.W_OK):
        return os.path.join(xdg, "kbox")
    return "/run/kbox" if os.geteuid() == 0 else "/tmp/kbox-%d" % os.geteuid()


def broker_added_us(kc, kernel_id, n):
    """Round trip p50 through the broker minus p50 straight to the same sandboxed kernel's ipc
    sockets (its connection file in the run dir), in alternating blocks: what the broker adds,
    with the kernel, its cgroup and the machine's load the same on both sides."""
    inner = inner_info(kernel_id)
    if inner is None:
        return None
    direct = BlockingKernelClient()
    direct.load_connection_info(inner)
    direct.start_channels()
    direct.wait_for_ready(timeout=60)
    lat = {0: [], 1: []}
    for block in range(10):
        for which, c in ((0, kc), (1, direct)) if block % 2 == 0 else ((1, direct), (0, kc)):
            for _ in range(max(1, n // 10)):
                t = time.perf_counter()
                c.execute_interactive("1", timeout=30, output_hook=quiet)
                lat[which].append((time.perf_counter() - t) * 1e6)
    direct.stop_channels()
    return statistics.median(lat[0]) - statistics.median(lat[1])


def pctl(lat, q):
    lat = sorted(lat)
    return lat[min(len(lat) - 1, int(len(lat) * q))]


def lean_measure(info, n):
    """Round trip p50/p99, one large print (MB/s), small flushed prints (msg/s), with the lean client."""
    c = Lean(info)
    c.wait_ready()
    c.round_trips(20)
    lat = c.round_trips(n)
    mbps = c.big_print(BIG)
    msgps = c.small_prints(FLUSHES)
    c.close()
    return (pctl(lat, 0.5), pctl(lat, 0.99), mbps, msgps)


def inner_info(kernel_id):
    """Connection info of the sandboxed kernel's own ipc sockets (its kernel.json in the run dir)."""
    kdir = os.path.join(run_dir_base(), kernel_id, "k")
    try:
        with open(os.path.join(kdir, "kernel.json")) as f:
            inner = json.load(f)
    except OSError:
        return None  # not readable here (e.g. another user's run dir)
    inner["ip"] = os.path.join(kdir, "kernel")
    return inner


def lean_kbox(pid, info, n):
    """Through kbox with the lean client, and the broker's own CPU: per execute (main thread, I/O
    thread) and per MB of one large print."""
    c = Lean(info)
    c.wait_ready()
    c.round_trips(20)
    a = thread_cpu_ns(pid)
    lat = c.round_trips(n)
    b = thread_cpu_ns(pid)
    per = lambda k, div: (b.get(k, 0) - a.get(k, 0)) / div / 1e3
    cpu_main, cpu_io = per("main", n), per("io", n)
    a = thread_cpu_ns(pid)
    mbps = c.big_print(BIG)
    b = thread_cpu_ns(pid)
    cpu_mb = (sum(b.values()) - sum(a.values())) / (BIG / 1e6) / 1e3
    msgps = c.small_prints(FLUSHES)
    c.close()
    return (pctl(lat, 0.5), pctl(lat, 0.99), mbps, msgps, cpu_main, cpu_io, cpu_mb)


def relay_binary():
    """tools/bench_relay.c built: build/tools/bench_relay (-Dbenchmarks=true), else compiled here."""
    here = os.path.dirname(os.path.abspath(__file__))
    built = os.path.join(here, "..", "build", "tools", "bench_relay")
    if os.access(built, os.X_OK):
        return built
    tmp = tempfile.mkdtemp(prefix="kbox-bench-relay.")
    atexit.register(shutil.rmtree, tmp, True)
    out = os.path.join(tmp, "bench_relay")
    subprocess.run(["cc", "-O2", "-o", out, os.path.join(here, "bench_relay.c")], check=True)
    return out


def start_relay(inner):
    """The raw epoll byte relay (tools/bench_relay.c) in front of the kernel's shell and iopub
    sockets: its process and the connection info clients use through it."""
    p = subprocess.Popen([relay_binary(), inner["ip"], str(inner["shell_port"]), str(inner["iopub_port"])],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    ports = dict(kv.split("=") for kv in p.stdout.readline().decode().split())
    out = dict(inner, transport="tcp", ip="127.0.0.1",
               shell_port=int(ports[str(inner["shell_port"])]), iopub_port=int(ports[str(inner["iopub_port"])]))
    return p, out


def stop(p):
    p.stdin.close()
    p.kill()
    p.wait()


def cpu_per_exec(client, pid, n):
    """CPU (us, all threads of pid) per lean execute through it."""
    a = thread_cpu_ns(pid)
    client.round_trips(n)
    b = thread_cpu_ns(pid)
    return (sum(b.values()) - sum(a.values())) / n / 1e3


def lean_added(info, inner, n):
    """p50 through kbox, straight to the sandboxed kernel, through a plain zmq_proxy and through a
    raw byte relay in front of it (alternating blocks, same kernel), and the proxy's and the
    relay's CPU per execute: returns (kbox - direct, proxy - direct, proxy CPU us, direct p50,
    direct MB/s, direct msg/s, relay - direct, relay CPU us, proxy p50, relay p50)."""
    proxy = subprocess.Popen([PY, os.path.join(os.path.dirname(os.path.abspath(__file__)), "leanclient.py"), json.dumps(inner)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    pinfo = json.loads(proxy.stdout.readline())
    relay, rinfo = start_relay(inner)
    clients = [Lean(info), Lean(inner), Lean(pinfo), Lean(rinfo)]
    for c in clients:
        c.wait_ready()
        c.round_trips(10)
    lat = {k: [] for k in range(len(clients))}
    for block in range(10):
        order = (0, 1, 2, 3) if block % 2 == 0 else (3, 2, 1, 0)
        for which in order:
            lat[which] += clients[which].round_trips(max(1, n // 10))
    proxy_cpu = cpu_per_exec(clients[2], proxy.pid, n)
    relay_cpu = cpu_per_exec(clients[3], relay.pid, n)
    d_mbps = clients[1].big_print(BIG)
    d_msgps = clients[1].small_prints(FLUSHES)
    for c in clients:
        c.close()
    stop(proxy)
    stop(relay)
    med = {k: statistics.median(v) for k, v in lat.items()}
    return (med[0] - med[1], med[2] - med[1], proxy_cpu, med[1], d_mbps, d_msgps, med[3] - med[1], relay_cpu,
            med[2], med[3])


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
    rss, pss, uss = memory_kib(p.pid)
    c0 = cpu_s(p.pid)
    for _ in range(n):
        kc.execute_interactive("1", timeout=30, output_hook=quiet)
    cpu_us = (cpu_s(p.pid) - c0) / n * 1e6
    added = broker_added_us(kc, info["kernel_id"], n)
    # A subscriber that does not read (kc's iopub, unread while the lean client works) would fill
    # its queue and pause the kernel's iopub for everyone (the broker's slow-joiner policy).
    kc.stop_channels()
    lean = lean_kbox(p.pid, info, n)
    got = inner_info(info["kernel_id"])
    extra = lean_added(info, got, n) if got else (None,) * 10
    kc = BlockingKernelClient()  # a stopped client's channel threads cannot start again
    kc.load_connection_info(info)
    kc.start_channels()
    kc.shutdown()
    p.wait(timeout=30)
    kc.stop_channels()
    return (ready,) + r + (rss, pss, uss, cpu_us, added) + lean + extra


NAMES = ["ready_s", "rt_p50_us", "rt_p99_us", "iopub_MBps", "iopub_msg_per_s", "kbox_rss_kib", "kbox_pss_kib",
         "kbox_uss_kib", "kbox_cpu_us_per_exec", "broker_added_p50_us",
         "lean_rt_p50_us", "lean_rt_p99_us", "lean_iopub_MBps", "lean_iopub_msg_per_s",
         "lean_cpu_main_us_per_exec", "lean_cpu_io_us_per_exec", "lean_cpu_us_per_MB",
         "lean_added_p50_us", "lean_proxy_added_p50_us", "lean_proxy_cpu_us_per_exec",
         "lean_direct_rt_p50_us", "lean_direct_iopub_MBps", "lean_direct_iopub_msg_per_s",
         "lean_relay_added_p50_us", "lean_relay_cpu_us_per_exec", "lean_proxy_rt_p50_us", "lean_relay_rt_p50_us"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kbox", default=os.environ.get("KBOX_BIN", "build/src/kbox"))
    ap.add_argument("--rootfs", default="/")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args()
    nats, kbs = [], []
    for _ in range(a.repeat):
        nats.append(native(a.n))
        kbs.append(kbox(a.kbox, a.rootfs, a.n))
    def med(rows, i):
        vals = [r[i] for r in rows if r[i] is not None]
        return statistics.median(vals) if vals else None
    print("%-21s %12s %12s %8s   (medians of %d runs, kbox %s)" % ("metric", "native", "kbox", "ratio", a.repeat, a.kbox))
    for i, name in enumerate(NAMES):
        nv, kv = med(nats, i), med(kbs, i)
        ratio = "" if nv is None or kv is None else "%.3f" % (kv / nv)
        print("%-21s %12s %12s %8s" % (name, "-" if nv is None else "%.4g" % nv, "-" if kv is None else "%.4g" % kv, ratio))
    print("added round trip p50: %.0f us" % (med(kbs, 1) - med(nats, 1)))
    summary(lambda name: (med(nats, NAMES.index(name)), med(kbs, NAMES.index(name))))


def summary(get):
    """The kernel-mode rows of issue 16's table, kbox against plain ipykernel, with ratio and target
    (the command-mode rows come from tools/bench-run.sh)."""
    def row(what, name, target, scale=1.0, peer=None):
        nv, kv = get(name)
        if peer is not None:  # the peer is another kbox-side figure (the sandboxed kernel, direct)
            nv = get(peer)[1]
        f = lambda v: "-" if v is None else "%.4g" % (v * scale)
        ratio = "-" if nv in (None, 0) or kv is None else "%.3f" % (kv / nv)
        print("%-44s %11s %11s %7s  %s" % (what, f(kv), f(nv), ratio, target))
    print()
    print("%-44s %11s %11s %7s  %s" % ("figure (kernel mode)", "kbox", "ipykernel", "ratio", "target"))
    print("-" * 86)
    row("execute round trip p50 (us)", "rt_p50_us", "ratio <= 1.05")
    row("execute round trip p99 (us)", "rt_p99_us", "-")
    row("broker alone: added round trip p50 (us)", "broker_added_p50_us", "<= 50 us")
    row("broker CPU per execute (us)", "kbox_cpu_us_per_exec", "<= 50 us")
    row("iopub throughput, one 50 MB print (MB/s)", "iopub_MBps", "ratio >= 0.95")
    row("iopub small flushed prints (msg/s)", "iopub_msg_per_s", "ratio >= 0.95")
    row("time to kernel_info_reply (s)", "ready_s", "-")
    row("kbox RSS, kernel mode (MB)", "kbox_rss_kib", "-", 1 / 1024)
    row("kbox PSS, kernel mode (MB)", "kbox_pss_kib", "-", 1 / 1024)
    row("kbox USS, kernel mode (MB)", "kbox_uss_kib", "-", 1 / 1024)
    print()
    print("%-44s %11s %11s %7s  %s" % ("lean client (raw zmq + HMAC)", "kbox", "peer", "ratio", "target"))
    print("-" * 86)
    row("execute round trip p50 (us), vs ipykernel", "lean_rt_p50_us", "ratio <= 1.05")
    row("execute round trip p50 (us), vs direct", "lean_rt_p50_us", "-", peer="lean_direct_rt_p50_us")
    row("execute round trip p99 (us), vs ipykernel", "lean_rt_p99_us", "-")
    row("broker alone: added round trip p50 (us)", "lean_added_p50_us", "<= 50 us")
    row("  zmq_proxy pass-through: added p50 (us)", "lean_proxy_added_p50_us", "floor")
    k = get("lean_cpu_main_us_per_exec")[1], get("lean_cpu_io_us_per_exec")[1]
    total = None if None in k else k[0] + k[1]
    print("%-44s %11s %11s %7s  %s" % ("broker CPU per execute (us)", "-" if total is None else "%.4g" % total,
                                       "-", "-", "<= 50 us"))
    row("  main thread (us)", "lean_cpu_main_us_per_exec", "-")
    row("  libzmq I/O thread (us)", "lean_cpu_io_us_per_exec", "-")
    row("  zmq_proxy pass-through CPU per execute (us)", "lean_proxy_cpu_us_per_exec", "floor")
    row("broker CPU per MB of iopub (us)", "lean_cpu_us_per_MB", "-")
    row("iopub one 50 MB print (MB/s), vs ipykernel", "lean_iopub_MBps", "ratio >= 0.95")
    row("iopub one 50 MB print (MB/s), vs direct", "lean_iopub_MBps", "ratio >= 0.95", peer="lean_direct_iopub_MBps")
    row("iopub small prints (msg/s), vs ipykernel", "lean_iopub_msg_per_s", "ratio >= 0.95")
    row("iopub small prints (msg/s), vs direct", "lean_iopub_msg_per_s", "ratio >= 0.95", peer="lean_direct_iopub_msg_per_s")
    print("(direct: the same sandboxed kernel's own ipc sockets, no broker; peer of the zmq_proxy rows: direct)")
    relays(get)


def relays(get):
    """The floor of a relay: one line per path to a kernel, lean round trip p50, what it adds over
    direct (same sandboxed kernel, alternating blocks) and the relay's CPU per execute."""
    k = lambda name: get(name)[1]
    f = lambda v: "-" if v is None else "%.4g" % v
    main_io = k("lean_cpu_main_us_per_exec"), k("lean_cpu_io_us_per_exec")
    kcpu = None if None in main_io else sum(main_io)
    plus = lambda a, b: None if a is None or b is None else a + b
    rows = [("plain ipykernel (no sandbox, no relay)", get("lean_rt_p50_us")[0], None, None),
            ("direct (sandboxed kernel's ipc sockets)", k("lean_direct_rt_p50_us"), 0.0, None),
            ("kbox broker (checks, re-signs)", plus(k("lean_direct_rt_p50_us"), k("lean_added_p50_us")), k("lean_added_p50_us"), kcpu),
            ("zmq_proxy pass-through (libzmq, no checks)", k("lean_proxy_rt_p50_us"), k("lean_proxy_added_p50_us"),
             k("lean_proxy_cpu_us_per_exec")),
            ("raw epoll byte relay (no ZMTP parsing)", k("lean_relay_rt_p50_us"), k("lean_relay_added_p50_us"),
             k("lean_relay_cpu_us_per_exec"))]
    print()
    print("%-44s %11s %11s %11s" % ("path to the kernel (lean client)", "rt p50 us", "added us", "CPU us/exec"))
    print("-" * 80)
    for name, rt, added, cpu in rows:
        print("%-44s %11s %11s %11s" % (name, f(rt), f(added), f(cpu)))
    print("(added: vs direct, same kernel, alternating blocks; CPU: the relay process, all threads; target <= 50 us both)")


if __name__ == "__main__":
    sys.exit(main())
