"""Run directories of kernels: a live kbox in another network namespace keeps its run directory
when a kbox starts in this one (liveness is a flock()ed lock file, not something per netns), and
the run directory of a SIGKILLed kbox is removed by its reaper (and a stale one, whose kbox and
reaper were both killed, by the next kbox that starts)."""
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kboxkernel  # noqa: E402
from kboxkernel import Direct, text_of  # noqa: E402

# A base directory of our own, so kbox runs of other tests (or older kbox builds) on this machine
# cannot sweep or disturb the run dirs this test watches.
_xdg = tempfile.mkdtemp(prefix="kbox-rundir-test-")
os.environ["XDG_RUNTIME_DIR"] = _xdg
kboxkernel.check_host()


def lock_free(rundir):
    """True when nobody holds RUNDIR/lock (or it is gone)."""
    try:
        fd = os.open(os.path.join(rundir, "lock"), os.O_RDONLY)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def start_and_stop_kernel():
    """A complete kernel start in this netns (it sweeps stale run dirs), then a clean shutdown."""
    k = Direct()
    try:
        reply, out = k.run("print(6 * 7)")
        assert "42" in text_of(out), out
        k.kc.shutdown()
        assert k.wait() == 0, k.stderr
    finally:
        k.close()


if os.geteuid() != 0 or shutil.which("unshare") is None:
    kboxkernel.skip_or_fail("needs root and unshare(1) to run a kbox in another network namespace")
_r = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
if _r.returncode != 0:
    kboxkernel.skip_or_fail("unshare -n does not work here: " + _r.stderr.strip())


class RunDir(unittest.TestCase):
    def test_live_kbox_in_other_netns_keeps_its_run_dir(self):
        # ipc on the client side too: the other netns has no usable loopback for us.
        a = Direct("--transport", "ipc", prefix=["unshare", "-n"])
        rundir = os.path.join(kboxkernel.run_dir_base(), a.id)
        try:
            self.assertTrue(os.path.isdir(rundir))
            start_and_stop_kernel()
            self.assertTrue(os.path.exists(os.path.join(rundir, "k", "kernel.json")),
                            "a kbox in the host netns removed the run dir of a live kbox in another netns")
            reply, out = a.run("print(sum(range(10)))")
            self.assertEqual(reply["status"], "ok", reply)
            self.assertIn("45", text_of(out))

            # SIGKILL: the lock dies with the process (and its sandbox), then its reaper removes
            # the run dir (the connection key is in it).
            a.proc.send_signal(signal.SIGKILL)
            a.proc.wait()
            deadline = time.monotonic() + 60
            while os.path.exists(rundir) and time.monotonic() < deadline:
                time.sleep(0.1)
            self.assertTrue(lock_free(rundir), "the lock of a SIGKILLed kbox is still held")
            self.assertFalse(os.path.exists(rundir), "the run dir of a SIGKILLed kbox was not removed")
        finally:
            a.close()

    def test_next_start_sweeps_a_stale_run_dir(self):
        # What a kbox killed together with its reaper leaves: a run dir whose lock nobody holds.
        base = kboxkernel.run_dir_base()
        os.makedirs(base, mode=0o700, exist_ok=True)
        stale = os.path.join(base, "stale-%d" % os.getpid())
        os.makedirs(os.path.join(stale, "k"), mode=0o700)
        open(os.path.join(stale, "lock"), "w").close()
        with open(os.path.join(stale, "connection.json"), "w") as f:
            f.write('{"key": "not-for-anyone"}\n')
        start_and_stop_kernel()
        self.assertFalse(os.path.exists(stale), "a kernel start did not sweep the stale run dir")

    def test_next_start_leaves_a_dir_that_is_no_run_dir(self):
        # The zygotes live in BASE/warm (zygote.sock, KEY.pid, KEY.log): a kernel start that took
        # it for a stale run dir removed a live zygote's socket, so every kernel started cold.
        base = kboxkernel.run_dir_base()
        os.makedirs(base, mode=0o700, exist_ok=True)
        other = os.path.join(base, "warm-like-%d" % os.getpid())
        os.makedirs(os.path.join(other, "b16dc560f4e652a9"), mode=0o700)
        with open(os.path.join(other, "b16dc560f4e652a9.pid"), "w") as f:
            f.write("1\n")
        try:
            start_and_stop_kernel()
            self.assertTrue(os.path.exists(os.path.join(other, "b16dc560f4e652a9.pid")),
                            "a kernel start swept a directory that is not a kernel's run dir")
            # Nor is it a kernel to list: `kbox ps` showed the zygotes' warm/ as a dead kernel.
            ps = subprocess.run([kboxkernel.KBOX, "ps"], capture_output=True, text=True, timeout=60)
            self.assertEqual(ps.returncode, 0, ps.stderr)
            self.assertNotIn(os.path.basename(other), ps.stdout, "kbox ps listed a dir that is not a run dir")
        finally:
            shutil.rmtree(other, ignore_errors=True)


if __name__ == "__main__":
    try:
        unittest.main(verbosity=2)
    finally:
        shutil.rmtree(_xdg, ignore_errors=True)
