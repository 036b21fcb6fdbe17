"""Suite 'pods': the kbox image (tools/mkoci) under podman as Enterprise Gateway and
jupyter-kernel-controller would run it.

Remote mode: the real Enterprise Gateway (vendored, unmodified; jupyter_client 6.1.12 first on its
path) with its stock DockerProcessProxy against podman's Docker-compatible API starts the image;
a REST + websocket client runs code, interrupts, deletes; an image whose kernel cannot start
fails the request at once with kbox's reason in EG's log. Kube mode: a container with exactly the
controller's environment, a host jupyter_client with the controller's connection info. Both under
podman's default security options (its seccomp profile, masked /proc, no capabilities: the shape
of Docker's default and Kubernetes' RuntimeDefault), and kube mode also with the options
docs/pods.md gives for full protection, where the escape battery must give the host's result.

What this stands in for: there is no Kubernetes API server here. The controller-mode containers
get the environment the controller's pod template sets; `podman run --security-opt` stands in for
the pod securityContext (seccompProfile Localhost -> seccomp=FILE, procMount Unmasked -> unmask=ALL;
`podman kube play` ignores both). EG's KubernetesProcessProxy speaks the same launch protocol as
the DockerProcessProxy tested here."""

import json
import os
import shutil
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import podlib  # noqa: E402
from podlib import IMAGE, TAG, log  # noqa: E402

P = None   # podlib.Podman
EG = None  # podlib.Gateway
WORK = None
# the entrypoint's protection list: the host probe's features (sandbox/probe.h), the same as doctor's
PROTECTIONS = {"userns", "pidns", "mountns", "netns", "ipcns", "utsns", "cgroupns", "cgroup", "seccomp", "caps",
               "hostname", "loopback", "overlay", "proc", "idmap"}


def full_protection_seccomp(path):
    """docs/pods.md's profile: the engine's default one, with sethostname/setdomainname allowed
    (they only rename a uts namespace the caller owns; the default wants CAP_SYS_ADMIN for them)."""
    subprocess.run([sys.executable, os.path.join(podlib.SRC, "tools/mkoci"), "seccomp", "--base",
                    "/usr/share/containers/seccomp.json", "--out", path], check=True, capture_output=True)


def setUpModule():
    global P, EG, WORK
    if os.geteuid() != 0:
        podlib.skip("needs root (rootful podman)")
    if shutil.which("podman") is None:
        podlib.skip("podman is not installed (tools/setup.sh installs it)")
    if not os.path.isdir(os.path.join(podlib.ROOTFS, "usr")):
        podlib.skip("no default kernel image at %s (kbox image build)" % podlib.ROOTFS)
    for mod in ("jupyter_server", "docker", "websocket", "jupyter_client", "Cryptodome"):
        try:
            __import__(mod)
        except ImportError:
            podlib.skip("python module %s missing (tools/setup.sh installs the EG dependencies)" % mod)
    WORK = podlib.make_work()
    try:
        P = podlib.Podman(WORK)
        P.load_image()
        P.start_service()
        # keeps podman's bridge (EG's response address) up for the whole run
        P.run("run", "-d", "--name", TAG + "-keeper", "--entrypoint", "/bin/sleep", IMAGE, "infinity")
        EG = podlib.Gateway(WORK, P)
        EG.start(launch_timeout=90)
    except BaseException:
        tearDownModule()  # unittest does not call it when setUpModule fails
        raise


def tearDownModule():
    if EG is not None:
        EG.stop()
        if os.environ.get("KBOX_PODS_KEEP_LOGS"):
            print(EG.text(), file=sys.stderr)
    if P is not None:
        P.cleanup()
        P.run("rmi", "-f", podlib.BROKEN, podlib.SLOW, podlib.DIES, IMAGE, check=False)
    if WORK is not None:
        shutil.rmtree(WORK, ignore_errors=True)


def status_of(name):
    return json.loads(P.run("exec", name, "cat", "/tmp/kbox-status.json").stdout)


def wait_exit(name, timeout):
    r = P.run("wait", name, check=False, timeout=timeout)
    return int(r.stdout.strip()) if r.stdout.strip().lstrip("-").isdigit() else None


def start_controller_pod(name, key, opts=(), idle=None, extra_env=()):
    P.run("run", "-d", "--name", name, *opts, *podlib.controller_env(key, idle, extra_env), IMAGE)
    return P.ip_of(name)


def connect(ip, key, timeout=120):
    kc = podlib.kernel_client(ip, key)
    if not podlib.wait_kernel_info(kc, timeout):
        kc.stop_channels()
        return None
    return kc


def logs(name):
    r = P.run("logs", name, check=False)
    return r.stdout + r.stderr


class KubeMode(unittest.TestCase):
    """Containers with the controller's environment, host jupyter_client through podman's bridge."""

    def test_default_security_degrades_honestly(self):
        name = TAG + "-kdef"
        ip = start_controller_pod(name, "pod-secret")
        kc = connect(ip, "pod-secret")
        self.assertIsNotNone(kc, "no kernel_info reply:\n" + logs(name))
        reply, msgs = podlib.execute(kc, "print(1+1)")
        self.assertEqual(reply["status"], "ok")
        self.assertEqual(podlib.stream_text(msgs).strip(), "2")
        kc.stop_channels()
        st = status_of(name)["protections"]
        self.assertEqual(set(st["missing"]), {"cgroup"}, st)
        self.assertIn("rlimit", st["missing"]["cgroup"])
        # the weakened namespaces, and the probe's own verdicts on the refused steps
        self.assertEqual(set(st["partial"]), {"pidns", "utsns", "hostname", "proc"}, st)
        self.assertIn("sethostname refused", st["partial"]["utsns"])
        self.assertIn("read-only bind of the container's /proc", st["partial"]["pidns"])
        self.assertEqual(set(st["active"]), PROTECTIONS - {"cgroup", "pidns", "utsns", "hostname", "proc"}, st)
        self.assertEqual(set(st["fallbacks"]) & {"hostname", "proc"}, {"hostname", "proc"}, st)
        text = logs(name)
        self.assertIn("partial: pidns (", text)
        self.assertIn("missing: cgroup (", text)
        # a client with the wrong key gets nothing back
        bad = podlib.kernel_client(ip, "wrong-key")
        self.assertFalse(podlib.wait_kernel_info(bad, 5), "a wrongly signed request was answered")
        bad.stop_channels()
        # SIGTERM (what the kubelet sends) ends the kernel gracefully with 0
        P.run("kill", "-s", "TERM", name)
        self.assertEqual(wait_exit(name, 60), 0, logs(name))

    def test_root_user_under_default_security(self):
        """As uid 0 without CAP_SYS_ADMIN (EG with KERNEL_UID=0, `--user 0`) kbox builds the sandbox
        as an unprivileged user would, instead of failing on the root path's open_tree."""
        name = TAG + "-kroot"
        ip = start_controller_pod(name, "root-secret", opts=("--user", "0"))
        kc = connect(ip, "root-secret")
        self.assertIsNotNone(kc, "no kernel_info reply:\n" + logs(name))
        reply, msgs = podlib.execute(kc, "import os; print(os.getuid(), os.access(os.environ['HOME'], os.W_OK))")
        kc.stop_channels()
        self.assertEqual(reply["status"], "ok", logs(name))
        self.assertEqual(podlib.stream_text(msgs).split(), ["1000", "True"])
        st = status_of(name)["protections"]
        self.assertEqual(set(st["missing"]), {"cgroup"}, st)
        for p in ("userns", "mountns", "seccomp", "caps", "overlay"):
            self.assertIn(p, st["active"], st)
        P.run("rm", "-f", "-t", "0", name, check=False)

    def test_idle_cull_exits_0(self):
        name = TAG + "-kidle"
        ip = start_controller_pod(name, "idle-secret", idle=3)
        kc = connect(ip, "idle-secret")
        self.assertIsNotNone(kc, "no kernel_info reply:\n" + logs(name))
        kc.stop_channels()
        self.assertEqual(wait_exit(name, 120), 0, logs(name))
        self.assertIn("culled", logs(name))

    def test_require_fails_fast_naming_step_and_option(self):
        cases = {
            "all": ["KBOX_REQUIRE: required protection missing in this pod: cgroup ("],
            "utsns": ["sethostname", "seccomp"],
            "pidns": ["/proc", "unmask=ALL", "procMount"],
        }
        for req, needles in cases.items():
            name = "%s-req-%s" % (TAG, req)
            t = time.monotonic()
            P.run("run", "-d", "--name", name, *podlib.controller_env("k", extra=["KBOX_REQUIRE=" + req]), IMAGE)
            code = wait_exit(name, 60)
            took = time.monotonic() - t
            text = logs(name)
            errors = [line for line in text.splitlines() if ": error: " in line]
            self.assertEqual(code, 125, "KBOX_REQUIRE=%s: exit %s\n%s" % (req, code, text))
            self.assertEqual(len(errors), 1, text)
            for n in needles:
                self.assertIn(n, errors[0], "KBOX_REQUIRE=%s" % req)
            self.assertLess(took, 45, "KBOX_REQUIRE=%s took %.1f s to fail (hang detector)" % (req, took))

    def test_full_protection_and_escape_battery(self):
        seccomp = os.path.join(WORK, "seccomp-kbox.json")
        full_protection_seccomp(seccomp)
        battery = os.path.join(WORK, "battery")
        os.makedirs(battery)
        os.chmod(battery, 0o777)
        shutil.copy(os.path.join(podlib.BUILD, "tests/security/escape"), battery)
        name = TAG + "-kfull"
        opts = ["--security-opt", "seccomp=" + seccomp, "--security-opt", "unmask=ALL",
                "-v", battery + ":/work"]
        ip = start_controller_pod(name, "full-secret", opts, extra_env=["KERNEL_WORKING_DIR=/work"])
        kc = connect(ip, "full-secret")
        self.assertIsNotNone(kc, "no kernel_info reply:\n" + logs(name))
        st = status_of(name)["protections"]
        self.assertEqual(st["partial"], {}, st)
        self.assertEqual(set(st["active"]) | set(st["missing"]), PROTECTIONS)
        # a cgroup can only be delegated to a container by the engine (cgroup v2 + a writable
        # subtree); on this machine's hybrid hierarchy none is, and the status says so
        self.assertLessEqual(set(st["missing"]), {"cgroup"}, st)
        # the battery's kill(-1, SIGUSR2) reaches every process of the sandbox (the kernel too, its
        # parent here, while on the host it is the workload itself): the kernel ignores it meanwhile
        code = ("import signal, subprocess; old = signal.signal(signal.SIGUSR2, signal.SIG_IGN); "
                "r = subprocess.run(['/work/escape'], capture_output=True, text=True); "
                "signal.signal(signal.SIGUSR2, old); print(r.stdout)")
        reply, msgs = podlib.execute(kc, code, timeout=120)
        kc.stop_channels()
        self.assertEqual(reply["status"], "ok", reply)
        pod = battery_results(podlib.stream_text(msgs))
        host = subprocess.run([os.environ.get("KBOX_BIN", os.path.join(podlib.BUILD, "src/kbox")), "run",
                               "--rootfs", battery, "--", "/escape"], capture_output=True, text=True, timeout=120)
        host_res = battery_results(host.stdout)
        self.assertGreater(len(host_res), 50, host.stdout + host.stderr)
        self.assertEqual(pod, host_res, "escape battery in the pod differs from the host")
        self.assertEqual({r for r in pod.values()}, {"denied"}, pod)
        P.run("kill", "-s", "TERM", name)
        self.assertEqual(wait_exit(name, 60), 0, logs(name))


def battery_results(text):
    res = {}
    for line in text.splitlines():
        if line.startswith("attempt="):
            fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
            res[fields["attempt"]] = fields.get("result")
    return res


class RemoteMode(unittest.TestCase):
    """The real Enterprise Gateway with DockerProcessProxy against podman."""

    def kernel_containers(self, kernel_id):
        return P.containers("label=kernel_id=" + kernel_id)

    def test_eg_kernel_lifecycle(self):
        t = time.monotonic()
        status, body, reason = EG.rest("POST", "/api/kernels", {"name": "kbox"})
        self.assertEqual(status, 201, "%s %s\n%s" % (reason, body, EG.text()[-4000:]))
        kid = body["id"]
        log("kernel ready via EG in %.2f s" % (time.monotonic() - t))
        self.assertEqual(len(self.kernel_containers(kid)), 1)
        # what kbox sent EG about the sandbox (EG logs the connection info at debug level): the
        # launcher passes no security options, so podman's defaults apply
        got = [line for line in EG.text().splitlines() if "Received connection info for KernelID '%s'" % kid in line]
        self.assertEqual(len(got), 1, "EG did not log the connection info")
        self.assertIn("'kbox_protections': {'active': [", got[0])
        active = got[0].split("'kbox_protections': {'active': [", 1)[1].split("]", 1)[0]
        for name in ["userns", "mountns", "netns", "ipcns", "cgroupns", "seccomp", "caps"]:
            self.assertIn("'%s'" % name, active, got[0])
        for name in ["pidns", "utsns"]:
            self.assertNotIn("'%s'" % name, active, got[0])
        self.assertIn("'partial': {'pidns': ", got[0])
        self.assertIn("'missing': {'cgroup': ", got[0])
        ws = podlib.KernelSocket(EG.port, kid)
        try:
            reply, msgs = ws.execute("1+1")
            self.assertEqual(reply["content"]["status"], "ok")
            results = [m["content"]["data"]["text/plain"] for m in msgs if m["msg_type"] == "execute_result"]
            self.assertEqual(results, ["2"])
            reply, msgs = ws.execute("%matplotlib inline\nimport matplotlib.pyplot as plt\nplt.plot([1, 3, 2]); plt.show()",
                                     timeout=120)
            self.assertEqual(reply["content"]["status"], "ok", reply["content"])
            pngs = [m for m in msgs if m["msg_type"] == "display_data" and "image/png" in m["content"]["data"]]
            self.assertEqual(len(pngs), 1, [m["msg_type"] for m in msgs])
            reply, msgs = ws.execute("1/0")
            self.assertEqual(reply["content"]["status"], "error")
            self.assertEqual(reply["content"]["ename"], "ZeroDivisionError")
            self.assertTrue(any(m["msg_type"] == "error" for m in msgs))
            # interrupt a running cell through EG (its comm port: {"signum": 2})
            msg_id = ws.send("execute_request", {"code": "import time; print('go', flush=True); time.sleep(60)",
                                                 "silent": False, "store_history": True, "user_expressions": {},
                                                 "allow_stdin": False, "stop_on_error": True})
            started = time.monotonic()
            while time.monotonic() - started < 30:
                m = json.loads(ws.ws.recv())
                if m["msg_type"] == "stream" and m["parent_header"].get("msg_id") == msg_id:
                    break
            status, _, reason = EG.rest("POST", "/api/kernels/%s/interrupt" % kid)
            self.assertEqual(status, 204, reason)
            reply, _ = ws.collect(msg_id, timeout=30)
            self.assertEqual(reply["content"]["status"], "error")
            self.assertEqual(reply["content"]["ename"], "KeyboardInterrupt")
            self.assertLess(time.monotonic() - started, 30)
            reply, msgs = ws.execute("print('after', 6*7)")
            self.assertIn("after 42", "".join(m["content"].get("text", "") for m in msgs if m["msg_type"] == "stream"))
        finally:
            ws.close()
        status, _, reason = EG.rest("DELETE", "/api/kernels/" + kid)
        self.assertEqual(status, 204, reason)
        end = time.monotonic() + 30
        while self.kernel_containers(kid) and time.monotonic() < end:
            time.sleep(0.5)
        self.assertEqual(self.kernel_containers(kid), [], "a container was left behind")

    def test_eg_client_connects_before_the_kernel_answers(self):
        """With KBOX_EG_RESPOND=listening kbox sends EG the connection info once the kernel listens
        on its sockets, not once it answers (the default): EG's 201 and the client's websocket come
        while the kernel still starts (here a kernel class that takes 6 s after binding its
        sockets), the broker holds their requests, and the kernel answers them once up."""
        status, body, reason = EG.rest("POST", "/api/kernels", {"name": "kbox_slow_listening"})
        self.assertEqual(status, 201, "%s %s\n%s" % (reason, body, EG.text()[-4000:]))
        kid = body["id"]
        try:
            name = P.containers("label=kernel_id=" + kid)[0]
            # the status file says "ready" once the kernel answered kernel_info (and before
            # KBOX_EG_RESPOND=ready would send the connection info)
            self.assertEqual(status_of(name)["state"], "running", "EG had its 201 only once the kernel answered")
            ws = podlib.KernelSocket(EG.port, kid)
            try:
                reply, _ = ws.collect(ws.send("kernel_info_request", {}), timeout=120)
                self.assertEqual(reply["content"]["status"], "ok", reply["content"])
                self.assertEqual(status_of(name)["state"], "ready")
                reply, msgs = ws.execute("1+1")
                self.assertEqual(reply["content"]["status"], "ok", reply["content"])
                self.assertEqual([m["content"]["data"]["text/plain"] for m in msgs if m["msg_type"] == "execute_result"], ["2"])
            finally:
                ws.close()
        finally:
            EG.rest("DELETE", "/api/kernels/" + kid)

    def test_eg_kernel_that_cannot_start_fails_fast(self):
        # kbox refusing the pod, a missing interpreter (both before the kernel listens), and, with
        # the default KBOX_EG_RESPOND=ready, a kernel that dies after binding its sockets (its kernel
        # class raises); with =listening that last one is EG's restarter's (docs/pods.md, Start-up time)
        cases = {"kbox_broken": "python3: command not found in the sandbox",
                 "kbox_require_all": "KBOX_REQUIRE: required protection missing in this pod: cgroup (",
                 "kbox_dies": "the kernel ended (exit code 1) before it answered kernel_info"}
        for spec, reason_text in cases.items():
            mark = len(EG.text())
            t = time.monotonic()
            status, body, reason = EG.rest("POST", "/api/kernels", {"name": spec})
            took = time.monotonic() - t
            self.assertEqual(status, 500, body)
            text = EG.text()[mark:]
            self.assertIn("kbox could not start the kernel", text)
            self.assertIn(reason_text, text.split("kbox could not start the kernel", 1)[1].splitlines()[0])
            self.assertIn(reason_text, reason + json.dumps(body), "the REST answer should carry the reason")
            # EG's launch timeout is 90 s here: the failure must come from kbox's report, well before
            self.assertLess(took, 45, "%s: the failed launch took %.1f s" % (spec, took))
            log("%s failed via EG in %.2f s" % (spec, took))
        end = time.monotonic() + 30
        left = P.containers("label=app=enterprise-gateway")
        while len(left) > 0 and time.monotonic() < end:
            time.sleep(0.5)
            left = P.containers("label=app=enterprise-gateway")
        self.assertEqual(left, [], "the failed kernel's container was left behind")


if __name__ == "__main__":
    unittest.main(verbosity=2)
