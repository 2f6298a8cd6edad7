"""An asyncio event loop running inside Tk's (Tcl's) event loop.

    loop = loopbridge.tk.EventLoop(root)        # root: tkinter.Tk() or tkinter.Tcl()
    asyncio.Runner(loop_factory=lambda: loop)   # 1. asyncio drives, Tk stays live
    loopbridge.tk.install(root); root.mainloop()  # 2. Tk drives (hosted)
    loop.run_until_complete(coro())             # 3. from a button: no freeze

Use the loop on the thread that created root. See docs/python.md.
"""
import itertools

from . import _base
from ._loopbridge import Bridge, HAVE_TK, PassCall

__all__ = ["EventLoop", "install", "bench_loop"]

_names = itertools.count()


class EventLoop(_base.BridgeEventLoop):
    """An asyncio loop whose waiting is done by Tcl_DoOneEvent: Tk's
    mainloop(), update(), wait_window(), dialogs and vwait run it too."""

    def __init__(self, root):
        if not HAVE_TK:
            raise RuntimeError("loopbridge was built without Tcl/Tk")
        tkapp = getattr(root, "tk", root)
        if not hasattr(tkapp, "interpaddr"):
            raise TypeError("root must be a tkinter.Tk or tkinter.Tcl object")
        self._root = root
        self._tkapp = tkapp
        # loopbridge enters Python only through this tkinter-made command:
        # _tkinter's wrapper then takes the GIL and keeps its thread state.
        self._tcl_command = "::loopbridge_pass%d" % next(_names)
        tkapp.createcommand(self._tcl_command, PassCall(self))
        try:
            bridge = Bridge("tk", tkapp.interpaddr(), self._tcl_command)
        except BaseException:
            tkapp.deletecommand(self._tcl_command)
            raise
        super().__init__(bridge)

    def _lb_iterate(self):
        self._tkapp.dooneevent(0)

    def _lb_host_close(self):
        try:
            self._tkapp.deletecommand(self._tcl_command)
        except Exception:  # the interpreter is gone already
            pass


def install(root):
    """Hosted mode: makes an EventLoop for root that Tk's own mainloop()
    runs and that counts as the running loop of this thread, so button
    commands can call asyncio.create_task(). Returns the loop; close it
    after mainloop() returns."""
    return EventLoop(root).install()


def bench_loop():
    """A loop on a new display-less tkinter.Tcl() interpreter: the factory
    tools/bench.sh gives the peers' benchmarks
    (py_peers.py --factory loopbridge.tk:bench_loop)."""
    import tkinter
    return EventLoop(tkinter.Tcl())
