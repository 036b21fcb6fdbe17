"""No state crosses warm kernels: what one kernel does (a global, a monkeypatched module, a file in
/tmp, an env var, a thread, the IPython history) is absent in the next; random sequences differ;
killing one kernel leaves the zygote and the other kernels working."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import warmlib as w  # noqa: E402

DIRTY = r'''
import os, threading, time, colorsys
KBOX_MARK = "dirty"
colorsys.rgb_to_hsv = lambda *a: "patched"
open("/tmp/kbox-mark", "w").write("x")
os.environ["KBOX_MARK"] = "1"
threading.Thread(target=time.sleep, args=(600,), daemon=True, name="kbox-mark").start()
print(threading.active_count())
'''

CLEAN = r'''
import os, threading, colorsys
print(repr(("KBOX_MARK" in globals(), colorsys.rgb_to_hsv(1.0, 0.0, 0.0), os.path.exists("/tmp/kbox-mark"), os.environ.get("KBOX_MARK"),
            [t.name for t in threading.enumerate() if t.name == "kbox-mark"], get_ipython().history_manager.db.execute("select count(*) from history where session != ?", (get_ipython().history_manager.session_number,)).fetchone()[0])))
'''

RANDOM = "import random, uuid, numpy; print(repr((random.random(), float(numpy.random.rand()), str(uuid.uuid4()))))"


def main():
    w.check_host()
    z = w.Zygotes()
    kernels = []
    try:
        z.start()
        a = w.Kernel(binds=False)
        kernels.append(a)
        out, err, _ = a.run(DIRTY)
        w.check(err is None, "dirtying kernel A raised %s" % err)
        a.run("1 + 1")
        ra = a.run(RANDOM)[0]
        b = w.Kernel(binds=False)
        kernels.append(b)
        out, err, _ = b.run(CLEAN)
        w.check(err is None, "kernel B raised %s" % err)
        seen = eval(out.strip())
        w.check(seen[:5] == (False, (0.0, 1.0, 1.0), False, None, []), "kernel B saw kernel A's state: %r" % (seen,))
        w.check(seen[5] == 0, "kernel B's history has %d entries of another kernel" % seen[5])
        rb = b.run(RANDOM)[0]
        va, vb = eval(ra), eval(rb)
        for i, what in enumerate(("random.random()", "numpy.random.rand()", "uuid4()")):
            w.check(va[i] != vb[i], "%s is the same in two warm kernels: %r" % (what, va[i]))
        # SIGINT reaches a warm kernel's cell like a cold one's (pid 1 forwards it).
        import subprocess
        import threading
        threading.Timer(3, lambda: subprocess.run([w.KBOX, "interrupt", b.id], capture_output=True)).start()
        _, err, _ = b.run("import time; time.sleep(60)", timeout=50)
        w.check(err is not None and "KeyboardInterrupt" in err, "the interrupt did not stop the cell: %s" % err)
        # Kill kernel A's process from inside: the zygote and kernel B go on, a new kernel forks.
        a.kc.execute("import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
        a.proc.wait(timeout=60)
        rep_a = a.end()
        kernels.remove(a)
        w.check(rep_a.get("signal_name") == "KILL" or rep_a.get("exit_code") == 137, "kernel A's end: %s" % rep_a)
        w.check(b.value("6 * 7") == "42", "kernel B stopped working after kernel A was killed")
        c = w.Kernel(binds=False)
        kernels.append(c)
        w.check(c.value("'ok'") == "'ok'", "a new kernel does not work after one was killed")
        reports = [k.end() for k in list(kernels)]
        ids = [k.id for k in (a, b, c)]
        kernels.clear()
        for r in reports:
            w.check(w.start_of(r) == "fork", "a kernel did not start warm: %s" % r.get("kernel"))
        w.check(w.start_of(rep_a) == "fork", "kernel A did not start warm")
        w.check_no_leak(ids, (z, z.zygote_pid()))
        print("no state crossed 3 warm kernels; random/uuid differ; a killed kernel left the others working")
    finally:
        for k in kernels:
            k.end()
        z.stop()


if __name__ == "__main__":
    main()
