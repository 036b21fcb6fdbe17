#!/usr/bin/python3
"""A stand-in for Jupyter Enterprise Gateway's side of a remote kernel launch, for kbox's tests.

  keygen PRIVATE_PEM            -> prints PUBLIC_KEY (base64 DER, 1024-bit RSA, as EG makes it)
  decode PRIVATE_PEM < PAYLOAD  -> prints the decrypted connection info (JSON)
  gateway --listen HOST:PORT --ready FILE [--timeout S] [--expect-missing LIST]
      generates a key, listens on RESPONSE_ADDRESS, writes "PUBLIC_KEY=..\nRESPONSE_ADDRESS=..\n"
      to FILE, waits for the kernel's response, decodes it like EG, then drives the kernel with
      jupyter_client at the address the response came from: execute, interrupt a busy loop through
      the comm port ({"signum": 2}), probe ({"signum": 0}), shut down. Prints one "ok ..." or
      "FAIL ..." line per step and exits 0 only when every step passed.
"""
import argparse
import base64
import json
import queue
import socket
import sys
import time

from cryptography.hazmat.primitives import padding as sympad
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


def keygen():
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, base64.b64encode(der).decode()


def decode(private_key, data):
    """EG's decryption of a version-1 launch response."""
    envelope = json.loads(base64.b64decode(data))
    if envelope.get("version") != 1:
        raise ValueError("unexpected version %r" % envelope.get("version"))
    aes_key = private_key.decrypt(base64.b64decode(envelope["key"]), padding.PKCS1v15())
    if len(aes_key) != 16:
        raise ValueError("AES key is %d bytes, not 16" % len(aes_key))
    decryptor = Cipher(algorithms.AES(aes_key), modes.ECB()).decryptor()
    padded = decryptor.update(base64.b64decode(envelope["conn_info"])) + decryptor.finalize()
    unpadder = sympad.PKCS7(128).unpadder()
    return json.loads(unpadder.update(padded) + unpadder.finalize())


def comm_send(ip, port, request):
    """EG's listener request: one JSON object per connection, then close."""
    with socket.create_connection((ip, port), timeout=10) as s:
        s.sendall(json.dumps(request).encode())
        s.shutdown(socket.SHUT_WR)


def wait_reply(kc, msg_id, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        reply = kc.get_shell_msg(timeout=max(0.1, deadline - time.time()))
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply
    raise TimeoutError("no reply to %s" % msg_id)


def outputs(kc, msg_id, timeout):
    """Collect stream text and results of one execution until it goes idle."""
    texts, error = [], None
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            msg = kc.get_iopub_msg(timeout=max(0.1, deadline - time.time()))
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        t, c = msg["msg_type"], msg["content"]
        if t == "stream":
            texts.append(c["text"])
        elif t == "execute_result":
            texts.append(c["data"].get("text/plain", ""))
        elif t == "error":
            error = c["ename"]
        elif t == "status" and c["execution_state"] == "idle":
            return "".join(texts), error
    raise TimeoutError("execution %s did not finish" % msg_id)


class Steps:
    def __init__(self):
        self.failed = False

    def check(self, name, cond, detail=""):
        print(("ok " if cond else "FAIL ") + name + (": " + detail if detail else ""), flush=True)
        self.failed |= not cond


def drive_kernel(info, pod_ip, steps, args):
    from jupyter_client import BlockingKernelClient
    kc = BlockingKernelClient()
    kc.load_connection_info({**info, "ip": pod_ip})
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=30)
        steps.check("kernel ready over tcp at " + pod_ip, True)
        mid = kc.execute("import math; print(math.sqrt(16))")
        out, err = outputs(kc, mid, 30)
        steps.check("execute", out.strip() == "4.0" and err is None, repr(out))
        mid = kc.execute("import time\nwhile True: time.sleep(0.01)")
        # wait until the kernel is really busy in that loop, then interrupt through the comm port
        time.sleep(1.0)
        comm_send(pod_ip, info["comm_port"], {"signum": 2})
        out, err = outputs(kc, mid, 30)
        steps.check("interrupt via comm port", err == "KeyboardInterrupt", "error=%r" % err)
        comm_send(pod_ip, info["comm_port"], {"signum": 0})
        mid = kc.execute("print(6 * 7)")
        out, err = outputs(kc, mid, 30)
        steps.check("signum 0 disturbed nothing", out.strip() == "42" and err is None, repr(out))
        comm_send(pod_ip, info["comm_port"], {"shutdown": 1})
        msg_id = kc.shutdown()
        steps.check("shutdown requested", msg_id is not None)
    finally:
        kc.stop_channels()


def gateway(args):
    key, public_b64 = keygen()
    host, port = args.listen.rsplit(":", 1)
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, int(port)))
    srv.listen(1)
    with open(args.ready + ".tmp", "w") as f:
        f.write("PUBLIC_KEY=%s\nRESPONSE_ADDRESS=%s:%d\n" % (public_b64, host, srv.getsockname()[1]))
    import os
    os.rename(args.ready + ".tmp", args.ready)
    srv.settimeout(args.timeout)
    conn, peer = srv.accept()
    data = b""
    conn.settimeout(10)
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    conn.close()
    steps = Steps()
    info = decode(key, data)
    need = ["shell_port", "iopub_port", "stdin_port", "control_port", "hb_port", "key", "transport",
            "signature_scheme", "kernel_id", "comm_port", "pid", "pgid"]
    steps.check("response decoded", all(k in info for k in need),
                "missing %s" % [k for k in need if k not in info])
    steps.check("kernel_id routed", info.get("kernel_id") == args.kernel_id, str(info.get("kernel_id")))
    print("info " + json.dumps(info), flush=True)
    drive_kernel(info, peer[0], steps, args)
    return 1 if steps.failed else 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("keygen")
    k.add_argument("private_pem")
    d = sub.add_parser("decode")
    d.add_argument("private_pem")
    g = sub.add_parser("gateway")
    g.add_argument("--listen", required=True)
    g.add_argument("--ready", required=True)
    g.add_argument("--kernel-id", required=True)
    g.add_argument("--timeout", type=float, default=60)
    args = ap.parse_args()
    if args.cmd == "keygen":
        key, public_b64 = keygen()
        with open(args.private_pem, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        print(public_b64)
        return 0
    if args.cmd == "decode":
        with open(args.private_pem, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
        print(json.dumps(decode(key, sys.stdin.buffer.read())))
        return 0
    return gateway(args)


if __name__ == "__main__":
    sys.exit(main())
