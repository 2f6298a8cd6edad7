"""CPython's event-loop tests on loopbridge.glib.EventLoop(GLib.MainContext())."""
import sys
import unittest

from gi.repository import GLib

import cpython_mixins
import loopbridge.glib

SKIPS = {}

# A context of its own per loop, as a second GTK-less context would be.
cpython_mixins.add_tests(globals(), lambda: loopbridge.glib.EventLoop(GLib.MainContext()),
                         "GLib", SKIPS)

if __name__ == "__main__":
    unittest.main()
