"""loopbridge: asyncio event loops that run inside Tk's and GLib's main
loops, on the loopbridge C library.

    import loopbridge.tk     # loopbridge.tk.EventLoop(root), loopbridge.tk.install(root)
    import loopbridge.glib   # loopbridge.glib.EventLoop(context=None), install(context=None)

See docs/python.md.
"""
__all__ = ["tk", "glib"]
__version__ = "0.1.0"
