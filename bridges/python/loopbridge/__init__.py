"""loopbridge: asyncio event loops that run inside Tk's and GLib's main
loops, on the loopbridge C library.

    import loopbridge.tk     # loopbridge.tk.EventLoop(root), loopbridge.tk.install(root)
    import loopbridge.glib   # loopbridge.glib.EventLoop(context=None), install(context=None)

See docs/python.md.
"""
__all__ = ["tk", "glib"]
__version__ = "0.1.0"


def _load_wheel_libraries():
    # A wheel built by meson-python 0.12 carries libloopbridge*.so.0.1.0 in
    # .loopbridge.mesonpy.libs without their SONAME links, so the
    # extension's libloopbridge.so.0 would not be found: load them first
    # (the dynamic loader then matches them by SONAME). Nothing to do in
    # the build tree or a system install.
    import ctypes
    import glob
    import os
    libs = os.path.join(os.path.dirname(os.path.dirname(__file__)), ".loopbridge.mesonpy.libs")
    names = sorted(glob.glob(os.path.join(libs, "libloopbridge*.so*")), key=len)
    for path in names:  # the core library (shortest name) first
        ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)


_load_wheel_libraries()
