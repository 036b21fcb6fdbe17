"""pybox's and tablegpt-agent's call pattern on warm kernels: a python3 kernelspec installed into a
private JUPYTER_DATA_DIR, MultiKernelManager.start_kernel(kernel_id=..., cwd=DIR), run, reuse by
id, a second kernel beside it, shutdown; the kernels are forks of the zygote and leave nothing."""
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import warmlib as w  # noqa: E402


def run(kc, code, timeout=120):
    out = []
    reply = kc.execute_interactive(code, timeout=timeout, output_hook=lambda m: out.append(m["content"].get("text", ""))
                                   if m["msg_type"] == "stream" else None)
    w.check(reply["content"]["status"] == "ok", "%r failed: %s" % (code, reply["content"]))
    return "".join(out)


def main():
    w.check_host()
    from jupyter_client.multikernelmanager import MultiKernelManager
    z = w.Zygotes()
    data = tempfile.mkdtemp(prefix="kbox-warm-jd-")
    os.environ["JUPYTER_DATA_DIR"] = data
    os.environ["JUPYTER_PATH"] = data
    work = tempfile.mkdtemp(prefix="kbox-warm-cwd-")
    mkm = MultiKernelManager()
    try:
        z.start()
        r = subprocess.run([w.KBOX, "kernelspec", "install", "--user", "--name", "python3", "--workdir-from-cwd"],
                           capture_output=True, text=True)
        w.check(r.returncode == 0, "kernelspec install: " + r.stderr)
        w.check(os.path.exists(os.path.join(data, "kernels", "python3", "kernel.json")), "the kernelspec is not in JUPYTER_DATA_DIR")
        sid = "session-" + os.urandom(3).hex()
        kid = mkm.start_kernel(kernel_name="python3", kernel_id=sid, cwd=work)
        w.check(kid == sid, "kernel id %s, asked %s" % (kid, sid))
        kc = mkm.get_kernel(sid).client()
        kc.start_channels()
        kc.wait_for_ready(timeout=120)
        out = run(kc, "import os, pandas as pd\nx = 41\nprint(os.getcwd(), 'zygote.py' in open('/proc/self/cmdline').read())\n"
                      "pd.DataFrame({'a': [1, 2]}).to_csv('out.csv')")
        w.check(out.split() == [work, "True"], "cwd/warm: %r" % out)
        w.check(os.path.exists(os.path.join(work, "out.csv")), "the kernel's file is not in the client's cwd")
        st = os.stat(os.path.join(work, "out.csv"))
        w.check(st.st_uid == os.stat(work).st_uid, "out.csv owned by %d" % st.st_uid)
        # Reuse: the same kernel by id keeps its state (tablegpt-agent's start(kernel_id=session_id)).
        kc2 = mkm.get_kernel(sid).client()
        kc2.start_channels()
        kc2.wait_for_ready(timeout=120)  # its iopub subscription is up (a slow joiner misses the cell's output)
        w.check(run(kc2, "print(x + 1)").strip() == "42", "state lost on reuse")
        kc2.stop_channels()
        other = mkm.start_kernel(kernel_name="python3", kernel_id=sid + "-b", cwd=work)
        kco = mkm.get_kernel(other).client()
        kco.start_channels()
        kco.wait_for_ready(timeout=120)
        w.check(run(kco, "print('x' in globals())").strip() == "False", "the second kernel sees the first one's state")
        kco.stop_channels()
        kc.stop_channels()
        mkm.shutdown_all(now=False)
        w.check(mkm.list_kernel_ids() == [], "kernels left: %s" % mkm.list_kernel_ids())
        w.check_no_leak([], (z, z.zygote_pid()))
        print("MultiKernelManager start/run/reuse/shutdown on warm kernels: ok")
    finally:
        try:
            mkm.shutdown_all(now=True)
        except Exception:
            pass
        z.stop()
        subprocess.run(["rm", "-rf", data, work])


if __name__ == "__main__":
    main()
