#!/usr/bin/env bash
# Benchmark (not a test): start-up cost and memory of command mode side by side with bubblewrap, in
# one run, as the table of issue 16 (the broker's rows come from tools/bench-kernel.py):
#   - `kbox run --rootfs / -- /bin/true` vs `bwrap --unshare-all ... /bin/true` (hyperfine medians,
#     the commands interleaved by hyperfine's warmups and run back to back);
#   - `kbox --version` vs `bwrap --version` (process start only);
#   - RSS, PSS and USS of the kbox process while its workload sleeps, vs bwrap's (medians of 5), and
#     of kbox in kernel mode (its broker loaded and idle) beside the same bwrap figures;
#   - with valgrind installed, the instructions kbox executes (callgrind, user space): a figure the
#     machine's load does not move. For `run` it counts up to kbox's first namespace clone (valgrind
#     cannot follow CLONE_NEWUSER and stops there): loader, options, profile, cgroups.
# Then, unless KERNEL=0, tools/bench-kernel.py --n 200 (about a minute and a half) prints the
# kernel-mode rows (round trips, broker CPU, iopub throughput, the relay floor): every row of the
# issue's table in one run.
# BASELINE=OTHER_KBOX adds a column for another kbox binary (e.g. a build of main) run the same way.
# Usage: tools/bench-run.sh [KBOX_BINARY] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
kbox=${1:-build/src/kbox}
runs=${2:-200}
base=${BASELINE:-}
command -v hyperfine >/dev/null || { echo "needs hyperfine (apt-get install hyperfine)" >&2; exit 1; }
command -v bwrap >/dev/null || { echo "needs bubblewrap (apt-get install bubblewrap)" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
bwrap_run="bwrap --unshare-all --ro-bind / / --proc /proc --dev /dev --tmpfs /tmp"

# Wall time. bwrap gets a comparable sandbox: all namespaces, host root read-only, fresh /proc,
# /dev, /tmp (no cgroups, no seccomp filter, no overlay: kbox does more).
cmds=(-n kbox "$kbox run --rootfs / -- /bin/true" -n bwrap "$bwrap_run /bin/true"
      -n unshare "unshare -Urpmn --fork /bin/true"
      -n kbox-version "$kbox --version" -n bwrap-version "bwrap --version")
[ -n "$base" ] && cmds+=(-n base "$base run --rootfs / -- /bin/true" -n base-version "$base --version")
hyperfine -N --warmup 20 --runs "$runs" --export-json "$out/time.json" "${cmds[@]}" >/dev/null 2>"$out/hf.err" ||
  { cat "$out/hf.err" >&2; exit 1; }

# Memory of the supervising process (kbox, or bwrap's outer process) while the workload sleeps.
mem() { # NAME COMMAND...
  local name=$1; shift
  for _ in 1 2 3 4 5; do
    "$@" /bin/sleep 1 & local pid=$!
    sleep 0.5
    awk -v n="$name" '/^(Rss|Pss|Private_Clean|Private_Dirty):/ {v[$1]=$2}
      END {print n, v["Rss:"], v["Pss:"], v["Private_Clean:"] + v["Private_Dirty:"]}' "/proc/$pid/smaps_rollup"
    wait "$pid"
  done >> "$out/mem.txt"
}
mem kbox "$kbox" run --rootfs / --
mem bwrap $bwrap_run
[ -n "$base" ] && mem base "$base" run --rootfs / --

# Kernel mode: the kbox process (broker, libzmq loaded, its I/O thread running) in front of a
# stand-in kernel that never answers (tail -f of its connection file), five at once; SIGTERM makes
# each send shutdown_request, wait 5 s and kill the stand-in. tools/bench-kernel.py has the same
# figures with a real ipykernel after traffic.
kmem() { # NAME KBOX
  local name=$1 bin=$2 pids=()
  for _ in 1 2 3 4 5; do
    "$bin" run --rootfs / --kernel-cmd "/usr/bin/tail -f {connection_file}" >/dev/null 2>&1 & pids+=($!)
  done
  sleep 1.5
  for pid in "${pids[@]}"; do
    awk -v n="$name" '/^(Rss|Pss|Private_Clean|Private_Dirty):/ {v[$1]=$2}
      END {print n, v["Rss:"], v["Pss:"], v["Private_Clean:"] + v["Private_Dirty:"]}' "/proc/$pid/smaps_rollup"
  done >> "$out/mem.txt"
  kill -TERM "${pids[@]}"
  wait "${pids[@]}" || true
}
kmem kbox-kernel "$kbox"
[ -n "$base" ] && kmem base-kernel "$base"

# Instructions kbox executes (callgrind: user space of the kbox process only).
insns() { # NAME COMMAND...
  local name=$1; shift
  { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 >/dev/null || true; } |
    awk -v n="$name" '/Collected :/ && !done {print n, $NF; done = 1}' >> "$out/insns.txt"
}
if command -v valgrind >/dev/null; then
  insns kbox "$kbox" run --rootfs / -- /bin/true
  insns kbox-version "$kbox" --version
  insns bwrap-version bwrap --version
  if [ -n "$base" ]; then
    insns base "$base" run --rootfs / -- /bin/true
    insns base-version "$base" --version
  fi
fi
touch "$out/insns.txt"

/usr/bin/python3 - "$out" "$kbox" "$base" "$runs" <<'PY'
import json, statistics, sys
out, kbox, base, runs = sys.argv[1:5]
t = {r["command"]: r["median"] * 1000 for r in json.load(open(out + "/time.json"))["results"]}
mem = {}
for line in open(out + "/mem.txt"):
    n, *v = line.split()
    mem.setdefault(n, []).append([int(x) for x in v])
med = {n: [statistics.median(r[i] for r in rows) / 1024 for i in range(3)] for n, rows in mem.items()}
ins = dict(l.split() for l in open(out + "/insns.txt"))
rows = [("run --rootfs / -- /bin/true vs bwrap --unshare-all (ms)", t["kbox"], t["bwrap"], t.get("base"), "<= 1.0"),
        ("--version vs bwrap --version (ms)", t["kbox-version"], t["bwrap-version"], t.get("base-version"), "-"),
        ("run vs unshare -Urpmn --fork (ms)", t["kbox"], t["unshare"], None, "-")]
for i, what in enumerate(("RSS", "PSS", "USS")):
    rows.append(("command mode %s (MB)" % what, med["kbox"][i], med["bwrap"][i], med.get("base", [None] * 3)[i],
                 "<= 3 MB" if what == "RSS" else "-"))
for i, what in enumerate(("RSS", "PSS", "USS")):
    rows.append(("kernel mode %s (MB, idle broker)" % what, med["kbox-kernel"][i], med["bwrap"][i],
                 med.get("base-kernel", [None] * 3)[i], "-"))
if ins:
    rows.append(("instructions, run until the first clone (M)", int(ins["kbox"]) / 1e6, None,
                 int(ins["base"]) / 1e6 if "base" in ins else None, "-"))
    rows.append(("instructions, --version (M)", int(ins["kbox-version"]) / 1e6, int(ins["bwrap-version"]) / 1e6,
                 int(ins["base-version"]) / 1e6 if "base-version" in ins else None, "-"))
f = lambda v: "-" if v is None else "%.3g" % v
head = "%-56s %9s %9s %7s" % ("figure", "kbox", "peer", "ratio") + (" %9s" % "baseline" if base else "") + "  target"
print(head + "\n" + "-" * len(head))
for name, k, p, b, target in rows:
    ratio = "-" if p in (None, 0) else "%.2f" % (k / p)
    print("%-56s %9s %9s %7s" % (name, f(k), f(p), ratio) + (" %9s" % f(b) if base else "") + "  " + target)
print("(times: hyperfine medians of %s runs; memory: medians of 5; kbox %s%s)" % (runs, kbox,
      ", baseline " + base if base else ""))
PY
if [ "${KERNEL:-1}" != 0 ]; then
  echo
  /usr/bin/python3 tools/bench-kernel.py --kbox "$kbox" --n 200 2>/dev/null
fi
