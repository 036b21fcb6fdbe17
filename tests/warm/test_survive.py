"""Kernels outlive their zygote and its server (docs/warm.md, "Kernels outlive their zygote"): after a
SIGKILL of the zygote's Python, of its sandbox's first process and of `kbox warm serve`, and after
`kbox warm stop`, the kernels already handed out still run code; the next kernel starts (cold, then
warm from a new zygote, beside the old zygote's kernels); and once everything ended nothing is left:
processes, cgroups, run dirs, the key directory's sockets."""
import ctypes
import glob
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import warmlib as w  # noqa: E402


STARTED = []  # every kbox run of the test, so that a failing check leaves none running (main)


def works(k, n):
    w.check(k.value("%d * 7" % n) == str(n * 7), "kernel %s (%s) does not answer" % (k.id, getattr(k, "start", "new")))


def alive(pid):
    """pid runs (a zombie, waiting for its reaper, does not)."""
    try:
        return open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def parent_of(pid):
    return int(open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()[1])


def reap_orphans(keep):
    """We are a subreaper (main): reap the zombies adopted from the dead zygotes and servers (not our
    own kbox children, which their Popen waits for)."""
    for p in glob.glob("/proc/[0-9]*"):
        pid = int(p[6:])
        try:
            if pid not in keep and parent_of(pid) == os.getpid() and not alive(pid):
                os.waitpid(pid, os.WNOHANG)
        except (OSError, ValueError, IndexError, ChildProcessError):
            pass


class Generation:
    """One zygote and its server: their pids, and a kernel forked from them."""

    def __init__(self, z, kernels):
        z.start()
        self.server = z.server_pid()
        self.zygote = z.zygote_pid()
        w.check(self.zygote is not None, "no zygote python found")
        self.pid1 = parent_of(self.zygote)  # the zygote sandbox's first process (kbox's init)
        w.check(self.pid1 != self.server, "the zygote's parent is its server")
        k = w.Kernel(binds=False)
        STARTED.append(k)
        k.start = "fork"
        works(k, 1)
        # forked: its pid 1 was adopted by the zygote (a cold kernel's is kbox's child)
        w.check(z.zygote_children(self.zygote), "kernel %s was not forked from the zygote" % k.id)
        self.kernel = k
        kernels.append(k)

    def pids(self):
        return [self.server, self.zygote, self.pid1]


def wait_gone(pids, what, timeout=60):
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids):
        if time.monotonic() > deadline:
            w.fail("%s still running: %s" % (what, [p for p in pids if alive(p)]))
        time.sleep(0.1)


def kill_one(z, kernels, gens, which):
    """SIGKILL one process of the current generation; every kernel so far still answers; the next
    kernel works (cold while no zygote serves); a new generation serves beside the old kernels."""
    g = gens[-1]
    os.kill(getattr(g, which), signal.SIGKILL)
    wait_gone(g.pids(), "the killed %s's zygote and server" % which)  # the rest follow it
    for i, k in enumerate(kernels):
        works(k, i + 2)
    nxt = w.Kernel(binds=False)
    STARTED.append(nxt)
    works(nxt, 9)
    nxt.start = w.start_of(nxt.end())
    w.check(nxt.start in ("cold", "fork"), "the kernel after the %s's death: %s" % (which, nxt.start))
    gens.append(Generation(z, kernels))
    for i, k in enumerate(kernels):
        works(k, i + 3)


def warm_stop(z, kernels, gens):
    """`kbox warm stop` ends the zygote and its server, not the kernels."""
    z.stop_keep_dir()
    wait_gone(gens[-1].pids(), "the stopped zygote")
    for i, k in enumerate(kernels):
        works(k, i + 4)


def check_nothing_left(z, kernels, gens):
    """Every kernel ends normally; then no process, cgroup, run dir or socket of any of them is left."""
    for k in kernels:
        rep = k.end()
        w.check(rep.get("exit_code") == 0, "kernel %s ended with %s" % (k.id, rep))
    keys = [os.path.basename(d) for d in glob.glob(os.path.join(z.dir, "*")) if os.path.isdir(d) and "." not in os.path.basename(d)]
    deadline = time.monotonic() + 30
    while True:
        reap_orphans(set())
        left = [c for k in kernels for c in w.cgroups_of(k.id)] + [c for key in keys for c in w.cgroups_of("warm-" + key)]
        left += [d for k in kernels for d in glob.glob("/run/kbox/%s" % k.id)]
        left += [d for key in keys for d in glob.glob("/run/kbox/warm-%s" % key)]
        left += glob.glob(os.path.join(z.dir, "*", "*.sock*"))
        left += ["pid %d" % p for g in gens for p in g.pids() if alive(p)]
        left += ["orphan %d" % int(p[6:]) for p in glob.glob("/proc/[0-9]*") if int(p[6:]) != os.getpid() and _ours(int(p[6:]))]
        if not left:
            return
        if time.monotonic() > deadline:
            w.fail("left behind: %s" % left)
        time.sleep(0.2)


def _ours(pid):
    try:
        return alive(pid) and parent_of(pid) == os.getpid()
    except (OSError, ValueError, IndexError):
        return False


def main():
    w.check_host()
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: see reap_orphans
    z = w.Zygotes()
    kernels, gens = [], []
    try:
        gens.append(Generation(z, kernels))
        for which in ("zygote", "pid1", "server"):
            t = time.monotonic()
            kill_one(z, kernels, gens, which)
            print("%s killed: ok (%.1f s), %d kernels answer" % (which, time.monotonic() - t, len(kernels)))
        w.run_cases((warm_stop, check_nothing_left), z, kernels, gens)
    finally:
        for k in STARTED:
            if k.proc.poll() is None:
                k.proc.kill()
        z.stop()


if __name__ == "__main__":
    main()
