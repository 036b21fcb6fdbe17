"""Helpers of the agent suite's Python tests: what an agent framework does with kbox (pybox's
LocalPyBoxManager pattern over jupyter_client), in a private HOME / JUPYTER_DATA_DIR."""
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "kernel"))
import kboxkernel  # noqa: E402
from kboxkernel import KBOX, RUN_OPTS, skip_or_fail  # noqa: E402,F401

PYTHON = kboxkernel.PYTHON


def private_home():
    """A fresh HOME and JUPYTER_DATA_DIR for this process (kernelspecs installed with --user land
    there, never in the real user's data dir)."""
    home = tempfile.mkdtemp(prefix="kbox-agent-home-")
    os.environ["HOME"] = home
    os.environ["JUPYTER_DATA_DIR"] = os.path.join(home, "jupyter-data")
    os.environ.pop("JUPYTER_PATH", None)
    return home


def install_python3(*extra):
    """`kbox kernelspec install --user --name python3 --workdir-from-cwd` (as pybox users do), with
    the suite's kernel options (host root, the system Python's ipykernel) and extra run options."""
    args = [KBOX, "kernelspec", "install", "--user", "--name", "python3", "--workdir-from-cwd"] + RUN_OPTS + list(extra)
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("kernelspec install failed: " + r.stderr)
    with open(os.path.join(os.environ["JUPYTER_DATA_DIR"], "kernels", "python3", "kernel.json")) as f:
        return json.load(f)


class PyBoxLike:
    """What pybox's LocalPyBoxManager does: one MultiKernelManager, kernels by id started from the
    "python3" kernelspec with a cwd and extra_arguments, code run by collecting iopub until idle."""

    def __init__(self):
        from jupyter_client import MultiKernelManager
        from jupyter_client.kernelspec import KernelSpecManager
        self.mkm = MultiKernelManager(kernel_spec_manager=KernelSpecManager())

    def start(self, cwd, extra_arguments=(), kernel_id=None, **popen):
        kid = kernel_id or "agt-%08x" % random.getrandbits(32)
        self.mkm.start_kernel(kernel_name="python3", kernel_id=kid, cwd=cwd, extra_arguments=list(extra_arguments), **popen)
        km = self.mkm.get_kernel(kid)
        kc = km.client()
        kc.start_channels()
        return kid, km, kc

    @staticmethod
    def run(kc, code, timeout=60):
        """pybox's run: send execute_request, collect iopub of it until status idle, then the reply.
        Returns (reply content or None, iopub messages, seconds until idle)."""
        t0 = time.monotonic()
        msg_id = kc.execute(code)
        msgs = []
        while True:
            m = kc.get_iopub_msg(timeout=max(0.1, timeout - (time.monotonic() - t0)))
            if m["parent_header"].get("msg_id") != msg_id:
                continue
            msgs.append(m)
            if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
                break
        idle_after = time.monotonic() - t0
        reply = kc.get_shell_msg(timeout=10)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = kc.get_shell_msg(timeout=10)
        return reply["content"], msgs, idle_after

    def shutdown(self, kid):
        try:
            self.mkm.shutdown_kernel(kid, now=True)
        except Exception:  # noqa: BLE001 - already dead kernels are fine here
            pass


def text_of(msgs):
    return kboxkernel.text_of(msgs)


def tree_state(root):
    """Every entry below root with its type, mode, size, mtime and content: "byte-for-byte" compare."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            data = None
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, "rb") as f:
                    data = f.read()
            out[os.path.relpath(p, root)] = (st.st_mode, st.st_size, st.st_mtime_ns, st.st_uid, data)
    st = os.lstat(root)
    out["."] = (st.st_mode, st.st_mtime_ns, st.st_uid)
    return out


def wait_until(cond, timeout, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


def cleanup(path):
    shutil.rmtree(path, ignore_errors=True)
