#!/usr/bin/env python3
"""The tutorial's AsyncTkApp, working: asyncio inside Tk's own loop.

- "Run async task": the tutorial's handler, loop.run_until_complete() from a
  button, no longer freezes the window (the counter keeps ticking).
- "Download": streams from a local asyncio server with a progress bar;
  "Cancel" cancels the task.
- "Message box": a modal tkinter.messagebox; the tasks keep running behind it.

Run: python3 demos/python/tk_app.py  (with the package built or installed)
"""
import asyncio
import tkinter as tk
from tkinter import messagebox, ttk

import loopbridge.tk

CHUNK = 16 * 1024
TOTAL = 64 * CHUNK


class AsyncTkApp:
    def __init__(self):
        self.root = tk.Tk()
        self.root.title("Async Tkinter")

        self.label = tk.Label(self.root, text="Press the button")
        self.label.pack()
        self.button = tk.Button(self.root, text="Run async task",
                                command=self.on_button_click)
        self.button.pack()

        # The only change to the tutorial's code: a loop that runs in Tk.
        self.loop = loopbridge.tk.EventLoop(self.root)

        self.ticks = 0
        self.counter = tk.Label(self.root, text="ticks: 0")
        self.counter.pack()
        self.root.after(100, self.tick)

        self.progress = ttk.Progressbar(self.root, maximum=TOTAL, length=240)
        self.progress.pack()
        row = tk.Frame(self.root)
        row.pack()
        tk.Button(row, text="Download", command=self.on_download).pack(side=tk.LEFT)
        tk.Button(row, text="Cancel", command=self.on_cancel).pack(side=tk.LEFT)
        tk.Button(row, text="Message box", command=self.on_message).pack(side=tk.LEFT)
        self.status = tk.Label(self.root, text="")
        self.status.pack()
        self.download = None
        self.server = None

    def tick(self):
        self.ticks += 1
        self.counter.config(text="ticks: %d" % self.ticks)
        self.root.after(100, self.tick)

    def on_button_click(self):
        self.label.config(text="Loading...")
        self.loop.run_until_complete(self.async_task())

    async def async_task(self):
        await asyncio.sleep(2)  # stands for a download
        self.label.config(text="Done!")

    # A download with progress and Cancel -------------------------------

    async def serve(self, reader, writer):
        for _ in range(TOTAL // CHUNK):
            writer.write(b"x" * CHUNK)
            await writer.drain()
            await asyncio.sleep(0.05)
        writer.close()

    async def fetch(self):
        if self.server is None:
            self.server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        got = 0
        try:
            while chunk := await reader.read(CHUNK):
                got += len(chunk)
                self.progress["value"] = got
                self.status.config(text="%d KiB" % (got // 1024))
            self.status.config(text="downloaded %d KiB" % (got // 1024))
        except asyncio.CancelledError:
            self.status.config(text="cancelled at %d KiB" % (got // 1024))
            raise
        finally:
            writer.close()

    def on_download(self):
        if self.download is None or self.download.done():
            self.progress["value"] = 0
            self.download = self.loop.create_task(self.fetch())

    def on_cancel(self):
        if self.download is not None:
            self.download.cancel()

    def on_message(self):
        # Modal: Tk runs a nested loop, and so do the tasks.
        messagebox.showinfo("loopbridge", "The download goes on behind this box.")

    def run(self):
        self.root.mainloop()
        if self.server is not None:
            self.server.close()
        self.loop.close()


if __name__ == "__main__":
    app = AsyncTkApp()
    app.run()
