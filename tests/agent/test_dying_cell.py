"""A cell that kills the kernel gets an answer (issue 11.2): for OOM, the pids limit, an
--exec-timeout kill, the wall-clock --timeout and a crash (os.abort()), the client waiting on the
cell gets an error on iopub, an error execute_reply and status idle (jupyter_client checks the
signature and the parent) with the ename naming the cause, seconds after the kill and long
before its own timeout: through a kernelspec (pybox's pattern), `kbox exec`, `kbox exec --id` and
`kbox entrypoint`."""
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import agentlib  # noqa: E402
from agentlib import KBOX, RUN_OPTS, PyBoxLike  # noqa: E402

agentlib.kboxkernel.check_host()
agentlib.private_home()

CLIENT_TIMEOUT = 120  # the client's own patience; answers must come long before it
SOON = 20             # seconds after the kill by which the answer must be there (hang detector)
WALL = 25             # --timeout of the wall-clock case (longer than a kernel start under load)

# Crash caused by the exhausted process limit (what a library does when pthread_create fails).
PIDS_CELL = ("import os, time\n"
             "for i in range(100):\n"
             "    try:\n"
             "        if os.fork() == 0:\n"
             "            time.sleep(120); os._exit(0)\n"
             "    except OSError:\n"
             "        break\n"
             "os.abort()\n")
STUCK_CELL = "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(600)\n"

# name: (run options, cell, ename, seconds from the cell's start to the kill, word in evalue)
CASES = {
    "oom": (["--memory", "256M"], "x = bytearray(2 << 30)", "SandboxMemoryLimit", 0, "256 MiB"),
    "pids": (["--pids", "24"], PIDS_CELL, "SandboxProcessLimit", 0, "24 processes"),
    "exec_timeout": (["--exec-timeout", "2"], STUCK_CELL, "SandboxTimeout", 5, "--exec-timeout 2s"),
    "crash": ([], "import os; os.abort()", "KernelDied", 0, "SIGABRT"),
}


def check_answer(tc, ename, evalue, word):
    tc.assertIn(word, evalue)
    tc.assertIn("state", evalue)  # says the kernel's state is gone
    tc.assertTrue(ename.startswith("Sandbox") or ename == "KernelDied", ename)


class ThroughKernelspec(unittest.TestCase):
    """pybox: execute, collect iopub until idle, then the reply."""

    def dying(self, opts, cell, ename, kill_after, word):
        agentlib.install_python3(*opts)
        cwd = tempfile.mkdtemp(prefix="kbox-agent-cwd-")
        box = PyBoxLike()
        t_start = time.monotonic()
        kid, km, kc = box.start(cwd)
        try:
            kc.wait_for_ready(timeout=90)
            t_cell = time.monotonic()
            reply, msgs, idle_after = box.run(kc, cell, timeout=CLIENT_TIMEOUT)
        finally:
            kc.stop_channels()
            box.shutdown(kid)
            agentlib.cleanup(cwd)
        errors = [m["content"] for m in msgs if m["msg_type"] == "error"]
        self.assertEqual(reply["status"], "error", reply)
        self.assertEqual(reply["ename"], ename, reply)
        self.assertEqual([e["ename"] for e in errors], [ename], [m["msg_type"] for m in msgs])
        check_answer(self, reply["ename"], reply["evalue"], word)
        killed_at = (t_start + WALL - t_cell) if kill_after == "wall" else kill_after
        self.assertLess(idle_after, killed_at + SOON, "the answer came %.1fs after the cell started" % idle_after)
        return idle_after

    def test_oom(self):
        self.dying(*CASES["oom"])

    def test_pids_limit(self):
        self.dying(*CASES["pids"])

    def test_exec_timeout(self):
        self.dying(*CASES["exec_timeout"])

    def test_crash(self):
        self.dying(*CASES["crash"])

    def test_wall_timeout(self):
        self.dying(["--timeout", str(WALL)], "import time; time.sleep(600)", "SandboxTimeout", "wall", "--timeout %gs" % WALL)

    def test_memory_pressure_warning(self):
        # Before the kill: a cell holding 86% of --memory (by its own RSS; the cgroup counts more)
        # gets one kbox warning on its stderr, and the cell still finishes.
        agentlib.install_python3("--memory", "512M")
        cwd = tempfile.mkdtemp(prefix="kbox-agent-cwd-")
        box = PyBoxLike()
        kid, km, kc = box.start(cwd)
        code = ("import time\n"
                "chunks = []\n"
                "def rss():\n"
                "    return int([l for l in open('/proc/self/status') if l.startswith('VmRSS:')][0].split()[1]) * 1024\n"
                "while rss() < 0.86 * (512 << 20):\n"
                "    chunks.append(b'x' * (8 << 20))\n"
                "time.sleep(1.5)\n"
                "print('held')\n")
        try:
            kc.wait_for_ready(timeout=90)
            reply, msgs, _ = box.run(kc, code, timeout=CLIENT_TIMEOUT)
        finally:
            kc.stop_channels()
            box.shutdown(kid)
            agentlib.cleanup(cwd)
        self.assertEqual(reply["status"], "ok", reply)
        err = [m["content"]["text"] for m in msgs if m["msg_type"] == "stream" and m["content"]["name"] == "stderr"]
        warnings = [t for t in "".join(err).splitlines() if "memory limit (512 MiB" in t]
        self.assertEqual(len(warnings), 1, err)


def exec_json(args, timeout=CLIENT_TIMEOUT + 60):
    t0 = time.monotonic()
    r = subprocess.run([KBOX, "exec"] + args, capture_output=True, text=True, timeout=timeout)
    took = time.monotonic() - t0
    try:
        return r.returncode, json.loads(r.stdout), took, r.stderr
    except ValueError:
        raise AssertionError("kbox exec printed no JSON (rc %d): %s %s" % (r.returncode, r.stdout, r.stderr))


STATUS = {"SandboxMemoryLimit": ("oom", 3), "SandboxTimeout": ("timeout", 124), "SandboxProcessLimit": ("died", 2),
          "KernelDied": ("died", 2)}


class ThroughExec(unittest.TestCase):
    def check(self, rc, out, took, err, ename, kill_after, word, start_allowance):
        self.assertIsNotNone(out["error"], out)
        self.assertEqual(out["error"]["ename"], ename, out["error"])
        check_answer(self, ename, out["error"]["evalue"], word)
        self.assertEqual((out["status"], rc), STATUS[ename], err)
        self.assertLess(took, start_allowance + kill_after + SOON, "kbox exec took %.1fs" % took)

    def oneshot(self, name):
        opts, cell, ename, kill_after, word = CASES[name]
        rc, out, took, err = exec_json(RUN_OPTS + opts + ["--timeout", str(CLIENT_TIMEOUT), "-c", cell])
        self.check(rc, out, took, err, ename, kill_after, word, 60)
        self.assertIsNotNone(out["report"], "one-shot exec carries the sandbox verdict")

    def test_oneshot_oom(self):
        self.oneshot("oom")

    def test_oneshot_pids(self):
        self.oneshot("pids")

    def test_oneshot_exec_timeout(self):
        self.oneshot("exec_timeout")

    def test_oneshot_crash(self):
        self.oneshot("crash")

    def by_id(self, opts, cell, ename, kill_after, word):
        sid = "agtd%06x" % random.getrandbits(24)
        r = subprocess.run([KBOX, "run", "--id", sid, "--detach"] + RUN_OPTS + opts, capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        t_ready = time.monotonic()
        try:
            rc, out, took, err = exec_json(["--id", sid, "--timeout", str(CLIENT_TIMEOUT), "-c", cell])
            if kill_after == "wall":
                kill_after = max(0.0, WALL - (time.monotonic() - took - t_ready))
            self.check(rc, out, took, err, ename, kill_after, word, 5)
        finally:
            subprocess.run([KBOX, "kill", sid], capture_output=True, timeout=60)

    def test_by_id_oom(self):
        self.by_id(*CASES["oom"])

    def test_by_id_pids(self):
        self.by_id(*CASES["pids"])

    def test_by_id_exec_timeout(self):
        self.by_id(*CASES["exec_timeout"])

    def test_by_id_crash(self):
        self.by_id(*CASES["crash"])

    def test_by_id_wall_timeout(self):
        self.by_id(["--timeout", str(WALL)], "import time; time.sleep(600)", "SandboxTimeout", "wall", "--timeout %gs" % WALL)


IMAGE = "/var/lib/kbox/rootfs/default"


class ThroughEntrypoint(unittest.TestCase):
    def test_crash_in_controller_mode(self):
        if not os.path.exists(IMAGE + "/usr/bin/python3"):
            agentlib.skip_or_fail("the default kernel image %s is not built (tools/mkrootfs build default)" % IMAGE)
        from jupyter_client import BlockingKernelClient
        base = random.randrange(42000, 48000, 10)
        ports = dict(shell_port=base, iopub_port=base + 1, stdin_port=base + 2, control_port=base + 3, hb_port=base + 4)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "KERNEL_ID": "agt-entry-%d" % base, "KERNEL_KEY": "agent-key",
               "KBOX_ROOTFS": IMAGE, "KBOX_STATUS_FILE": ""}
        for k, v in ports.items():
            env["KERNEL_%s_PORT" % k.split("_")[0].upper()] = str(v)
        proc = subprocess.Popen([KBOX, "entrypoint"], env=env, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 90
            while True:
                kc = BlockingKernelClient()
                kc.load_connection_info(dict(ip="127.0.0.1", transport="tcp", key="agent-key", signature_scheme="hmac-sha256", **ports))
                kc.start_channels()
                try:
                    kc.wait_for_ready(timeout=10)
                    break
                except RuntimeError:
                    kc.stop_channels()
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise
                    time.sleep(0.5)
            t0 = time.monotonic()
            reply = kc.execute_interactive("import os; os.abort()", timeout=CLIENT_TIMEOUT)
            took = time.monotonic() - t0
            kc.stop_channels()
            rc = proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        c = reply["content"]
        self.assertEqual((c["status"], c["ename"]), ("error", "KernelDied"), c)
        check_answer(self, c["ename"], c["evalue"], "SIGABRT")
        self.assertLess(took, SOON)
        self.assertNotEqual(rc, 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
