#!/usr/bin/env python3
"""Runs INSIDE a kbox sandbox on the default image: starts a real ipykernel through jupyter_client
(the same startup path a kernel launched by kbox takes: IPython's system config, kbox's startup
scripts, --startup-dir scripts), executes one check's code in it and verifies the outputs.
Prints "CHECK <name>: ok" on success; exits 1 with the reason otherwise.

Usage: kernel_check.py imports|read_df|plot|pandas_options|startup_dir|font_cache|deferred_startup|debugger
"""
import base64
import json
import os
import sys
import time

from jupyter_client.manager import start_new_kernel


def run(kc, code, timeout=120):
    """Execute code; return (display_data/execute_result bundles, stdout, stderr, error)."""
    out = {"data": [], "stdout": "", "stderr": "", "error": None}

    def hook(msg):
        t, c = msg["msg_type"], msg["content"]
        if t in ("display_data", "execute_result"):
            out["data"].append(c["data"])
        elif t == "stream":
            out[c["name"]] += c["text"]
        elif t == "error":
            out["error"] = f"{c['ename']}: {c['evalue']}\n" + "\n".join(c["traceback"])

    reply = kc.execute_interactive(code, output_hook=hook, timeout=timeout)
    if reply["content"]["status"] != "ok" and out["error"] is None:
        out["error"] = f"status {reply['content']['status']}"
    return out


def fail(msg):
    print(f"FAIL: {msg}", flush=True)
    sys.exit(1)


def expect_ok(res, what):
    if res["error"]:
        fail(f"{what}: {res['error']}")


IMPORTS = """
import importlib, json, sys
mods = ["IPython", "ipykernel", "numpy", "pandas", "scipy", "matplotlib", "seaborn", "statsmodels",
        "sklearn", "openpyxl", "xlrd", "odf", "tabulate", "chardet", "numexpr", "matplotlib_inline"]
v = {m: getattr(importlib.import_module(m), "__version__", "?") for m in mods}
v["python"] = "%d.%d" % sys.version_info[:2]
print(json.dumps(v))
"""


def check_imports(kc):
    res = run(kc, IMPORTS)
    expect_ok(res, "importing the data stack")
    v = json.loads(res["stdout"].strip().splitlines()[-1])
    want = {"python": "3.13", "pandas": "2.2", "matplotlib": "3.10", "ipykernel": "6.29"}
    for k, prefix in want.items():
        if not v[k].startswith(prefix):
            fail(f"{k} is {v[k]}, expected {prefix}.x")
    print("versions: " + json.dumps(v))


READ_DF = r"""
import os, pandas as pd, openpyxl
d = "/tmp/read_df_check"
os.makedirs(d, exist_ok=True)
text = "城市,销售额\n北京,12.5\n上海,7.25\n"
with open(f"{d}/utf8.csv", "w", encoding="utf-8") as f: f.write(text)
with open(f"{d}/gbk.csv", "wb") as f: f.write(text.encode("gbk"))
with open(f"{d}/bom.csv", "wb") as f: f.write(text.encode("utf-8-sig"))
with open(f"{d}/data.tsv", "w", encoding="utf-8") as f: f.write(text.replace(",", "\t"))
wb = openpyxl.Workbook(); ws = wb.active
for row in [["城市", "销售额"], ["北京", 12.5], ["上海", 7.25]]: ws.append(row)
wb.save(f"{d}/data.xlsx")
results = {}
for name in ["utf8.csv", "gbk.csv", "bom.csv", "data.tsv", "data.xlsx"]:
    df = read_df(f"{d}/{name}")
    results[name] = [list(df.columns), df["城市"].tolist(), float(df["销售额"].sum())]
try:
    read_df(f"{d}/gbk.csv", autodetect_encoding=False)
    results["no_autodetect"] = "decoded"
except UnicodeDecodeError:
    results["no_autodetect"] = "UnicodeDecodeError"
print(json.dumps(results, ensure_ascii=False))
"""


def check_read_df(kc):
    res = run(kc, "import json\n" + READ_DF)
    expect_ok(res, "read_df")
    got = json.loads(res["stdout"].strip().splitlines()[-1])
    want = [["城市", "销售额"], ["北京", "上海"], 19.75]
    for name in ["utf8.csv", "gbk.csv", "bom.csv", "data.tsv", "data.xlsx"]:
        if got[name] != want:
            fail(f"read_df({name}) gave {got[name]}, expected {want}")
    if got["no_autodetect"] != "UnicodeDecodeError":
        fail("read_df(gbk.csv, autodetect_encoding=False) did not raise UnicodeDecodeError")


PLOT = """
import matplotlib.pyplot as plt
fig, ax = plt.subplots(figsize=(4, 3))
ax.plot([1, 2, 3], [-1, 4, 2])
ax.set_title("月度销售额（万元）")
ax.set_xlabel("月份")
plt.show()
"""


def check_plot(kc):
    res = run(kc, PLOT)
    expect_ok(res, "plotting")
    pngs = [d["image/png"] for d in res["data"] if "image/png" in d]
    if not pngs:
        fail(f"no image/png display_data (got {[list(d) for d in res['data']]})")
    raw = base64.b64decode(pngs[0])
    if raw[:8] != b"\x89PNG\r\n\x1a\n" or len(raw) < 2000:
        fail(f"image/png is not a real PNG ({len(raw)} bytes)")
    for bad in ("findfont", "Glyph", "missing from"):
        if bad in res["stderr"]:
            fail(f"font warning on the kernel's stderr stream: {res['stderr']}")
    res = run(kc, "import matplotlib as m, json; print(json.dumps([m.get_backend(), m.rcParams['font.family'], "
                  "m.rcParams['axes.unicode_minus']]))")
    expect_ok(res, "reading rcParams")
    backend, family, minus = json.loads(res["stdout"].strip().splitlines()[-1])
    if "inline" not in backend or family[0] != "Noto Serif CJK SC" or minus is not False:
        fail(f"matplotlib settings: backend {backend}, font.family {family}, axes.unicode_minus {minus}")
    res = run(kc, "from matplotlib import font_manager as fm\n"
                  "print(fm.findfont(fm.FontProperties(family='Noto Serif CJK SC'), fallback_to_default=False))")
    expect_ok(res, "finding Noto Serif CJK SC")
    if "NotoSerifCJK" not in res["stdout"]:
        fail(f"'Noto Serif CJK SC' resolves to {res['stdout'].strip()}")


def check_pandas_options(kc):
    res = run(kc, "import json\nprint(json.dumps([pd.get_option(k) for k in ['display.width', 'display.max_rows', "
                  "'display.max_columns', 'display.max_colwidth', 'display.precision']]))")
    expect_ok(res, "reading pandas options")
    got = json.loads(res["stdout"].strip().splitlines()[-1])
    if got != [2048, 8, 40, 40, 3]:
        fail(f"pandas display options are {got}, expected [2048, 8, 40, 40, 3]")
    res = run(kc, "import pandas as pd\nprint(pd.DataFrame({'x': range(100)}))")
    expect_ok(res, "printing a frame")
    rows = [line for line in res["stdout"].splitlines() if line[:1].isdigit()]
    if len(rows) != 8 or "[100 rows x 1 columns]" not in res["stdout"]:
        fail(f"a 100-row frame printed {len(rows)} rows (max_rows 8 not applied):\n{res['stdout']}")


def check_startup_dir(kc):
    res = run(kc, "print(USER_STARTUP, USER_STARTUP_ORDER)")
    expect_ok(res, "reading the variables set by the --startup-dir scripts")
    if res["stdout"].split() != ["ran", "after-builtins,b"]:
        fail(f"--startup-dir scripts: got {res['stdout']!r}")


def check_font_cache(kc):
    code = """
import json, os, glob, matplotlib
from matplotlib import font_manager as fm
cache = matplotlib.get_cachedir()
files = glob.glob(os.path.join(cache, "fontlist-v*.json"))
print(json.dumps({"cachedir": cache, "env": os.environ.get("MPLCONFIGDIR"), "files": files,
                  "mtime": [os.stat(f).st_mtime for f in files],
                  "manifest_mtime": os.stat("/etc/kbox/manifest.json").st_mtime,
                  "fc_cache": sorted(os.listdir("/var/cache/fontconfig"))}))
"""
    res = run(kc, PLOT + code)
    expect_ok(res, "plot + reading the cache state")
    st = json.loads(res["stdout"].strip().splitlines()[-1])
    if st["cachedir"] != "/var/cache/kbox/matplotlib" or st["env"] != st["cachedir"]:
        fail(f"matplotlib cache dir is {st['cachedir']} (MPLCONFIGDIR={st['env']}), expected the prebuilt one")
    if len(st["files"]) != 1:
        fail(f"expected one prebuilt fontlist json, found {st['files']}")
    if st["mtime"][0] > st["manifest_mtime"]:
        fail("the font list was rewritten after the image was built (the first plot rebuilt the cache)")
    if not any(f.endswith(".cache-9") or f.endswith(".cache-10") for f in st["fc_cache"]):
        fail(f"no prebuilt fontconfig cache in /var/cache/fontconfig: {st['fc_cache']}")
    if "font cache" in res["stderr"]:
        fail(f"matplotlib rebuilt its font cache: {res['stderr']}")


DEFERRED = """
import json, types
ip = get_ipython()
print(json.dumps({"kernel": type(ip.kernel).__name__, "deferred": ip.kernel._kbox_thread is not None,
                  "modules": [isinstance(globals().get(n), types.ModuleType) for n in ("pd", "plt", "sns")],
                  "read_df": callable(globals().get("read_df")), "max_rows": pd.get_option("display.max_rows"),
                  "backend": plt.get_backend(), "family": plt.rcParams["font.family"][0],
                  "hidden": sorted(n for n in ("pd", "plt", "sns", "read_df") if n in ip.user_ns_hidden)}))
del ip, json, types
"""


def check_deferred_startup(kc):
    """The first cell, sent as soon as the kernel is up, sees everything the startup scripts set,
    although the kernel ran them only after answering kernel_info; %who does not list their names."""
    res = run(kc, DEFERRED)
    expect_ok(res, "the first cell reading the startup scripts' names")
    st = json.loads(res["stdout"].strip().splitlines()[-1])
    want = {"kernel": "KboxKernel", "deferred": True, "modules": [True, True, True], "read_df": True, "max_rows": 8,
            "backend": "inline", "family": "Noto Serif CJK SC",
            "hidden": ["pd", "plt", "read_df", "sns"]}
    for k, v in want.items():
        if st[k] != v:
            fail(f"first cell after a deferred start-up: {k} is {st[k]!r}, expected {v!r}")
    res = run(kc, "%who")
    expect_ok(res, "%who")
    if "Interactive namespace is empty" not in res["stdout"]:
        fail(f"%who lists start-up names: {res['stdout']!r}")


def debug_request(kc, command, arguments, timeout=120):
    """One debug_request on the control channel; returns the debug_reply's content."""
    msg = kc.session.msg("debug_request", {"type": "request", "seq": 1, "command": command, "arguments": arguments})
    kc.control_channel.send(msg)
    end = time.time() + timeout
    while time.time() < end:
        r = kc.control_channel.get_msg(timeout=max(0.1, end - time.time()))
        if r["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
            return r["content"]
    fail(f"no debug_reply to {command}")


def check_debugger(kc):
    """The kernel starts without importing debugpy (kbox_ipykernel builds ipykernel's debugger on
    the first debug_request), and a debugging client still gets a working debugger."""
    res = run(kc, "import sys; print(sorted(m for m in ('debugpy', 'pydevd', 'ipykernel.debugger') if m in sys.modules))")
    expect_ok(res, "listing the debugger's modules")
    if res["stdout"].strip() != "[]":
        fail(f"debugger modules imported at start: {res['stdout'].strip()}")
    init = debug_request(kc, "initialize", {"clientID": "kbox-test", "adapterID": "python", "pathFormat": "path",
                                            "linesStartAt1": True, "columnsStartAt1": True})
    if not init.get("success") or not init.get("body", {}).get("supportsConfigurationDoneRequest"):
        fail(f"debug initialize: {init}")
    info = debug_request(kc, "debugInfo", {})
    if not info.get("success") or info.get("body", {}).get("isStarted") is not True:
        fail(f"debugInfo after initialize: {info}")
    res = run(kc, "print('debugpy' in sys.modules, 6*7)")
    expect_ok(res, "a cell with the debugger started")
    if res["stdout"].split() != ["True", "42"]:
        fail(f"after the debugger started: {res['stdout']!r}")


CHECKS = {"deferred_startup": check_deferred_startup, "debugger": check_debugger, "imports": check_imports, "read_df": check_read_df, "plot": check_plot,
          "pandas_options": check_pandas_options, "startup_dir": check_startup_dir, "font_cache": check_font_cache}


def main():
    name = sys.argv[1]
    os.environ.pop("JPY_PARENT_PID", None)
    t0 = time.time()
    km, kc = start_new_kernel(kernel_name="python3", startup_timeout=120)
    try:
        print(f"kernel started in {time.time() - t0:.1f} s", flush=True)
        CHECKS[name](kc)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    print(f"CHECK {name}: ok", flush=True)


if __name__ == "__main__":
    main()
