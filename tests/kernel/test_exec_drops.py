"""`kbox exec` never loses output silently: a display larger than --max-message, which the broker
drops, gives "truncated": true with the reason; a cell whose execute_request is over --max-message
is an error naming --max-message (not a timeout)."""
import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kboxkernel  # noqa: E402
from kboxkernel import KBOX, KERNEL_CMD  # noqa: E402

kboxkernel.check_host()


def kexec(*args, code_file=None):
    argv = [KBOX, "exec", "--rootfs", "/", "--kernel-cmd", KERNEL_CMD, "--max-message", "16M"] + list(args)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    return r.returncode, json.loads(r.stdout) if r.stdout.strip() else None, r.stderr


class ExecDrops(unittest.TestCase):
    def test_display_over_max_message_is_reported_truncated(self):
        code, res, err = kexec("-c", "display({'text/plain': 'x' * (40 << 20)}, raw=True)\nprint('after')")
        self.assertIsNotNone(res, err)
        self.assertEqual(res["status"], "ok", res)
        self.assertTrue(res["truncated"], res)
        self.assertIn("--max-message", res["truncated_reason"])
        self.assertIn("after", json.dumps(res["data"]))
        self.assertEqual(code, 0)

    def test_cell_over_max_message_is_an_error_naming_it(self):
        path = os.path.join(os.environ.get("TMPDIR", "/tmp"), "kbox-bigcell-%d.py" % os.getpid())
        with open(path, "w") as f:
            f.write("x = '" + "y" * (8 << 20) + "'\n")  # under exec's 16 MiB code limit, over --max-message 4M
        try:
            code, res, err = kexec("--max-message", "4M", path)
        finally:
            os.unlink(path)
        self.assertIsNotNone(res, err)
        self.assertEqual(res["status"], "error", res)
        self.assertFalse(res["timed_out"])
        self.assertEqual(res["error"]["ename"], "MessageTooLarge")
        self.assertIn("--max-message", res["error"]["evalue"])
        self.assertNotEqual(code, 124)


if __name__ == "__main__":
    unittest.main(verbosity=2)
