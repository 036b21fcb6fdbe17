"""--net allow from inside a kernel: allowed fetches work over HTTP and HTTPS (urllib, requests,
pandas), every refusal is a 403 naming the missing rule plus one stderr line in the cell, the
report counts per host; no raw socket or DNS reaches anything. All servers are on 127.0.0.1."""
import json
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netlib  # noqa: E402
from netlib import kboxkernel, stderr_of  # noqa: E402
from kboxkernel import Direct, text_of  # noqa: E402

kboxkernel.check_host()


class Allowed(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = netlib.Servers()
        netlib.set_test_resolver()
        h, s = cls.srv.hport, cls.srv.sport
        cls.rules = ["web.test:%d" % h, "web.test:%d" % s, "*.web.test:%d" % s, "meta.test", "v6meta.test",
                     "intra.test", "127.0.0.1:%d" % h, "localhost:%d" % h]
        cls.report = tempfile.mktemp(prefix="kbox-net-report-", suffix=".json")
        cls.k = Direct(*cls.srv.kbox_args(cls.rules), report=cls.report)

    @classmethod
    def tearDownClass(cls):
        cls.k.close()

    def cell(self, code):
        reply, out = self.k.run(code)
        return reply, text_of([m for m in out if not (m["msg_type"] == "stream" and m["content"]["name"] == "stderr")]), stderr_of(out)

    def blocked(self, url_code, url, reason):
        """url_code fetches through the proxy and prints the status line and body; assert 403 + cell line."""
        reply, out, err = self.cell(url_code)
        self.assertEqual(reply["status"], "ok", reply)
        self.assertIn("403 Forbidden", out)
        self.assertIn("kbox: blocked " + url, out)
        self.assertIn(reason, out)
        self.assertIn("kbox: blocked " + url + " \u2014 " + reason, err, "the cell's stderr must carry the reason")
        return out

    def test_01_http_https_urllib(self):
        h, s = self.srv.hport, self.srv.sport
        reply, out, err = self.cell(
            "import urllib.request\n"
            "print(urllib.request.urlopen('http://web.test:%d/data.csv', timeout=20).read())\n"
            "print(urllib.request.urlopen('https://web.test:%d/hello', timeout=20).read())\n"
            "print(urllib.request.urlopen('https://files.web.test:%d/hello', timeout=20).read())\n" % (h, s, s))
        self.assertEqual(reply["status"], "ok", reply)
        self.assertEqual(out, "b'x,y\\n1,2\\n3,4\\n'\nb'hello from 127.0.0.1'\nb'hello from 127.0.0.1'\n")
        self.assertEqual(err, "")

    def test_02_requests_and_pandas(self):
        try:
            import requests  # noqa: F401
        except ImportError:
            kboxkernel.skip_or_fail("python3-requests is not installed (tools/setup.sh installs it)")
        h, s = self.srv.hport, self.srv.sport
        reply, out, _ = self.cell(
            "import requests, pandas as pd\n"
            "r = requests.get('https://web.test:%d/data.csv', timeout=20); print(r.status_code, r.text.split())\n"
            "with requests.Session() as sess:\n"
            "    print([sess.get('http://web.test:%d/data.csv', timeout=20).status_code for _ in range(3)])\n"
            "df = pd.read_csv('https://web.test:%d/data.csv'); print(df.shape, int(df.y.sum()))\n"
            "df = pd.read_csv('http://web.test:%d/data.csv'); print(df.shape, int(df.x.sum()))\n" % (s, h, s, h))
        self.assertEqual(reply["status"], "ok", reply)
        self.assertEqual(out, "200 ['x,y', '1,2', '3,4']\n[200, 200, 200]\n(2, 2) 6\n(2, 2) 4\n")

    def test_03_host_not_listed(self):
        out = self.blocked(netlib.raw_connect_code("evil.example:443"), "https://evil.example:443", "not in --net allow")
        self.assertIn("missing rule: evil.example ", out)
        self.assertIn("allowed: web.test:%d" % self.srv.hport, out)
        # a name that resolves to our own server but is not listed is refused before it is resolved
        self.blocked(netlib.raw_connect_code("other.test:%d" % self.srv.sport), "https://other.test:%d" % self.srv.sport,
                     "not in --net allow")
        # plain HTTP: urllib sees the 403 and its body
        reply, out, err = self.cell(
            "import urllib.request, urllib.error\n"
            "try:\n    urllib.request.urlopen('http://evil.example/x', timeout=20)\n"
            "except urllib.error.HTTPError as e:\n    print(e.code, e.read().decode())\n")
        self.assertIn("403 kbox: blocked http://evil.example:80 \u2014 not in --net allow", out)
        self.assertIn("kbox: blocked http://evil.example:80", err)

    def test_04_port_not_named(self):
        out = self.blocked(netlib.raw_connect_code("web.test:9"), "https://web.test:9",
                           "port 9 is not in --net allow for web.test")
        self.assertIn("missing rule: web.test:9 ", out)
        # requests gets a ProxyError, the cell its stderr line
        reply, out, err = self.cell(
            "import requests\n"
            "try:\n    requests.get('https://web.test:9/', timeout=20)\n"
            "except requests.exceptions.ProxyError as e:\n    print('ProxyError', '403' in str(e))\n")
        self.assertEqual(out, "ProxyError True\n")
        self.assertIn("kbox: blocked https://web.test:9 \u2014 port 9", err)

    def test_05_metadata_private_loopback(self):
        self.blocked(netlib.raw_connect_code("meta.test:443"), "https://meta.test:443",
                     "meta.test resolves to 169.254.169.254, a link-local address")
        self.blocked(netlib.raw_connect_code("v6meta.test:443"), "https://v6meta.test:443",
                     "v6meta.test resolves to fe80::1, a link-local address")
        self.blocked(netlib.raw_connect_code("169.254.169.254:80"), "https://169.254.169.254:80", "not in --net allow")
        self.blocked(netlib.raw_connect_code("intra.test:443"), "https://intra.test:443",
                     "intra.test resolves to 10.1.2.3, a private address (allowed only when a rule names that address)")
        # named, but loopback: never (the test resolver's own results are the only loopback exception)
        h = self.srv.hport
        self.blocked(netlib.raw_connect_code("127.0.0.1:%d" % h), "https://127.0.0.1:%d" % h,
                     "127.0.0.1 resolves to 127.0.0.1, a loopback address")
        self.blocked(netlib.raw_connect_code("localhost:%d" % h), "https://localhost:%d" % h,
                     "localhost resolves to")

    def test_06_no_raw_socket_no_dns(self):
        reply, out, _ = self.cell(
            "import socket\n"
            "def tcp(a):\n"
            "    s = socket.socket(); s.settimeout(5)\n"
            "    try:\n        s.connect(a); return 'connected'\n"
            "    except OSError as e:\n        return type(e).__name__ + ':' + str(e.errno)\n"
            "print(tcp(('93.184.215.14', 443)), tcp(('169.254.169.254', 80)), tcp(('10.1.2.3', 80)))\n"
            "try:\n    socket.getaddrinfo('web.test', 443); print('resolved')\n"
            "except socket.gaierror as e:\n    print('gaierror')\n"
            "try:\n    socket.getaddrinfo('example.org', 443); print('resolved')\n"
            "except socket.gaierror as e:\n    print('gaierror')\n"
            "import os; print(sorted(os.listdir('/sys/class/net')))\n")
        self.assertEqual(reply["status"], "ok", reply)
        self.assertEqual(out, "OSError:101 OSError:101 OSError:101\ngaierror\ngaierror\n['lo']\n")

    def test_07_report_counts(self):
        # last test: shut the kernel down and read the verdict
        self.k.kc.shutdown()
        self.assertEqual(self.k.wait(), 0, self.k.stderr)
        with open(self.report) as f:
            net = json.load(f)["net"]
        hosts = net["hosts"]
        self.assertGreaterEqual(hosts["web.test"]["allowed"], 4, net)
        self.assertGreaterEqual(hosts["web.test"]["blocked"], 2, net)
        self.assertEqual(hosts["files.web.test"], {"allowed": 1, "blocked": 0})
        self.assertEqual(hosts["evil.example"]["allowed"], 0)
        self.assertGreaterEqual(hosts["evil.example"]["blocked"], 2)
        for h in ("meta.test", "intra.test", "127.0.0.1", "localhost", "169.254.169.254", "other.test"):
            self.assertEqual(hosts[h]["allowed"], 0, h)
            self.assertGreaterEqual(hosts[h]["blocked"], 1, h)
        self.assertEqual(net["connections_allowed"], sum(v["allowed"] for v in hosts.values()))
        self.assertEqual(net["connections_blocked"], sum(v["blocked"] for v in hosts.values()))


class Refusals(unittest.TestCase):
    def run_kbox(self, *args):
        import subprocess
        return subprocess.run([kboxkernel.KBOX, "run", "--rootfs", "/"] + list(args) + ["--", "true"],
                              capture_output=True, text=True)

    def test_bad_rules(self):
        for rule, msg in (("allow=", "no rule given"), ("allow=a.b:0", "port must be a number"),
                          ("allow=*.10.0.0.1", "'*.' goes with domain names"), ("allow=a b", "is not a host name"),
                          ("open", "unknown mode")):
            r = self.run_kbox("--net", rule)
            self.assertEqual(r.returncode, 125, rule)
            self.assertIn(msg, r.stderr, rule)

    def test_command_mode(self):
        srv = netlib.Servers()
        netlib.set_test_resolver()
        import subprocess
        r = subprocess.run([kboxkernel.KBOX, "run", "--rootfs", "/"] + srv.kbox_args(["web.test:%d" % srv.hport]) +
                           ["--", kboxkernel.PYTHON, "-c",
                            "import urllib.request as u\nprint(u.urlopen('http://web.test:%d/hello').read())\n"
                            "try:\n    u.urlopen('http://evil.example/')\nexcept Exception as e:\n    print(e)\n" % srv.hport],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "b'hello from 127.0.0.1'\nHTTP Error 403: Forbidden\n")
        self.assertIn("kbox: blocked http://evil.example:80 \u2014 not in --net allow (allowed: web.test:%d)" % srv.hport, r.stderr)

    def test_profile_rules(self):
        import subprocess
        srv = netlib.Servers()
        netlib.set_test_resolver()
        with open(os.path.join(os.environ.get("KBOX_SOURCE_ROOT", "."), "profiles", "default.json")) as f:
            prof = json.load(f)
        prof["net"] = {"allow": ["web.test:%d" % srv.hport], "max_bytes": "10M"}
        path = tempfile.mktemp(prefix="kbox-net-profile-", suffix=".json")
        with open(path, "w") as f:
            json.dump(prof, f)
        code = ("import urllib.request as u\nprint(u.urlopen('http://web.test:%d/hello').read())\n"
                "try:\n    u.urlopen('http://evil.example/')\nexcept Exception as e:\n    print(e)\n" % srv.hport)
        r = subprocess.run([kboxkernel.KBOX, "run", "--rootfs", "/", "--profile", path, "--", kboxkernel.PYTHON, "-c", code],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "b'hello from 127.0.0.1'\nHTTP Error 403: Forbidden\n")
        # --net none on the command line wins over the profile
        r = subprocess.run([kboxkernel.KBOX, "run", "--rootfs", "/", "--profile", path, "--net", "none", "--",
                            kboxkernel.PYTHON, "-c", "import os; print(os.environ.get('HTTP_PROXY'))"],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.stdout, "None\n", r.stderr)
        prof["net"] = {"allow": ["ok.example", 7]}
        with open(path, "w") as f:
            json.dump(prof, f)
        r = self.run_kbox("--profile", path)
        self.assertEqual(r.returncode, 125)
        self.assertIn("net.allow[1]: must be one rule as a string", r.stderr)
        prof["net"] = {"allow": ["bad host"]}
        with open(path, "w") as f:
            json.dump(prof, f)
        r = self.run_kbox("--profile", path)
        self.assertEqual(r.returncode, 125)
        self.assertIn("'bad host' is not a host name", r.stderr)

    def test_kernelspec_install(self):
        import subprocess
        prefix = tempfile.mkdtemp(prefix="kbox-net-ks-")
        base = [kboxkernel.KBOX, "kernelspec", "install", "--prefix", prefix, "--name", "kboxnet"]
        r = subprocess.run(base + ["--net", "allow=data.example.org,*.example.com:8443", "--net-max-bytes", "50M"],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(prefix, "share", "jupyter", "kernels", "kboxnet", "kernel.json")) as f:
            argv = json.load(f)["argv"]
        self.assertIn("allow=data.example.org,*.example.com:8443", argv)
        self.assertIn("--net-max-bytes", argv)
        r = subprocess.run(base + ["--net", "allow=a.example:http"], capture_output=True, text=True)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("the port must be a number", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
