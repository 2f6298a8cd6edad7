"""CPython's event-loop tests on loopbridge.tk.EventLoop(tkinter.Tcl())."""
import sys
import tkinter
import unittest

import cpython_mixins
import loopbridge.tk

# One interpreter for the whole run: each test makes and closes its loop.
_interp = tkinter.Tcl()

SKIPS = {}

cpython_mixins.add_tests(globals(), lambda: loopbridge.tk.EventLoop(_interp), "Tk", SKIPS)

if __name__ == "__main__":
    unittest.main(verbosity=int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 1)
