"""--audit: every record of a session with an error, an interrupt, a blocked fetch and an OOM is
present and parseable; the kernel can neither see nor touch the log; two kernels appending at once
produce no torn line; an unwritable or shared log is refused at start; kbox audit show reads it."""
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netlib  # noqa: E402
from netlib import kboxkernel  # noqa: E402
from kboxkernel import Direct, text_of  # noqa: E402

kboxkernel.check_host()
SRV = netlib.Servers()
netlib.set_test_resolver()


def records(path):
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    assert lines[-1] == b"", "the log does not end with a newline"
    out = []
    for i, line in enumerate(lines[:-1]):
        r = json.loads(line)  # raises on a torn or partial line
        for key in ("time", "id", "event"):
            assert key in r, "line %d lacks %s: %r" % (i + 1, key, line[:200])
        out.append(r)
    return out


class Session(unittest.TestCase):
    def test_session(self):
        d = tempfile.mkdtemp(prefix="kbox-audit-")
        log = os.path.join(d, "audit.jsonl")
        k = Direct(*SRV.kbox_args(["web.test:%d" % SRV.hport]), "--audit", log, "--memory", "300M")
        codes = ["print('hello')", "1/0", "import time\nprint('sleeping', flush=True)\ntime.sleep(60)",
                 "import urllib.request\nurllib.request.urlopen('http://evil.example/data.csv', timeout=20)",
                 "import os\nprint(os.path.exists(%r), os.path.exists(%r))\ntry:\n    open(%r, 'a')\nexcept OSError as e:\n"
                 "    print(type(e).__name__)" % (log, d, log),
                 "x = bytearray(3 << 30)"]
        try:
            reply, out = k.run(codes[0])
            self.assertEqual(reply["status"], "ok")
            reply, _ = k.run(codes[1])
            self.assertEqual(reply["ename"], "ZeroDivisionError")
            # SIGINT to kbox (it forwards it) once the cell is seen running
            def hook(msg):
                if msg["msg_type"] == "stream" and "sleeping" in msg["content"].get("text", ""):
                    threading.Timer(1.0, lambda: os.kill(k.proc.pid, signal.SIGINT)).start()
            reply = k.kc.execute_interactive(codes[2], timeout=120, output_hook=hook)["content"]
            self.assertEqual(reply.get("ename"), "KeyboardInterrupt", reply)
            reply, _ = k.run(codes[3])
            self.assertEqual(reply["ename"], "HTTPError")
            reply, out = k.run(codes[4])
            self.assertEqual(text_of(out), "False False\nFileNotFoundError\n", "the kernel sees its audit log")
            k.kc.execute(codes[5])
            rc = k.proc.wait(timeout=120)
            k.stderr = k.proc.stderr.read().decode()
            self.assertNotEqual(rc, 0, k.stderr)
        finally:
            k.close()
        recs = records(log)
        ev = [r["event"] for r in recs]
        self.assertEqual(ev[0], "kernel_start")
        self.assertEqual(ev[-1], "kernel_end")
        self.assertEqual({r["id"] for r in recs}, {k.id})
        start = recs[0]
        self.assertEqual(start["how"], "run")
        self.assertEqual(start["limits"]["memory_bytes"], 300 << 20)
        self.assertEqual(start["net"]["mode"], "allow")
        self.assertEqual(start["image"], ["/"])
        reqs = [r for r in recs if r["event"] == "execute_request"]
        self.assertEqual([r["code"] for r in reqs], codes)
        for r in reqs:
            self.assertEqual(r["code_sha256"], hashlib.sha256(r["code"].encode()).hexdigest())
            self.assertEqual(r["code_cap"], 65536)
            self.assertFalse(r["code_truncated"])
            self.assertTrue(r["msg_id"] and r["session"] and r["client_identity"])
        outs = {r["msg_id"]: r for r in recs if r["event"] == "execute_outcome"}
        o = [outs[r["msg_id"]] for r in reqs]
        self.assertEqual([x["status"] for x in o], ["ok", "error", "error", "error", "ok", "no_reply"])
        self.assertEqual(o[1]["ename"], "ZeroDivisionError")
        self.assertEqual(o[2]["ename"], "KeyboardInterrupt")
        self.assertTrue(o[2]["interrupted"])
        self.assertGreaterEqual(o[2]["duration_seconds"], 0.9)
        self.assertFalse(o[1]["interrupted"])
        self.assertEqual(o[3]["ename"], "HTTPError")
        self.assertIn("403", o[3]["evalue"])
        self.assertGreater(o[0]["output_bytes"], 0)
        blocked = [r for r in recs if r["event"] == "net_blocked"]
        self.assertEqual([b["url"] for b in blocked], ["http://evil.example:80"])
        self.assertEqual(blocked[0]["missing_rule"], "evil.example")
        limits = [r["limit"] for r in recs if r["event"] == "limit"]
        self.assertIn("memory", limits, "no OOM limit record: %r" % ev)
        self.assertTrue(recs[-1]["verdict"]["oom_killed"])
        # kbox audit show: for people, filters by id
        r = subprocess.run([kboxkernel.KBOX, "audit", "show", log], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("execute_request msg_id=" + reqs[1]["msg_id"], r.stdout)
        self.assertIn("    | 1/0\n", r.stdout)
        self.assertIn("status=error ZeroDivisionError: division by zero", r.stdout)
        self.assertIn("net_blocked http://evil.example:80 not in --net allow", r.stdout)
        self.assertIn("kernel_end reason=", r.stdout)
        r = subprocess.run([kboxkernel.KBOX, "audit", "show", log, "--id", "nobody"], capture_output=True, text=True)
        self.assertEqual((r.returncode, r.stdout), (0, ""))
        r = subprocess.run([kboxkernel.KBOX, "audit", "show", log, "--since", "1h", "--json"], capture_output=True, text=True)
        self.assertEqual(len(r.stdout.splitlines()), len(recs))
        r = subprocess.run([kboxkernel.KBOX, "audit", "show", log, "--since", "2999-01-01"], capture_output=True, text=True)
        self.assertEqual(r.stdout, "")


class Masked(unittest.TestCase):
    def test_log_under_the_rootfs_is_masked(self):
        # --rootfs / shows the host's files read-only; a world-readable log there must not be readable
        # not under /tmp: the sandbox has a /tmp of its own, and a build dir there would not be shown
        d = tempfile.mkdtemp(prefix="kbox-audit-vis-", dir="/var/tmp")
        os.chmod(d, 0o755)
        log = os.path.join(d, "audit.jsonl")
        with open(log, "w") as f:
            f.write('{"time":"x","id":"earlier","event":"kernel_end","secret":"s3cr3t"}\n')
        os.chmod(log, 0o644)
        k = Direct("--audit", log)
        try:
            reply, out = k.run(
                "import os\nprint(os.path.exists(%r))\n"
                "for mode in ('r', 'a'):\n"
                "    try:\n        f = open(%r, mode)\n        print(repr(f.read(100)) if mode == 'r' else 'opened')\n"
                "    except OSError as e:\n        print(type(e).__name__)\n" % (log, log))
            self.assertEqual(text_of(out), "True\nPermissionError\nPermissionError\n")
            self.assertNotIn("s3cr3t", text_of(out))
            k.kc.shutdown()
            self.assertEqual(k.wait(), 0, k.stderr)
        finally:
            k.close()
        recs = records(log)
        self.assertEqual(recs[0]["id"], "earlier")
        self.assertEqual(recs[1]["event"], "kernel_start")
        import shutil
        shutil.rmtree(d, ignore_errors=True)


class Shared(unittest.TestCase):
    def test_two_kernels_no_torn_line(self):
        log = os.path.join(tempfile.mkdtemp(prefix="kbox-audit-"), "shared.jsonl")
        big = "x = '%s'\n" % ("a" * 100000)
        ks = [Direct("--audit", log) for _ in range(2)]
        errors = []

        def work(k, tag):
            try:
                for i in range(20):
                    reply, _ = k.run(big + "print(%r, %d)" % (tag, i))
                    if reply["status"] != "ok":
                        errors.append(reply)
            except Exception as e:  # noqa: BLE001
                errors.append(e)
        ts = [threading.Thread(target=work, args=(k, "k%d" % n)) for n, k in enumerate(ks)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(300)
        for k in ks:
            k.kc.shutdown()
            k.wait()
            k.close()
        self.assertEqual(errors, [])
        recs = records(log)
        reqs = [r for r in recs if r["event"] == "execute_request"]
        self.assertEqual(len(reqs), 40)
        sent = {hashlib.sha256((big + "print(%r, %d)" % (t, i)).encode()).hexdigest() for t in ("k0", "k1") for i in range(20)}
        self.assertEqual({r["code_sha256"] for r in reqs}, sent, "the hash covers the whole code, not the capped part")
        for r in reqs:
            self.assertTrue(r["code_truncated"])
            self.assertEqual(r["code"], big[:65536])
            self.assertGreater(r["code_bytes"], 100000)
        self.assertEqual(sorted({r["id"] for r in recs}), sorted(k.id for k in ks))
        for k in ks:
            mine = [r["event"] for r in recs if r["id"] == k.id]
            self.assertEqual(mine[0], "kernel_start")
            self.assertEqual(mine[-1], "kernel_end")
            self.assertEqual(mine.count("execute_outcome"), 20)


class FullDisk(unittest.TestCase):
    def test_full_disk_counts_drops(self):
        d = tempfile.mkdtemp(prefix="kbox-audit-full-")
        report = tempfile.mktemp(prefix="kbox-audit-full-", suffix=".json")
        # a 64 KiB tmpfs in a mount namespace of kbox's own: the log fills up after a few records
        prefix = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                  'mount -t tmpfs -o size=64k kboxfull "$0" && exec "$@"', d]
        k = Direct("--audit", d + "/audit.jsonl", report=report, prefix=prefix)
        try:
            for i in range(8):
                reply, out = k.run("x = '%s'\nprint(%d)" % ("b" * 30000, i))
                self.assertEqual(text_of(out), "%d\n" % i, "the kernel must go on when the log is full")
            k.kc.shutdown()
            self.assertEqual(k.wait(), 0, k.stderr)
        finally:
            k.close()
        with open(report) as f:
            audit = json.load(f)["audit"]
        self.assertGreater(audit["dropped"], 0, audit)
        self.assertGreater(audit["records"], 0, audit)
        self.assertIn("could not be written (No space left on device)", k.stderr)


class Refused(unittest.TestCase):
    def run_kbox(self, *args, env=None):
        return subprocess.run([kboxkernel.KBOX, "run", "--rootfs", "/"] + list(args) + ["--", "true"],
                              capture_output=True, text=True, env=env)

    def test_unwritable_and_shared(self):
        r = self.run_kbox("--audit", "/proc/kbox-audit.jsonl")
        self.assertEqual(r.returncode, 125)
        self.assertIn("--audit: cannot open /proc/kbox-audit.jsonl for appending", r.stderr)
        d = tempfile.mkdtemp(prefix="kbox-audit-wd-")
        r = self.run_kbox("--workdir", d, "--audit", d + "/a.jsonl")
        self.assertEqual(r.returncode, 125)
        self.assertIn("which the sandbox shares", r.stderr)
        self.assertFalse(os.path.exists(d + "/a.jsonl"))

    def test_env_and_command_mode(self):
        log = os.path.join(tempfile.mkdtemp(prefix="kbox-audit-"), "env.jsonl")
        r = self.run_kbox(env=dict(os.environ, KBOX_AUDIT=log))
        self.assertEqual(r.returncode, 0, r.stderr)
        recs = records(log)
        self.assertEqual([x["event"] for x in recs], ["kernel_start", "kernel_end"])
        self.assertEqual(recs[0]["how"], "command")
        self.assertEqual(recs[0]["argv"], ["true"])
        self.assertEqual(recs[1]["verdict"]["exit_code"], 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
