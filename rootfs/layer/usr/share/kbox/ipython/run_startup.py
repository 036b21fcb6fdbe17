# kbox: run the startup scripts in the user's namespace: /usr/share/kbox/ipython/startup/ first,
# then /etc/kbox/user-startup/ (kbox run --startup-dir), *.py and *.ipy in name order per directory.
# An error in one script is shown and the next script still runs.
# In kbox's kernel (kbox_ipykernel.KboxKernel) and without --startup-dir scripts, they run after
# the kernel answered kernel_info, and the first request that reads the namespace waits for them
# (docs/pods.md, "Start-up time"); user scripts keep running here, before readiness, in order.


def _kbox_run_startup():
    import glob
    import os

    ip = get_ipython()  # noqa: F821 (provided by IPython)
    dirs = ("/usr/share/kbox/ipython/startup", "/etc/kbox/user-startup")
    scripts = [path for d in dirs
               for path in sorted(glob.glob(os.path.join(d, "*.py")) + glob.glob(os.path.join(d, "*.ipy")))]

    def run():
        for path in scripts:
            if path.endswith(".ipy"):
                ip.safe_execfile_ipy(path)
            else:
                ip.safe_execfile(path, ip.user_ns)

    defer = getattr(getattr(ip, "kernel", None), "kbox_defer", None)
    if defer is not None and not any(p.startswith(dirs[1] + "/") for p in scripts):
        defer(run)
    else:
        run()


_kbox_run_startup()
del _kbox_run_startup
