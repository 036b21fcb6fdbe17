#!/usr/bin/env bash
# Benchmark (not a test): start-up cost of `kbox run --rootfs / -- /bin/true` side by side with
# bubblewrap and unshare, in one hyperfine run. Prints medians and the kbox/bwrap ratio.
# Usage: tools/bench-run.sh [KBOX_BINARY] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
kbox=${1:-build/src/kbox}
runs=${2:-200}
command -v hyperfine >/dev/null || { echo "needs hyperfine (apt-get install hyperfine)" >&2; exit 1; }
command -v bwrap >/dev/null || { echo "needs bubblewrap (apt-get install bubblewrap)" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# bwrap with a comparable sandbox: all namespaces, host root read-only, fresh /proc, /dev, /tmp.
hyperfine -N --warmup 20 --runs "$runs" --export-json "$out/r.json" \
  -n kbox "$kbox run --rootfs / -- /bin/true" \
  -n bwrap "bwrap --unshare-all --ro-bind / / --proc /proc --dev /dev --tmpfs /tmp /bin/true" \
  -n unshare "unshare -Urpmn --fork /bin/true" >/dev/null
python3 - "$out/r.json" <<'PY'
import json, sys
res = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
for name in ("kbox", "bwrap", "unshare"):
    r = res[name]
    print(f"{name:8s} median {r['median']*1000:7.2f} ms   mean {r['mean']*1000:7.2f} ms ± {r['stddev']*1000:5.2f}")
print(f"ratio kbox/bwrap (median): {res['kbox']['median']/res['bwrap']['median']:.2f}")
print(f"ratio kbox/unshare (median): {res['kbox']['median']/res['unshare']['median']:.2f}")
PY
