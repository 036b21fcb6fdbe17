#!/usr/bin/env bash
# Set up a fresh Debian 12 machine for kbox (as root): install the Debian packages kbox builds and
# tests with, then build kbox (build/) and its sanitizer build (build-asan/).
# Idempotent: a second run only rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

packages=(
  # build
  build-essential meson ninja-build pkg-config
  libseccomp-dev libcap-dev libnl-3-dev libnl-route-3-dev libzmq3-dev libjansson-dev
  libcurl4-openssl-dev libssl-dev libcriterion-dev
  # tests: static busybox for test rootfs, peers and Jupyter clients from Debian
  busybox-static iproute2 procps util-linux bubblewrap hyperfine
  python3 python3-zmq python3-jupyter-client python3-ipykernel python3-jupyter-kernel-test
  python3-cryptography python3-requests python3-numpy python3-pandas python3-matplotlib python3-scipy python3-sklearn runc
  # suite 'pods': podman (its Docker-compatible API for Enterprise Gateway; netavark needs iptables)
  # and the Debian packages the vendored Enterprise Gateway runs with, plus a websocket client
  podman crun netavark aardvark-dns iptables catatonit
  python3-jupyter-server python3-docker python3-kubernetes python3-paramiko python3-pexpect
  python3-pycryptodome python3-watchdog python3-jinja2 python3-yaml python3-websocket
  # cgroup v2 VM test and the kernel image
  qemu-system-x86 cpio mmdebstrap
)

if [ "$(id -u)" -ne 0 ]; then
  echo "tools/setup.sh: run as root (it installs Debian packages)" >&2
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${#missing[@]} Debian packages: ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

log "building kbox (build/)"
[ -f build/build.ninja ] || meson setup build
ninja -C build

log "building the sanitizer configuration (build-asan/: address + undefined)"
[ -f build-asan/build.ninja ] || meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false
ninja -C build-asan

log "building the default kernel image (Debian trixie + data stack; a few minutes the first time, then 'up to date')"
build/src/kbox image build default

log "kbox is built: build/src/kbox (try: build/src/kbox doctor)"
