"""A lean Jupyter client for benchmarks (not a test helper): raw pyzmq sockets and HMAC-SHA256, no
jupyter_client. jupyter_client's blocking client wakes on poll intervals and runs its channels in
threads, which can add more to a round trip than the broker under test; this one sleeps in
zmq_poll on the two sockets it needs and is woken by the first byte of the reply.

Used by tools/bench-kernel.py: round trips and iopub throughput measured the same way on a plain
ipykernel, on the sandboxed kernel's own ipc sockets (direct), and through kbox's broker."""
import hashlib
import hmac
import json
import time
import uuid

import zmq

DELIM = b"<IDS|MSG>"


class Lean:
    def __init__(self, info):
        self.key = info.get("key", "").encode()
        self.ctx = zmq.Context()
        tcp = info.get("transport", "tcp") == "tcp"

        def ep(port):
            return ("tcp://%s:%d" if tcp else "ipc://%s-%d") % (info["ip"], port)
        self.shell = self.ctx.socket(zmq.DEALER)
        self.shell.connect(ep(info["shell_port"]))
        self.iopub = self.ctx.socket(zmq.SUB)
        self.iopub.setsockopt(zmq.SUBSCRIBE, b"")
        self.iopub.connect(ep(info["iopub_port"]))
        self.session = uuid.uuid4().hex
        self.poller = zmq.Poller()
        self.poller.register(self.shell, zmq.POLLIN)
        self.poller.register(self.iopub, zmq.POLLIN)

    def close(self):
        self.shell.close(0)
        self.iopub.close(0)
        self.ctx.term()

    def _sign(self, parts):
        if not self.key:
            return b""
        h = hmac.new(self.key, digestmod=hashlib.sha256)
        for p in parts:
            h.update(p)
        return h.hexdigest().encode()

    def send(self, msg_type, content):
        mid = uuid.uuid4().hex
        header = {"msg_id": mid, "msg_type": msg_type, "username": "bench", "session": self.session,
                  "date": "2026-01-01T00:00:00.000000Z", "version": "5.3"}
        parts = [json.dumps(header).encode(), b"{}", b"{}", json.dumps(content).encode()]
        self.shell.send_multipart([DELIM, self._sign(parts)] + parts)
        return mid

    def _recv(self, sock):
        """One message (header, parent, content bytes) or None when none waits; a bad signature raises."""
        try:
            frames = sock.recv_multipart(flags=zmq.NOBLOCK)
        except zmq.Again:
            return None
        d = frames.index(DELIM)
        parts = frames[d + 2:d + 6]
        if not hmac.compare_digest(self._sign(parts), frames[d + 1]):
            raise RuntimeError("a message with a bad signature")
        return json.loads(parts[0]), json.loads(parts[1]), parts[3]

    def execute(self, code, on_output=None, timeout=60.0):
        """Run code; return once both the execute_reply and the idle status arrived. on_output gets
        (msg_type, content bytes) of the request's other iopub messages."""
        mid = self.send("execute_request", {"code": code, "silent": False, "store_history": False,
                                            "user_expressions": {}, "allow_stdin": False, "stop_on_error": True})
        if self._wait({mid}, on_output, time.monotonic() + timeout) is None:
            raise TimeoutError("no answer to %s within %.1f s" % (mid, timeout))

    def _wait(self, mids, on_output, deadline):
        """Wait until one of the requests mids got both its reply and its idle status: that msg_id,
        or None at the deadline."""
        replied, idle = set(), set()
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.poller.poll(int(left * 1000) + 1):
                return None
            while True:
                m = self._recv(self.shell)
                if m is None:
                    break
                replied.add(m[1].get("msg_id"))
            while True:
                m = self._recv(self.iopub)
                if m is None:
                    break
                pid = m[1].get("msg_id")
                if pid not in mids:
                    continue
                if m[0]["msg_type"] == "status":
                    if json.loads(m[2]).get("execution_state") == "idle":
                        idle.add(pid)
                elif on_output is not None:
                    on_output(m[0]["msg_type"], m[2])
            done = mids & replied & idle
            if done:
                return done.pop()

    def wait_ready(self, timeout=60.0):
        """kernel_info_request every 0.5 s until one got its reply and its idle status (the iopub
        subscription is live)."""
        end = time.monotonic() + timeout
        mids = set()
        while time.monotonic() < end:
            mids.add(self.send("kernel_info_request", {}))
            if self._wait(mids, None, min(end, time.monotonic() + 0.5)) is not None:
                return
        raise TimeoutError("no kernel_info_reply within %.0f s" % timeout)

    def round_trips(self, n):
        """n executes of `1`: the latencies in microseconds."""
        lat = []
        for _ in range(n):
            t = time.perf_counter()
            self.execute("1")
            lat.append((time.perf_counter() - t) * 1e6)
        return lat

    def big_print(self, nbytes):
        """MB/s of one cell that writes nbytes to stdout (ipykernel sends large stream messages)."""
        got = [0]

        def out(t, c):
            if t == "stream":
                got[0] += len(json.loads(c)["text"])
        t = time.perf_counter()
        self.execute("import sys\nline = 'x' * 1023 + '\\n'\nfor _ in range(%d): sys.stdout.write(line)" % (nbytes // 1024),
                     out, timeout=300)
        return got[0] / (time.perf_counter() - t) / 1e6

    def small_prints(self, count):
        """Messages per second of one cell that prints count flushed lines (one stream message each)."""
        got = [0]

        def out(t, c):
            if t == "stream":
                got[0] += 1
        t = time.perf_counter()
        self.execute("for i in range(%d): print(i, flush=True)" % count, out, timeout=300)
        return got[0] / (time.perf_counter() - t)


def thread_cpu_ns(pid):
    """CPU time (ns, /proc schedstat) of each thread of pid, by thread name: the process's own
    threads only (the sandbox's processes are other pids)."""
    import os
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                ns = int(f.read().split()[0])
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                name = f.read().strip()
        except OSError:
            continue
        key = "io" if name.startswith("ZMQbg/IO") else "main" if int(tid) == pid else "other"
        out[key] = out.get(key, 0) + ns
    return out


def proxy_main(inner):
    """The floor of any libzmq broker: plain zmq_proxy pass-throughs (shell ROUTER->DEALER, iopub
    XPUB->XSUB) in front of a kernel's sockets, no checks, no re-signing (clients use the kernel's
    own key). inner: the kernel's connection info. Prints its own as one JSON line, then runs
    until its stdin closes."""
    import sys
    import threading
    tcp = inner.get("transport", "tcp") == "tcp"

    def ep(port):
        return ("tcp://%s:%d" if tcp else "ipc://%s-%d") % (inner["ip"], port)
    ctx = zmq.Context()
    pairs = [(zmq.ROUTER, zmq.DEALER, "shell_port"), (zmq.XPUB, zmq.XSUB, "iopub_port")]
    out = dict(inner, transport="tcp", ip="127.0.0.1")
    socks = []
    for ftype, btype, name in pairs:
        front, back = ctx.socket(ftype), ctx.socket(btype)
        out[name] = front.bind_to_random_port("tcp://127.0.0.1")
        back.connect(ep(inner[name]))
        socks.append((front, back))
    print(json.dumps(out), flush=True)
    threads = [threading.Thread(target=zmq.proxy, args=fb, daemon=True) for fb in socks]
    for t in threads:
        t.start()
    sys.stdin.read()  # until the benchmark closes our stdin


if __name__ == "__main__":
    import sys
    proxy_main(json.loads(sys.argv[1]))
