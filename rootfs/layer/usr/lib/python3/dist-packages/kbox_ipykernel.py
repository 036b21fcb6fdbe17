# kbox layer: the IPython kernel with kbox's startup scripts run after readiness (docs/pods.md,
# "Start-up time"). Selected by /etc/ipython/ipython_config.py (IPKernelApp.kernel_class).
#
# The image's startup scripts import pandas, matplotlib and seaborn (1-1.5 s of CPU). Run at
# initialization they delay the kernel's first kernel_info reply by that much. This kernel answers
# kernel_info first and then runs them in a background thread; every request that reads the user's
# namespace (execute, complete, inspect) waits for them, so the first cell sees exactly what it
# would have seen (same names, same options, hidden from %who like any start-up name), and the
# time it waits is that cell's, not hidden.
#
# ipykernel 6 also builds its debugger in IPythonKernel.__init__, importing debugpy and pydevd
# (0.1-0.3 s) before the kernel can answer anything, though few clients ever debug. This kernel
# builds the debugger on the first debug_request instead (that request pays the import once).
import asyncio
import sys
import threading
import types

from ipykernel.ipkernel import IPythonKernel


class KboxKernel(IPythonKernel):
    """IPythonKernel whose deferred start-up work (kbox_defer) runs after the first kernel_info."""

    _kbox_work = None      # the deferred function, set by kbox_defer
    _kbox_thread = None    # its thread, once started
    _kbox_lock = threading.Lock()
    debugger = None        # ipykernel's Debugger, built by _kbox_debugger on the first debug_request

    def __init__(self, **kwargs):
        # IPythonKernel.__init__ imports ipykernel.debugger (which imports debugpy) and builds a
        # Debugger when debugpy is there; let it see a module saying "no debugpy" for that call
        stub = types.ModuleType("ipykernel.debugger")
        stub._is_debugpy_available = False
        stub.Debugger = None
        real = sys.modules.get("ipykernel.debugger")
        if real is None:
            sys.modules["ipykernel.debugger"] = stub
        try:
            super().__init__(**kwargs)
        finally:
            if sys.modules.get("ipykernel.debugger") is stub:
                del sys.modules["ipykernel.debugger"]

    def _kbox_debugger(self):
        """ipykernel's Debugger, built now if it was not yet (what IPythonKernel.__init__ would have
        built); None when debugpy is not installed. Runs on the control thread (debug_request)."""
        if self.debugger is None:
            from ipykernel.debugger import Debugger, _is_debugpy_available
            if not _is_debugpy_available:
                return None
            self.debugger = Debugger(self.log, self.debugpy_stream, self._publish_debug_event,
                                     self.debug_shell_socket, self.session, self.debug_just_my_code)
            if self.debugpy_stream is not None:  # what start() runs when the debugger exists
                asyncio.ensure_future(super().poll_stopped_queue())
        return self.debugger

    async def poll_stopped_queue(self):
        # start() schedules this on the control loop; with no debugger yet, _kbox_debugger does later
        if self.debugger is not None:
            await super().poll_stopped_queue()

    async def do_debug_request(self, msg):
        if self._kbox_debugger() is None:
            return None  # as IPythonKernel without debugpy
        return await super().do_debug_request(msg)

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
