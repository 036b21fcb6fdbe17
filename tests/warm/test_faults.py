"""Fault cases of warm starts; each must end in a working kernel (cold at worst) or a clear error, and
leave nothing behind (cgroups, run dirs, processes adopted by the zygote)."""
import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import warmlib as w  # noqa: E402


def works(k):
    w.check(k.value("6 * 7") == "42", "kernel %s does not answer" % k.id)


def resume(pid):
    try:
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:
        pass


def wedged(z):
    """SIGSTOP the zygote: the next kernel starts cold (after the step timeout), then warm again."""
    zpid = z.zygote_pid()
    os.kill(zpid, signal.SIGSTOP)
    threading.Timer(60, resume, (zpid,)).start()  # never leave it stopped
    try:
        k = w.Kernel(binds=False)
        works(k)
        rep = k.end()
    finally:
        os.kill(zpid, signal.SIGCONT)
    w.check(w.start_of(rep) == "cold", "a wedged zygote gave %s (report %s, kbox's stderr: %s)"
            % (w.start_of(rep), rep, k.stderr[-1500:]))
    w.check("warm start failed" in k.stderr, "no log line for the fallback: %s" % k.stderr)
    k2 = w.Kernel(binds=False)
    works(k2)
    w.check(w.start_of(k2.end()) == "fork", "the zygote did not serve again after SIGCONT")
    w.check_no_leak([k.id, k2.id], (z, zpid))


def pids_refused(z):
    """--pids 2: the fork of the kernel is refused; kbox ends with a clear error, the zygote goes on."""
    sid = "wtp" + os.urandom(3).hex()
    r = subprocess.run([w.KBOX, "run", "--id", sid, "--pids", "2"], capture_output=True, text=True, timeout=180)
    w.check(r.returncode != 0, "a kernel with --pids 2 came up")
    w.check("kbox" in r.stderr and ("pids" in r.stderr or "Resource temporarily unavailable" in r.stderr or "kernel" in r.stderr),
            "no clear reason: %s" % r.stderr[-2000:])
    k = w.Kernel(binds=False)
    works(k)
    w.check(w.start_of(k.end()) == "fork", "the zygote stopped serving after a refused fork")
    w.check_no_leak([sid, k.id], (z, z.zygote_pid()))


def caller_killed(z):
    """SIGKILL `kbox run` at several points of the claim: nothing stays behind."""
    ids = []
    for delay in (0.005, 0.02, 0.05, 0.1, 0.2, 0.4):
        sid = "wtk" + os.urandom(3).hex()
        ids.append(sid)
        p = subprocess.Popen([w.KBOX, "run", "--id", sid], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        p.kill()
        p.wait()
    k = w.Kernel(binds=False)  # its start sweeps run dirs of dead kbox processes
    works(k)
    w.check(w.start_of(k.end()) == "fork", "the zygote stopped serving after callers died")
    w.check_no_leak(ids + [k.id], (z, z.zygote_pid()), wait=20)


def concurrent(z, n=20):
    """n claims at once: every kernel comes up and answers."""
    kernels, errors = [], []

    def one():
        try:
            k = w.Kernel(binds=False)
            works(k)
            kernels.append(k)
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(repr(e))

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    starts = [w.start_of(k.end()) for k in kernels]
    w.check(not errors and len(kernels) == n, "%d of %d concurrent kernels failed: %s" % (n - len(kernels), n, errors[:3]))
    print("concurrent starts: %s" % {s: starts.count(s) for s in set(starts)})
    w.check(starts.count("fork") >= 1, "no concurrent kernel started warm")
    w.check_no_leak([k.id for k in kernels], (z, z.zygote_pid()), wait=30)


def zygote_killed(z):
    """SIGKILL the zygote: its kernels go on (docs/warm.md, "Kernels outlive their zygote"), the next
    kernel starts cold and starts a new zygote, and the one after is warm again."""
    before = w.Kernel(binds=False)
    zpid = z.zygote_pid()
    os.kill(zpid, signal.SIGKILL)
    works(before)
    for _ in range(100):  # the server notices and removes the socket
        if not [s for s in z.status() if s["alive"]]:
            break
        time.sleep(0.1)
    k = w.Kernel(binds=False)
    works(k)
    w.check(w.start_of(k.end()) == "cold", "a kernel started warm from a dead zygote")
    z.start()  # the kernel above started one; wait for it
    k2 = w.Kernel(binds=False)
    works(k2)
    w.check(w.start_of(k2.end()) == "fork", "the new zygote does not serve")
    works(before)
    w.check(before.end().get("exit_code") == 0, "the old zygote's kernel did not end normally")
    w.check_no_leak([before.id, k.id, k2.id], (z, z.zygote_pid()))


def main():
    w.check_host()
    z = w.Zygotes()
    try:
        z.start()
        w.run_cases((wedged, pids_refused, caller_killed, concurrent, zygote_killed), z)
    finally:
        z.stop()


if __name__ == "__main__":
    main()
