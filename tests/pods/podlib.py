"""Harness of the 'pods' suite: the kbox image in podman (built by tools/mkoci, loaded once per
suite run), podman's Docker-compatible API on a private unix socket, the real Enterprise Gateway
from its vendored source, and jupyter_client peers. Only loopback and podman's own bridge network
carry traffic. Exit 77 (skip) when the host cannot run it, a failure with KBOX_MUST_WORK=1."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SRC = os.environ.get("KBOX_SOURCE_ROOT", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BUILD = os.environ.get("KBOX_BUILD_ROOT", os.path.join(SRC, "build"))


def vendor_dir():
    """The vendored peers: KBOX_VENDOR_DIR, else shared/vendor beside the checkout or beside any
    directory above it (a worktree or a clone deeper down), else the workplace's /work/shared/vendor."""
    if os.environ.get("KBOX_VENDOR_DIR"):
        return os.environ["KBOX_VENDOR_DIR"]
    base = os.path.dirname(SRC)
    while True:
        if os.path.isdir(os.path.join(base, "shared", "vendor")):
            return os.path.join(base, "shared", "vendor")
        if os.path.dirname(base) == base:
            break
        base = os.path.dirname(base)
    return "/work/shared/vendor"


VENDOR = vendor_dir()
ROOTFS = os.environ.get("KBOX_TEST_ROOTFS", "/var/lib/kbox/rootfs/default")
# per run: suites of several checkouts may run at once on one podman store (and each removes its
# images at the end)
IMAGE = "localhost/kbox-pods-test-%d:latest" % os.getpid()
BROKEN = "localhost/kbox-pods-test-broken-%d:latest" % os.getpid()
# kernels that listen on their sockets and then take 6 s to answer / then die (a kernel class of
# the test's, selected in the kbox layer's IPython config)
SLOW = "localhost/kbox-pods-test-slow-%d:latest" % os.getpid()
DIES = "localhost/kbox-pods-test-dies-%d:latest" % os.getpid()
LAYER = "/usr/local/share/kbox/layer"  # kbox's layer in the image (tools/mkoci)
TEST_KERNELS = """
import time
from kbox_ipykernel import KboxKernel


class SlowKernel(KboxKernel):
    def __init__(self, **kwargs):
        time.sleep(6)
        super().__init__(**kwargs)


class DyingKernel(KboxKernel):
    def __init__(self, **kwargs):
        raise RuntimeError("kbox pods test: this kernel class cannot be built")
"""
PORTS = {"shell": 52317, "iopub": 52318, "hb": 52319, "control": 52320, "stdin": 52321}
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "kernel"))
from kboxkernel import skip_or_fail as skip  # noqa: E402  (one skip rule for every suite)

TAG = "pods%d" % os.getpid()  # prefix of every container this run creates


def log(msg):
    print("pods: " + msg, file=sys.stderr, flush=True)


class Podman:
    """podman with a private containers.conf (ulimits these machines allow, runc, cgroupfs)."""

    def __init__(self, work):
        self.work = work
        conf = os.path.join(work, "containers.conf")
        hard = subprocess.run(["sh", "-c", "ulimit -Hn"], capture_output=True, text=True).stdout.strip()
        with open(conf, "w") as f:
            f.write('[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=32768:32768"]\n' % (hard, hard))
            f.write('[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n')
        self.env = dict(os.environ, CONTAINERS_CONF=conf)
        self.service = None
        self.sock = os.path.join(work, "podman.sock")

    def run(self, *args, check=True, timeout=300):
        r = subprocess.run(["podman", *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError("podman %s failed (%d): %s" % (" ".join(args), r.returncode, r.stderr))
        return r

    def load_image(self):
        """tools/mkoci build of the default kernel image, loaded into podman (once per run)."""
        archive = os.path.join(self.work, "kbox.tar")
        t = time.monotonic()
        subprocess.run([sys.executable, os.path.join(SRC, "tools/mkoci"), "build", "--rootfs", ROOTFS, "--build", BUILD,
                        "--archive", archive, "--tag", IMAGE.split("/", 1)[1]], check=True, capture_output=True)
        self.run("load", "-q", "-i", archive, timeout=600)
        os.unlink(archive)
        # an image whose kernel cannot start: its sandbox root has no python3
        cf = os.path.join(self.work, "Containerfile")
        with open(cf, "w") as f:
            f.write("FROM %s\nENV KBOX_ROOTFS=/home/jovyan\n" % IMAGE)
        self.run("build", "--pull=never", "-q", "-t", BROKEN, "-f", cf, self.work, timeout=300)
        with open(os.path.join(self.work, "kbox_test_kernels.py"), "w") as f:
            f.write(TEST_KERNELS)
        with open(os.path.join(SRC, "rootfs/layer/etc/ipython/ipython_config.py")) as f:
            config = f.read()
        for tag, cls in ((SLOW, "SlowKernel"), (DIES, "DyingKernel")):
            with open(os.path.join(self.work, "ipython_config.py"), "w") as f:
                f.write(config + '\nc.IPKernelApp.kernel_class = "kbox_test_kernels.%s"\n' % cls)
            with open(cf, "w") as f:
                f.write("FROM %s\nCOPY kbox_test_kernels.py %s/usr/lib/python3/dist-packages/\n"
                        "COPY ipython_config.py %s/etc/ipython/ipython_config.py\n" % (IMAGE, LAYER, LAYER))
            self.run("build", "--pull=never", "-q", "-t", tag, "-f", cf, self.work, timeout=300)
        log("image built and loaded in %.1f s" % (time.monotonic() - t))

    def start_service(self):
        """podman's Docker-compatible API on a private socket (DOCKER_HOST for docker-py and EG)."""
        self.service = subprocess.Popen(["podman", "system", "service", "--time=0", "unix://" + self.sock],
                                        env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            if os.path.exists(self.sock):
                return
            time.sleep(0.1)
        raise RuntimeError("podman system service did not create " + self.sock)

    def gateway_ip(self):
        nets = json.loads(self.run("network", "inspect", "podman").stdout)
        return nets[0]["subnets"][0]["gateway"]

    def ip_of(self, name):
        return self.run("inspect", name, "--format", "{{.NetworkSettings.IPAddress}}").stdout.strip()

    def containers(self, label_filter):
        return self.run("ps", "-a", "-q", "--filter", label_filter).stdout.split()

    def cleanup(self):
        ids = self.run("ps", "-a", "-q", "--filter", "name=^" + TAG, check=False).stdout.split()
        if ids:
            self.run("rm", "-f", "-t", "0", *ids, check=False)
        if self.service is not None:
            self.service.terminate()
            self.service.wait(timeout=30)


def controller_env(key, idle=None, extra=()):
    """Exactly what jupyter-kernel-controller puts in a kernel pod (plus the key kbox reads)."""
    env = ["KERNEL_ID=" + TAG + "-kernel"] + ["KERNEL_%s_PORT=%d" % (k.upper(), v) for k, v in PORTS.items()]
    env.append("KERNEL_KEY=" + key)
    if idle is not None:
        env.append("KERNEL_IDLE_TIMEOUT=%d" % idle)
    env.extend(extra)
    return sum((["-e", e] for e in env), [])


def kernel_client(ip, key):
    import jupyter_client
    info = dict(ip=ip, key=key, transport="tcp", signature_scheme="hmac-sha256",
                **{k + "_port": v for k, v in PORTS.items()})
    kc = jupyter_client.BlockingKernelClient()
    kc.load_connection_info(info)
    kc.start_channels()
    return kc


def wait_kernel_info(kc, timeout):
    """kernel_info until a reply (the ports are bound before ipykernel is up); False on timeout."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        msg_id = kc.kernel_info()
        try:
            while True:
                r = kc.get_shell_msg(timeout=1)
                if r["parent_header"].get("msg_id") == msg_id:
                    return True
        except Exception:
            pass
    return False


def execute(kc, code, timeout=60):
    """Run code; returns (reply content, iopub messages of the request)."""
    out = []
    reply = kc.execute_interactive(code, timeout=timeout, output_hook=out.append)
    return reply["content"], out


def stream_text(msgs):
    return "".join(m["content"].get("text", "") for m in msgs if m["msg_type"] == "stream")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gateway:
    """The real Enterprise Gateway (vendored source, unmodified) with DockerProcessProxy."""

    def __init__(self, work, podman):
        self.work, self.podman = work, podman
        self.dir = os.path.join(work, "eg")
        self.port = free_port()
        self.proc = None
        self.logpath = os.path.join(work, "eg.log")

    def unpack(self):
        src = os.path.join(self.dir, "src")
        os.makedirs(src)
        eg = [f for f in os.listdir(VENDOR) if f.startswith("enterprise_gateway-") and f.endswith(".tar.gz")]
        jc = os.path.join(VENDOR, "jupyter_client-6.1.12.tar.gz")
        if not eg or not os.path.exists(jc):
            skip("vendored Enterprise Gateway / jupyter_client 6.1.12 not found in " + VENDOR)
        subprocess.run(["tar", "-xzf", os.path.join(VENDOR, eg[0]), "-C", src], check=True)
        os.makedirs(os.path.join(self.dir, "jc"))
        subprocess.run(["tar", "-xzf", jc, "-C", os.path.join(self.dir, "jc")], check=True)
        return src

    def kernelspec(self, share, name, image, env=None):
        spec_dir = os.path.join(share, "kernels", name)
        os.makedirs(os.path.join(spec_dir, "scripts"))
        launcher = os.path.join(self.src, "etc/kernel-launchers/docker/scripts/launch_docker.py")
        shutil.copy(launcher, os.path.join(spec_dir, "scripts"))
        spec = {
            "display_name": "Python (kbox sandbox, %s)" % name,
            "language": "python",
            "metadata": {"process_proxy": {
                "class_name": "enterprise_gateway.services.processproxies.docker_swarm.DockerProcessProxy",
                "config": {"image_name": image}}},
            "env": env or {},
            "argv": ["/usr/bin/python3", os.path.join(spec_dir, "scripts", "launch_docker.py"),
                     "--RemoteProcessProxy.kernel-id", "{kernel_id}",
                     "--RemoteProcessProxy.port-range", "{port_range}",
                     "--RemoteProcessProxy.response-address", "{response_address}",
                     "--RemoteProcessProxy.public-key", "{public_key}"],
        }
        with open(os.path.join(spec_dir, "kernel.json"), "w") as f:
            json.dump(spec, f, indent=2)

    def start(self, launch_timeout, extra_specs=None, extra_env=None):
        """extra_specs: {name: (image, env)} kernelspecs beside the suite's own; extra_env: EG's."""
        self.src = self.unpack()
        share = os.path.join(self.dir, "share")
        specs = {"kbox": (IMAGE, None), "kbox_broken": (BROKEN, None),
                 "kbox_require_all": (IMAGE, {"KBOX_REQUIRE": "all"}),
                 # the connection info sent once the kernel listens (the default is once it answered)
                 "kbox_respond_listening": (IMAGE, {"KBOX_EG_RESPOND": "listening"}),
                 "kbox_slow_listening": (SLOW, {"KBOX_EG_RESPOND": "listening"}), "kbox_slow": (SLOW, None),
                 "kbox_dies": (DIES, None), "kbox_dies_listening": (DIES, {"KBOX_EG_RESPOND": "listening"})}
        specs.update(extra_specs or {})
        for name, (image, env) in specs.items():
            self.kernelspec(share, name, image, env=env)
        home = os.path.join(self.dir, "home")
        os.makedirs(home)
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": home,
            "PYTHONPATH": os.path.join(self.dir, "jc") + ":" + self.src,
            "JUPYTER_PATH": share,
            "JUPYTER_DATA_DIR": os.path.join(home, "data"),
            "JUPYTER_RUNTIME_DIR": os.path.join(home, "runtime"),
            "DOCKER_HOST": "unix://" + self.podman.sock,
            "EG_DOCKER_NETWORK": "podman",
            "EG_RESPONSE_IP": self.podman.gateway_ip(),  # podman's bridge: reachable from the containers only
            "EG_KERNEL_LAUNCH_TIMEOUT": str(launch_timeout),
            "KERNEL_USERNAME": TAG,  # container names: TAG-<kernel id>
        }
        env.update(extra_env or {})
        self.log = open(self.logpath, "w")
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", "-m", "enterprise_gateway", "--ip=127.0.0.1", "--port=%d" % self.port,
             "--port_retries=0", "--log-level=DEBUG",
             "--EnterpriseGatewayApp.allowed_kernels=%r" % sorted(specs)],
            cwd=self.dir, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        end = time.monotonic() + 60
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("Enterprise Gateway exited %d:\n%s" % (self.proc.returncode, self.text()))
            try:
                self.rest("GET", "/api/kernelspecs")
                return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("Enterprise Gateway did not answer:\n" + self.text())

    def text(self):
        self.log.flush()
        with open(self.logpath, errors="replace") as f:
            return f.read()

    def rest(self, method, path, body=None, timeout=120):
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        c.request(method, path, body=json.dumps(body) if body is not None else None,
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, (json.loads(data) if data.strip() else None), r.reason

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class KernelSocket:
    """The Jupyter websocket protocol of EG's /api/kernels/ID/channels (JSON messages)."""

    def __init__(self, port, kernel_id):
        import websocket
        self.ws = websocket.create_connection("ws://127.0.0.1:%d/api/kernels/%s/channels" % (port, kernel_id), timeout=60)
        self.session = os.urandom(8).hex()

    def send(self, msg_type, content, channel="shell"):
        msg_id = os.urandom(8).hex()
        self.ws.send(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": msg_type, "username": "test", "session": self.session,
                       "date": "", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "content": content, "channel": channel, "buffers": []}))
        return msg_id

    def collect(self, msg_id, timeout=60):
        """Messages answering msg_id until its execute reply and the kernel's idle status."""
        got, reply, idle = [], None, False
        end = time.monotonic() + timeout
        while (reply is None or not idle) and time.monotonic() < end:
            self.ws.settimeout(max(0.1, end - time.monotonic()))
            m = json.loads(self.ws.recv())
            if m.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            got.append(m)
            if m["msg_type"].endswith("_reply"):
                reply = m
            if m["msg_type"] == "status" and m["content"].get("execution_state") == "idle":
                idle = True
        if reply is None:
            raise TimeoutError("no reply to %s; got %s" % (msg_id, [g["msg_type"] for g in got]))
        return reply, got

    def execute(self, code, timeout=60):
        return self.collect(self.send("execute_request", {"code": code, "silent": False, "store_history": True,
                                                         "user_expressions": {}, "allow_stdin": False,
                                                         "stop_on_error": True}), timeout)

    def close(self):
        self.ws.close()


def make_work():
    work = tempfile.mkdtemp(prefix="kbox-pods-")
    os.chmod(work, 0o755)
    return work
