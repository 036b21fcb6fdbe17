# kbox zygote (docs/warm.md): import the data stack once, then fork one kernel per request.
# It never runs user code and holds no zmq context, socket (but its line to its server, which
# accepts and checks the callers and passes their connections here), thread or stray file while
# waiting; each fork turns into a sandboxed kernel through libkbox-warm.so
# (src/warm/child.c) and only then starts the kernel app.
import ctypes
import os
import select
import signal
import socket
import sys
import time

# Where kbox bound them (a rootless zygote's are under its /tmp: it cannot make mount points
# in the image's root-owned directories); never in a kernel's environment, which is its own.
INNER_DIR = os.environ.get("KBOX_WARM_INNER_DIR", "/run/kbox-warm")
LIB = os.environ.get("KBOX_WARM_INNER_LIB", "/usr/lib/kbox/libkbox-warm.so")
CONNECTION_FILE = "/run/kbox/kernel.json"
MAX_REQ = 1 << 20
MAX_FDS = 64
IDLE = float(os.environ.get("KBOX_WARM_IDLE", "900"))
LIBRARY = []  # [the loaded libkbox-warm.so], for trace() in a kernel
IMPORT_ENV = {}  # variables the imports set that a cold kernel has too at its start
# debugpy sets these when imported; a cold kernel imports it only on its first debug_request
# (kbox_ipykernel builds the debugger lazily), so a fresh warm kernel must not have them either
LAZY_IMPORT_ENV = ("PYDEVD_",)


def log(msg):
    sys.__stderr__.write("kbox-zygote: %s\n" % msg)
    sys.__stderr__.flush()


def trace(what):
    """One --trace-setup line from the kernel (a no-op unless kbox traces)."""
    if LIBRARY:
        LIBRARY[0].kbox_warm_trace(what.encode())


APP_STEPS = ("parse_command_line", "init_crash_handler", "init_profile_dir", "init_config_files", "load_config_file",
             "init_pdb", "init_blackhole", "init_connection_file", "init_poller", "init_sockets", "init_heartbeat",
             "write_connection_file", "log_connection_info", "init_io", "init_signal", "init_kernel", "init_path",
             "init_shell", "init_gui_pylab", "init_extensions", "init_code")


def trace_app_steps(app):
    """--trace-setup: one line per step of the kernel app's initialize()."""
    for name in APP_STEPS:
        method = getattr(app, name, None)
        if method is None:
            continue

        def timed(*a, _method=method, _name=name, **kw):
            r = _method(*a, **kw)
            trace("python: app." + _name)
            return r
        setattr(app, name, timed)


def warm_imports():
    """What a kernel would import at start-up, plus the image's warm list (/etc/kbox/warm.txt)."""
    import ipykernel.kernelapp  # noqa: F401
    import ipykernel.ipkernel  # noqa: F401
    import ipykernel.zmqshell  # noqa: F401
    import ipykernel.debugger  # noqa: F401  (debugpy, pydevd: 0.3 s)
    import faulthandler  # noqa: F401
    import stringprep  # noqa: F401
    import xmlrpc.client  # noqa: F401
    import IPython.core.pylabtools  # noqa: F401
    import IPython.core.interactiveshell  # noqa: F401
    import jupyter_client.session  # noqa: F401
    import numpy  # noqa: F401
    import pandas  # noqa: F401
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401  (loads the font list)
    import matplotlib_inline.backend_inline  # noqa: F401
    from matplotlib.backends.registry import backend_registry
    backend_registry.resolve_gui_or_backend("inline")  # reads every entry point once (0.1 s)
    names = []
    try:
        with open("/etc/kbox/warm.txt") as f:
            names = [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]
    except OSError:
        pass
    for name in ["seaborn", "chardet"] + names:  # the startup scripts import the first two
        try:
            __import__(name)
        except Exception as e:  # a missing optional module only costs its import later
            log("warm list: %s not imported (%s)" % (name, e))


def check_pristine():
    """No threads, no open files but stdio: what a fork would otherwise share or lose."""
    tasks = os.listdir("/proc/self/task")
    if len(tasks) != 1:
        raise SystemExit("kbox-zygote: %d threads after the imports; refusing to serve" % len(tasks))
    fds = [int(f) for f in os.listdir("/proc/self/fd") if int(f) > 2]
    left = []
    for fd in fds:
        try:
            left.append("%d -> %s" % (fd, os.readlink("/proc/self/fd/%d" % fd)))
        except OSError:
            pass  # the listing's own fd
    if left:
        raise SystemExit("kbox-zygote: open files after the imports: %s" % ", ".join(left))


def freeze_heap():
    """Move every object made by the imports into the collector's permanent generation: a
    collection in a kernel then never writes their headers, so their pages stay shared with the
    zygote (and the kernel's collections do not walk them)."""
    import gc
    gc.collect()
    gc.freeze()


def decode_env(envbuf):
    """The environment libkbox-warm.so packed into envbuf (NUL-separated KEY=VALUE, an empty one last)."""
    env = {}
    for kv in envbuf.raw.split(b"\0"):
        if not kv:
            break
        k, _, v = kv.decode("utf-8", "surrogateescape").partition("=")
        env[k] = v
    return env


def kernel_main(envbuf):
    """In the kernel process (pid 2 of its own sandbox): fresh state, then the kernel app."""
    env = decode_env(envbuf)
    os.environ.clear()
    os.environ.update(IMPORT_ENV)
    os.environ.update(env)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    import random
    import tempfile
    random.seed()
    import numpy
    numpy.random.seed()
    tempfile.tempdir = None
    trace("python: environment set, re-seeded")
    sys.argv = ["ipykernel_launcher", "-f", CONNECTION_FILE]
    sys.path[:] = [p for p in sys.path if p not in ("", "/usr/share/kbox")]
    from ipykernel import kernelapp
    if os.environ.get("KBOX_WARM_PROFILE"):  # docs/warm.md: where a warm kernel's start-up goes
        import cProfile
        import pstats
        app = kernelapp.IPKernelApp.instance()
        t = time.monotonic()
        before = set(sys.modules)
        cProfile.runctx("app.initialize()", globals(), {"app": app}, "/tmp/.kbox-warm-profile")
        log("kernel app initialize: %.3f s" % (time.monotonic() - t))
        pstats.Stats("/tmp/.kbox-warm-profile", stream=sys.__stderr__).sort_stats("cumulative").print_stats(30)
        os.unlink("/tmp/.kbox-warm-profile")
        new = sorted(m for m in set(sys.modules) - before if "." not in m)
        log("top-level modules the kernel imported itself: %s" % " ".join(new))
        app.start()
        return
    if os.environ.pop(POOL_KERNEL_ENV, None) is not None:  # the pool, below
        pool_kernel_main(kernelapp)
        return
    app = kernelapp.IPKernelApp.instance()
    if LIBRARY and LIBRARY[0].kbox_warm_tracing():
        trace_app_steps(app)
    app.initialize()
    trace("python: IPKernelApp.initialize done")
    app.start()


def run_kernel(envbuf):
    """The kernel's exit status, as `python3 -m ipykernel_launcher` would end."""
    code = 0
    try:
        kernel_main(envbuf)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        import traceback
        traceback.print_exc()
        code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        pass
    return code


def next_connection(ctl):
    """The next caller's connection, which our server (kbox warm serve, on the host) accepted and
    checked (SO_PEERCRED) before passing it here; None when the server is gone."""
    msg, fds, _, _ = socket.recv_fds(ctl, 16, 1)
    if not msg or not fds:
        for fd in fds:
            os.close(fd)
        return None
    return socket.socket(fileno=fds[0])


def serve(lib, ctl):
    last = time.monotonic()
    children = 0
    while True:
        while children > 0:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                children = 0
                break
            if pid == 0:
                break
        if children > 0:
            last = time.monotonic()
        r, _, _ = select.select([ctl], [], [], 1.0)
        if not r:
            if children == 0 and time.monotonic() - last > IDLE:
                log("idle for %d s: exiting" % IDLE)
                return
            continue
        conn = next_connection(ctl)
        if conn is None:
            log("the server is gone: exiting")
            return
        try:
            msg, fds, _, _ = socket.recv_fds(conn, MAX_REQ, MAX_FDS)
        except OSError as e:
            log("bad request: %s" % e)
            conn.close()
            continue
        if not msg:
            conn.close()
            for fd in fds:
                os.close(fd)
            continue
        last = time.monotonic()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(ctl.detach())
                os.close(conn.detach())
                envbuf = ctypes.create_string_buffer(1 << 16)
                arr = (ctypes.c_int * len(fds))(*fds)
                lib.kbox_warm_child(msg, len(msg), arr, len(fds), envbuf, len(envbuf))
            except BaseException:
                os._exit(125)
            os._exit(run_kernel(envbuf))
        children = 1  # pid 1 of each kernel is adopted by us: reap until none is left
        conn.close()
        for fd in fds:
            os.close(fd)


def main():
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    lib = ctypes.CDLL(LIB)
    lib.kbox_warm_child.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_int),
                                    ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]
    lib.kbox_warm_child.restype = ctypes.c_int
    pool_setup(lib)
    lib.kbox_warm_trace.argtypes = [ctypes.c_char_p]
    LIBRARY.append(lib)
    t0 = time.monotonic()
    before = dict(os.environ)
    warm_imports()
    IMPORT_ENV.update({k: v for k, v in os.environ.items() if before.get(k) != v and not k.startswith(LAZY_IMPORT_ENV)})
    check_pristine()
    freeze_heap()
    ctl = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ctl.connect(os.path.join(INNER_DIR, "serve.sock"))
    ctl.send(b"ready")  # the server then opens the callers' socket
    log("ready after %.2f s" % (time.monotonic() - t0))
    serve(lib, ctl)


# ---- The pool (docs/warm.md, "The pool"): a kernel started ahead, settled when it is claimed ----

POOL_KERNEL_ENV = "KBOX_WARM_POOL_KERNEL"  # src/warm/pool.h: in the environment of a pool kernel
CLAIM_SOCK = "/run/kbox/claim.sock"  # its claim socket, in its run dir
POOL = {}


def pool_setup(lib):
    """The library's claim entry point (src/warm/claim_env.c)."""
    lib.kbox_warm_claim_env.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t,
                                        ctypes.c_char_p, ctypes.c_size_t]
    lib.kbox_warm_claim_env.restype = ctypes.c_int
    POOL["lib"] = lib


def pool_kernel_main(kernelapp):
    """The app starts now; once its loop runs, the kernel listens for its claim (the holder offers
    it only then)."""
    from tornado.ioloop import IOLoop
    POOL["env_before_app"] = dict(os.environ)
    app = kernelapp.IPKernelApp.instance()
    app.initialize()
    IOLoop.current().add_callback(pool_listen, app)
    app.start()


def pool_listen(app):
    """Accept one claim on CLAIM_SOCK from the app's loop; the socket is gone before the answer."""
    from tornado.ioloop import IOLoop
    loop = IOLoop.current()
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    tmp = CLAIM_SOCK + ".tmp"
    lsock.bind(tmp)
    lsock.listen(8)
    lsock.setblocking(False)
    os.rename(tmp, CLAIM_SOCK)

    def on_claim(fd, events):
        try:
            conn, _ = lsock.accept()
        except OSError:
            return
        conn.settimeout(10)
        try:
            msg, fds, _, _ = socket.recv_fds(conn, MAX_REQ, 1)
            cwd, workdir = pool_settle(app, msg, fds)  # while the claimer mounts and makes the cgroups
            err = None
            if workdir and conn.recv(16) != b"go":  # the workdir is mounted now
                raise OSError("the claimer went away")
            pool_chdir(app, cwd)
        except Exception as e:  # the claimer gives the kernel up (its holder then ends it)
            err = "%s: %s" % (type(e).__name__, e)
        loop.remove_handler(fd)
        lsock.close()
        os.unlink(CLAIM_SOCK)
        try:
            conn.send(b"ok" if err is None else err.encode("utf-8", "replace")[:500])
        finally:
            conn.close()

    loop.add_handler(lsock.fileno(), on_claim, IOLoop.READ)


def pool_settle(app, msg, fds):
    """The claim's environment and stdio, as a fork of this request would have them; returns the
    cwd, and whether it is a workdir (to change to once the claimer has mounted it)."""
    envbuf = ctypes.create_string_buffer(1 << 16)
    cwd = ctypes.create_string_buffer(4096)
    workdir = POOL["lib"].kbox_warm_claim_env(msg, len(msg), envbuf, len(envbuf), cwd, len(cwd))
    if workdir < 0:
        raise ValueError("the claim's request could not be read")
    env = decode_env(envbuf)
    before = POOL.pop("env_before_app")
    by_app = {k: v for k, v in os.environ.items() if before.get(k) != v}  # the shell's TERM, PAGER...
    os.environ.clear()
    os.environ.update(IMPORT_ENV)
    os.environ.update(env)
    os.environ.update(by_app)
    for fd in fds:  # the claimer's stderr: the kernel's stdout and stderr, as a fork's
        for stream, std in ((sys.stdout, 1), (sys.stderr, 2)):
            copy = getattr(stream, "_original_stdstream_copy", None)  # ipykernel's fd capture
            os.dup2(fd, copy if copy is not None else std, inheritable=copy is None)
        os.close(fd)
    return cwd.value.decode("utf-8", "surrogateescape"), workdir == 1


def pool_chdir(app, cwd):
    """The claim's cwd (and IPython's directory history)."""
    try:
        os.chdir(cwd)
    except OSError:
        os.chdir("/")
    hist = getattr(app.shell, "history_manager", None)
    if hist is not None:
        kind = type(hist.dir_hist[0]) if hist.dir_hist else str
        hist.dir_hist[:] = [kind(os.getcwd())]


if __name__ == "__main__":
    main()
