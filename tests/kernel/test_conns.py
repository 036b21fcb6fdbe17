"""~1000 idle unauthenticated TCP connections on the kernel's ports do not lock a client out: kbox
raises its own soft open-file limit to the hard one (the sandbox keeps --nofile), and libzmq
closes connections that never complete the ZMTP handshake (ZMQ_HANDSHAKE_IVL)."""
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


def nofile(pid):
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return soft, hard
    return None


class Conns(unittest.TestCase):
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
            reply, out = k.run("6 * 7", timeout=30)
            self.assertEqual(reply["status"], "ok")
            self.assertEqual(kboxkernel.text_of(out), "42")
            # a new client too, while the idle ones are still open
            from jupyter_client import BlockingKernelClient
            kc2 = BlockingKernelClient()
            kc2.load_connection_info(k.info)
            kc2.start_channels()
            try:
                kc2.wait_for_ready(timeout=30)
                r2 = kc2.execute_interactive("1 + 1", timeout=30, output_hook=lambda m: None)
                self.assertEqual(r2["content"]["status"], "ok")
            finally:
                kc2.stop_channels()
            print("with %d idle connections: two clients served in %.2f s" % (IDLE, time.monotonic() - t0))
            k.kc.shutdown()
            self.assertEqual(k.wait(), 0, k.stderr)
        finally:
            for c in idle:
                c.close()
            k.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
