#!/usr/bin/env python3
"""asyncio inside GTK4 (PyGObject): Gtk.Application.run() is the outer
loop (hosted mode). "Load" reads a file with a Gio async call awaited in a
task, "Cancel" cancels it (the Gio.Cancellable follows), "Dialog" opens a
modal dialog while a counter task keeps ticking.

Run: python3 demos/python/gtk4_app.py [FILE]
"""
import asyncio
import sys

import gi
gi.require_version("Gtk", "4.0")
from gi.repository import Gio, GLib, Gtk  # noqa: E402

import loopbridge.glib  # noqa: E402


class App(Gtk.Application):
    def __init__(self, path):
        super().__init__(application_id="org.loopbridge.PythonDemo",
                         flags=Gio.ApplicationFlags.NON_UNIQUE)
        self.path = path
        self.load_task = None
        self.loop = loopbridge.glib.install()

    def do_activate(self):
        win = Gtk.ApplicationWindow(application=self, title="loopbridge + asyncio")
        box = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=6)
        self.counter = Gtk.Label(label="ticks: 0")
        self.status = Gtk.Label(label="")
        row = Gtk.Box(spacing=6)
        for text, handler in (("Load", self.on_load), ("Cancel", self.on_cancel),
                              ("Dialog", self.on_dialog)):
            button = Gtk.Button(label=text)
            button.connect("clicked", handler)
            row.append(button)
        for widget in (self.counter, row, self.status):
            box.append(widget)
        win.set_child(box)
        win.present()
        self.window = win
        asyncio.create_task(self.tick())

    async def tick(self):
        n = 0
        while True:
            await asyncio.sleep(0.1)
            n += 1
            self.counter.set_label("ticks: %d" % n)

    async def load(self):
        gfile = Gio.File.new_for_path(self.path)
        self.status.set_label("loading %s" % self.path)
        try:
            await asyncio.sleep(1)  # so that Cancel has a chance
            ok, data, etag = await loopbridge.glib.gio_call(gfile, "load_contents")
            self.status.set_label("%d bytes" % len(data))
        except asyncio.CancelledError:
            self.status.set_label("cancelled")
            raise
        except GLib.Error as exc:
            self.status.set_label(exc.message)

    def on_load(self, button):
        if self.load_task is None or self.load_task.done():
            self.load_task = asyncio.create_task(self.load())

    def on_cancel(self, button):
        if self.load_task is not None:
            self.load_task.cancel()

    def on_dialog(self, button):
        dialog = Gtk.MessageDialog(transient_for=self.window, modal=True,
                                   buttons=Gtk.ButtonsType.OK,
                                   text="The counter goes on behind this dialog.")
        dialog.connect("response", lambda d, r: d.destroy())
        dialog.present()


def main():
    app = App(sys.argv[1] if len(sys.argv) > 1 else "/etc/os-release")
    try:
        return app.run([sys.argv[0]])
    finally:
        tasks = asyncio.all_tasks(app.loop)
        for task in tasks:
            task.cancel()
        app.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        app.loop.close()


if __name__ == "__main__":
    sys.exit(main())
