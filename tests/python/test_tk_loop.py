"""loopbridge.tk.EventLoop on a display-less tkinter.Tcl(): the three ways
in, nested loops from a task, update() loops, no polling, the flood."""
import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import unittest

import lbprobe
from fixtures import TkFixture
import loopbridge.tk

# Generous: a loaded CI machine must not fail these; the figures are printed.
SLACK = float(os.environ.get("LB_PY_TIME_SLACK", "1"))


def ticker(root, period_ms, ticks):
    """A Tcl `after` chain that records when it ran (Tk's redraw stand-in).
    It keeps its interpreter alive (tkinter's command holds the closure)
    until tearDown cancels it."""
    def tick():
        ticks.append(time.monotonic())
        root.after(period_ms, tick)
    root.after(period_ms, tick)


async def wait_for_ticks(ticks, n):
    """Returns once the ticker ran n times: proof that Tcl's timers run
    while a task waits. Fails after a bound far above any machine's."""
    async with asyncio.timeout(30):
        while len(ticks) < n:
            await asyncio.sleep(0.005)


class TkLoopTest(TkFixture, unittest.TestCase):
    def vwait(self, name):
        self.root.tk.call("vwait", name)

    def test_runner_keeps_tcl_live(self):
        ticks = []
        ticker(self.root, 10, ticks)

        async def main():
            await wait_for_ticks(ticks, 5)
            return "done"
        with asyncio.Runner(loop_factory=self.make_loop) as runner:
            self.assertEqual(runner.run(main()), "done")

    def test_hosted_create_task_from_tcl_callback(self):
        loop = loopbridge.tk.install(self.root)
        self.loop = loop
        result = []

        async def job():
            await asyncio.sleep(0.01)
            result.append(asyncio.get_running_loop())
            self.root.setvar("done", 1)

        # what a button command does in a hosted app
        self.root.after(0, lambda: asyncio.create_task(job()))
        self.vwait("done")
        self.assertEqual(result, [loop])
        self.assertTrue(loop.is_running())
        loop.close()
        self.assertFalse(loop.is_running())

    def test_seed_run_until_complete_from_handler(self):
        # The tutorial's AsyncTkApp: run_until_complete in a button handler
        # while Tk's loop is the outer loop. The handler must not freeze Tcl.
        loop = self.make_loop()
        ticks = []
        ticker(self.root, 10, ticks)
        out = []

        async def task():
            await wait_for_ticks(ticks, 5)
            return 42

        def on_button_click():
            out.append(loop.run_until_complete(task()))
            self.root.setvar("done", 1)
        self.root.after(0, on_button_click)
        self.vwait("done")
        self.assertEqual(out, [42])

    def test_seed_nested_in_hosted_loop(self):
        loop = loopbridge.tk.install(self.root)
        self.loop = loop
        out = []

        async def task():
            await asyncio.sleep(0.05)
            return "ok"

        def on_button_click():
            out.append(loop.run_until_complete(task()))
            self.root.setvar("done", 1)
        self.root.after(0, on_button_click)
        self.vwait("done")
        self.assertEqual(out, ["ok"])

    def test_nested_loop_from_task_keeps_tasks_running(self):
        # A dialog opened from a task: tk_messageBox waits in vwait. Other
        # tasks must step (asyncio's "Cannot enter into task" wall) and
        # Python Tcl commands must work (tkinter's thread state).
        loop = self.make_loop()
        steps = []

        async def other():
            for i in range(5):
                await asyncio.sleep(0.01)
                steps.append(i)
                self.root.call("set", "x", i)   # tkinter call inside the nested loop
            self.root.after(0, lambda: self.root.setvar("dialog", "closed"))

        async def opens_dialog():
            t = asyncio.create_task(other())
            await asyncio.sleep(0)
            self.vwait("dialog")            # the modal dialog
            self.assertEqual(asyncio.current_task(), me[0])
            await t
            return steps[:]
        me = []

        async def main():
            me.append(asyncio.create_task(opens_dialog()))
            return await me[0]
        self.assertEqual(loop.run_until_complete(main()), [0, 1, 2, 3, 4])

    def test_nested_loop_sees_handles_already_ready(self):
        # Two timers due in the same pass: the first opens a nested loop
        # (as a dialog would), the second, already taken from the timer
        # heap, must still run inside it.
        loop = self.make_loop()
        self.root.after(10000, lambda: self.root.setvar("v", "timed out"))
        when = loop.time() + 0.02
        seen = []

        def first():
            self.vwait("v")
            seen.append(self.root.getvar("v"))
        loop.call_at(when, first)
        loop.call_at(when, lambda: self.root.setvar("v", "set by the second"))
        loop.run_until_complete(asyncio.sleep(0.05))
        self.assertEqual(seen, ["set by the second"])

    def test_update_from_task(self):
        loop = self.make_loop()
        seen = []

        async def spinner():
            while True:
                seen.append(1)
                await asyncio.sleep(0)

        async def main():
            t = asyncio.create_task(spinner())
            await asyncio.sleep(0)
            before = len(seen)
            start = time.monotonic()
            self.root.update()
            took = time.monotonic() - start
            t.cancel()
            return len(seen) - before, took
        advanced, took = loop.run_until_complete(main())
        self.assertGreater(advanced, 0)
        self.assertLess(took, 1.0 * SLACK)

    def test_while_update_program(self):
        # Programs that drive Tcl themselves with `while ...: root.update()`.
        loop = self.make_loop()
        asyncio.set_event_loop(loop)
        counter = [0]

        async def always_ready():
            while True:
                counter[0] += 1
                await asyncio.sleep(0)

        async def sleeper():
            await asyncio.sleep(0.05)
            return "slept"
        t1 = loop.create_task(always_ready())
        t2 = loop.create_task(sleeper())
        deadline = time.monotonic() + 5 * SLACK
        updates = 0
        while not t2.done() and time.monotonic() < deadline:
            start = time.monotonic()
            self.root.update()
            self.assertLess(time.monotonic() - start, 1.0 * SLACK)
            updates += 1
        self.assertEqual(t2.result(), "slept")
        self.assertGreater(counter[0], 0)
        t1.cancel()
        loop.run_until_complete(asyncio.sleep(0))

    def test_idle_with_many_timers_does_not_poll(self):
        # The bound: 5 s idle with 1,000 timers pending costs at most
        # 1 wakeup (here: the `after` that ends the wait) and 1 ms of CPU.
        loop = self.make_loop()
        probe = lbprobe.PassTimer(loop)
        for i in range(1000):
            loop.call_later(3600 + i, lambda: None)
        loop.run_until_complete(asyncio.sleep(0.05))

        def host_wait(ms):
            self.root.after(ms, lambda: self.root.setvar("done", 1))
            self.vwait("done")
        # Settle in the host loop: the pass a run leaves behind (its last
        # callbacks) runs there, late on a loaded machine.
        host_wait(100)
        lbprobe.check_idle(self, probe, lambda: host_wait(5000))

    def test_waits_leave_tcl_notifier_thread_asleep(self):
        # A run on the main thread watches no fd for its signal wakeup (a
        # thread of the bridge reads that pipe) nor for asyncio's
        # self-pipe (read once a signal handler is added): on Tcl 8.6 a
        # watched fd hands every wait of the loop's thread to Tcl's
        # notifier thread, two wakeups of it a wait.
        loop = self.make_loop()
        me = str(threading.get_native_id())

        def others_switches():
            total = 0
            for tid in os.listdir("/proc/self/task"):
                if tid == me:
                    continue
                try:
                    with open("/proc/self/task/%s/status" % tid) as f:
                        for line in f:
                            if line.startswith("voluntary_ctxt_switches:"):
                                total += int(line.split()[1])
                except FileNotFoundError:
                    pass  # the thread ended meanwhile
            return total

        async def sleeps(n):
            for _ in range(n):
                await asyncio.sleep(0.001)
        loop.run_until_complete(sleeps(1))  # the signal pipe's thread starts
        before = others_switches()
        loop.run_until_complete(sleeps(100))
        woken = others_switches() - before
        print("\n100 sleeps: %d wakeups of other threads" % woken)
        self.assertLess(woken, 25)

    def test_ctrl_c_comes_out_of_python_driven_tcl_loops(self):
        # A hosted loop holds the signal wakeup fd; a program that turns
        # Tcl itself (dooneevent(), update()) gets Ctrl+C's
        # KeyboardInterrupt there, not as a Tcl background error of the
        # pass that a signal runs (which the program never sees).
        self.root.tk.call("proc", "bgerror", "msg", "")
        loop = self.make_loop()
        loop.install()
        self.root.after(100, lambda: None)
        for how in ("dooneevent", "update", "dooneevent", "update"):
            self.signal_soon(signal.SIGINT, 0.05)
            t0 = time.monotonic()
            with self.assertRaises(KeyboardInterrupt, msg=how):
                while time.monotonic() - t0 < 5:
                    if how == "update":
                        self.root.update()
                    else:
                        if not self.root.tk.call("after", "info"):
                            self.root.after(100, lambda: None)
                        self.root.dooneevent()
            self.assertLess(time.monotonic() - t0, 4, how)

    def test_ctrl_c_in_a_tcl_wait_spares_the_programs_callbacks(self):
        # Inside vwait, Python runs only in Tcl callbacks: the signal's
        # handler runs in the loop's pass, not in the program's `after`
        # callback that ends the wait (cut short, it left vwait waiting
        # for good).
        self.root.tk.call("proc", "bgerror", "msg", "")
        loop = self.make_loop()
        loop.install()
        self.signal_soon(signal.SIGINT, 0.05)
        self.root.after(500, lambda: self.root.setvar("done", "by the callback"))
        self.root.tk.call("after", 8000, "set done {by the safety net}")
        self.vwait("done")
        self.assertEqual(self.root.getvar("done"), "by the callback")

    def test_forked_child_gets_its_own_signal_wakeup(self):
        # The child of a fork has the loop's signal pipe but not its
        # thread, and shares the pipe with the parent, whose thread would
        # take the child's bytes: the child's next run makes its own.
        loop = self.make_loop()
        loop.run_until_complete(asyncio.sleep(0.01))  # the pipe is made
        pid = os.fork()
        if pid == 0:
            code = 3
            try:
                threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
                t0 = time.monotonic()
                try:
                    loop.run_until_complete(asyncio.sleep(5))
                    code = 2
                except KeyboardInterrupt:
                    code = 0 if time.monotonic() - t0 < 3 else 1
            finally:
                os._exit(code)
        loop.run_until_complete(asyncio.sleep(0.5))  # the parent's thread reads
        _, status = os.waitpid(pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0)

    # A signal's pass waits in Tcl's queue (an update() loop leaves it
    # there); the loop is then closed on another thread, whose
    # Tcl_DeleteEvents() cannot reach this thread's queue, and freed. The
    # event once kept the bridge's address and ran a pass on the freed
    # bridge (a crash under PYTHONMALLOC=malloc_debug).
    CLOSED_ELSEWHERE = textwrap.dedent("""
        import asyncio, gc, os, signal, sys, threading, time, tkinter
        import loopbridge.tk
        root = tkinter.Tcl()
        loop = loopbridge.tk.EventLoop(root)
        loop.install()
        signal.signal(signal.SIGUSR1, lambda *a: None)
        os.kill(os.getpid(), signal.SIGUSR1)
        for i in range(50):
            root.update(); time.sleep(0.002)
        t = threading.Thread(target=loop.close); t.start()
        while t.is_alive():
            root.update(); time.sleep(0.002)
        asyncio.events._set_running_loop(None)
        sys.set_asyncgen_hooks(None, None)
        del loop, t; gc.collect()
        root.after(20, lambda: None)
        root.dooneevent()
        print("survived")
        """)

    def test_signal_pass_queued_when_closed_on_another_thread(self):
        result = subprocess.run([sys.executable, "-c", self.CLOSED_ELSEWHERE], capture_output=True,
                                text=True, timeout=60,
                                env=dict(os.environ, PYTHONMALLOC="malloc_debug"))
        self.assertEqual((result.returncode, result.stdout.strip()), (0, "survived"),
                         result.stderr)

    def test_forked_child_keeps_the_files_on_the_pipes_old_numbers(self):
        # A child that closes what it inherited (as a daemon does) and opens
        # files that get the numbers of the loop's signal pipe: its next
        # run makes a pipe of its own and leaves those files alone (they
        # were once replaced by the new pipe's ends).
        import tempfile
        loop = self.make_loop()
        loop.run_until_complete(asyncio.sleep(0.01))  # the pipe is made
        w = loop._bridge.signal_fd()
        pipe = os.readlink("/proc/self/fd/%d" % w)
        self.assertEqual(pipe[:5], "pipe:")

        def names(fd):
            try:
                return os.readlink("/proc/self/fd/%d" % fd)
            except FileNotFoundError:
                return None  # listdir's own fd, closed since
        r, = [fd for fd in map(int, os.listdir("/proc/self/fd")) if fd != w and names(fd) == pipe]
        tmp = tempfile.mkdtemp()
        pid = os.fork()
        if pid == 0:
            code = 3
            try:
                for fd, n in ((r, "a"), (w, "b")):
                    f = os.open(os.path.join(tmp, n), os.O_WRONLY | os.O_CREAT, 0o600)
                    os.dup2(f, fd)  # closes the pipe's end first
                    os.close(f)
                code = 2
                loop.run_until_complete(asyncio.sleep(0.05))
                for fd in (r, w):
                    os.write(fd, b"data\n")
                    os.close(fd)
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0)
        for n in "ab":
            with open(os.path.join(tmp, n)) as f:
                self.assertEqual(f.read(), "data\n")
            os.unlink(os.path.join(tmp, n))
        os.rmdir(tmp)

    def test_input_reaches_task_without_delay(self):
        loop = self.make_loop()
        r, w = os.pipe()

        async def main():
            reader = asyncio.StreamReader()
            transport, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(r, "rb", 0))
            threading.Timer(0.1, lambda: (os.write(w, b"x"), )).start()
            await reader.readexactly(1)
            start = time.monotonic()
            os.write(w, b"y")
            await reader.readexactly(1)
            return time.monotonic() - start, transport
        latency, transport = loop.run_until_complete(main())
        transport.close()
        loop.run_until_complete(asyncio.sleep(0))
        os.close(w)
        print("\ninput latency %.3f ms" % (latency * 1e3))
        self.assertLess(latency, 0.05 * SLACK)

    def test_threadsafe_wakes_idle_loop(self):
        loop = self.make_loop()
        fut = loop.create_future()
        timer = threading.Timer(0.05, loop.call_soon_threadsafe, (fut.set_result, "hi"))
        timer.start()
        self.assertEqual(loop.run_until_complete(fut), "hi")
        # the thread holds the loop, and so the interpreter, which Tcl
        # must free on this thread
        timer.join()
        del timer

    def test_threadsafe_posts_from_many_threads_all_run_in_order(self):
        # call_soon_threadsafe writes one wakeup byte per iteration, not per
        # post: four threads posting 20,000 callbacks each while the loop
        # runs and posts too must lose none and keep each thread's order.
        loop = self.make_loop()
        seen = {}

        def record(who, i):
            seen.setdefault(who, []).append(i)

        def worker(who):
            for i in range(20_000):
                loop.call_soon_threadsafe(record, who, i)
                if i % 5000 == 0:
                    time.sleep(0.001)  # let the loop go idle in between

        async def main():
            threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
            for t in threads:
                t.start()
            for i in range(20_000):
                loop.call_soon_threadsafe(record, "loop", i)
                if i % 100 == 0:
                    await asyncio.sleep(0)
            async with asyncio.timeout(60):
                while sum(map(len, seen.values())) < 100_000:
                    await asyncio.sleep(0.001)
            for t in threads:
                t.join()
        loop.run_until_complete(main())
        for who, order in seen.items():
            self.assertEqual(order, list(range(20_000)), who)
        self.assertEqual(len(seen), 5)

    def test_thread_to_widget(self):
        # G3: a worker posts an update 1,000 times, each time waiting for it
        # to be applied (the callback sets a Tcl variable, then signals).
        loop = self.make_loop()
        done = threading.Event()
        latencies = []

        def apply(sent):
            self.root.setvar("label", "update")
            latencies.append(time.monotonic() - sent)
            done.set()

        def worker():
            for _ in range(1000):
                done.clear()
                loop.call_soon_threadsafe(apply, time.monotonic())
                if not done.wait(30):
                    return

        async def main():
            thread = threading.Thread(target=worker)
            thread.start()
            while thread.is_alive():
                await asyncio.sleep(0.01)
            thread.join()
        loop.run_until_complete(main())
        latencies.sort()
        print("\nthread to widget: median %.1f us, p99 %.1f us" %
              (latencies[len(latencies) // 2] * 1e6, latencies[int(len(latencies) * 0.99)] * 1e6))
        self.assertEqual(len(latencies), 1000)

    def test_flood_keeps_after_ticking(self):
        # The target: a 60 Hz `after 16` keeps its max gap <= 20 ms
        # while 100,000 callbacks and 10,000 tasks run. What the loop
        # controls is how long it keeps Tcl busy in one go: its longest pass
        # stays under lbprobe.pass_limit(); the tick gap is
        # checked when the machine has a core free.
        loop = self.make_loop()
        probe = lbprobe.PassTimer(loop)
        ticks = []
        counter = [0]

        def cb():
            counter[0] += 1

        async def task():
            await asyncio.sleep(0)
            counter[0] += 1

        async def main():
            # the test's own steps are short; a single step is the one
            # thing the loop cannot cut
            # (a step of 1,000 call_soon() takes 10-15 ms on a loaded
            # machine, on asyncio's own loop too)
            tasks = []
            for _ in range(2000):
                for _ in range(50):
                    loop.call_soon(cb)
                tasks += [asyncio.create_task(task()) for _ in range(5)]
                await asyncio.sleep(0)
            # not gather(*tasks), nor awaiting each task: the call of
            # gather alone is one 20-30 ms step for 10,000 tasks (on
            # asyncio's own loop too), and awaiting tasks already done
            # does not leave the step
            while counter[0] < 110_000:
                await asyncio.sleep(0.001)
            self.assertTrue(all(t.done() for t in tasks))
        ticker(self.root, 16, ticks)
        loop.run_until_complete(asyncio.sleep(0.05))
        ticks.clear()
        probe.reset()
        start = time.monotonic()
        loop.run_until_complete(main())
        took = time.monotonic() - start
        ticks.insert(0, start)
        gaps = [b - a for a, b in zip(ticks, ticks[1:])]
        print("\nflood: %.2f s, %d ticks, max gap %.1f ms; %d passes, longest %.2f ms CPU "
              "(%.2f ms wall); load %.1f, %s" %
              (took, len(ticks), max(gaps) * 1e3, probe.count, probe.max_cpu * 1e3,
               probe.max_wall * 1e3, os.getloadavg()[0],
               "20 ms goal %s" % ("met" if max(gaps) <= 0.020 else "NOT met")))
        self.assertEqual(counter[0], 110_000)
        # What the loop controls is its longest pass (CPU time, so robust);
        # the tick's gap also counts what else the machine runs (the
        # test suite's other tests among them): it fails on a freeze and
        # the 20 ms goal is reported above.
        self.assertLess(probe.max_cpu, lbprobe.pass_limit() * SLACK)
        self.assertLessEqual(max(gaps), 0.100 * SLACK)

    # With threaded Tcl, _tkinter keeps a per-thread state that only its own
    # command wrapper restores. Python entered straight from a Tcl event
    # source (here a ctypes timer handler) that calls tkinter leaves it
    # empty, and the next Python command of the same wait crashes. The
    # loop's passes go through a tkinter-made command instead.
    HAZARD = textwrap.dedent("""
        import ctypes, sys, tkinter
        root = tkinter.Tcl()
        if sys.argv[1] == "direct":
            tcl = ctypes.CDLL("libtcl8.6.so")
            PROC = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
            proc = PROC(lambda _: root.call("set", "x", 1))
            tcl.Tcl_CreateTimerHandler.argtypes = [ctypes.c_int, PROC, ctypes.c_void_p]
            tcl.Tcl_CreateTimerHandler(10, proc, None)
        else:
            import loopbridge.tk
            loop = loopbridge.tk.EventLoop(root)
            loop.call_later(0.01, lambda: root.call("set", "x", 1))
        root.after(50, lambda: root.setvar("done", 1))
        root.tk.call("vwait", "done")
        print("survived")
        """)

    def run_hazard(self, how):
        return subprocess.run([sys.executable, "-c", self.HAZARD, how], capture_output=True,
                              text=True, timeout=60)

    def test_tcl_thread_state_hazard_is_real(self):
        result = self.run_hazard("direct")
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("PyEval_RestoreThread", result.stderr)

    def test_tcl_thread_state_kept_by_the_loop(self):
        result = self.run_hazard("loopbridge")
        self.assertEqual((result.returncode, result.stdout.strip()), (0, "survived"),
                         result.stderr)

    def test_closed_loop_refuses(self):
        loop = self.make_loop()
        loop.close()
        with self.assertRaises(RuntimeError):
            loop.call_soon(lambda: None)
        with self.assertRaises(RuntimeError):
            loop.call_later(0.1, lambda: None)
        with self.assertRaises(RuntimeError):
            loop.call_at(loop.time(), lambda: None)
        loop.close()  # idempotent

    def test_timer_arguments_checked(self):
        # as asyncio's own call_later() and call_at()
        loop = self.make_loop()
        with self.assertRaises(TypeError):
            loop.call_later(None, lambda: None)
        with self.assertRaises(TypeError):
            loop.call_at(None, lambda: None)
        got = []
        loop.call_later(0.01, got.append, "later")
        loop.call_at(loop.time() + 0.005, got.append, "at")
        loop.call_soon(got.append, "soon")
        loop.run_until_complete(asyncio.sleep(0.05))
        self.assertEqual(got, ["soon", "at", "later"])

    def test_bad_root(self):
        with self.assertRaises(TypeError):
            loopbridge.tk.EventLoop(object())


if __name__ == "__main__":
    unittest.main()
