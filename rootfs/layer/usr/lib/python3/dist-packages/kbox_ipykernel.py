# kbox layer: the IPython kernel with kbox's startup scripts run after readiness (docs/pods.md,
# "Start-up time"). Selected by /etc/ipython/ipython_config.py (IPKernelApp.kernel_class).
#
# The image's startup scripts import pandas, matplotlib and seaborn (1-1.5 s of CPU). Run at
# initialization they delay the kernel's first kernel_info reply by that much. This kernel answers
# kernel_info first and then runs them in a background thread; every request that reads the user's
# namespace (execute, complete, inspect) waits for them, so the first cell sees exactly what it
# would have seen (same names, same options, hidden from %who like any start-up name), and the
# time it waits is that cell's, not hidden.
import sys
import threading

from ipykernel.ipkernel import IPythonKernel


class KboxKernel(IPythonKernel):
    """IPythonKernel whose deferred start-up work (kbox_defer) runs after the first kernel_info."""

    _kbox_work = None      # the deferred function, set by kbox_defer
    _kbox_thread = None    # its thread, once started
    _kbox_lock = threading.Lock()

    def kbox_defer(self, work):
        """Run work() in the background once the kernel has answered kernel_info (or before the
        first request that needs the user's namespace, whichever comes first)."""
        self._kbox_work = work

    def _kbox_start(self):
        with self._kbox_lock:
            if self._kbox_work is None or self._kbox_thread is not None:
                return
            self._kbox_thread = threading.Thread(target=self._kbox_run, name="kbox-startup", daemon=True)
            self._kbox_thread.start()

    def _kbox_run(self):
        shell = self.shell
        before = set(shell.user_ns)
        try:
            self._kbox_work()
        finally:
            # as IPython does for names its start-up code defines (InteractiveShellApp.init_code)
            if _hide_initial_ns():
                shell.user_ns_hidden.update({k: shell.user_ns[k] for k in set(shell.user_ns) - before})
            if hasattr(shell, "_sys_modules_keys"):
                shell._sys_modules_keys |= set(sys.modules)
            sys.stdout.flush()
            sys.stderr.flush()

    def _kbox_wait(self):
        """Block until the deferred start-up work is done (starting it if nothing did yet)."""
        self._kbox_start()
        if self._kbox_thread is not None:
            self._kbox_thread.join()  # no polling wake-ups; SIGINT still interrupts it (POSIX)

    async def kernel_info_request(self, stream, ident, parent):
        await super().kernel_info_request(stream, ident, parent)
        self._kbox_start()

    async def do_execute(self, code, silent, store_history=True, user_expressions=None, allow_stdin=False,
                         **kwargs):
        try:
            self._kbox_wait()
        except KeyboardInterrupt:
            return self._kbox_interrupted(silent, store_history)
        return await super().do_execute(code, silent, store_history, user_expressions, allow_stdin, **kwargs)

    def do_complete(self, code, cursor_pos):
        self._kbox_wait()
        return super().do_complete(code, cursor_pos)

    def do_inspect(self, code, cursor_pos, detail_level=0, omit_sections=()):
        self._kbox_wait()
        return super().do_inspect(code, cursor_pos, detail_level, omit_sections)

    def _kbox_interrupted(self, silent, store_history):
        """The reply of a cell interrupted while it waited for the start-up work (its code did not
        run; the work goes on and the next request waits for it again)."""
        shell = self.shell
        shell.showtraceback()  # the error on iopub, as for any interrupted cell
        count = shell.execution_count
        if store_history and not silent:
            shell.execution_count += 1
        return {"status": "error", "execution_count": count, "ename": "KeyboardInterrupt", "evalue": "",
                "traceback": getattr(shell, "_last_traceback", None) or [], "user_expressions": {}, "payload": [],
                "engine_info": {"engine_uuid": self.ident, "engine_id": self.int_id, "method": "execute"}}


def _hide_initial_ns():
    from ipykernel.kernelapp import IPKernelApp
    return not IPKernelApp.initialized() or IPKernelApp.instance().hide_initial_ns
