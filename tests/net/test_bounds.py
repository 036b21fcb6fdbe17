"""--net allow is bounded: a kernel streaming past --net-max-bytes is cut off and told why; a kernel
opening 10,000 connections gets 503s past the connection limit, and the broker and the proxy stay
responsive throughout. All servers are on 127.0.0.1."""
import json
import os
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netlib  # noqa: E402
from netlib import kboxkernel, stderr_of  # noqa: E402
from kboxkernel import Direct, text_of  # noqa: E402

kboxkernel.check_host()
SRV = netlib.Servers()
netlib.set_test_resolver()


def stdout_of(out):
    return text_of([m for m in out if not (m["msg_type"] == "stream" and m["content"]["name"] == "stderr")])


class MaxBytes(unittest.TestCase):
    def test_stream_cut_off(self):
        report = tempfile.mktemp(prefix="kbox-net-bounds-", suffix=".json")
        k = Direct(*SRV.kbox_args(["web.test:%d" % SRV.hport]), "--net-max-bytes", "1M", report=report)
        try:
            reply, out = k.run(
                "import urllib.request\n"
                "n = 0\n"
                "try:\n"
                "    r = urllib.request.urlopen('http://web.test:%d/stream', timeout=30)\n"
                "    while True:\n"
                "        b = r.read(65536)\n"
                "        if not b: break\n"
                "        n += len(b)\n"
                "except Exception as e:\n"
                "    print(type(e).__name__)\n"
                "print('got', n)\n" % SRV.hport, timeout=120)
            self.assertEqual(reply["status"], "ok", reply)
            got = int(stdout_of(out).split("got ")[1])
            self.assertLess(got, 4 << 20, "the 32 MiB stream was not cut off near --net-max-bytes 1M")
            self.assertIn("kbox: network cut off \u2014 the kernel moved more than --net-max-bytes (1048576 bytes)",
                          stderr_of(out))
            reply, out = k.run(netlib.raw_connect_code("web.test:%d" % SRV.hport))
            self.assertIn("403 Forbidden", stdout_of(out))
            self.assertIn("the kernel used up --net-max-bytes", stdout_of(out))
            reply, out = k.run("print(6 * 7)")
            self.assertEqual(stdout_of(out), "42\n", "the kernel itself goes on")
            k.kc.shutdown()
            self.assertEqual(k.wait(), 0, k.stderr)
        finally:
            k.close()
        with open(report) as f:
            net = json.load(f)["net"]
        self.assertTrue(net["max_bytes_reached"])
        self.assertEqual(net["max_bytes"], 1 << 20)
        self.assertLess(net["bytes"], 4 << 20)


STORM = """
import socket, collections, threading
counts = collections.Counter()
held = collections.deque()
def storm():
    for i in range(10000):
        s = socket.socket()
        s.settimeout(10)
        try:
            s.connect(('127.0.0.1', 3128))
            s.sendall(b'CONNECT web.test:%d HTTP/1.1\\r\\n\\r\\n')
            line = s.recv(64).split(b'\\r\\n')[0]
            counts[line.split(b' ')[1].decode() if line.count(b' ') else 'eof'] += 1
        except OSError as e:
            counts[type(e).__name__] += 1
        held.append(s)
        if len(held) > 300:
            held.popleft().close()
    while held:
        held.popleft().close()
t = threading.Thread(target=storm)
t.start()
"""


class Connections(unittest.TestCase):
    def test_10000_connections(self):
        report = tempfile.mktemp(prefix="kbox-net-storm-", suffix=".json")
        k = Direct(*SRV.kbox_args(["web.test:%d" % SRV.sport]), report=report)
        try:
            reply, out = k.run(STORM % SRV.sport)
            self.assertEqual(reply["status"], "ok", reply)
            # while the storm runs in a kernel thread, the broker answers and cells run
            answered = 0
            deadline = time.time() + 300
            while time.time() < deadline:
                reply, out = k.run("print(t.is_alive(), sum(counts.values()))", timeout=60)
                alive, n = stdout_of(out).split()
                answered += 1
                if alive == "False":
                    break
                time.sleep(0.5)
            self.assertEqual(alive, "False", "the storm did not end within 5 minutes")
            self.assertGreater(answered, 0)
            reply, out = k.run("print(dict(counts))")
            counts = eval(stdout_of(out))  # a dict literal printed by the kernel
            self.assertEqual(sum(counts.values()), 10000, counts)
            self.assertGreater(counts.get("200", 0), 0, counts)
            self.assertGreater(counts.get("503", 0), 0, "the connection limit never applied: %r" % counts)
            self.assertEqual(set(counts) - {"200", "503"}, set(), "connections that hung or failed: %r" % counts)
            # the proxy still serves a normal request once the storm is over
            reply, out = k.run("import urllib.request\n"
                               "print(urllib.request.urlopen('https://web.test:%d/hello', timeout=30).read())" % SRV.sport)
            self.assertEqual(stdout_of(out), "b'hello from 127.0.0.1'\n", out)
            k.kc.shutdown()
            self.assertEqual(k.wait(), 0)
            self.assertIn("refused a connection \u2014 64 are open through the proxy already", k.stderr)
        finally:
            k.close()
        with open(report) as f:
            net = json.load(f)["net"]
        self.assertEqual(net["connections_refused_busy"], counts["503"])
        self.assertEqual(net["hosts"]["web.test"]["allowed"], counts["200"] + 1)

    def test_silent_connections_time_out(self):
        # 64 connections that never send a request head take every slot: further ones are answered
        # 503 at once (no hang), and 10 s later the silent ones are dropped and fetching works again.
        k = Direct(*SRV.kbox_args(["web.test:%d" % SRV.hport]))
        try:
            reply, out = k.run(
                "import socket, time, urllib.request, urllib.error\n"
                "silent = [socket.create_connection(('127.0.0.1', 3128)) for _ in range(64)]\n"
                "time.sleep(0.5)\n"
                "t = time.time()\n"
                "try:\n    urllib.request.urlopen('http://web.test:%d/hello', timeout=30); print('served')\n"
                "except urllib.error.HTTPError as e:\n    print(e.code, time.time() - t < 5)\n"
                "for s in silent: s.settimeout(30)\n"
                "print(sum(1 for s in silent if s.recv(10) == b''))\n"
                "print(urllib.request.urlopen('http://web.test:%d/hello', timeout=30).read())\n" % (SRV.hport, SRV.hport),
                timeout=120)
            self.assertEqual(reply["status"], "ok", reply)
            self.assertEqual(stdout_of(out), "503 True\n64\nb'hello from 127.0.0.1'\n")
        finally:
            k.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
