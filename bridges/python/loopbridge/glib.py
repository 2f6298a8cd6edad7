"""An asyncio event loop running inside a GLib main context (GTK4 apps).

    loop = loopbridge.glib.EventLoop()            # the default context (GTK's)
    asyncio.Runner(loop_factory=loopbridge.glib.EventLoop)
    loopbridge.glib.install(); app.run()         # hosted: GTK drives
    data = await loopbridge.glib.gio_call(file, "load_contents")

Use the loop on the thread that iterates the context. See docs/python.md.
"""
import asyncio

from gi.repository import Gio, GLib

from . import _base
from ._loopbridge import Bridge, HAVE_GLIB, PassCall

__all__ = ["EventLoop", "install", "gio_call"]


def _context_address(context):
    # PyGObject hashes a boxed value by the address of the C struct.
    if not isinstance(context, GLib.MainContext):
        raise TypeError("context must be a GLib.MainContext or None")
    return hash(context) & ((1 << 64) - 1)


class EventLoop(_base.BridgeEventLoop):
    """An asyncio loop whose waiting is done by the GMainContext: GTK's
    Application.run(), GLib.MainLoop.run(), modal dialogs and
    context.iteration() run it too."""

    def __init__(self, context=None):
        if not HAVE_GLIB:
            raise RuntimeError("loopbridge was built without GLib")
        if context is None:
            context = GLib.MainContext.default()
        self._context = context
        bridge = Bridge("glib", _context_address(context), PassCall(self))
        super().__init__(bridge)

    @property
    def context(self):
        return self._context

    def _lb_iterate(self):
        self._context.iteration(True)


def install(context=None):
    """Hosted mode: makes an EventLoop for context that GTK's
    Application.run() (or any GLib.MainLoop) runs and that counts as the
    running loop of this thread. Returns the loop; close it when the
    application has quit."""
    return EventLoop(context).install()


async def gio_call(obj, name, *args, finish=None, **kwargs):
    """Awaits obj.<name>_async(*args, cancellable=..., callback=...) and
    returns obj.<name>_finish(result) (or finish(result)). Cancelling the
    awaiting task cancels the Gio operation through its Gio.Cancellable;
    a Gio error is raised as GLib.Error."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    cancellable = Gio.Cancellable()
    start = getattr(obj, name + "_async")
    if finish is None:
        finish = getattr(obj, name + "_finish")

    def done(source, result, *unused):
        if future.done():
            return
        try:
            value = finish(result)
        except GLib.Error as exc:
            if cancellable.is_cancelled():
                future.cancel()
            else:
                future.set_exception(exc)
        except BaseException as exc:  # pass on whatever finish raised
            future.set_exception(exc)
        else:
            future.set_result(value)

    start(*args, cancellable=cancellable, callback=done, **kwargs)
    try:
        return await future
    except asyncio.CancelledError:
        cancellable.cancel()
        raise
