# kbox layer: system-wide IPython configuration (read by terminal IPython and by ipykernel).
# Runs kbox's startup scripts, then the user's `kbox run --startup-dir DIR` scripts (mounted
# read-only at /etc/kbox/user-startup), each directory's *.py / *.ipy files in name order.
# They run after any ~/.ipython/profile_default/startup scripts, in the user's namespace.
import glob as _glob
import os as _os


def _kbox_startup_files():
    files = []
    for d in ("/usr/share/kbox/ipython/startup", "/etc/kbox/user-startup"):
        files += sorted(_glob.glob(_os.path.join(d, "*.py")) + _glob.glob(_os.path.join(d, "*.ipy")))
    return files


c.InteractiveShellApp.exec_files = _kbox_startup_files()
# Inline figures as PNG (used when running in a kernel).
c.InlineBackend.figure_formats = {"png"}
