#!/usr/bin/env bash
# Run kbox's whole test suite: the normal build and the sanitizer build (address + undefined).
# KBOX_MUST_WORK=1 turns every "cannot run here" skip into a failure (CI sets it).
set -euo pipefail
cd "$(dirname "$0")/.."
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1}  # leak checks stay on (the default) for kbox itself
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
for dir in build build-asan; do
  if [ ! -f "$dir/build.ninja" ]; then
    echo "tools/test.sh: $dir is not configured; run tools/setup.sh first" >&2
    exit 1
  fi
  ninja -C "$dir"
  echo "== meson test -C $dir"
  meson test -C "$dir" --print-errorlogs --num-processes 2 "$@" || status=1
done
exit $status
