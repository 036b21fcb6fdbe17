"""Shared helpers of the net suite: a test CA and HTTP/HTTPS servers on 127.0.0.1 (the only
servers these tests talk to), the test-only resolver map, kernels with --net allow."""
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "kernel"))
import kboxkernel  # noqa: E402

CSV = b"x,y\n1,2\n3,4\n"
STREAM_BYTES = 32 << 20
INNER_CA_DIR = "/opt/kbox-net-test"  # where the CA is bound inside the sandbox


def make_ca(d):
    """A CA and a server certificate for web.test and *.web.test, made with openssl."""
    def run(*args):
        subprocess.run(["openssl"] + list(args), check=True, capture_output=True)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", d + "/ca.key", "-out", d + "/ca.pem", "-days", "2",
        "-subj", "/CN=kbox net test CA", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", d + "/srv.key", "-out", d + "/srv.csr", "-subj", "/CN=web.test")
    with open(d + "/ext.cnf", "w") as f:
        f.write("subjectAltName=DNS:web.test,DNS:files.web.test\nbasicConstraints=CA:FALSE\n"
                "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", d + "/srv.csr", "-CA", d + "/ca.pem", "-CAkey", d + "/ca.key", "-CAcreateserial",
        "-out", d + "/srv.pem", "-days", "2", "-extfile", d + "/ext.cnf")
    os.chmod(d, 0o755)
    os.chmod(d + "/ca.pem", 0o644)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):
        if self.path.startswith("/data.csv"):
            body = CSV
        elif self.path.startswith("/hello"):
            body = b"hello from 127.0.0.1"
        elif self.path.startswith("/stream"):
            self.send_response(200)
            self.send_header("Content-Length", str(STREAM_BYTES))
            self.end_headers()
            chunk = b"z" * 65536
            try:
                for _ in range(STREAM_BYTES // len(chunk)):
                    self.wfile.write(chunk)
            except OSError:
                pass
            return
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/csv")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Servers:
    """An HTTP and an HTTPS server on 127.0.0.1 (free ports), in threads."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="kbox-net-")
        make_ca(self.dir)
        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.https = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.dir + "/srv.pem", self.dir + "/srv.key")
        self.https.socket = ctx.wrap_socket(self.https.socket, server_side=True, do_handshake_on_connect=False)
        self.http.daemon_threads = self.https.daemon_threads = True
        for s in (self.http, self.https):
            threading.Thread(target=s.serve_forever, daemon=True).start()
        self.hport = self.http.server_address[1]
        self.sport = self.https.server_address[1]

    def kbox_args(self, rules):
        """Run options: the rules, the CA bound in and named by the usual variables."""
        ca = INNER_CA_DIR + "/ca.pem"
        return ["--net", "allow=" + ",".join(rules), "--bind", self.dir + ":" + INNER_CA_DIR + ":ro",
                "--env", "SSL_CERT_FILE=" + ca, "--env", "REQUESTS_CA_BUNDLE=" + ca]


def set_test_resolver(extra=()):
    """web.test and files.web.test are our servers; meta.test and intra.test map to the metadata
    and a private address (never connected to: the proxy must refuse them); other.test is ours
    but named by no rule."""
    m = ["web.test=127.0.0.1", "files.web.test=127.0.0.1", "other.test=127.0.0.1",
         "meta.test=169.254.169.254", "intra.test=10.1.2.3", "v6meta.test=fe80::1"] + list(extra)
    os.environ["KBOX_TEST_RESOLVE"] = ",".join(m)


def stderr_of(msgs):
    return "".join(m["content"]["text"] for m in msgs if m["msg_type"] == "stream" and m["content"]["name"] == "stderr")


def raw_connect_code(target):
    """Python for the kernel: a CONNECT through the proxy, printing the status line and body."""
    return (
        "import socket\n"
        "s = socket.create_connection(('127.0.0.1', 3128), timeout=20)\n"
        "s.sendall(b'CONNECT %s HTTP/1.1\\r\\nHost: %s\\r\\n\\r\\n')\n"
        "data = b''\n"
        "while True:\n"
        "    b = s.recv(65536)\n"
        "    if not b: break\n"
        "    data += b\n"
        "    if b'200 Connection established' in data: break\n"
        "print(data.decode(errors='replace'))\n"
    ) % (target, target)
