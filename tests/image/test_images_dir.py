#!/usr/bin/python3
"""One images-directory rule: kbox's C code decides where images live (`kbox image dir`); the
image builder (rootfs/mkrootfs, behind `kbox image path/list`) and tools/mkoci (its default
--rootfs) must land on the same directory for every case of the rule, as root and as an
unprivileged user. The expected directories are spelled out too, so a changed rule is seen.
Exit 0 pass, 1 fail, 77 skip (not root: the uid switch needs it), 1 under KBOX_MUST_WORK=1."""

import importlib.machinery
import importlib.util
import os
import subprocess
import sys
import tempfile

KBOX = os.environ["KBOX_BIN"]
SRC = os.environ["KBOX_SOURCE_ROOT"]
BUILD = os.environ["KBOX_BUILD_ROOT"]
NOBODY = 65534
failures = []

# mkoci's default_rootfs(), run in a child so it sees that child's uid and environment.
MKOCI_DEFAULT = (
    "import importlib.machinery as m, importlib.util as u, sys\n"
    "loader = m.SourceFileLoader('mkoci', sys.argv[1])\n"
    "mod = u.module_from_spec(u.spec_from_loader('mkoci', loader))\n"
    "loader.exec_module(mod)\n"
    "print(mod.default_rootfs(sys.argv[2]))\n")


def run(argv, env, uid):
    """argv's stdout (stripped) and exit code, with exactly env, as uid."""
    pre = (lambda: (os.setgroups([]), os.setgid(NOBODY), os.setuid(NOBODY))) if uid == NOBODY else None
    r = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       preexec_fn=pre, timeout=120, cwd="/")
    return r.stdout.strip(), r.returncode, r.stderr.strip()


def check(label, env, uid, expected):
    env = dict(env, PATH="/usr/bin:/bin")
    d, rc, err = run([KBOX, "image", "dir"], env, uid)
    if rc != 0 or d != expected:
        failures.append(f"{label}: kbox image dir printed {d!r} (exit {rc}, {err!r}), expected {expected!r}")
        return
    p, rc, err = run([KBOX, "image", "path", "someimage"], env, uid)
    if rc != 0 or p != os.path.join(d, "someimage"):
        failures.append(f"{label}: kbox image path (mkrootfs) printed {p!r} (exit {rc}, {err!r}), "
                        f"kbox image dir {d!r}")
    out, rc, err = run([KBOX, "image", "inspect", "no-such-image"], env, uid)
    if rc != 125 or f"at {os.path.join(d, 'no-such-image')} " not in err:
        failures.append(f"{label}: kbox image inspect (mkrootfs) looked elsewhere than {d!r}: {rc} {err!r}")
    m, rc, err = run([sys.executable, "-c", MKOCI_DEFAULT, os.path.join(SRC, "tools", "mkoci"), BUILD], env, uid)
    if rc != 0 or m != os.path.join(d, "default"):
        failures.append(f"{label}: mkoci's default --rootfs is {m!r} (exit {rc}, {err!r}), expected {d}/default")
    print(f"ok {label}: {d}")


def main():
    if os.geteuid() != 0:
        msg = "needs root (the non-root cases run as uid 65534)"
        if os.environ.get("KBOX_MUST_WORK") == "1":
            print(f"FAIL: {msg}; KBOX_MUST_WORK=1 forbids skipping")
            return 1
        print(f"SKIP: {msg}")
        return 77
    with tempfile.TemporaryDirectory(prefix="kbox-imagesdir-") as t:
        os.chmod(t, 0o755)
        mine, home, xdg = os.path.join(t, "mine"), os.path.join(t, "home"), os.path.join(t, "xdg")
        check("root, KBOX_IMAGES_DIR", {"KBOX_IMAGES_DIR": mine, "HOME": home}, 0, mine)
        check("root", {"HOME": home, "XDG_DATA_HOME": xdg}, 0, "/var/lib/kbox/rootfs")
        check("root, relative KBOX_IMAGES_DIR ignored", {"KBOX_IMAGES_DIR": "rel", "HOME": home}, 0,
              "/var/lib/kbox/rootfs")
        check("user, KBOX_IMAGES_DIR", {"KBOX_IMAGES_DIR": mine, "HOME": home}, NOBODY, mine)
        check("user, XDG_DATA_HOME", {"HOME": home, "XDG_DATA_HOME": xdg}, NOBODY, xdg + "/kbox/rootfs")
        check("user, HOME", {"HOME": home}, NOBODY, home + "/.local/share/kbox/rootfs")
        check("user, relative XDG_DATA_HOME ignored", {"HOME": home, "XDG_DATA_HOME": "rel"}, NOBODY,
              home + "/.local/share/kbox/rootfs")
    # The builder has no rule of its own: run directly, without kbox's --images-dir, it refuses.
    out, rc, err = run([sys.executable, os.path.join(SRC, "rootfs", "mkrootfs"), "path", "x"],
                       {"PATH": "/usr/bin:/bin", "KBOX_IMAGES_DIR": "/tmp"}, 0)
    if rc != 125 or "kbox image" not in err:
        failures.append(f"mkrootfs without --images-dir: exit {rc}, out {out!r}, err {err!r} "
                        "(expected 125 and a hint to use kbox image)")
    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
