"""The Tk loop with a real display (Xvfb): the tutorial's AsyncTkApp
clicked with xdotool, and a message box opened from inside a task."""
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import tkinter
import unittest
from tkinter import messagebox

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "demos", "python"))

HAVE_DISPLAY = bool(os.environ.get("DISPLAY")) and shutil.which("xdotool")


def xdotool(*args):
    return subprocess.run(["xdotool", *args], check=False, capture_output=True,
                          text=True, timeout=30).stdout


@unittest.skipUnless(HAVE_DISPLAY, "needs a display (run under xvfb-run) and xdotool")
class TkGuiTest(unittest.TestCase):
    def test_seed_app_keeps_ticking_during_task(self):
        import tk_app
        app = tk_app.AsyncTkApp()
        root = app.root
        seen = {}

        def click():
            root.update()
            seen["before"] = app.ticks
            # a real click on the button, through the X server
            xdotool("mousemove", "--window", str(app.button.winfo_id()), "5", "5",
                    "click", "1")

        def check():
            if app.label.cget("text") == "Done!" and "after" not in seen:
                seen["after"] = app.ticks
                root.quit()
            else:
                root.after(50, check)
        root.after(500, click)
        root.after(600, check)
        root.after(30000, root.quit)  # a bound, never reached when it works
        root.mainloop()
        app.loop.close()
        root.destroy()
        self.assertIn("after", seen, "the task never finished")
        # the 2 s task ran while Tk ticked every 100 ms
        self.assertGreaterEqual(seen["after"] - seen["before"], 10)

    def test_messagebox_from_task_keeps_tasks_running(self):
        import loopbridge.tk
        root = tkinter.Tk()
        loop = loopbridge.tk.EventLoop(root)
        count = [0]

        async def counter():
            while True:
                count[0] += 1
                await asyncio.sleep(0.01)

        def press_ok():
            # the dialog is up and waits in `vwait ::tk::Priv(button)`: answer it
            root.tk.call("set", "::tk::Priv(button)", "ok")

        async def main():
            t = asyncio.create_task(counter())
            await asyncio.sleep(0.05)
            root.after(1000, press_ok)
            before = count[0]
            opened = time.monotonic()
            messagebox.showinfo("loopbridge-box", "tasks go on", parent=root)
            shown = time.monotonic() - opened
            during = count[0] - before
            t.cancel()
            return during, shown
        during, shown = loop.run_until_complete(asyncio.wait_for(main(), 60))
        print("\nbox shown %.2f s, counter advanced %d" % (shown, during))
        loop.close()
        root.destroy()
        self.assertGreater(during, 10)


    def nested_dialog_from_task(self, open_dialog, close_dialog):
        """Opens a dialog from a task; a second task counts and, after a
        while, closes it. Returns how far the counter went meanwhile."""
        import loopbridge.tk
        root = tkinter.Tk()
        loop = loopbridge.tk.EventLoop(root)
        count = [0]

        async def counter():
            while count[0] < 30:
                count[0] += 1
                await asyncio.sleep(0.01)
            close_dialog(root)

        async def main():
            t = asyncio.create_task(counter())
            await asyncio.sleep(0)
            before = count[0]
            open_dialog(root)
            await t
            return count[0] - before
        during = loop.run_until_complete(asyncio.wait_for(main(), 60))
        loop.close()
        root.destroy()
        return during

    def test_wait_window_from_task(self):
        box = {}

        def open_dialog(root):
            box["w"] = tkinter.Toplevel(root)
            root.wait_window(box["w"])
        during = self.nested_dialog_from_task(open_dialog, lambda root: box["w"].destroy())
        self.assertGreaterEqual(during, 29)

    def test_filedialog_from_task(self):
        from tkinter import filedialog

        def close(root):
            # Tk's own file dialog (X11) waits in vwait on this variable
            root.tk.call("set", "::tk::Priv(selectFilePath)", "")
        during = self.nested_dialog_from_task(
            lambda root: filedialog.askopenfilename(parent=root), close)
        self.assertGreaterEqual(during, 29)

    def test_hosted_button_creates_task(self):
        import loopbridge.tk
        root = tkinter.Tk()
        loop = loopbridge.tk.install(root)
        done = []

        async def work():
            await asyncio.sleep(0.05)
            done.append(asyncio.get_running_loop())
            root.quit()
        button = tkinter.Button(root, text="go", command=lambda: asyncio.create_task(work()))
        button.pack()

        def click():
            root.update()
            xdotool("mousemove", "--window", str(button.winfo_id()), "5", "5", "click", "1")
        root.after(300, click)
        root.after(30000, root.quit)
        root.mainloop()
        loop.close()
        root.destroy()
        self.assertEqual(done, [loop])

    def test_ctrl_c_ends_a_hosted_mainloop(self):
        # tkinter's mainloop() sees a SIGINT only with the next event; with
        # the loop installed, the signal is that event
        import loopbridge.tk
        root = tkinter.Tk()
        loop = loopbridge.tk.install(root)
        try:
            timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
            timer.start()
            self.addCleanup(timer.join)
            watchdog = root.after(30000, root.quit)
            t0 = time.monotonic()
            with self.assertRaises(KeyboardInterrupt):
                root.mainloop()
            self.assertLess(time.monotonic() - t0, 10)
            root.after_cancel(watchdog)
        finally:
            loop.close()
            root.destroy()
        self.assertEqual(signal.set_wakeup_fd(-1), -1)  # close took it back


if __name__ == "__main__":
    unittest.main()
