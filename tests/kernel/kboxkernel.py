"""Shared helpers of the kernel suite: install a kbox kernelspec in a temporary prefix, run kbox
kernels directly, skip rules (exit 77 unless KBOX_MUST_WORK=1)."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

KBOX = os.environ.get("KBOX_BIN", "kbox")
PYTHON = "/usr/bin/python3"  # the system Python with ipykernel (python3 on PATH may lack it)
KERNEL_CMD = PYTHON + " -m ipykernel_launcher -f {connection_file}"
# Run options of every test kernel. KBOX_TEST_KERNEL_OPTS adds more (e.g. a profile to try).
RUN_OPTS = ["--rootfs", "/", "--kernel-cmd", KERNEL_CMD] + os.environ.get("KBOX_TEST_KERNEL_OPTS", "").split()
SECRET = "kbox-host-secret-4711"


def skip_or_fail(reason):
    if os.environ.get("KBOX_MUST_WORK") == "1":
        print("FAIL (KBOX_MUST_WORK=1): " + reason, file=sys.stderr)
        sys.exit(1)
    print("SKIP: " + reason, file=sys.stderr)
    sys.exit(77)


def check_host():
    """Skip when this host cannot run a kbox kernel at all."""
    try:
        import ipykernel  # noqa: F401
        import jupyter_client  # noqa: F401
        import zmq  # noqa: F401
    except ImportError as e:
        skip_or_fail("the system Python lacks %s (apt-get install python3-ipykernel python3-jupyter-client)" % e.name)
    r = subprocess.run([KBOX, "run", "--rootfs", "/", "--", "true"], capture_output=True, text=True)
    if r.returncode != 0:
        skip_or_fail("kbox cannot create sandboxes here: " + r.stderr.strip())


class Spec:
    """A kbox kernelspec in a fresh prefix, visible to jupyter_client through JUPYTER_PATH."""

    def __init__(self, name="kboxtest", extra=()):
        self.prefix = tempfile.mkdtemp(prefix="kbox-ks-")
        self.name = name
        args = [KBOX, "kernelspec", "install", "--prefix", self.prefix, "--name", name] + RUN_OPTS + list(extra)
        subprocess.run(args, check=True, capture_output=True)
        os.environ["JUPYTER_PATH"] = os.path.join(self.prefix, "share", "jupyter")
        # A host secret that must not reach the kernel.
        os.environ["KBOX_TEST_SECRET"] = SECRET

    def remove(self):
        shutil.rmtree(self.prefix, ignore_errors=True)


def run_dir_base():
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg) and os.access(xdg, os.W_OK):
        return os.path.join(xdg, "kbox")
    return "/run/kbox" if os.geteuid() == 0 else "/tmp/kbox-%d" % os.geteuid()


class Direct:
    """`kbox run` in kernel mode started directly, with a client on the printed connection."""

    def __init__(self, *extra, report=None, prefix=(), drain_stderr=False):
        """prefix: a command kbox runs under (e.g. ["unshare", "-n"] for another network namespace).
        drain_stderr: read kbox's stderr all along (a chatty kernel must not block on a full pipe)."""
        from jupyter_client import BlockingKernelClient
        self.id = "kt" + os.urandom(4).hex()
        self.report = report
        args = list(prefix) + [KBOX, "run", "--id", self.id] + RUN_OPTS + list(extra)
        if report:
            args += ["--report", report]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("kbox ended before the kernel was ready: " + self.proc.stderr.read().decode())
        self.info = json.loads(line)
        self._drain = None
        if drain_stderr:
            import threading
            self._err = []
            self._drain = threading.Thread(target=lambda: self._err.extend(iter(lambda: self.proc.stderr.read(65536), b"")),
                                           daemon=True)
            self._drain.start()
        self.kc = BlockingKernelClient()
        self.kc.load_connection_info(self.info)
        self.kc.start_channels()
        # jupyter_client takes a heartbeat not yet answered (a loaded machine) for a dead kernel:
        # retry while kbox runs, as Plain does
        import time
        deadline = time.monotonic() + 60
        while True:
            try:
                self.kc.wait_for_ready(timeout=60)
                break
            except RuntimeError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def run(self, code, timeout=60):
        """Execute code; returns (reply content, list of iopub messages of this request)."""
        out = []
        reply = self.kc.execute_interactive(code, timeout=timeout, output_hook=out.append)
        return reply["content"], out

    def wait(self, timeout=60):
        rc = self.proc.wait(timeout=timeout)
        if self._drain is not None:
            self._drain.join(timeout=10)
            self.stderr = b"".join(self._err).decode(errors="replace")
        else:
            self.stderr = self.proc.stderr.read().decode()
        self.kc.stop_channels()
        return rc

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.kc.stop_channels()


def text_of(msgs):
    """Concatenated stream text and text/plain results of iopub messages."""
    s = ""
    for m in msgs:
        c = m["content"]
        if m["msg_type"] == "stream":
            s += c["text"]
        elif m["msg_type"] in ("execute_result", "display_data"):
            s += c["data"].get("text/plain", "")
    return s


class Plain:
    """The same system ipykernel started directly (no kbox): the reference peer."""

    def __init__(self):
        from jupyter_client import BlockingKernelClient
        from jupyter_client.connect import write_connection_file
        self.dir = tempfile.mkdtemp(prefix="kbox-plain-")
        self.file, self.info = write_connection_file(os.path.join(self.dir, "kernel.json"), ip="127.0.0.1")
        self.proc = subprocess.Popen([PYTHON, "-m", "ipykernel_launcher", "-f", self.file],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.kc = BlockingKernelClient()
        self.kc.load_connection_file(self.file)
        self.kc.start_channels()
        # jupyter_client takes a heartbeat not yet answered for a dead kernel: retry while it starts
        import time
        deadline = time.monotonic() + 60
        while True:
            try:
                self.kc.wait_for_ready(timeout=10)
                break
            except RuntimeError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def close(self):
        self.kc.stop_channels()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def raw_socket(ctx, kind, info, port_name, hwm=0):
    """A raw pyzmq socket on one channel of a connection (unbounded send queue by default)."""
    import zmq
    s = ctx.socket(kind)
    s.linger = 0
    s.sndhwm = hwm
    s.connect("%s://%s:%d" % (info.get("transport", "tcp"), info["ip"], info[port_name]))
    return s


def vm_kb(pid, field):
    """VmRSS / VmHWM of a process in KiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0
