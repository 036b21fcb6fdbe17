# kbox: run the startup scripts in the user's namespace: /usr/share/kbox/ipython/startup/ first,
# then /etc/kbox/user-startup/ (kbox run --startup-dir), *.py and *.ipy in name order per directory.
# An error in one script is shown and the next script still runs.


def _kbox_run_startup():
    import glob
    import os

    ip = get_ipython()  # noqa: F821 (provided by IPython)
    for d in ("/usr/share/kbox/ipython/startup", "/etc/kbox/user-startup"):
        for path in sorted(glob.glob(os.path.join(d, "*.py")) + glob.glob(os.path.join(d, "*.ipy"))):
            if path.endswith(".ipy"):
                ip.safe_execfile_ipy(path)
            else:
                ip.safe_execfile(path, ip.user_ns)


_kbox_run_startup()
del _kbox_run_startup
