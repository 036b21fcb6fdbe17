"""A warm kernel is as isolated as a cold one: the same facts seen from inside (namespaces, mounts,
masked paths, privileges, seccomp, network) and the escape battery with the same verdicts, all
gathered by code running in the kernel and its subprocesses."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import warmlib as w  # noqa: E402

FACTS = r'''
import json, os, subprocess
def probe(*a):
    r = subprocess.run(["/opt/probe"] + list(a), capture_output=True, text=True)
    return dict(l.split("=", 1) for l in r.stdout.splitlines() if "=" in l)
st = dict(l.split(":\t", 1) for l in open("/proc/self/status").read().splitlines() if ":\t" in l)
mounts = sorted({(l.split(" - ")[0].split()[4], l.split(" - ")[1].split()[0]) for l in open("/proc/self/mountinfo")})
import signal
old = signal.signal(signal.SIGUSR2, signal.SIG_IGN)  # the battery's kill(-1, SIGUSR2) must not end its kernel
esc = subprocess.run(["/opt/escape"], capture_output=True, text=True).stdout
signal.signal(signal.SIGUSR2, old)
verdicts = {}
for l in esc.splitlines():
    if l.startswith("attempt="):
        f = dict(x.split("=", 1) for x in l.split() if "=" in x)
        verdicts[f["attempt"]] = f["result"]
info = probe("info", "read", "/proc/keys", "read", "/proc/timer_list", "ls", "/proc/acpi", "ls", "/sys/firmware",
             "write", "/etc/passwd", "write", "/proc/sys/kernel/hostname", "loopback", "outside", "192.0.2.1")
info.pop("hostname", None)
info.pop("pid", None)
facts = {
  "uid": os.getuid(), "gid": os.getgid(), "pid": os.getpid(), "visible_pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit())[:2],
  "caps": [st[k].strip() for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")],
  "no_new_privs": st["NoNewPrivs"].strip(), "seccomp": st["Seccomp"].strip(),
  "mounts": mounts, "ifaces": os.listdir("/sys/class/net"), "probe": info, "escape": verdicts,
  "home": os.environ.get("HOME"), "cwd": os.getcwd(), "env_keys": sorted(os.environ),
  "cmdline": open("/proc/self/cmdline").read().replace("\0", " "),
}
print(json.dumps(facts))
'''


def facts(*extra):
    k = w.Kernel(*extra)
    out, err, _ = k.run(FACTS, timeout=300)
    rep = k.end()
    w.check(err is None, "the facts cell raised %s" % err)
    return json.loads(out.strip().splitlines()[-1]), rep


def host_sleeper(uid):
    """A host process with the kernel's host uid, which the battery's kill(-1) must not reach."""
    import subprocess
    return subprocess.Popen(["setpriv", "--reuid", str(uid), "--regid", str(uid), "--clear-groups", "sleep", "300"])


def main():
    w.check_host()
    z = w.Zygotes()
    sleeper = host_sleeper(1000001000)
    try:
        z.start()
        warm, wrep = facts()
        w.check(sleeper.poll() is None, "a host process with the kernel's uid was killed from the warm kernel")
        cold, crep = facts("--cold")
        w.check(w.start_of(wrep) == "fork", "the kernel did not start warm: %s" % wrep.get("kernel"))
        w.check(w.start_of(crep) == "cold", "--cold started %s" % w.start_of(crep))
        w.check("zygote.py" in warm["cmdline"] and "zygote.py" not in cold["cmdline"], "cmdlines %s / %s" % (warm["cmdline"], cold["cmdline"]))
        w.check_warm_facts(warm, cold)
        allowed = {a: r for a, r in warm["escape"].items() if r != "denied"}
        w.check(not allowed, "escape attempts not refused in a warm kernel: %s" % allowed)
        print("warm == cold on %d facts, %d escape attempts refused" % (14, len(warm["escape"])))
    finally:
        sleeper.kill()
        z.stop()


if __name__ == "__main__":
    main()
