"""A raw ZMQ client attacks the broker: garbage frames, wrong signatures, truncated, oversized
and floods of messages. The broker logs why it drops them, survives, and a normal execute right
after still works."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kboxkernel  # noqa: E402
from kboxkernel import Direct, text_of  # noqa: E402

kboxkernel.check_host()
import zmq  # noqa: E402


class Defense(unittest.TestCase):
    def test_bad_messages_are_dropped_and_broker_survives(self):
        k = Direct("--max-message", "1M")
        ctx = zmq.Context()
        try:
            info = k.info
            url = "tcp://%s:%d" % (info["ip"], info["shell_port"])
            s = ctx.socket(zmq.DEALER)
            s.linger = 0
            s.connect(url)
            sess = k.kc.session
            good = sess.msg("execute_request", {"code": "1", "silent": False, "store_history": False,
                                                "user_expressions": {}, "allow_stdin": False})
            parts = [sess.pack(good["header"]), sess.pack({}), sess.pack({}), sess.pack(good["content"])]
            s.send_multipart([b"garbage"])                                           # not a Jupyter message
            s.send_multipart([b"<IDS|MSG>", b"0" * 64] + parts)                      # wrong signature
            s.send_multipart([b"<IDS|MSG>", b""] + parts)                            # missing signature
            s.send_multipart([b"<IDS|MSG>", sess.sign(parts)] + parts[:2])           # truncated
            s.send_multipart([b"<IDS|MSG>", sess.sign(parts)] + parts + [b"x" * 600000] * 3)  # over 1M in total
            for i in range(5000):                                                    # flood
                s.send_multipart([b"<IDS|MSG>", b"bad", b"{}", b"{}", b"{}", b"{}"], copy=False)
            # a single frame over the limit: libzmq drops that connection, the broker goes on
            big = ctx.socket(zmq.DEALER)
            big.linger = 0
            big.connect(url)
            big.send(b"y" * (2 << 20))
            # hb and control get garbage too
            for port in ("control_port", "stdin_port", "hb_port"):
                g = ctx.socket(zmq.DEALER)
                g.linger = 0
                g.connect("tcp://%s:%d" % (info["ip"], info[port]))
                g.send_multipart([b"\xff" * 10, b"<IDS|MSG>"])
            reply, out = k.run("import math; math.sqrt(16)")
            self.assertEqual(reply["status"], "ok")
            self.assertEqual(text_of(out), "4.0")
            k.kc.shutdown()
            self.assertEqual(k.wait(), 0, k.stderr)
        finally:
            k.close()
            ctx.destroy(linger=0)
        for reason in ("not a Jupyter message", "bad signature", "missing signature", "truncated", "--max-message"):
            self.assertIn(reason, k.stderr)
        # the flood is counted, but not logged line by line
        self.assertLess(k.stderr.count("dropped a shell message"), 200)


if __name__ == "__main__":
    unittest.main(verbosity=2)
