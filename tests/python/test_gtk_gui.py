"""The GLib loop under Gtk.Application.run() with a display (Xvfb): tasks
created in GTK callbacks, a nested GLib.MainLoop (what an application
runs for a modal dialog) opened from a task, a Gio call."""
import asyncio
import os
import unittest

HAVE_DISPLAY = bool(os.environ.get("DISPLAY"))


@unittest.skipUnless(HAVE_DISPLAY, "needs a display (run under xvfb-run)")
class GtkGuiTest(unittest.TestCase):
    def test_application_run_hosts_tasks_and_nested_loops(self):
        import gi
        gi.require_version("Gtk", "4.0")
        from gi.repository import Gio, GLib, Gtk
        import loopbridge.glib

        result = {}

        class App(Gtk.Application):
            def __init__(self):
                super().__init__(application_id="org.loopbridge.PythonTest",
                                 flags=Gio.ApplicationFlags.NON_UNIQUE)
                self.loop = loopbridge.glib.install()

            def do_activate(self):
                self.window = Gtk.ApplicationWindow(application=self)
                self.window.present()
                asyncio.create_task(self.main())

            async def main(self):
                ticks = [0]

                async def ticker(nested):
                    while ticks[0] < 20:
                        ticks[0] += 1
                        await asyncio.sleep(0.01)
                    nested.quit()
                nested = GLib.MainLoop()
                t = asyncio.create_task(ticker(nested))
                await asyncio.sleep(0)
                before = ticks[0]
                nested.run()       # a modal dialog's nested loop
                result["during"] = ticks[0] - before
                await t
                gfile = Gio.File.new_for_path(__file__)
                ok, data, etag = await loopbridge.glib.gio_call(gfile, "load_contents")
                result["read"] = len(data)
                self.quit()

        app = App()
        GLib.timeout_add_seconds(60, lambda: app.quit() or False)
        app.run([])
        app.loop.close()
        self.assertGreaterEqual(result.get("during", 0), 19)
        self.assertEqual(result.get("read"), os.path.getsize(__file__))


if __name__ == "__main__":
    unittest.main()
