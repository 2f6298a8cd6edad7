"""setUp/tearDown of the Python loop tests: a loop on a display-less
tkinter.Tcl() or on a new GLib.MainContext, closed and freed after each
test."""
import asyncio
import gc
import os
import threading


def cancel_afters(root):
    """Cancels every pending `after` of root: an `after` chain left running
    keeps the interpreter and wakes the thread in every later test."""
    for after_id in root.tk.splitlist(root.tk.call("after", "info")):
        root.after_cancel(after_id)


class LoopFixture:
    """self.make_loop() makes the test's loop (closing the one before);
    tearDown closes it."""
    loop = None

    def new_loop(self):
        raise NotImplementedError

    def make_loop(self):
        if self.loop is not None and not self.loop.is_closed():
            self.loop.close()
        self.loop = self.new_loop()
        return self.loop

    def signal_soon(self, signum, delay=0.2):
        """Sends signum to this process delay seconds from now, from
        another thread (joined at cleanup)."""
        timer = threading.Timer(delay, os.kill, (os.getpid(), signum))
        timer.start()
        self.addCleanup(timer.join)

    def close_loop(self):
        if self.loop is not None and not self.loop.is_closed():
            self.loop.close()
        asyncio.set_event_loop(None)
        self.loop = None


class TkFixture(LoopFixture):
    def setUp(self):
        import tkinter
        self.root = tkinter.Tcl()
        self.loop = None

    def tearDown(self):
        self.close_loop()
        cancel_afters(self.root)
        # Free the interpreter here: the cyclic GC could otherwise free it
        # on another thread, which Tcl refuses (Tcl_AsyncDelete aborts).
        self.root = None
        gc.collect()

    def new_loop(self):
        import loopbridge.tk
        return loopbridge.tk.EventLoop(self.root)


class GLibFixture(LoopFixture):
    def setUp(self):
        from gi.repository import GLib
        self.context = GLib.MainContext()
        self.context.push_thread_default()
        self.loop = None

    def tearDown(self):
        self.close_loop()
        self.context.pop_thread_default()
        gc.collect()

    def new_loop(self):
        import loopbridge.glib
        return loopbridge.glib.EventLoop(self.context)
