"""The warm pool (docs/warm.md, "The pool"): a kernel claimed from the pool is as isolated as a cold
one (the isolation facts and the escape battery, from inside), gets the claim's settings (cwd from a
kernelspec launch with cwd=DIR, env, memory limit, hostname, id), shares no state with other pool
kernels, is never handed out twice (20 concurrent claims on a pool of 2), a pool kernel killed
before its claim is skipped, and `kbox warm stop` leaves nothing (holders, kernels, cgroups, run
dirs, the pool directory), nor does the server's or the zygote's SIGKILL."""
import glob
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import warmlib as w  # noqa: E402
import test_isolation as iso  # noqa: E402  (the same facts, gathered the same way)


def set_pool(z, n):
    r = subprocess.run([w.KBOX, "warm", "start", "--pool", str(n)], capture_output=True, text=True, timeout=300)
    w.check(r.returncode == 0, "kbox warm start --pool %d: %s %s" % (n, r.stderr, z.logs()))
    z.key = r.stdout.strip()


def slots(z):
    try:
        return sorted(f[:-5] for f in os.listdir(z.key + ".pool") if f.endswith(".sock"))
    except FileNotFoundError:
        return []


def wait_slots(z, n, timeout=300):
    deadline = time.monotonic() + timeout
    while len(slots(z)) < n:
        if time.monotonic() > deadline:
            w.fail("the pool did not reach %d ready kernels in %d s (has %s): %s" % (n, timeout, slots(z), z.logs()[-3000:]))
        time.sleep(0.2)
    return slots(z)


def isolation(z):
    """Pool vs cold: the same facts and escape verdicts from inside (test_isolation's)."""
    wait_slots(z, 1)
    sleeper = iso.host_sleeper(1000001000)
    try:
        pooled, prep = iso.facts()
        w.check(sleeper.poll() is None, "a host process with the kernel's uid was killed from a pool kernel")
    finally:
        sleeper.kill()
    cold, crep = iso.facts("--cold")
    w.check(w.start_of(prep) == "pool", "the kernel was not claimed from the pool: %s" % prep.get("kernel"))
    w.check("zygote.py" in pooled["cmdline"], "a pool kernel's cmdline: %s" % pooled["cmdline"])
    w.check(pooled["caps"] == ["0000000000000000"] * 5 and pooled["seccomp"] == "2", "pool kernel caps/seccomp %s/%s" % (pooled["caps"], pooled["seccomp"]))
    w.check(all(r == "denied" for r in pooled["escape"].values()) and len(pooled["escape"]) >= 40, "escape battery in a pool kernel: %s" % pooled["escape"])
    for key in ("uid", "gid", "pid", "visible_pids", "caps", "no_new_privs", "seccomp", "mounts", "ifaces",
                "probe", "escape", "home", "cwd", "env_keys"):
        w.check(pooled[key] == cold[key], "%s differs: pool %s, cold %s" % (key, pooled[key], cold[key]))


SETTINGS = r'''
import json, os, socket, subprocess
big = subprocess.run(["python3", "-c", "b = bytearray(400 << 20); b[::4096] = b'x' * len(b[::4096])"]).returncode
print(json.dumps({"cwd": os.getcwd(), "host": socket.gethostname(), "env": os.environ.get("KBOX_POOL_T"),
                  "kid": json.load(open("/run/kbox/kernel.json")).get("kernel_id"), "big": big,
                  "claim_sock": os.path.exists("/run/kbox/claim.sock"), "pool_env": "KBOX_WARM_POOL_KERNEL" in os.environ,
                  "dh": [str(d) for d in _dh], "home": os.environ["HOME"]}))
'''


def settings(z):
    """--workdir, --env, --hostname, --memory, the id: the claim's, read from inside."""
    work = tempfile.mkdtemp(prefix="kbox-pool-wd-")
    try:
        wait_slots(z, 1)
        k = w.Kernel("--workdir", work, "--env", "KBOX_POOL_T=yes", "--hostname", "claimed-host", "--memory", "200m", binds=False)
        out, err, _ = k.run(SETTINGS)
        rep = k.end()
        w.check(err is None, "settings cell raised %s" % err)
        got = json.loads(out.strip().splitlines()[-1])
        w.check(w.start_of(rep) == "pool", "not claimed from the pool: %s" % rep.get("kernel"))
        want = {"cwd": work, "host": "claimed-host", "env": "yes", "kid": k.id, "claim_sock": False, "pool_env": False, "dh": [work]}
        for key, v in want.items():
            w.check(got[key] == v, "%s: %r, expected %r" % (key, got[key], v))
        w.check(got["big"] != 0, "400 MB was allocated under --memory 200m in a pool kernel")
        wait_slots(z, 1)
        k = w.Kernel(binds=False)  # the default limit (1 GiB) lets the same allocation through
        out, err, _ = k.run(SETTINGS)
        rep = k.end()
        got = json.loads(out.strip().splitlines()[-1])
        w.check(w.start_of(rep) == "pool" and got["big"] == 0, "default limits in a pool kernel: %s, %s" % (got, rep.get("kernel")))
        w.check(got["host"] == k.id and got["cwd"] == got["home"] and got["kid"] == k.id, "defaults: %s" % got)
    finally:
        subprocess.run(["rm", "-rf", work])


CGROUP_CELL = r'''
import json
print(json.dumps([l.rstrip("\n").split(":", 2) for l in open("/proc/self/cgroup")]))
'''


def taken_cgroups(z):
    """A claim takes the pool kernel's own cgroups (renamed to this id's, docs/warm.md): inside, its
    cgroup namespace is rooted at its cgroup in every hierarchy (/proc/self/cgroup reads "/"); on the
    host they carry this id's name and the requested limit (raised above the pool's default here),
    the memory the kernel used while it started is charged there, and after the end nothing of the
    kernel or of its holder's cgroups is left. A limit below what a pool kernel already uses
    makes the claim fork instead, leaving the pool kernel in the pool."""
    holder = wait_slots(z, 1)[0]
    k = w.Kernel("--memory", "1500m", binds=False)
    out, err, _ = k.run(CGROUP_CELL)
    w.check(err is None, "cgroup cell raised %s" % err)
    lines = json.loads(out.strip().splitlines()[-1])
    w.check(lines and all(path == "/" for _, _, path in lines), "/proc/self/cgroup in a pool kernel: %s" % lines)
    mem = [d for d in w.cgroups_of(k.id) if "/memory/" in d]
    if mem:  # cgroup v1 memory (this host): the limit and the start-up charge are there
        limit = int(open(os.path.join(mem[0], "memory.limit_in_bytes")).read())
        used = int(open(os.path.join(mem[0], "memory.usage_in_bytes")).read())
        w.check(limit == 1500 << 20, "memory limit of the claimed kernel's cgroup: %d" % limit)
        w.check(used >= 10 << 20, "the pool kernel's start-up memory is not charged to its cgroup (%d bytes)" % used)
        w.check(open(os.path.join(mem[0], "cgroup.procs")).read().split(), "no process in %s" % mem[0])
    rep = k.end()
    w.check(w.start_of(rep) == "pool", "not claimed from the pool: %s" % rep.get("kernel"))
    w.check_no_leak([k.id, holder], wait=30)
    holder = wait_slots(z, 1)[0]
    try:
        used = int(open(os.path.join(z.key + ".pool", holder + ".mem")).read())
    except (OSError, ValueError):
        used = 0
    w.check(used > 0, "the holder of %s noted no memory" % holder)
    small = "%dk" % ((used + (1 << 20)) >> 10)
    p = subprocess.Popen([w.KBOX, "run", "--verbose", "--memory", small], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        p.stdout.readline()  # ready or not: the verdict on the pool comes first
    finally:
        p.terminate()
        _, err = p.communicate(timeout=60)
    w.check(b"already uses nine tenths of --memory: forking" in err, "--memory %s below a pool kernel's use: %s" % (small, err[-2000:]))
    w.check(holder in slots(z), "the pool kernel %s was used up by a claim that could not take it" % holder)


def traced(z):
    """--trace-setup is not part of the pool key: a traced start is claimed from the pool, and its
    trace names the claim's steps."""
    wait_slots(z, 1)
    k = w.Kernel("--trace-setup", binds=False)
    w.check(k.value("6 * 7") == "42", "a traced pool kernel does not answer")
    rep = k.end()
    err = k.stderr  # what kbox wrote to its stderr (end() read it)
    w.check(w.start_of(rep) == "pool", "a --trace-setup start was not claimed from the pool: %s" % rep.get("kernel"))
    w.check("pool: run dir taken, the kernel settled" in err, "no claim steps in the trace: %s" % err[-2000:])


def kernelspec(z):
    """pybox's pattern: MultiKernelManager.start_kernel(kernel_id=..., cwd=DIR) through the python3
    kernelspec; the kernel is a pool one (its slot is gone) and runs in DIR."""
    from jupyter_client.multikernelmanager import MultiKernelManager
    data = tempfile.mkdtemp(prefix="kbox-pool-jd-")
    work = tempfile.mkdtemp(prefix="kbox-pool-cwd-")
    os.environ["JUPYTER_DATA_DIR"] = data
    os.environ["JUPYTER_PATH"] = data
    mkm = MultiKernelManager()
    try:
        r = subprocess.run([w.KBOX, "kernelspec", "install", "--user", "--name", "python3", "--workdir-from-cwd"],
                           capture_output=True, text=True)
        w.check(r.returncode == 0, "kernelspec install: " + r.stderr)
        before = wait_slots(z, 1)
        sid = "pool-session-" + os.urandom(3).hex()
        mkm.start_kernel(kernel_name="python3", kernel_id=sid, cwd=work)
        kc = mkm.get_kernel(sid).client()
        kc.start_channels()
        kc.wait_for_ready(timeout=120)
        out = []
        reply = kc.execute_interactive("import os; print(os.getcwd()); open('made-here', 'w').write('1')", timeout=60,
                                       output_hook=lambda m: out.append(m["content"].get("text", "")) if m["msg_type"] == "stream" else None)
        w.check(reply["content"]["status"] == "ok", "the cell failed: %s" % reply["content"])
        w.check("".join(out).strip() == work, "cwd %r, expected %r" % ("".join(out), work))
        w.check(os.path.exists(os.path.join(work, "made-here")), "the kernel's file is not in the client's cwd")
        w.check(before[0] not in slots(z) or len(before) > 1, "the kernelspec launch did not take the pool kernel %s" % before)
        kc.stop_channels()
        mkm.shutdown_all(now=False)
    finally:
        try:
            mkm.shutdown_all(now=True)
        except Exception:
            pass
        subprocess.run(["rm", "-rf", data, work])


MARK = r'''
import os, socket, random
first = not os.path.exists("/tmp/kbox-claimed")
open("/tmp/kbox-claimed", "w").write("x")
KBOX_STATE = 1
print(repr((first, socket.gethostname(), random.random())))
'''


def concurrent(z, n=20):
    """n claims at once on a pool of 2: every kernel works, each is its own (a fresh /tmp, its own
    hostname, its own random sequence), some came from the pool, the others forked."""
    set_pool(z, 2)
    wait_slots(z, 2)
    kernels, errors, lock = [], [], threading.Lock()

    def one():
        try:
            k = w.Kernel(binds=False)
            out, err, _ = k.run(MARK)
            with lock:
                kernels.append((k, out, err))
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(repr(e))

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    starts, seen_random = [], set()
    for k, out, err in kernels:
        starts.append(w.start_of(k.end()))
        w.check(err is None, "kernel %s raised %s" % (k.id, err))
        first, host, rnd = eval(out.strip())
        w.check(first, "kernel %s found another claim's /tmp mark: one kernel was handed out twice" % k.id)
        w.check(host == k.id, "kernel %s answers as host %s: another claim's kernel" % (k.id, host))
        w.check(rnd not in seen_random, "two kernels share a random sequence")
        seen_random.add(rnd)
    w.check(not errors and len(kernels) == n, "%d of %d concurrent kernels failed: %s" % (n - len(kernels), n, errors[:3]))
    print("concurrent starts on a pool of 2: %s" % {s: starts.count(s) for s in set(starts)})
    w.check(starts.count("pool") >= 1, "no concurrent kernel came from the pool")
    w.check(set(starts) <= {"pool", "fork", "cold"}, "starts %s" % starts)
    w.check_no_leak([k.id for k, _, _ in kernels], wait=30)
    # The pool refills, and a kernel claimed after another sees nothing of it.
    wait_slots(z, 1)
    k = w.Kernel(binds=False)
    out, err, _ = k.run("import os; print(repr((os.path.exists('/tmp/kbox-claimed'), 'KBOX_STATE' in globals())))")
    rep = k.end()
    w.check(w.start_of(rep) == "pool" and eval(out.strip()) == (False, False), "state crossed pool kernels: %s %s" % (out, rep.get("kernel")))
    set_pool(z, 1)


def kernel_pids(sid):
    pids = set()
    for cg in w.cgroups_of(sid):
        try:
            pids |= {int(x) for x in open(os.path.join(cg, "cgroup.procs")).read().split()}
        except OSError:
            pass
    return pids


def killed_before_claim(z):
    """SIGKILL a pool kernel while it waits: the next kernel still starts (it skips it, or finds
    its slot gone) and the dead one leaves nothing."""
    victim = wait_slots(z, 1)[0]
    pids = kernel_pids(victim)
    w.check(pids, "no processes in the pool kernel %s's cgroups" % victim)
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    k = w.Kernel(binds=False)
    w.check(k.value("6 * 7") == "42", "the kernel after a killed pool kernel does not answer")
    rep = k.end()
    w.check(w.start_of(rep) in ("fork", "pool"), "start %s" % w.start_of(rep))
    w.check_no_leak([victim, k.id], wait=30)


def holders(z):
    """Pool holder processes of our zygote (their slot, in the environment, is in our pool dir)."""
    mark = ("KBOX_WARM_POOL_SLOT=" + z.key + ".pool/").encode()
    out = []
    for f in glob.glob("/proc/[0-9]*/environ"):
        try:
            if mark in open(f, "rb").read():
                out.append(int(f.split("/")[2]))
        except OSError:
            pass
    return out


def stopped(z):
    """`kbox warm stop`: holders, pool kernels, their cgroups and run dirs and the pool dir go."""
    ids = wait_slots(z, 1)
    ps = subprocess.run([w.KBOX, "ps", "--json"], capture_output=True, text=True, timeout=60)
    listed = {e["id"]: e["status"] for e in json.loads(ps.stdout or "[]")}
    w.check(all(listed.get(i) == "pooled" for i in ids), "kbox ps shows the pool's kernels %s as %s" % (ids, listed))
    subprocess.run([w.KBOX, "warm", "stop"], capture_output=True, timeout=60)
    deadline = time.monotonic() + 30
    while True:
        hs = holders(z)
        left = [c for i in ids for c in w.cgroups_of(i)] + [d for i in ids for d in glob.glob("/run/kbox/%s" % i)]
        if not hs and not left and not os.path.exists(z.key + ".pool") and not [s for s in z.status() if s["alive"]]:
            break
        if time.monotonic() > deadline:
            w.fail("left after kbox warm stop: holders %s, %s, pool dir %s" % (hs, left, os.path.exists(z.key + ".pool")))
        time.sleep(0.2)


def serve_killed(z):
    """SIGKILL `kbox warm serve`: its holders end their pool kernels (parent-death signal) and
    nothing of them stays. (Last: the killed server leaves its socket, which `kbox warm start`
    takes for a live zygote.)"""
    set_pool(z, 1)
    ids = wait_slots(z, 1)
    os.kill(z.server_pid(), signal.SIGKILL)
    deadline = time.monotonic() + 30
    while True:
        hs = holders(z)
        left = [c for i in ids for c in w.cgroups_of(i)] + [d for i in ids for d in glob.glob("/run/kbox/%s" % i)]
        if not hs and not left:
            break
        if time.monotonic() > deadline:
            w.fail("left after the server was killed: holders %s, %s" % (hs, left))
        time.sleep(0.2)


def zygote_killed(z):
    """SIGKILL the zygote: its pool kernels end with it (they live in its pid namespace), their
    holders exit, and nothing of them stays."""
    set_pool(z, 1)
    ids = wait_slots(z, 1)
    os.kill(z.zygote_pid(), signal.SIGKILL)
    deadline = time.monotonic() + 60
    while True:
        left = [c for i in ids for c in w.cgroups_of(i)] + [d for i in ids for d in glob.glob("/run/kbox/%s" % i)]
        if not left and not holders(z) and not [s for s in z.status() if s["alive"]]:
            break
        if time.monotonic() > deadline:
            w.fail("left after the zygote was killed: %s, holders %s" % (left, holders(z)))
        time.sleep(0.2)


def main():
    w.check_host()
    z = w.Zygotes()
    try:
        set_pool(z, 1)
        w.run_cases((isolation, settings, taken_cgroups, traced, kernelspec, concurrent, killed_before_claim, stopped, zygote_killed, serve_killed), z)
    finally:
        z.stop()


if __name__ == "__main__":
    main()
