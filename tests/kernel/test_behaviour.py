"""kbox kernels seen by Jupyter clients: MultiKernelManager + cwd, matplotlib, isolation from
inside, interrupts, stdin, --exec-timeout, --idle-timeout, clean shutdown, two kernels at once."""
import json
import os
import signal
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kboxkernel  # noqa: E402
from kboxkernel import Direct, text_of  # noqa: E402

kboxkernel.check_host()
from jupyter_client import MultiKernelManager  # noqa: E402
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402

SPEC = kboxkernel.Spec(extra=["--workdir-from-cwd"])


def execute(kc, code, timeout=60, allow_stdin=False):
    out = []
    reply = kc.execute_interactive(code, timeout=timeout, output_hook=out.append, allow_stdin=allow_stdin)
    return reply["content"], out


class ThroughKernelspec(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.workdir = tempfile.mkdtemp(prefix="kbox-cwd-")
        cls.mkm = MultiKernelManager(kernel_spec_manager=KernelSpecManager())
        cls.kid = cls.mkm.start_kernel(kernel_name=SPEC.name, cwd=cls.workdir)
        cls.km = cls.mkm.get_kernel(cls.kid)
        cls.kc = cls.km.client()
        cls.kc.start_channels()
        cls.kc.wait_for_ready(timeout=60)

    @classmethod
    def tearDownClass(cls):
        cls.kc.stop_channels()
        cls.mkm.shutdown_all(now=False)

    def test_math_and_cwd(self):
        reply, out = execute(self.kc, "import math, os; print(os.getcwd()); math.sqrt(16)")
        self.assertEqual(reply["status"], "ok")
        self.assertEqual(text_of(out), self.workdir + "\n4.0")
        # the shared directory is writable at the same path and visible on the host
        execute(self.kc, "open('made-inside.txt', 'w').write('hi')")
        with open(os.path.join(self.workdir, "made-inside.txt")) as f:
            self.assertEqual(f.read(), "hi")

    def test_matplotlib_png(self):
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            self.skipTest("matplotlib is not installed on the host Python (apt-get install python3-matplotlib)")
        reply, out = execute(self.kc, "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()")
        self.assertEqual(reply["status"], "ok")
        pngs = [m for m in out if m["msg_type"] == "display_data" and "image/png" in m["content"]["data"]]
        self.assertEqual(len(pngs), 1, [m["msg_type"] for m in out])
        import base64
        self.assertTrue(base64.b64decode(pngs[0]["content"]["data"]["image/png"]).startswith(b"\x89PNG"))

    def test_isolation_from_inside(self):
        info = self.km.get_connection_info()
        code = (
            "import socket, os\n"
            "def tcp(host, port):\n"
            "    s = socket.socket(); s.settimeout(3)\n"
            "    try:\n"
            "        s.connect((host, port)); return 'connected'\n"
            "    except OSError as e:\n"
            "        return type(e).__name__\n"
            "    finally:\n"
            "        s.close()\n"
            "print(tcp('127.0.0.1', %d), tcp('127.0.0.1', %d), tcp('1.1.1.1', 53), tcp('10.0.0.1', 80))\n"
            "print('SECRET' if %r in repr(dict(os.environ)) else 'clean', 'JPY_PARENT_PID' in os.environ)\n"
            "print(sorted(os.listdir('/sys/class/net')))\n"
        ) % (info["shell_port"], info["control_port"], kboxkernel.SECRET)
        reply, out = execute(self.kc, code)
        lines = text_of(out).splitlines()
        self.assertEqual(reply["status"], "ok", out)
        for verdict in lines[0].split():
            self.assertNotEqual(verdict, "connected", lines[0])
        self.assertEqual(lines[1], "clean False")
        self.assertEqual(lines[2], "['lo']")

    def test_interrupt_by_signal_and_by_message(self):
        for how in ("signal", "message"):
            # stop_on_error=False: the previous KeyboardInterrupt must not abort this request
            msg_id = self.kc.execute("import time\nwhile True: pass", stop_on_error=False)
            time.sleep(2)  # let the loop start (an earlier interrupt gives the same verdict)
            if how == "signal":
                self.km.interrupt_kernel()  # interrupt_mode "signal": SIGINT to kbox
            else:
                self.kc.control_channel.send(self.kc.session.msg("interrupt_request", {}))
            reply = self.kc.get_shell_msg(timeout=30)
            while reply["parent_header"].get("msg_id") != msg_id:
                reply = self.kc.get_shell_msg(timeout=30)
            self.assertEqual(reply["content"]["status"], "error", how)
            self.assertEqual(reply["content"]["ename"], "KeyboardInterrupt", how)
        reply, out = execute(self.kc, "1+1")
        self.assertEqual(text_of(out), "2", (reply, out))

    def test_interrupt_right_after_the_cell_starts(self):
        """The broker holds an interrupt_request for a cell younger than 200 ms (docs/kernel-broker.md,
        Interrupts): a long cell is still interrupted; a short one ends by itself, the interrupt is
        answered, the kernel lives."""
        msg_id = self.kc.execute("import time\ntime.sleep(20)", stop_on_error=False)
        while True:  # its busy status: the broker has seen the cell start
            m = self.kc.get_iopub_msg(timeout=30)
            if m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "status":
                break
        t0 = time.monotonic()
        self.kc.control_channel.send(self.kc.session.msg("interrupt_request", {}))
        reply = self.kc.get_shell_msg(timeout=30)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = self.kc.get_shell_msg(timeout=30)
        self.assertEqual(reply["content"].get("ename"), "KeyboardInterrupt", reply["content"])
        self.assertLess(time.monotonic() - t0, 15, "the held interrupt was not forwarded")
        answered = 0
        for _ in range(20):
            self.kc.execute("x = 1", stop_on_error=False)
            req = self.kc.session.msg("interrupt_request", {})
            self.kc.control_channel.send(req)
            while True:
                m = self.kc.get_control_msg(timeout=30)
                if m["parent_header"].get("msg_id") == req["header"]["msg_id"]:
                    answered += 1
                    break
        self.assertEqual(answered, 20)
        reply, out = execute(self.kc, "6 * 7")
        self.assertEqual(text_of(out), "42", (reply, out))

    def test_stdin_input(self):
        msg_id = self.kc.execute("x = input('name? ')\nprint('hello', x)", allow_stdin=True)
        req = self.kc.get_stdin_msg(timeout=30)
        self.assertEqual(req["msg_type"], "input_request")
        self.assertEqual(req["content"]["prompt"], "name? ")
        self.kc.input("kbox")
        out = ""
        while True:
            m = self.kc.get_iopub_msg(timeout=30)
            if m["parent_header"].get("msg_id") != msg_id:
                continue
            if m["msg_type"] == "stream":
                out += m["content"]["text"]
            if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
                break
        self.assertIn("hello kbox", out)


class Direct_(unittest.TestCase):
    def test_shutdown_leaves_nothing(self):
        k = Direct()
        rundir = os.path.join(kboxkernel.run_dir_base(), k.id)
        self.assertTrue(os.path.isdir(rundir))
        k.kc.shutdown()
        self.assertEqual(k.wait(), 0, k.stderr)
        self.assertFalse(os.path.exists(rundir))
        with self.assertRaises(ProcessLookupError):
            os.kill(k.proc.pid, 0)

    def test_sigterm_is_graceful(self):
        k = Direct()
        rundir = os.path.join(kboxkernel.run_dir_base(), k.id)
        k.proc.send_signal(signal.SIGTERM)
        self.assertEqual(k.wait(), 0, k.stderr)
        self.assertFalse(os.path.exists(rundir))

    def test_exec_timeout_interrupts_then_kills(self):
        with tempfile.TemporaryDirectory() as d:
            report = os.path.join(d, "r.json")
            # 3 s, not 1: "6*7" must finish within the limit even on a loaded machine
            k = Direct("--exec-timeout", "3", report=report)
            try:
                reply, out = k.run("while True: pass")
                self.assertEqual(reply["status"], "error")
                self.assertEqual(reply["ename"], "KeyboardInterrupt")
                # ipykernel aborts requests that reach it before it finished handling the error
                # (stop_on_error; a race with any fast client): send again when aborted.
                for _ in range(5):
                    reply, out = k.run("6*7")
                    if reply["status"] != "aborted":
                        break
                    time.sleep(0.2)
                self.assertEqual(reply["status"], "ok", reply)
                self.assertEqual(text_of(out), "42")
                # a cell that ignores SIGINT: the sandbox is killed, verdict timed_out
                k.kc.execute("import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass")
                self.assertEqual(k.wait(), 124, k.stderr)
            finally:
                k.close()
            self.assertIn("--exec-timeout", k.stderr)
            with open(report) as f:
                r = json.load(f)
            self.assertTrue(r["timed_out"])
            self.assertEqual(r["kernel"]["ended_by"], "exec_timeout")
            self.assertEqual(r["kernel"]["exec_timeouts"], 2)
            self.assertFalse(os.path.exists(os.path.join(kboxkernel.run_dir_base(), k.id)))

    def test_idle_timeout_shuts_down_cleanly(self):
        with tempfile.TemporaryDirectory() as d:
            report = os.path.join(d, "r.json")
            k = Direct("--idle-timeout", "2", report=report)
            try:
                k.run("x = 1")
                self.assertEqual(k.wait(timeout=120), 0, k.stderr)
            finally:
                k.close()
            self.assertIn("--idle-timeout", k.stderr)
            with open(report) as f:
                r = json.load(f)
            self.assertEqual(r["kernel"]["ended_by"], "idle_timeout")
            self.assertEqual(r["exit_code"], 0)

    def test_kernel_crash_is_reported(self):
        k = Direct()
        try:
            k.kc.execute("import os; os.kill(os.getpid(), 9)")
            self.assertEqual(k.wait(), 128 + 9)
        finally:
            k.close()
        self.assertIn("the kernel was killed by signal 9", k.stderr)

    def test_two_kernels_do_not_see_each_other(self):
        a, b = Direct(), Direct()
        try:
            probe = ("import os\nopen('/tmp/mine-%s', 'w').close()\n"
                     "print(sorted(f for f in os.listdir('/tmp') if f.startswith('mine-')))\n"
                     "print(len([p for p in os.listdir('/proc') if p.isdigit()]))\n"
                     "print(open('/run/kbox/kernel.json').read().count(%r))\n")
            ra, oa = a.run(probe % ("a", a.info["key"]))
            rb, ob = b.run(probe % ("b", a.info["key"]))
            ta, tb = text_of(oa).splitlines(), text_of(ob).splitlines()
            self.assertEqual(ta[0], "['mine-a']")
            self.assertEqual(tb[0], "['mine-b']")
            # each sees only its own pid 1 + kernel (+ threads are not pids): a handful
            self.assertLess(int(tb[1]), 10)
            # the host-side key is never inside any sandbox
            self.assertEqual(ta[2], "0")
            self.assertEqual(tb[2], "0")
        finally:
            a.close()
            b.close()


if __name__ == "__main__":
    try:
        unittest.main(verbosity=2)
    finally:
        SPEC.remove()
