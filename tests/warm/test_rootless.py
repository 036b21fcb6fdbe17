"""Rootless warm starts, by a real unprivileged user (setpriv to a uid of its own): its zygote
service lives in its own runtime directory; a kernel it starts is forked ("start": "fork") and
is as isolated as its cold rootless kernel (test_isolation's facts and the escape battery, from
inside); another uid's caller is refused by its service; `kbox warm stop` leaves nothing behind."""
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import warmlib as w  # noqa: E402
from test_isolation import FACTS  # noqa: E402  (the same facts as root's warm == cold check)

UID = 23456        # the test's user (no other test uses it: its processes are all this test's)
OTHER_UID = 23457  # a caller of another uid
SOURCE = os.environ.get("KBOX_SOURCE_ROOT", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
IMAGE = os.path.join(os.environ.get("KBOX_IMAGES_DIR", "/var/lib/kbox/rootfs"), "default")


class User:
    """The unprivileged user: a home, a runtime dir, and a layer it owns on top of the image's (a
    rootless sandbox can make mount points only in directories it owns: /run for its run dir, /opt
    for the test's binds)."""

    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="kbox-warm-rootless-")
        os.chmod(self.root, 0o755)
        self.home, self.xdg, self.layer = (os.path.join(self.root, d) for d in ("home", "xdg", "layer"))
        for d in (self.home, self.xdg, os.path.join(self.layer, "run"), os.path.join(self.layer, "opt")):
            os.makedirs(d)
        for d in (self.home, self.xdg, self.layer, os.path.join(self.layer, "run"), os.path.join(self.layer, "opt")):
            os.chown(d, UID, UID)
        os.chmod(self.xdg, 0o700)
        self.layers = ["--rootfs", IMAGE, "--rootfs", os.path.join(SOURCE, "rootfs", "layer"), "--rootfs", self.layer]
        env = ["env", "-u", "KBOX_WARM_DIR", "HOME=" + self.home, "XDG_RUNTIME_DIR=" + self.xdg, "KBOX_WARM_IDLE=300"]
        self.prefix = ["setpriv", "--reuid", str(UID), "--regid", str(UID), "--clear-groups"] + env
        self.base = os.path.join(self.xdg, "kbox", "warm")

    def kbox(self, *args, timeout=300):
        return subprocess.run(self.prefix + [w.KBOX] + list(args), capture_output=True, text=True, timeout=timeout)

    def logs(self):
        return "".join(open(f).read() for f in glob.glob(os.path.join(self.base, "*.log")))

    def processes(self):
        """Host pids whose real uid is the user's."""
        out = []
        for p in glob.glob("/proc/[0-9]*/status"):
            try:
                uid = [l.split()[1] for l in open(p) if l.startswith("Uid:")][0]
            except (OSError, IndexError):
                continue
            if uid == str(UID):
                out.append(int(p.split("/")[2]))
        return out


def facts(user, *extra):
    k = w.Kernel(*(list(user.layers) + list(extra)), as_user=(UID, user.prefix))
    out, err, _ = k.run(FACTS, timeout=300)
    rep = k.end()
    w.check(err is None, "the facts cell raised %s (kbox: %s)" % (err, k.stderr[-1500:]))
    return json.loads(out.strip().splitlines()[-1]), rep, k


def check_same(user):
    """A warm rootless kernel's facts and escape verdicts equal a cold rootless kernel's."""
    sleeper = subprocess.Popen(["setpriv", "--reuid", str(UID), "--regid", str(UID), "--clear-groups", "sleep", "300"])
    try:
        warm, wrep, wk = facts(user)
        w.check(sleeper.poll() is None, "a host process with the kernel's uid was killed from the warm kernel")
        cold, crep, _ = facts(user, "--cold")
    finally:
        sleeper.kill()
        sleeper.wait()
    w.check(w.start_of(wrep) == "fork", "the rootless kernel did not start warm: %s; kbox said: %s; zygote log: %s"
            % (wrep.get("kernel"), wk.stderr[-1500:], user.logs()[-1500:]))
    w.check(w.start_of(crep) == "cold", "--cold started %s" % w.start_of(crep))
    w.check("zygote.py" in warm["cmdline"] and "zygote.py" not in cold["cmdline"], "cmdlines %s / %s" % (warm["cmdline"], cold["cmdline"]))
    w.check_warm_facts(warm, cold)
    # The limits are rlimits here (no delegated cgroup): the same mechanisms and values as cold.
    w.check(wrep.get("limits") == crep.get("limits"), "limits differ: warm %s, cold %s" % (wrep.get("limits"), crep.get("limits")))
    allowed = {a: r for a, r in warm["escape"].items() if r != "denied"}
    print("rootless warm == cold on 14 facts and the limits; %d escape attempts, not refused (same as cold): %s"
          % (len(warm["escape"]), sorted(allowed)))


def workdir(user):
    """--workdir (a tree the caller's helper took, not idmapped): the warm kernel's cwd, and what it
    writes there is on the host, owned by the user, as from a cold rootless kernel."""
    wd = os.path.join(user.root, "work")
    os.mkdir(wd)
    os.chown(wd, UID, UID)
    for mode in ("fork", "cold"):
        k = w.Kernel(*(list(user.layers) + ["--workdir", wd] + (["--cold"] if mode == "cold" else [])),
                     binds=False, as_user=(UID, user.prefix))
        out, err, _ = k.run("import os; open('from-%s', 'w').write('x'); print(os.getcwd(), os.stat('.').st_uid)" % mode)
        rep = k.end()
        w.check(err is None, "writing in the workdir raised %s" % err)
        w.check(w.start_of(rep) == mode, "the workdir kernel started %s, not %s: %s" % (w.start_of(rep), mode, k.stderr[-1000:]))
        w.check(out.split() == [wd, "1000"], "%s kernel: cwd and its owner %r, expected %s 1000" % (mode, out, wd))
        st = os.stat(os.path.join(wd, "from-" + mode))
        w.check(st.st_uid == UID, "the %s kernel's file is owned by %d on the host, not the user %d" % (mode, st.st_uid, UID))


def other_uid_refused(user, key):
    """A process of another uid that reaches the user's socket is refused by the user's server."""
    keydir = os.path.join(user.base, key)
    chain = [user.xdg, os.path.join(user.xdg, "kbox"), user.base, keydir]
    w.check_foreign_caller(os.path.join(keydir, "zygote.sock"), chain, OTHER_UID, user.logs)


def stop_leaves_nothing(user, key):
    r = user.kbox("warm", "stop", timeout=60)
    w.check(r.returncode == 0, "kbox warm stop (rootless) failed: %s" % r.stderr)
    deadline = time.monotonic() + 30
    while True:
        procs = user.processes()
        socks = glob.glob(os.path.join(user.base, "**", "*.sock*"), recursive=True)
        dirs = [d for d in glob.glob(os.path.join(user.base, "*")) if os.path.isdir(d)]
        run_dirs = [d for d in glob.glob(os.path.join(user.xdg, "kbox", "*")) if os.path.basename(d) != "warm"]
        cgroups = w.cgroups_of("warm-" + key)
        if not (procs or socks or dirs or run_dirs or cgroups):
            break
        w.check(time.monotonic() < deadline, "left behind by kbox warm stop: processes %s, sockets %s, dirs %s, run dirs %s, "
                "cgroups %s" % (procs, socks, dirs, run_dirs, cgroups))
        time.sleep(0.2)
    # No mount of the zygote's is left in the host's mount namespace either.
    w.check(user.base not in open("/proc/self/mountinfo").read(), "a mount of the user's base dir is left")


def on_demand(user, key):
    """With no zygote, the user's first kernel starts cold and starts the user's service in the
    background (one log line says so); once it is ready the next kernel forks."""
    def start():
        k = w.Kernel(*(list(user.layers) + ["--verbose"]), binds=False, as_user=(UID, user.prefix))
        w.check(k.value("1 + 1") == "2", "the rootless kernel did not compute")
        rep = k.end()
        return w.start_of(rep), k.stderr
    first, err = start()
    w.check(first == "cold" and "no zygote for this image yet" in err, "first rootless kernel: %s, %s" % (first, err[-800:]))
    deadline = time.monotonic() + 120
    while not any(z.get("ready") for z in json.loads(user.kbox("warm", "status", "--json").stdout)):
        w.check(time.monotonic() < deadline, "the service started on demand did not become ready: %s" % user.logs()[-1500:])
        time.sleep(0.5)
    second, err = start()
    w.check(second == "fork", "the next rootless kernel started %s: %s" % (second, err[-800:]))


def main():
    w.check_host()
    if subprocess.run(["setpriv", "--reuid", str(UID), "--regid", str(UID), "--clear-groups", "unshare", "-U", "true"],
                      capture_output=True).returncode != 0:
        w.skip_or_fail("unprivileged user namespaces are refused on this host (rootless kbox cannot run)")
    user = User()
    try:
        r = user.kbox("warm", "start", *user.layers)
        w.check(r.returncode == 0, "rootless kbox warm start failed: %s %s" % (r.stderr, user.logs()))
        key = os.path.basename(r.stdout.strip())
        w.check(r.stdout.strip() == os.path.join(user.base, key), "the zygote is not in the user's runtime dir: %s" % r.stdout)
        w.check(os.stat(user.base).st_uid == UID, "the user's base dir is not the user's")
        st = json.loads(user.kbox("warm", "status", "--json").stdout)
        w.check(any(z.get("ready") for z in st), "rootless status shows no ready zygote: %s" % st)
        w.run_cases([check_same, workdir], user)
        other_uid_refused(user, key)
        print("other_uid_refused: ok")
        stop_leaves_nothing(user, key)
        print("stop_leaves_nothing: ok")
        on_demand(user, key)
        print("on_demand: ok")
        stop_leaves_nothing(user, key)
        print("stop_leaves_nothing (after on_demand): ok")
    finally:
        user.kbox("warm", "stop", timeout=60)
        for pid in user.processes():  # a failed check must not leave the user's processes behind
            try:
                os.kill(pid, 9)
            except OSError:
                pass
        shutil.rmtree(user.root, ignore_errors=True)


if __name__ == "__main__":
    main()
