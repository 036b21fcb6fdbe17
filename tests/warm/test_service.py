"""The zygote service (`kbox warm ...`): who may ask it for kernels (SO_PEERCRED, checked with a real
process of another uid), servers racing for one key, `status --json` while a zygote starts and after
its server was SIGKILLed (and the next kernel restarting it), and the profile switch that forbids
warm starts."""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import warmlib as w  # noqa: E402

OTHER_UID = 12345
HERE = os.path.dirname(os.path.abspath(__file__))
PROFILES = os.path.join(HERE, "..", "..", "profiles")

def wait_for(what, cond, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    w.fail("timed out waiting for " + what)


def foreign_caller(z, key):
    """A process of another uid that reaches the socket (the test opens the directories to it) is
    refused by the server, with a log line; root is still served."""
    keydir = os.path.join(z.dir, key)
    w.check_foreign_caller(os.path.join(keydir, "zygote.sock"), (z.dir, keydir), OTHER_UID, z.logs)
    k = w.Kernel(binds=False)
    w.check(k.value("6 * 7") == "42", "root's kernel does not answer")
    w.check(w.start_of(k.end()) == "fork", "root was not served warm after the refusal")


def racing_servers(z):
    """`kbox warm start` racing three `kbox warm serve` for the same key: one server wins, start
    waits for it and succeeds, the losers leave its files alone; a start right after a stop
    succeeds too (the stopping server still holds the key for a moment)."""
    z.stop_keep_dir()
    procs = [subprocess.Popen([w.KBOX, "warm", "serve"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for _ in range(3)]
    key = z.start()
    time.sleep(2)
    running = [p for p in procs if p.poll() is None]
    w.check(len(running) <= 1, "%d servers run for one key" % len(running))
    for p in procs:
        if p not in running:
            w.check(p.returncode == 0, "a losing server failed: %s" % p.stderr.read())
    alive = [s for s in z.status() if s["alive"]]
    w.check(len(alive) == 1 and alive[0]["state"] == "ready", "servers after the race: %s" % alive)
    pid = int(open(os.path.join(z.dir, key + ".pid")).read())
    w.check(pid == alive[0]["pid"] and os.path.exists(os.path.join(z.dir, key, "zygote.sock")),
            "the winner's pid file or socket was touched by a loser")
    w.check("already running" not in z.logs(), "a loser tried to start a second zygote: %s" % z.logs()[-2000:])
    k = w.Kernel(binds=False)
    w.check(w.start_of(k.end()) == "fork", "no warm kernel after the race")
    subprocess.run([w.KBOX, "warm", "stop"], capture_output=True, timeout=60)
    z.start()  # at once: must wait for the old server to go, then start a new one
    w.check([s["state"] for s in z.status() if s["alive"]] == ["ready"], "start after stop: %s" % z.status())


def status_while_starting(z):
    """status --json says "starting" (alive, not ready) while the zygote imports, then "ready"."""
    z.stop_keep_dir()
    r = subprocess.run([w.KBOX, "warm", "start", "--no-wait"], capture_output=True, text=True, timeout=60)
    w.check(r.returncode == 0, "warm start --no-wait: " + r.stderr)
    seen = []

    def states():
        st = z.status()
        if st:
            seen.append(st[0]["state"])
            w.check(st[0]["ready"] == (st[0]["state"] == "ready") and st[0]["alive"], "inconsistent status %s" % st)
        return seen and seen[-1] == "ready"
    wait_for("the zygote to become ready", states, 300)
    w.check("starting" in seen, "status never said starting: %s" % seen[:5])


def server_killed(z):
    """SIGKILL the server: status says dead (its socket is left behind but is no zygote), the next
    kernel starts cold and restarts the service, and kernels are warm again."""
    pid = z.server_pid()
    os.kill(pid, signal.SIGKILL)
    wait_for("status to see the server dead", lambda: not [s for s in z.status() if s["alive"] or s["ready"]], 30)
    k = w.Kernel(binds=False)
    w.check(k.value("1 + 1") == "2", "the kernel after the server's death does not answer")
    w.check(w.start_of(k.end()) == "cold", "a kernel started warm from a dead server")
    wait_for("the service to be restarted by that kernel", lambda: [s for s in z.status() if s["alive"]], 60)
    z.start()
    k2 = w.Kernel(binds=False)
    w.check(w.start_of(k2.end()) == "fork", "the restarted service does not serve")


def profile_forbids(z):
    """A profile with "warm": false: cold with one log line; a non-boolean value is refused."""
    prof = json.load(open(os.path.join(PROFILES, "default.json")))
    prof["warm"] = False
    d = tempfile.mkdtemp(prefix="kbox-warm-prof-")
    path = os.path.join(d, "nowarm.json")
    json.dump(prof, open(path, "w"))
    for _ in range(2):  # the second run may find the profile in the per-user cache: still cold
        k = w.Kernel("--profile", path, "--verbose", binds=False)
        w.check(k.value("3 * 3") == "9", "the kernel with the profile does not answer")
        w.check(w.start_of(k.end()) == "cold", "a \"warm\": false profile started warm")
        w.check(k.stderr.count("the security profile forbids warm starts") == 1, "no single log line: %s" % k.stderr[-1500:])
    prof["warm"] = "no"
    json.dump(prof, open(path, "w"))
    r = subprocess.run([w.KBOX, "run", "--profile", path, "--", "true"], capture_output=True, text=True, timeout=60)
    w.check(r.returncode != 0 and "warm" in r.stderr and "true or false" in r.stderr, "a bad \"warm\" value: %s" % r.stderr)


def main():
    w.check_host()
    if subprocess.run(["setpriv", "--version"], capture_output=True).returncode != 0:
        w.skip_or_fail("setpriv (util-linux) is missing")
    z = w.Zygotes()
    try:
        key = z.start()
        w.run_cases((foreign_caller,), z, key)
        w.run_cases((racing_servers, status_while_starting, server_killed, profile_forbids), z)
    finally:
        z.stop()


if __name__ == "__main__":
    main()
