"""~1000 idle unauthenticated TCP connections on the kernel's ports do not lock a client out: kbox
raises its own soft open-file limit to the hard one (the sandbox keeps --nofile), and libzmq
closes connections that never complete the ZMTP handshake (ZMQ_HANDSHAKE_IVL). Past the cap of
connections per port (256, kernel/peers.c) kbox closes the oldest connection that never spoke, so
1,200 silent peers on a port (ZMTP handshake done, nothing sent: the handshake deadline does not
apply) leave kbox's open files bounded and clients still work."""
import os
import resource
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kboxkernel  # noqa: E402
from kboxkernel import Direct  # noqa: E402

kboxkernel.check_host()

IDLE = 1000
PER_PORT = 1200  # silent peers on each of shell and iopub: above the cap of 256 per port
CAP = 256


def tcp_state(ports):
    """(client-side ESTABLISHED connections to any of ports, connections waiting in their listeners'
    accept queues), from /proc/net/tcp (IPv4 loopback)."""
    est = queued = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, remote, state = int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16), fields[3]
            if state == "01" and remote in ports:
                est += 1
            elif state == "0A" and local in ports:
                queued += int(fields[4].split(":")[1], 16)
    return est, queued


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def nofile(pid):
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return soft, hard
    return None


class Conns(unittest.TestCase):
    def assert_clients_served(self, k, timeout):
        """The launching client executes, and so does a new client that connects now."""
        reply, out = k.run("6 * 7", timeout=timeout)
        self.assertEqual(reply["status"], "ok")
        self.assertEqual(kboxkernel.text_of(out), "42")
        from jupyter_client import BlockingKernelClient
        kc2 = BlockingKernelClient()
        kc2.load_connection_info(k.info)
        kc2.start_channels()
        try:
            kc2.wait_for_ready(timeout=timeout)
            r2 = kc2.execute_interactive("1 + 1", timeout=timeout, output_hook=lambda m: None)
            self.assertEqual(r2["content"]["status"], "ok")
        finally:
            kc2.stop_channels()

    def test_idle_connections_do_not_lock_clients_out(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard != resource.RLIM_INFINITY and hard < IDLE + 1024:
            kboxkernel.skip_or_fail("the hard open-file limit (%d) is too low for %d connections" % (hard, IDLE))
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        k = Direct()
        idle = []
        try:
            s_soft, s_hard = nofile(k.proc.pid)
            self.assertEqual(s_soft, s_hard, "kbox kept a soft open-file limit below its hard one")
            ports = [k.info[p] for p in ("shell_port", "control_port", "stdin_port", "hb_port", "iopub_port")]
            for i in range(IDLE):
                c = socket.create_connection((k.info["ip"], ports[i % len(ports)]), timeout=10)
                idle.append(c)
            time.sleep(1)
            t0 = time.monotonic()
            # the existing client, and a new one too, while the idle ones are still open
            self.assert_clients_served(k, 30)
            print("with %d idle connections: two clients served in %.2f s" % (IDLE, time.monotonic() - t0))
            k.kc.shutdown()
            self.assertEqual(k.wait(), 0, k.stderr)
        finally:
            for c in idle:
                c.close()
            k.close()

    def test_connections_per_port_are_capped(self):
        """Peers that complete the ZMTP handshake and then say nothing (the handshake deadline does
        not close those): 1,200 on shell, 1,200 on iopub."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard != resource.RLIM_INFINITY and hard < 4 * PER_PORT + 1024:
            kboxkernel.skip_or_fail("the hard open-file limit (%d) is too low for %d connections" % (hard, 2 * PER_PORT))
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        import zmq
        report = os.path.join(os.environ.get("TMPDIR", "/tmp"), "kbox-conns-%d.json" % os.getpid())
        k = Direct(report=report)
        ctx = zmq.Context()
        ctx.MAX_SOCKETS = 2 * PER_PORT + 100
        try:
            base = fd_count(k.proc.pid)
            silent = []  # (a socket no longer referenced would be closed)
            for port, kind in (("shell_port", zmq.DEALER), ("iopub_port", zmq.SUB)):
                for i in range(PER_PORT):
                    s = ctx.socket(kind)
                    s.linger = 0
                    s.reconnect_ivl = -1  # once kbox closed it, it stays closed
                    s.connect("tcp://%s:%d" % (k.info["ip"], k.info[port]))
                    silent.append(s)
            # every connection made and accepted by kbox (none left in the ports' accept queues),
            # then a moment for kbox to close those past the cap
            ports = (k.info["shell_port"], k.info["iopub_port"])
            deadline = time.monotonic() + 120
            seen, steady = None, 0
            while time.monotonic() < deadline and steady < 5:
                now = tcp_state(ports) + (fd_count(k.proc.pid),)
                steady = steady + 1 if now == seen and now[1] == 0 else 0
                seen = now
                time.sleep(0.5)
            held = fd_count(k.proc.pid)
            print("kbox holds %d fds with %d silent peers on shell and iopub (%d before; %d of them still connected)"
                  % (held, 2 * PER_PORT, base, seen[0]))
            self.assertLess(held, base + 2 * CAP + 50, "kbox holds a descriptor for every silent peer")
            # the existing client, and a new one connecting while the cap is reached
            self.assert_clients_served(k, 60)
            k.kc.shutdown()
            self.assertEqual(k.wait(), 0, k.stderr)
            self.assertIn("connections open (the cap", k.stderr)
            import json
            with open(report) as f:
                cut = json.load(f)["kernel"]["connections_cut"]
            print("connections cut: %d" % cut)
            self.assertGreaterEqual(cut, 2 * (PER_PORT - CAP))
        finally:
            ctx.destroy(linger=0)
            k.close()
            if os.path.exists(report):
                os.unlink(report)


if __name__ == "__main__":
    unittest.main(verbosity=2)
