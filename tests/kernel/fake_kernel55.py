"""A minimal protocol-5.5 kernel for the kernel suite (run inside the sandbox as --kernel-cmd): its
iopub is an XPUB that greets every subscription with iopub_welcome, as ipykernel 7 does; it
answers kernel_info_request and shutdown_request and echoes heartbeats. Nothing else."""
import json
import sys

import zmq
from jupyter_client.session import Session

cfg = json.load(open(sys.argv[1]))
session = Session(key=cfg["key"].encode(), signature_scheme=cfg["signature_scheme"])
ctx = zmq.Context()


def bind(kind, name):
    s = ctx.socket(kind)
    s.bind("ipc://%s-%d" % (cfg["ip"], cfg[name + "_port"]))
    return s


shell, control, stdin, hb = (bind(zmq.ROUTER, n) for n in ("shell", "control", "stdin", "hb"))
iopub = bind(zmq.XPUB, "iopub")
iopub.setsockopt(zmq.XPUB_VERBOSE, 1)

INFO = {"status": "ok", "protocol_version": "5.5", "implementation": "fake55", "implementation_version": "1",
        "language_info": {"name": "python", "version": "3", "mimetype": "text/x-python", "file_extension": ".py"},
        "banner": "fake 5.5 kernel", "help_links": [], "supported_features": ["iopub_welcome"]}

poller = zmq.Poller()
for s in (shell, control, hb, iopub):
    poller.register(s, zmq.POLLIN)
while True:
    for s, _ in poller.poll():
        if s is hb:
            hb.send_multipart(hb.recv_multipart())
        elif s is iopub:
            frame = iopub.recv()
            if frame[:1] == b"\x01":
                session.send(iopub, "iopub_welcome", {"subscription": frame[1:].decode()})
        else:
            idents, parts = session.feed_identities(s.recv_multipart())
            msg = session.deserialize(parts)
            kind = msg["header"]["msg_type"]
            session.send(iopub, "status", {"execution_state": "busy"}, parent=msg)
            if kind == "kernel_info_request":
                session.send(s, "kernel_info_reply", INFO, parent=msg, ident=idents)
            elif kind == "shutdown_request":
                session.send(s, "shutdown_reply", {"status": "ok", "restart": False}, parent=msg, ident=idents)
            session.send(iopub, "status", {"execution_state": "idle"}, parent=msg)
            if kind == "shutdown_request":
                sys.exit(0)
