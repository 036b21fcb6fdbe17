"""Kernel arguments from the client (issue 11.1): tablegpt-agent's set-up, pybox's call pattern.
A kernelspec "python3" from `kbox kernelspec install --user --name python3 --workdir-from-cwd`;
jupyter_client appends extra_arguments=["--profile-dir", PROFILE] to its argv. The profile's
startup scripts must run in the sandbox, IPython must write its history there, the host profile
directory must be unchanged afterwards, and an argument kbox cannot honour must fail fast,
named."""
import os
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import agentlib  # noqa: E402
from agentlib import PyBoxLike, text_of  # noqa: E402

agentlib.kboxkernel.check_host()
agentlib.private_home()
SPEC = agentlib.install_python3()


def make_profile():
    """A host IPython profile like tablegpt-agent's: startup scripts that define names."""
    prof = tempfile.mkdtemp(prefix="kbox-agent-profile-")
    os.makedirs(os.path.join(prof, "startup"))
    with open(os.path.join(prof, "startup", "00-first.py"), "w") as f:
        f.write("import os\nPROFILE_STARTUP_RAN = ['00-first']\nPROFILE_SEEN_AS = os.environ.get('IPYTHONDIR', '')\n")
    with open(os.path.join(prof, "startup", "10-second.py"), "w") as f:
        f.write("PROFILE_STARTUP_RAN.append('10-second')\n")
    with open(os.path.join(prof, "ipython_kernel_config.py"), "w") as f:
        f.write("c.InteractiveShell.cache_size = 1234\n")
    os.chmod(prof, 0o755)
    return prof


class ProfileDir(unittest.TestCase):
    def test_kernelspec_ends_with_connection_file(self):
        # jupyter_client appends extra_arguments after the kernelspec argv: they must follow
        # --connection-file {connection_file}, where kbox run's options end.
        self.assertEqual(SPEC["argv"][-2:], ["--connection-file", "{connection_file}"])

    def test_profile_startup_history_and_host_unchanged(self):
        prof = make_profile()
        cwd = tempfile.mkdtemp(prefix="kbox-agent-cwd-")
        before = agentlib.tree_state(prof)
        box = PyBoxLike()
        kid, km, kc = box.start(cwd, ["--profile-dir", prof, "--InteractiveShell.ast_node_interactivity=last_expr"])
        try:
            kc.wait_for_ready(timeout=90)
            reply, msgs, _ = box.run(kc, "print(PROFILE_STARTUP_RAN, get_ipython().profile_dir.location, get_ipython().cache_size)")
            self.assertEqual(reply["status"], "ok", reply)
            self.assertEqual(text_of(msgs).strip(), "['00-first', '10-second'] %s 1234" % prof)
            # a second cell, so history has rows; then look at the history file from inside
            box.run(kc, "x = 41")
            reply, msgs, _ = box.run(kc, (
                "import os, sqlite3\n"
                "hm = get_ipython().history_manager\n"
                "hm.writeout_cache()\n"
                "n = sqlite3.connect(hm.hist_file).execute('select count(*) from history').fetchone()[0]\n"
                "probe = os.path.join(%r, 'written-inside')\n"
                "open(probe, 'w').write('only in the sandbox')\n"
                "print(hm.hist_file, n >= 2, sorted(os.listdir(%r)))\n") % (prof, prof))
            self.assertEqual(reply["status"], "ok", reply)
            out = text_of(msgs).split(" ", 2)
            self.assertEqual(out[0], os.path.join(prof, "history.sqlite"))
            self.assertEqual(out[1], "True", "history has no rows: %s" % text_of(msgs))
            self.assertIn("'history.sqlite'", out[2])
            self.assertIn("'written-inside'", out[2])
        finally:
            kc.stop_channels()
            box.shutdown(kid)
        after = agentlib.tree_state(prof)
        self.assertEqual(sorted(after), sorted(before), "the host profile dir gained or lost entries")
        self.assertEqual(after, before, "the host profile dir changed")
        agentlib.cleanup(prof)
        agentlib.cleanup(cwd)

    def refused(self, extra, name):
        cwd = tempfile.mkdtemp(prefix="kbox-agent-cwd-")
        box = PyBoxLike()
        t0 = time.monotonic()
        kid, km, kc = box.start(cwd, extra, stderr=subprocess.PIPE)
        proc = km.provisioner.process
        try:
            rc = proc.wait(timeout=30)
            took = time.monotonic() - t0
            err = proc.stderr.read().decode()
        finally:
            kc.stop_channels()
            box.shutdown(kid)
            agentlib.cleanup(cwd)
        self.assertEqual(rc, 125, err)
        self.assertIn("'%s'" % name, err)
        self.assertEqual(len([line for line in err.splitlines() if "error" in line]), 1, err)
        self.assertLess(took, 20, "kbox should refuse before any sandbox starts")
        return err

    def test_channel_argument_refused_fast(self):
        err = self.refused(["--ip", "0.0.0.0"], "--ip")
        self.assertIn("broker", err)

    def test_session_key_refused(self):
        self.refused(["--Session.key=b'stolen'"], "--Session.key=b'stolen'")

    def test_host_path_refused(self):
        err = self.refused(["--IPKernelApp.exec_files=['/etc/hostname']"], "--IPKernelApp.exec_files=['/etc/hostname']")
        self.assertIn("host path", err)

    def test_kbox_option_after_connection_file_refused(self):
        err = self.refused(["--memory", "8G"], "--memory")
        self.assertIn("before --connection-file", err)

    def test_missing_profile_dir_refused(self):
        self.refused(["--profile-dir", "/nonexistent/kbox-profile"], "--profile-dir")


if __name__ == "__main__":
    unittest.main(verbosity=2)
