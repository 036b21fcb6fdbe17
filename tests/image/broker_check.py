#!/usr/bin/env python3
"""Runs on the HOST: starts `kbox run --connection-file F` (kbox's kernel mode: ipykernel in a
sandbox on the default image, behind kbox's broker), connects with jupyter_client over loopback and
checks that the kbox layer's startup ran in that kernel: pandas options, read_df, CJK fonts, and a
Chinese-titled plot arriving as image/png display_data with no font warning on kbox's stderr.
Prints "BROKER CHECK: ok" on success; exits 1 with the reason, 77 when jupyter_client is missing.

Usage: broker_check.py KBOX_BIN
"""
import os
import subprocess
import sys
import tempfile
import time

try:
    from jupyter_client import BlockingKernelClient
except ImportError:
    print("SKIP: jupyter_client is not installed on the host (tools/setup.sh installs it)")
    sys.exit(77)

CODE = """
import json, os, matplotlib.pyplot as plt
print(json.dumps([pd.get_option("display.max_rows"), callable(read_df), plt.rcParams["font.family"][0],
                  os.environ.get("MPLCONFIGDIR")]))
plt.plot([1, 2, 3], [-1, 4, 2]); plt.title("月度销售额"); plt.show()
"""


def main():
    kbox = sys.argv[1]
    tmp = tempfile.mkdtemp(prefix="kbox-broker-check-")
    conn = os.path.join(tmp, "kernel.json")
    err_path = os.path.join(tmp, "stderr")
    with open(err_path, "w") as err:
        proc = subprocess.Popen([kbox, "run", "--memory", "2G", "--connection-file", conn],
                                stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.time() + 120
        while not (os.path.exists(conn) and os.path.getsize(conn) > 0):
            if proc.poll() is not None or time.time() > deadline:
                sys.exit(f"FAIL: kbox kernel mode did not write {conn} (exit {proc.poll()}): "
                         + open(err_path).read())
            time.sleep(0.2)
        kc = BlockingKernelClient(connection_file=conn)
        kc.load_connection_file()
        kc.start_channels()
        kc.wait_for_ready(timeout=120)
        out = {"stdout": "", "stderr": "", "png": [], "error": None}

        def hook(msg):
            t, c = msg["msg_type"], msg["content"]
            if t == "stream":
                out[c["name"]] += c["text"]
            elif t in ("display_data", "execute_result") and "image/png" in c["data"]:
                out["png"].append(c["data"]["image/png"])
            elif t == "error":
                out["error"] = f"{c['ename']}: {c['evalue']}"

        kc.execute_interactive(CODE, output_hook=hook, timeout=120)
        kc.shutdown()
        try:
            kc.get_control_msg(timeout=20)  # the reply: the request got out before the linger-0 close
        except Exception:
            pass
        kc.stop_channels()
        if out["error"]:
            sys.exit(f"FAIL: {out['error']}")
        want = '[8, true, "Noto Serif CJK SC", "/var/cache/kbox/matplotlib"]'
        if out["stdout"].strip().splitlines()[:1] != [want]:
            sys.exit(f"FAIL: startup state {out['stdout']!r}, expected {want}")
        if not out["png"]:
            sys.exit("FAIL: no image/png display_data for the plot")
        proc.wait(timeout=30)
        stderr = open(err_path).read()
        for bad in ("findfont", "missing from font", "font cache"):
            if bad in stderr or bad in out["stderr"]:
                sys.exit(f"FAIL: '{bad}' on stderr:\n{stderr}{out['stderr']}")
        print("BROKER CHECK: ok")
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
