"""iopub_welcome (protocol 5.5, ipykernel 7's XPUB iopub): behind the broker the kernel only sees
the broker's subscription, so the broker greets each client itself, signed with the client key,
when the kernel speaks 5.5 (a minimal 5.5 kernel stands in for ipykernel 7); with an older kernel
(the system ipykernel) clients get no message type they do not know."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kboxkernel  # noqa: E402
from kboxkernel import Direct  # noqa: E402

kboxkernel.check_host()
import zmq  # noqa: E402
from jupyter_client.session import Session  # noqa: E402

FAKE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_kernel55.py")


def subscriber(ctx, info):
    s = ctx.socket(zmq.SUB)
    s.linger = 0
    s.setsockopt(zmq.SUBSCRIBE, b"")
    s.connect("tcp://%s:%d" % (info["ip"], info["iopub_port"]))
    return s


def first_message(sock, session, poke=None):
    """The first Jupyter message sock receives (poke() makes the kernel publish, until one comes)."""
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    for _ in range(300):
        if poller.poll(100):
            idents, parts = session.feed_identities(sock.recv_multipart())
            return session.deserialize(parts)  # checks the signature with the client key
        if poke is not None:
            poke()
    raise AssertionError("nothing arrived on iopub")


class Welcome(unittest.TestCase):
    def test_each_new_subscriber_is_greeted_by_a_5_5_kernel(self):
        k = Direct("--kernel-cmd", "%s %s {connection_file}" % (kboxkernel.PYTHON, FAKE), "--bind",
                   "%s:%s:ro" % (FAKE, FAKE))
        ctx = zmq.Context()
        try:
            session = Session(key=k.info["key"].encode(), signature_scheme=k.info["signature_scheme"])
            for _ in range(2):  # a second client gets its own welcome too
                s = subscriber(ctx, k.info)
                msg = first_message(s, session)
                self.assertEqual(msg["header"]["msg_type"], "iopub_welcome")
                self.assertEqual(msg["content"], {"subscription": ""})
            k.kc.shutdown()
            self.assertEqual(k.wait(), 0, k.stderr)
        finally:
            k.close()
            ctx.destroy(linger=0)

    def test_no_welcome_from_an_older_kernel(self):
        k = Direct()
        ctx = zmq.Context()
        try:
            session = Session(key=k.info["key"].encode(), signature_scheme=k.info["signature_scheme"])
            s = subscriber(ctx, k.info)
            msg = first_message(s, session, poke=lambda: k.kc.execute("1"))
            self.assertNotEqual(msg["header"]["msg_type"], "iopub_welcome")
            k.kc.shutdown()
            self.assertEqual(k.wait(), 0, k.stderr)
        finally:
            k.close()
            ctx.destroy(linger=0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
