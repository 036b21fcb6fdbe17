"""The kernel ends with its client (issue 11.3): a kernel started through a kernelspec by a
jupyter_client process (JPY_PARENT_PID) is shut down when that process is SIGKILLed; its
sandbox, cgroups, mounts and run dir are gone within 5 s and the report says parent_exited. A
--detach kernel started by the same kind of process survives it."""
import glob
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import agentlib  # noqa: E402
from agentlib import KBOX, PYTHON, RUN_OPTS, wait_until  # noqa: E402

agentlib.kboxkernel.check_host()
HOME = agentlib.private_home()

# The launching client: starts a kernel like pybox, prints kbox's pid, then waits to be killed.
CLIENT = textwrap.dedent("""
    import sys, time
    from jupyter_client import MultiKernelManager
    from jupyter_client.kernelspec import KernelSpecManager
    mkm = MultiKernelManager(kernel_spec_manager=KernelSpecManager())
    kid = mkm.start_kernel(kernel_name="python3", kernel_id="agent-parent", cwd=sys.argv[1])
    km = mkm.get_kernel(kid)
    kc = km.client(); kc.start_channels(); kc.wait_for_ready(timeout=90)
    print(km.provisioner.process.pid, flush=True)
    time.sleep(3600)
""")


def gone(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


def cgroups_of(sid):
    return glob.glob("/sys/fs/cgroup/**/kbox.*.%s" % sid, recursive=True)


class ParentExit(unittest.TestCase):
    def test_kernelspec_kernel_ends_with_its_client(self):
        sid = "agtp%06x" % random.getrandbits(24)
        report = os.path.join(HOME, "report-%s.json" % sid)
        agentlib.install_python3("--id", sid, "--report", report)
        cwd = tempfile.mkdtemp(prefix="kbox-agent-cwd-")
        client = subprocess.Popen([PYTHON, "-c", CLIENT, cwd], stdout=subprocess.PIPE, text=True)
        kbox = None
        try:
            line = client.stdout.readline()
            self.assertTrue(line.strip().isdigit(), "the client did not start a kernel: %r" % line)
            kbox = int(line)
            sandbox = children(kbox)
            rundir = os.path.join(agentlib.kboxkernel.run_dir_base(), sid)
            self.assertTrue(sandbox, "kbox has no sandbox child")
            self.assertTrue(os.path.isdir(rundir), rundir)
            had_cgroups = cgroups_of(sid)
            client.send_signal(signal.SIGKILL)
            client.wait()
            t0 = time.monotonic()
            self.assertTrue(wait_until(lambda: gone(kbox) and all(gone(p) for p in sandbox), 5),
                            "kbox or its sandbox still runs 5 s after the client was killed")
            self.assertTrue(wait_until(lambda: not os.path.exists(rundir) and not cgroups_of(sid), 5 - (time.monotonic() - t0)),
                            "left behind: %s %s" % (os.path.exists(rundir), cgroups_of(sid)))
            with open("/proc/self/mountinfo") as f:
                self.assertNotIn(rundir, f.read())
            with open(report) as f:
                verdict = json.load(f)
            self.assertEqual(verdict["kernel"]["ended_by"], "parent_exited", verdict)
            if had_cgroups:
                self.assertEqual(cgroups_of(sid), [])
        finally:
            if client.poll() is None:
                client.kill()
            if kbox is not None and not gone(kbox):
                os.kill(kbox, signal.SIGTERM)  # a failed run must not leave its kernel behind
            agentlib.cleanup(cwd)

    def test_detached_kernel_survives_its_caller(self):
        sid = "agtq%06x" % random.getrandbits(24)
        # A caller that holds JPY_PARENT_PID = itself (as under jupyter_client), starts a detached
        # kernel and waits to be killed.
        code = ("import os, subprocess, sys, time\n"
                "env = dict(os.environ, JPY_PARENT_PID=str(os.getpid()))\n"
                "subprocess.run(sys.argv[1:], env=env, check=True, stdout=subprocess.DEVNULL)\n"
                "print('up', flush=True)\n"
                "time.sleep(3600)\n")
        caller = subprocess.Popen([PYTHON, "-c", code, KBOX, "run", "--id", sid, "--detach"] + RUN_OPTS,
                                  stdout=subprocess.PIPE, text=True)
        try:
            self.assertEqual(caller.stdout.readline().strip(), "up")
            caller.send_signal(signal.SIGKILL)
            caller.wait()
            time.sleep(6)
            r = subprocess.run([KBOX, "exec", "--id", sid, "-c", "print(6 * 7)"], capture_output=True, text=True, timeout=120)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertEqual(json.loads(r.stdout)["data"][0]["text/plain"].strip(), "42")
        finally:
            if caller.poll() is None:
                caller.kill()
            subprocess.run([KBOX, "kill", sid], capture_output=True, timeout=60)


if __name__ == "__main__":
    unittest.main(verbosity=2)
