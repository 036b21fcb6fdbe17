#!/bin/sh
# Boot Debian's stock kernel under qemu (software emulation) with a tiny initramfs holding kbox,
# its shared libraries, a static busybox and the static hog helper, mount a pure cgroup v2
# hierarchy on /sys/fs/cgroup and run the memory/oom/pids/cpu/cleanup checks there.
#
# Usage: tests/vm/run.sh KBOX_BINARY HOG_BINARY
# Prints the VM's "VMTEST PASS name" / "VMTEST FAIL name why" lines. Exit 0 when every check
# passed, 1 when one failed or the VM did not finish, 77 (skip) when qemu is missing, unless
# KBOX_MUST_WORK=1, which turns that skip into a failure.
# The kernel .deb comes from the machine's apt configuration (apt-get download) and is cached in
# ${KBOX_VMTEST_CACHE:-$HOME/.cache/kbox-vmtest}.
set -eu

KBOX=$(readlink -f "${1:?usage: run.sh KBOX HOG}")
HOG=$(readlink -f "${2:?usage: run.sh KBOX HOG}")
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${KBOX_VMTEST_CACHE:-${HOME:-/root}/.cache/kbox-vmtest}

skip_or_fail() {
  if [ "${KBOX_MUST_WORK:-0}" = 1 ]; then
    echo "VMTEST FAIL setup $1 (KBOX_MUST_WORK=1 forbids skipping)"
    exit 1
  fi
  echo "VMTEST SKIP $1" >&2
  echo "********************************************************************" >&2
  echo "*** the cgroup v2 VM test was SKIPPED: $1" >&2
  echo "********************************************************************" >&2
  exit 77
}

command -v qemu-system-x86_64 >/dev/null 2>&1 || skip_or_fail "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)"
for tool in apt-get dpkg-deb cpio gzip ldd; do
  command -v "$tool" >/dev/null 2>&1 || { echo "VMTEST FAIL setup $tool is missing"; exit 1; }
done
BUSYBOX=$(command -v busybox || true)
if [ -z "$BUSYBOX" ] || ! file -L "$BUSYBOX" 2>/dev/null | grep -q "statically linked"; then
  [ -x /bin/busybox ] && BUSYBOX=/bin/busybox
fi
[ -n "$BUSYBOX" ] || { echo "VMTEST FAIL setup busybox (static) is missing: apt-get install busybox-static"; exit 1; }

# --- kernel: Debian's linux-image-amd64 and the image package it depends on, from apt's mirror ---
mkdir -p "$CACHE"
KDIR="$CACHE/kernel"
if [ ! -f "$KDIR/.done" ]; then
  rm -rf "$KDIR" "$CACHE/dl" && mkdir -p "$KDIR" "$CACHE/dl"
  (cd "$CACHE/dl" && apt-get download linux-image-amd64 >/dev/null 2>&1) ||
    { echo "VMTEST FAIL setup apt-get download linux-image-amd64 failed (run apt-get update?)"; exit 1; }
  dep=$(dpkg-deb -f "$CACHE"/dl/linux-image-amd64_*.deb Depends | tr ',' '\n' | sed -n 's/^ *\(linux-image-[0-9][^ ]*\).*/\1/p' | head -1)
  [ -n "$dep" ] || { echo "VMTEST FAIL setup cannot find the kernel image package linux-image-amd64 depends on"; exit 1; }
  (cd "$CACHE/dl" && apt-get download "$dep" >/dev/null 2>&1) ||
    { echo "VMTEST FAIL setup apt-get download $dep failed"; exit 1; }
  dpkg-deb -x "$CACHE"/dl/"$dep"_*.deb "$KDIR"
  rm -rf "$CACHE/dl"
  touch "$KDIR/.done"
fi
VMLINUZ=$(ls "$KDIR"/boot/vmlinuz-* | head -1)
KVER=${VMLINUZ##*/vmlinuz-}
CONFIG="$KDIR/boot/config-$KVER"

# --- initramfs ---
WORK=$(mktemp -d /tmp/kbox-vmtest-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
R="$WORK/root"
mkdir -p "$R/bin" "$R/usr/bin" "$R/etc" "$R/proc" "$R/sys" "$R/dev" "$R/tmp" "$R/home/jovyan" "$R/modules" "$R/newroot"
cp "$BUSYBOX" "$R/bin/busybox"
cp "$KBOX" "$R/usr/bin/kbox"
cp "$HOG" "$R/bin/hog"
# kbox's shared libraries and the dynamic loader, at the paths ldd names.
ldd "$KBOX" | sed -n 's/.*=> \(\/[^ ]*\).*/\1/p; s/^[[:space:]]*\(\/[^ ]*\) (.*/\1/p' | sort -u | while read -r lib; do
  mkdir -p "$R$(dirname "$lib")"
  cp -L "$lib" "$R$lib"
done
# overlayfs may be a module (it is in Debian's kernel): ship it, stage2 loads it with insmod.
if grep -q '^CONFIG_OVERLAY_FS=m' "$CONFIG"; then
  ko=$(find "$KDIR/lib/modules/$KVER" -name 'overlay.ko*' | head -1)
  [ -n "$ko" ] || { echo "VMTEST FAIL setup overlay is a module but overlay.ko is not in the package"; exit 1; }
  case "$ko" in
    *.xz) xz -dc "$ko" > "$R/modules/overlay.ko" ;;
    *.zst) zstd -dcq "$ko" > "$R/modules/overlay.ko" ;;
    *) cp "$ko" "$R/modules/overlay.ko" ;;
  esac
fi
# Security profiles, where kbox looks for them (installed data dir and the source tree).
SRCROOT=$(cd "$HERE/../.." && pwd)
if [ -d "$SRCROOT/profiles" ]; then
  for dest in /usr/local/share/kbox/profiles /usr/share/kbox/profiles "$SRCROOT/profiles"; do
    mkdir -p "$R$dest" && cp -a "$SRCROOT/profiles/." "$R$dest/"
  done
fi
printf 'root:x:0:0:root:/root:/bin/sh\njovyan:x:1000:100::/home/jovyan:/bin/sh\n' > "$R/etc/passwd"
printf 'root:x:0:\nusers:x:100:\n' > "$R/etc/group"
cp "$HERE/init" "$R/init"
cp "$HERE/stage2" "$R/stage2"
chmod 0755 "$R/init" "$R/stage2"
(cd "$R" && find . | cpio -o -H newc --quiet | gzip -1) > "$WORK/initrd.gz"

# --- boot ---
echo "vmtest: booting $KVER under qemu (tcg) with $(du -h "$WORK/initrd.gz" | cut -f1) initramfs"
set +e
timeout 600 qemu-system-x86_64 -accel tcg -nographic -no-reboot -m 1024 -smp 2 \
  -kernel "$VMLINUZ" -initrd "$WORK/initrd.gz" \
  -append "console=ttyS0 panic=-1 quiet loglevel=3" </dev/null 2>&1 | tr -d '\r' > "$WORK/console.log"
set -e
grep '^VMTEST' "$WORK/console.log" || true
if ! grep -q '^VMTEST DONE' "$WORK/console.log"; then
  echo "VMTEST FAIL vm the VM did not finish its checks; last console lines:"
  tail -40 "$WORK/console.log"
  exit 1
fi
if grep -q '^VMTEST FAIL' "$WORK/console.log" || ! grep -q '^VMTEST PASS' "$WORK/console.log"; then
  echo "vmtest: console log (for the failures above):"
  grep -v '^VMTEST' "$WORK/console.log" | tail -60
  exit 1
fi
exit 0
