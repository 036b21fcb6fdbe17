"""Shared helpers of the warm suite: a private zygote directory, kernels started with `kbox run`
(kernel mode, default image) and a jupyter_client client on each, leak checks."""
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "kernel"))
from kboxkernel import skip_or_fail  # noqa: E402  (one skip rule for every suite)

KBOX = os.environ.get("KBOX_BIN", "kbox")
BUILD = os.environ.get("KBOX_BUILD_ROOT", "")
PROBE = os.path.join(BUILD, "tests", "helpers", "probe")
ESCAPE = os.path.join(BUILD, "tests", "security", "escape")


def check_host():
    """Skip when warm starts cannot work here: not root, no jupyter_client, no default image."""
    try:
        import jupyter_client  # noqa: F401
    except ImportError:
        skip_or_fail("the system Python lacks jupyter_client (apt-get install python3-jupyter-client)")
    if os.geteuid() != 0:
        skip_or_fail("the warm tests need root (they compare with root kernels; the rootless one switches to a uid of its own)")
    r = subprocess.run([KBOX, "image", "list"], capture_output=True, text=True)
    if "default" not in r.stdout:
        skip_or_fail("no default image (kbox image build)")


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


class Zygotes:
    """A private KBOX_WARM_DIR for this test (so parallel runs never share zygotes)."""

    def __init__(self, idle=120):
        self.dir = tempfile.mkdtemp(prefix="kbox-warm-test-")
        os.environ["KBOX_WARM_DIR"] = self.dir
        os.environ["KBOX_WARM_IDLE"] = str(idle)

    def start(self):
        r = subprocess.run([KBOX, "warm", "start"], capture_output=True, text=True, timeout=300)
        check(r.returncode == 0, "kbox warm start failed: %s %s" % (r.stderr, self.logs()))
        self.key = r.stdout.strip()
        return self.key

    def status(self):
        r = subprocess.run([KBOX, "warm", "status", "--json"], capture_output=True, text=True, timeout=60)
        check(r.returncode == 0, "kbox warm status failed: " + r.stderr)
        return json.loads(r.stdout)

    def server_pid(self):
        st = [z for z in self.status() if z["alive"]]
        return st[0]["pid"] if st else None

    def zygote_pid(self):
        """Host pid of the zygote's python: the process running zygote.py whose parent is not one."""
        for p in glob.glob("/proc/[0-9]*"):
            try:
                cmd = open(p + "/cmdline", "rb").read()
                if b"/usr/share/kbox/zygote.py" not in cmd:
                    continue
                ppid = int(open(p + "/stat").read().rsplit(")", 1)[1].split()[1])
                pcmd = open("/proc/%d/cmdline" % ppid, "rb").read()
                if b"zygote.py" not in pcmd and self.dir_of(int(p[6:])):
                    return int(p[6:])
            except (OSError, ValueError, IndexError):
                continue
        return None

    def dir_of(self, pid):
        """True when pid's zygote belongs to our KBOX_WARM_DIR (its server's pid file is ours)."""
        server = self.server_pid()
        if server is None:
            return False
        p = pid
        for _ in range(6):
            try:
                p = int(open("/proc/%d/stat" % p).read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError):
                return False
            if p == server:
                return True
        return False

    def zygote_children(self, zpid):
        """Processes the zygote has (pid 1s of live kernels it adopted, forks in progress)."""
        out = []
        for t in glob.glob("/proc/%d/task/*/children" % zpid):
            try:
                out += [int(x) for x in open(t).read().split()]
            except OSError:
                pass
        return out

    def logs(self):
        text = ""
        for f in glob.glob(os.path.join(self.dir, "*.log")):
            text += open(f).read()
        return text

    def stop_keep_dir(self):
        """Stop every zygote of the directory and wait until their servers are gone."""
        subprocess.run([KBOX, "warm", "stop"], capture_output=True, timeout=60)
        for _ in range(100):
            if not [z for z in self.status() if z["alive"]]:
                break
            time.sleep(0.1)

    def stop(self):
        self.stop_keep_dir()
        shutil.rmtree(self.dir, ignore_errors=True)


class Kernel:
    """`kbox run` (kernel mode) on the default image, with a client and its --report."""

    def __init__(self, *extra, binds=True, as_user=None):
        """as_user: (uid, prefix) to run kbox as another user (prefix: its setpriv/env command)."""
        from jupyter_client import BlockingKernelClient
        self.id = "wt" + os.urandom(4).hex()
        self.tmp = tempfile.mkdtemp(prefix="kbox-warm-k-")
        self.report = os.path.join(self.tmp, "report.json")
        args = [KBOX, "run", "--id", self.id, "--report", self.report]
        if as_user is not None:
            os.chown(self.tmp, as_user[0], as_user[0])
            args = list(as_user[1]) + args
        if binds:
            args += ["--bind", PROBE + ":/opt/probe:ro", "--bind", ESCAPE + ":/opt/escape:ro"]
        args += list(extra)
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("kbox ended before the kernel was ready: " + self.proc.stderr.read().decode())
        self.ready_s = time.monotonic() - self.t0
        self.info = json.loads(line)
        self.kc = BlockingKernelClient()
        self.kc.load_connection_info(self.info)
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    def run(self, code, timeout=120):
        """Execute code; return (stdout text, error or None, execute_result text)."""
        out, err, res = [], None, None
        self.kc.execute(code)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.kc.get_iopub_msg(timeout=timeout)
            t, c = msg["msg_type"], msg["content"]
            if t == "stream":
                out.append(c["text"])
            elif t == "error":
                err = "%s: %s" % (c["ename"], c["evalue"])
            elif t == "execute_result":
                res = c["data"].get("text/plain")
            elif t == "status" and c["execution_state"] == "idle" and msg["parent_header"].get("msg_type") == "execute_request":
                break
        return "".join(out), err, res

    def value(self, expr):
        out, err, res = self.run(expr)
        check(err is None, "%s raised %s" % (expr, err))
        return res

    def end(self):
        """Shut down; return the report."""
        try:
            self.kc.shutdown()
            # the reply says the request got out: stop_channels() closes with linger 0 and drops a
            # request still queued in the client (kbox then, rightly, goes on running)
            self.kc.get_control_msg(timeout=20)
        except Exception:
            pass
        self.kc.stop_channels()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stderr = self.proc.stderr.read().decode()
        rep = {}
        try:
            rep = json.load(open(self.report))
        except (OSError, ValueError):
            pass
        shutil.rmtree(self.tmp, ignore_errors=True)
        return rep


def run_cases(cases, *args):
    """Run each case(*args) in order, printing its name and time (a failing check ends the test)."""
    for case in cases:
        t = time.monotonic()
        case(*args)
        print("%s: ok (%.1f s)" % (case.__name__, time.monotonic() - t))


def start_of(report):
    return report.get("kernel", {}).get("start")


def cgroups_of(sid):
    """cgroup directories (any hierarchy) named after sandbox id sid."""
    return [p for p in glob.glob("/sys/fs/cgroup/**/kbox.*.%s" % sid, recursive=True)]


def check_no_leak(ids, zyg=None, wait=10):
    """Nothing of these kernels is left: cgroups, run dirs, the zygote's adopted pid 1s."""
    deadline = time.monotonic() + wait
    while True:
        left = [c for i in ids for c in cgroups_of(i)]
        left += [d for i in ids for d in glob.glob("/run/kbox/%s" % i)]
        kids = []
        if zyg is not None and zyg[1] is not None:
            kids = zyg[0].zygote_children(zyg[1])
        if not left and not kids:
            return
        if time.monotonic() > deadline:
            fail("left behind: %s; zygote children %s" % (left, kids))
        time.sleep(0.2)


# The isolation facts (test_isolation.FACTS) a warm kernel must share with a cold one.
SAME_AS_COLD = ("uid", "gid", "pid", "visible_pids", "caps", "no_new_privs", "seccomp", "mounts", "ifaces",
                "probe", "escape", "home", "cwd", "env_keys")


def check_warm_facts(warm, cold):
    """A warm kernel's absolute claims (ids, no capabilities, no_new_privs and seccomp, its own pids
    and interfaces, the escape battery ran), then every fact of SAME_AS_COLD equal to the cold one's."""
    check(warm["uid"] == 1000 and warm["gid"] == 100, "warm kernel ids %s:%s" % (warm["uid"], warm["gid"]))
    check(warm["caps"] == ["0000000000000000"] * 5, "warm kernel capabilities %s" % warm["caps"])
    check(warm["no_new_privs"] == "1" and warm["seccomp"] == "2", "warm no_new_privs/seccomp %s/%s" % (warm["no_new_privs"], warm["seccomp"]))
    check(warm["visible_pids"] == [1, 2], "warm kernel sees pids %s" % warm["visible_pids"])
    check(warm["ifaces"] == ["lo"], "warm kernel interfaces %s" % warm["ifaces"])
    check(len(warm["escape"]) >= 40, "only %d escape attempts ran" % len(warm["escape"]))
    for key in SAME_AS_COLD:
        check(warm[key] == cold[key], "%s differs: warm %s, cold %s" % (key, warm[key], cold[key]))


# A caller that sends garbage to a zygote socket and reports what it got back.
PEER = r'''
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.settimeout(30)
s.connect(sys.argv[1])
try:
    s.send(b"not a request")
    got = s.recv(100)
except (ConnectionResetError, BrokenPipeError):  # closed by the server at once
    got = b""
print("got=%r" % got)
'''


def check_foreign_caller(sock, dirs, uid, logs):
    """A process of another uid that reaches sock (dirs, its parents, opened to it for the test) is
    closed at once by the server, which logs the refusal (logs: a function returning its log)."""
    modes = [(p, os.stat(p).st_mode & 0o7777) for p in list(dirs) + [sock]]
    try:
        for p in dirs:
            os.chmod(p, 0o711)
        os.chmod(sock, 0o777)
        r = subprocess.run(["setpriv", "--reuid", str(uid), "--regid", str(uid), "--clear-groups",
                            "/usr/bin/python3", "-c", PEER, sock], capture_output=True, text=True, timeout=60)
    finally:
        for p, m in modes:
            os.chmod(p, m)
    check(r.returncode == 0, "the other uid's client could not connect: %s" % r.stderr[-800:])
    check("got=b''" in r.stdout, "the other uid's connection was not closed at once: %s" % r.stdout)
    deadline = time.monotonic() + 20
    while "refused a caller with uid %d" % uid not in logs():
        check(time.monotonic() < deadline, "no refusal line in the zygote's log: %s" % logs()[-1500:])
        time.sleep(0.1)
