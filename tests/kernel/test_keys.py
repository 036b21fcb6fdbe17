"""A connection file without a key, or with an empty one, is refused (exit 125, the file and the
fix named) unless --insecure-no-key asks for it; then kbox warns, and an unsigned client works."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kboxkernel  # noqa: E402
from kboxkernel import KBOX, RUN_OPTS  # noqa: E402

kboxkernel.check_host()


def free_ports(n):
    import socket
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class Keys(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="kbox-keys-")

    def conn_file(self, extra):
        path = os.path.join(self.dir, "kernel-%d.json" % len(os.listdir(self.dir)))
        info = {"ip": "127.0.0.1", "transport": "tcp"}
        info.update(extra)
        with open(path, "w") as f:
            json.dump(info, f)
        return path

    def refused(self, path):
        r = subprocess.run([KBOX, "run", "--id", "kk" + os.urandom(4).hex()] + RUN_OPTS + ["--connection-file", path],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 125, r.stderr)
        self.assertIn(path, r.stderr)
        self.assertIn("--insecure-no-key", r.stderr)
        self.assertIn("key", r.stderr)
        self.assertEqual(r.stdout, "")

    def test_missing_key_is_refused(self):
        self.refused(self.conn_file({}))

    def test_empty_key_is_refused(self):
        self.refused(self.conn_file({"key": ""}))

    def test_insecure_flag_accepts_with_a_warning(self):
        from jupyter_client import BlockingKernelClient
        names = ["shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"]
        info = dict(zip(names, free_ports(5)))
        info.update({"key": "", "signature_scheme": "hmac-sha256"})
        path = self.conn_file(info)
        p = subprocess.Popen([KBOX, "run", "--id", "kk" + os.urandom(4).hex(), "--insecure-no-key"] + RUN_OPTS +
                             ["--connection-file", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        kc = BlockingKernelClient()
        try:
            kc.load_connection_file(path)
            kc.start_channels()
            import time
            deadline = time.monotonic() + 60
            while True:
                try:
                    kc.wait_for_ready(timeout=10)
                    break
                except RuntimeError:
                    if p.poll() is not None or time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
            out = []
            reply = kc.execute_interactive("6 * 7", timeout=60, output_hook=out.append)
            self.assertEqual(reply["content"]["status"], "ok")
            self.assertEqual(kboxkernel.text_of(out), "42")
            kc.shutdown()
            self.assertEqual(p.wait(timeout=60), 0)
        finally:
            kc.stop_channels()
            if p.poll() is None:
                p.kill()
                p.wait()
        err = p.stderr.read().decode()
        self.assertIn("no key and --insecure-no-key", err)
        self.assertIn(path, err)


if __name__ == "__main__":
    unittest.main(verbosity=2)
