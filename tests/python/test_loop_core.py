"""The loop's C paths (call_soon, call_soon_threadsafe, the running of
ready handles) against asyncio's own selector loop: each scenario runs on
both, and what the callbacks and the exception handler saw must be the
same. Run on the Tk loop (display-less tkinter.Tcl()) and the GLib loop."""
import asyncio
import contextvars
import fractions
import gc
import random
import os
import re
import signal
import sys
import time
import threading
import unittest
import weakref

import loopbridge
from fixtures import GLibFixture, TkFixture

try:
    import loopbridge.tk
    HAVE_TK = loopbridge.tk.HAVE_TK
except ImportError:
    HAVE_TK = False
try:
    from gi.repository import GLib  # noqa: F401 (is GLib there?)
    import loopbridge.glib
    HAVE_GLIB = loopbridge.glib.HAVE_GLIB
except ImportError:
    HAVE_GLIB = False

var = contextvars.ContextVar("var", default="unset")


def run_scenario(loop, scenario):
    """Runs scenario(loop, log) until it stops the loop; returns the log
    and what the exception handler was given (reduced to comparable
    values)."""
    log = []
    reported = []

    def handler(loop, context):
        exc = context.get("exception")
        tb = exc.__traceback__ if exc is not None else None
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        reported.append((context["message"].split(" at ")[0],
                         type(exc).__name__, re.sub(" at 0x[0-9a-f]+", "", str(exc)),
                         context.get("handle") is not None and
                         isinstance(context["handle"], asyncio.Handle),
                         tb.tb_frame.f_code.co_name if tb else None))
    loop.set_exception_handler(handler)
    scenario(loop, log)
    loop.run_forever()
    return log, reported


class CoreMixin:
    """Each test runs a scenario on asyncio's loop and on self.make_loop()."""

    def same(self, scenario):
        ref = asyncio.SelectorEventLoop()
        try:
            expected = run_scenario(ref, scenario)
        finally:
            ref.close()
        loop = self.make_loop()
        got = run_scenario(loop, scenario)
        self.assertEqual(got, expected)
        return got

    def test_callback_exception_reported_as_asyncio_does(self):
        def bad(x):
            raise ValueError("boom %d" % x)

        def scenario(loop, log):
            loop.call_soon(bad, 1)
            loop.call_soon(log.append, "after")
            loop.call_soon(loop.stop)
        log, reported = self.same(scenario)
        self.assertEqual(log, ["after"])
        self.assertEqual(len(reported), 1)
        self.assertEqual(reported[0][1:], ("ValueError", "boom 1", True, "bad"))
        self.assertTrue(reported[0][0].startswith("Exception in callback "))

    def test_reported_handle_is_the_one_scheduled(self):
        loop = self.make_loop()
        seen = []
        loop.set_exception_handler(lambda loop, context: seen.append(context))
        handle = loop.call_soon(lambda: 1 / 0)
        loop.call_soon(loop.stop)
        loop.run_forever()
        self.assertIs(seen[0]["handle"], handle)
        self.assertIsInstance(seen[0]["exception"], ZeroDivisionError)
        self.assertNotIn("source_traceback", seen[0])

    def test_keyboard_interrupt_and_system_exit_propagate(self):
        for exc_type in (KeyboardInterrupt, SystemExit):
            with self.subTest(exc_type=exc_type.__name__):
                loop = self.make_loop()
                ran = []

                def interrupt():
                    raise exc_type()
                loop.call_soon(interrupt)
                loop.call_soon(ran.append, 1)
                with self.assertRaises(exc_type):
                    loop.run_forever()
                # the loop is still usable and the rest still runs
                loop.call_soon(loop.stop)
                loop.run_forever()
                self.assertEqual(ran, [1])
                loop.close()

    def test_handle_cancelled_by_its_own_callback_or_an_earlier_one(self):
        def scenario(loop, log):
            handles = {}

            def cancel_self(payload):
                handles["self"].cancel()
                log.append(("self", payload[0]))  # args still alive
                handles["later"].cancel()
            handles["self"] = loop.call_soon(cancel_self, ["x" * 3])
            handles["later"] = loop.call_soon(log.append, "must not run")
            loop.call_soon(log.append, "runs")
            loop.call_soon(loop.stop)
        log, _ = self.same(scenario)
        self.assertEqual(log, [("self", "xxx"), "runs"])

    def test_cancelled_handles_are_skipped_in_order(self):
        def scenario(loop, log):
            handles = [loop.call_soon(log.append, i) for i in range(100)]
            for h in handles[1::2]:
                h.cancel()
            loop.call_soon(loop.stop)
        log, _ = self.same(scenario)
        self.assertEqual(log, list(range(0, 100, 2)))

    def test_contexts(self):
        def scenario(loop, log):
            def show(tag):
                log.append((tag, var.get()))
                var.set("changed by " + tag)
            token = var.set("at schedule time")
            loop.call_soon(show, "copied")
            var.reset(token)
            loop.call_soon(show, "copied later")
            ctx = contextvars.copy_context()
            ctx.run(var.set, "in ctx")
            loop.call_soon(show, "ctx 1", context=ctx)
            loop.call_soon(show, "ctx 2", context=ctx)
            loop.call_soon(lambda: log.append(("outside", var.get())))
            # a callback entering its own, already entered, context
            loop.call_soon(lambda: ctx.run(log.append, "re-entered"), context=ctx)
            loop.call_soon(loop.stop)
        log, reported = self.same(scenario)
        self.assertEqual(log, [("copied", "at schedule time"), ("copied later", "unset"),
                               ("ctx 1", "in ctx"), ("ctx 2", "changed by ctx 1"),
                               ("outside", "unset")])
        self.assertEqual([r[1] for r in reported], ["RuntimeError"])

    def test_arguments_checked_as_asyncio_does(self):
        ref = asyncio.SelectorEventLoop()
        loop = self.make_loop()
        calls = [
            lambda l: l.call_soon(),
            lambda l: l.call_soon(print, bogus=1),
            lambda l: l.call_soon_threadsafe(),
            lambda l: l.call_soon_threadsafe(print, bogus=1),
            lambda l: l.call_at(None, print),
            lambda l: l.call_later(None, print),
            lambda l: l.call_later("soon", print),
            lambda l: l.call_at(l.time()),
            lambda l: l.call_later(1, print, bogus=1),
        ]
        try:
            for call in calls:
                with self.assertRaises(TypeError):
                    call(ref)
                with self.assertRaises(TypeError):
                    call(loop)
            # context=None is the default, spelled out
            h = loop.call_soon(print, context=None)
            self.assertIsInstance(h._context, contextvars.Context)
            h.cancel()
        finally:
            ref.close()
            loop.close()
        for call in (lambda: loop.call_soon(print), lambda: loop.call_soon_threadsafe(print),
                     lambda: loop.call_at(1, print), lambda: loop.call_later(1, print)):
            with self.assertRaisesRegex(RuntimeError, "Event loop is closed"):
                call()

    def test_handles_are_asyncio_handles(self):
        loop = self.make_loop()
        ctx = contextvars.copy_context()
        h = loop.call_soon(print, 1, 2, context=ctx)
        self.assertIs(type(h), asyncio.Handle)
        self.assertIs(h._context, ctx)
        self.assertIn("print", repr(h))
        self.assertFalse(h.cancelled())
        h.cancel()
        self.assertTrue(h.cancelled())
        t = loop.call_soon_threadsafe(print)
        self.assertIs(type(t), asyncio.Handle)
        t.cancel()

    def test_debug_mode_takes_asyncio_paths(self):
        loop = self.make_loop()
        loop.set_debug(True)
        loop.slow_callback_duration = 0.0

        async def coro():
            pass
        c = coro()
        with self.assertRaises(TypeError):  # asyncio's debug-mode check
            loop.call_soon(c)
        c.close()
        h = loop.call_soon(lambda: None)
        self.assertTrue(h._source_traceback)
        loop.call_soon(loop.stop)
        with self.assertLogs("asyncio", "WARNING") as logs:
            loop.run_forever()
        self.assertTrue(any("Executing" in line for line in logs.output))
        loop.set_debug(False)
        h = loop.call_soon(loop.stop)
        self.assertIsNone(h._source_traceback)
        loop.run_forever()

    def test_debug_source_tracebacks_end_at_the_caller(self):
        def last_frames(loop):
            loop.set_debug(True)

            def caller():
                handles = [loop.call_soon(print), loop.call_later(1, print),
                           loop.call_at(1, print), loop.call_soon_threadsafe(print),
                           loop.call_later(delay=1, callback=print)]
                for h in handles:
                    h.cancel()
                return [(h._source_traceback[-1].name, h._source_traceback[-1].lineno)
                        for h in handles]
            return caller()
        ref = asyncio.SelectorEventLoop()
        try:
            expected = last_frames(ref)
        finally:
            ref.close()
        got = last_frames(self.make_loop())
        self.assertEqual([name for name, _ in got], ["caller"] * 5)
        self.assertEqual(got, expected)

    def test_foreign_handle_runs_through_its_own_run(self):
        class Custom(asyncio.Handle):
            __slots__ = ()

            def _run(self):
                self._callback("custom " + self._args[0])

        def scenario(loop, log):
            loop._ready.append(Custom(log.append, ("run",), loop))
            loop.call_soon(loop.stop)
        log, _ = self.same(scenario)
        self.assertEqual(log, ["custom run"])

    def test_threadsafe_posts_from_another_thread(self):
        loop = self.make_loop()
        got = []
        n = 20000

        def worker():
            for i in range(n):
                loop.call_soon_threadsafe(got.append, i)
            loop.call_soon_threadsafe(loop.stop)
        thread = threading.Thread(target=worker)
        thread.start()
        loop.run_forever()
        thread.join()
        self.assertEqual(got, list(range(n)))

    def test_loop_and_handles_are_collected(self):
        loop = self.make_loop()
        loop.call_soon(lambda: loop)  # a cycle through _ready
        ref = weakref.ref(loop)
        loop.close()
        self.loop = loop = None
        gc.collect()
        self.assertIsNone(ref())

    # -- timers ------------------------------------------------------------

    def test_due_timers_run_in_when_order(self):
        def scenario(loop, log):
            rng = random.Random(7)
            base = loop.time() - 10  # all due at once: no waiting
            keys = list(range(500))
            rng.shuffle(keys)
            handles = []
            for k in keys:
                when = base + k * 0.001 if k % 3 else int(base) - 1000 + k  # floats and ints
                handles.append(loop.call_at(when, log.append, k))
            for h in handles[::4]:
                h.cancel()
            loop.call_at(base + 1, loop.stop)
        log, _ = self.same(scenario)
        self.assertEqual(len(log), 375)

    def test_whens_of_other_types_and_debug_timers_mix(self):
        def scenario(loop, log):
            base = loop.time() - 10
            loop.call_at(base + 3, log.append, "float 3")
            loop.call_at(fractions.Fraction(base) + 1, log.append, "fraction 1")
            loop.set_debug(True)
            loop.call_at(base + 2, log.append, "debug 2")
            loop.set_debug(False)
            loop.call_at(base + 0.5, log.append, "float 0.5")
            loop.call_later(-5, log.append, "later -5")
            loop.call_at(base + 20, loop.stop)  # due in 10 s: nothing may wait for it
            loop.call_at(base + 4, loop.stop)
        log, _ = self.same(scenario)
        self.assertEqual(log, ["float 0.5", "fraction 1", "debug 2", "float 3", "later -5"])

    def test_cancelled_timers_leave_the_heap_and_the_count(self):
        loop = self.make_loop()
        base = loop.time() - 10
        handles = [loop.call_at(base + i * 0.001, lambda: None) for i in range(300)]
        for h in handles[:250]:  # most cancelled: the heap is compacted
            h.cancel()
        self.assertTrue(all(h._scheduled for h in handles))
        later = loop.call_later(3600, lambda: None)
        later.cancel()
        loop.call_soon(loop.stop)
        loop.run_forever()
        self.assertEqual(loop._scheduled, [])
        self.assertEqual(loop._timer_cancelled_count, 0)
        self.assertFalse(any(h._scheduled for h in handles))
        self.assertFalse(later._scheduled)

    def test_timer_handles_are_asyncio_timer_handles(self):
        loop = self.make_loop()
        when = loop.time() + 3600
        h = loop.call_at(when, print, "x")
        self.assertIs(type(h), asyncio.TimerHandle)
        self.assertEqual(h.when(), when)
        self.assertTrue(h._scheduled)
        self.assertIs(loop._scheduled[0], h)
        self.assertIn("when=", repr(h))
        t = loop.call_later(7200, print)
        self.assertAlmostEqual(t.when(), loop.time() + 7200, delta=60)
        h.cancel()
        t.cancel()

    def test_sleep_wakes_on_time(self):
        loop = self.make_loop()

        async def main():
            t0 = loop.time()
            await asyncio.sleep(0.05)
            return loop.time() - t0
        slept = loop.run_until_complete(main())
        self.assertGreaterEqual(slept, 0.05)
        self.assertLess(slept, 5)

    # -- signals while the loop waits in the host ---------------------------

    def test_ctrl_c_interrupts_a_waiting_run_at_once(self):
        # an idle loop (one timer far away): before, the KeyboardInterrupt
        # came only with the next event, or on Tk was lost and hung the loop
        loop = self.make_loop()
        self.signal_soon(signal.SIGINT)
        t0 = time.monotonic()
        with self.assertRaises(KeyboardInterrupt):
            loop.run_until_complete(asyncio.sleep(30))
        self.assertLess(time.monotonic() - t0, 10)
        self.assertEqual(signal.set_wakeup_fd(-1), -1)  # taken back
        # the loop goes on
        self.assertEqual(loop.run_until_complete(asyncio.sleep(0.01, "after")), "after")

    def test_python_signal_handler_runs_while_waiting(self):
        loop = self.make_loop()
        fut = loop.create_future()

        def handler(signum, frame):
            loop.call_soon(fut.set_result, signum)
        old = signal.signal(signal.SIGUSR1, handler)
        self.addCleanup(signal.signal, signal.SIGUSR1, old)
        self.signal_soon(signal.SIGUSR1)
        t0 = time.monotonic()
        self.assertEqual(loop.run_until_complete(fut), signal.SIGUSR1)
        self.assertLess(time.monotonic() - t0, 10)

    def test_hosted_loop_holds_the_wakeup_fd_until_closed(self):
        loop = self.make_loop()
        loop.install()
        fd = loop._lb_hosted_signal_fd
        self.assertIsNotNone(fd)
        self.assertEqual(signal.set_wakeup_fd(fd), fd)
        # what collecting a hosted loop nobody closed does: the fd goes
        # back before its number can be reused
        loop._bridge.close()
        self.assertEqual(signal.set_wakeup_fd(-1), -1)
        loop.close()
        other = self.make_loop()
        other.install()
        other.close()
        self.assertEqual(signal.set_wakeup_fd(-1), -1)

    def test_wakeup_fd_of_others_is_left_alone(self):
        loop = self.make_loop()
        r, w = os.pipe()
        os.set_blocking(w, False)
        self.addCleanup(os.close, r)
        self.addCleanup(os.close, w)
        signal.set_wakeup_fd(w)
        try:
            seen = []

            async def main():
                seen.append(signal.set_wakeup_fd(w))  # what is set while waiting
            loop.run_until_complete(main())
            self.assertEqual(seen, [w])
        finally:
            self.assertEqual(signal.set_wakeup_fd(-1), w)

    # -- what a hostile review found ----------------------------------------

    def test_keyword_arguments_as_asyncio_takes_them(self):
        def scenario(loop, log):
            base = loop.time() - 10
            loop.call_soon(callback=lambda: log.append("soon"))
            loop.call_at(when=base + 1, callback=lambda: log.append("at"))
            loop.call_later(delay=-5, callback=lambda: log.append("later"))
            loop.call_soon(log.append, "positional")
            loop.call_soon_threadsafe(callback=loop.stop)
        log, _ = self.same(scenario)
        self.assertEqual(log, ["soon", "positional", "at", "later"])

    def test_nan_and_huge_whens(self):
        def scenario(loop, log):
            loop.call_later(3600, log.append, "hour")
            loop.call_at(10 ** 400, log.append, "never")  # no double holds it
            loop.call_at(-(2 ** 60), log.append, "A")
            loop.call_at(-(2 ** 60) - 1, log.append, "B")  # equal as doubles
            loop.call_at(float("nan"), log.append, "nan")  # due at once
            loop.call_soon(loop.stop)
        log, _ = self.same(scenario)
        self.assertEqual(log[:2], ["B", "A"])
        loop = self.make_loop()
        self.assertIsNone(loop.run_until_complete(asyncio.sleep(float("nan"))))

    def test_handler_sees_the_exception_as_handled(self):
        def scenario(loop, log):
            def handler(loop, context):
                log.append(repr(sys.exc_info()[1]))
            loop.set_exception_handler(handler)

            def boom():
                raise ValueError("x")
            loop.call_soon(boom)
            loop.call_soon(print, context=5)  # no Context: asyncio's AttributeError
            loop.call_soon(loop.stop)

        def run(loop):
            log = []
            scenario(loop, log)
            loop.run_forever()
            return log
        ref = asyncio.SelectorEventLoop()
        try:
            expected = run(ref)
        finally:
            ref.close()
        self.assertEqual(run(self.make_loop()), expected)
        self.assertEqual(expected[0], "ValueError('x')")
        self.assertTrue(expected[1].startswith("AttributeError("))

    def test_heap_emptied_by_a_when_comparison(self):
        loop = self.make_loop()

        class When(float):
            # both say "due", and empty the heap on the way
            def __ge__(self, other):
                loop._scheduled.clear()
                return False

            def __lt__(self, other):
                loop._scheduled.clear()
                return True
        h = loop.call_at(0, print)
        h._when = When(0)
        ran = loop.run_until_complete(asyncio.sleep(0, "survived"))
        self.assertEqual(ran, "survived")

    def test_cycles_through_the_c_fields_are_collected(self):
        loop = self.make_loop()
        loop.close()
        loop._lb_deadline = loop
        # (a weakref would not tell: the GC clears it even when tp_clear
        # leaves the object alive)
        loop_id, loop_type = id(loop), type(loop)
        self.loop = loop = None
        gc.collect()
        self.assertFalse(any(id(o) == loop_id and type(o) is loop_type for o in gc.get_objects()))

    def test_call_later_asks_time_and_call_at_as_asyncio_does(self):
        # asyncio's call_later() is self.call_at(self.time() + delay, ...):
        # a time() or call_at() replaced on the instance or on a subclass
        # is what call_later() uses, on both loops.
        def scenario(loop, log):
            loop.time = lambda: 1000.0
            log.append(loop.call_later(5, print).when())
            del loop.time

            def call_at(when, callback, *args, context=None):
                log.append(("call_at", when))
                return type(loop).call_at(loop, when, callback, *args, context=context)
            loop.call_at = call_at
            loop.time = lambda: 2000.0
            log.append(loop.call_later(7, print).when())
            del loop.call_at, loop.time
            log.append(abs(loop.call_later(0, print).when() - time.monotonic()) < 60)
            base = type(loop)
            loop.__class__ = type("VirtualTime", (base,), {"time": lambda self: 3000.0})
            log.append(loop.call_later(1, print).when())
            loop.__class__ = base
            log.append(abs(loop.call_later(0, print).when() - time.monotonic()) < 60)
            loop.call_soon(loop.stop)
        log, _ = self.same(scenario)
        self.assertEqual(log, [1005.0, ("call_at", 2007.0), 2007.0, True, 3001.0, True])

    def test_slots_of_another_class_are_not_trusted(self):
        from loopbridge import _compat, _loopbridge

        class Tiny:
            __slots__ = ()

        class TinyTimer(Tiny):
            __slots__ = ()
        for name in ("_callback", "_args", "_cancelled", "_loop", "_source_traceback",
                     "_repr", "_context"):
            setattr(Tiny, name, asyncio.Handle.__dict__[name])
        for name in ("_when", "_scheduled"):
            setattr(TinyTimer, name, asyncio.TimerHandle.__dict__[name])
        try:
            self.assertFalse(_loopbridge.use_handles(Tiny, TinyTimer, _compat.report_handle_error))
        finally:
            self.assertTrue(_compat.use_handles(_loopbridge))


@unittest.skipUnless(HAVE_TK, "built without Tcl/Tk")
class TkCoreTest(TkFixture, CoreMixin, unittest.TestCase):
    pass


@unittest.skipUnless(HAVE_GLIB, "built without GLib")
class GLibCoreTest(GLibFixture, CoreMixin, unittest.TestCase):
    pass


if __name__ == "__main__":
    unittest.main()
