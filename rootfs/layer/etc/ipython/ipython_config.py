# kbox layer: system-wide IPython configuration (read by terminal IPython and by ipykernel).
# One exec file runs kbox's startup scripts, then the user's `kbox run --startup-dir DIR` scripts
# (mounted read-only at /etc/kbox/user-startup), each file on its own so that one failing script
# does not stop the others. They run after any ~/.ipython/profile_default/startup scripts.
c.InteractiveShellApp.exec_files = ["/usr/share/kbox/ipython/run_startup.py"]
# Inline figures as PNG (used when running in a kernel).
c.InlineBackend.figure_formats = {"png"}
# The kernel answers kernel_info before the start-up scripts have run (they import pandas and
# matplotlib); requests that read the namespace wait for them (kbox_ipykernel.py, docs/pods.md).
c.IPKernelApp.kernel_class = "kbox_ipykernel.KboxKernel"
