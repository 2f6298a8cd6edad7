"""The asyncio event loop shared by loopbridge.tk and loopbridge.glib.

It is asyncio's own selector loop (so transports, streams, servers,
subprocesses, signals and executors are the stdlib's), with the blocking
select() replaced by the host toolkit's main loop: loopbridge watches the
fds, arms one timer for the earliest deadline and asks the host for a
"pass" when something is ready. A pass is re-entrant: a modal dialog or a
nested main loop opened by a callback or a task runs further passes, and
other tasks keep stepping while it is open.
"""
import asyncio
import heapq
import selectors
import socket
import threading
import time

from . import _compat
from . import _loopbridge
from ._loopbridge import LoopCore

_Selector = asyncio.SelectorEventLoop  # asyncio's methods, past LoopCore's
_get_ident = threading.get_ident
_monotonic = time.monotonic
_compat.use_handles(_loopbridge)

# A pass runs callbacks for at most this long before it lets the toolkit
# draw and handle input; the rest runs in the next pass.
DEFAULT_BUDGET = 0.002

# After this long of passes back to back, the next pass waits for a real
# timer of _BUSY_PAUSE: a host that runs events until none is pending (Tcl's
# `update`, a `while pending(): iteration()` loop) then gets to return.
_BUSY_STREAK = 0.02
_BUSY_PAUSE = 0.001

# Within a pass, the fds are polled again after this long.
_POLL_INTERVAL = 0.0001

_MAXIMUM_SELECT_TIMEOUT = 24 * 3600
_MIN_CANCELLED_TIMER_HANDLES_FRACTION = 0.5
_MIN_SCHEDULED_TIMER_HANDLES = 100


def _trimmed(handle):
    """handle, its debug-mode source traceback ending at the caller's
    line, as on asyncio's loop: without the frames of this module and of
    asyncio's scheduling methods that LoopCore's Python paths add."""
    stack = handle._source_traceback
    while stack and stack[-1].filename in _SCHEDULING_FILES:
        del stack[-1]
    return handle


_SCHEDULING_FILES = (__file__, asyncio.base_events.__file__)


class _BridgeSelector(selectors._BaseSelectorImpl):
    """A selector whose readiness comes from loopbridge; select() never
    blocks (the host main loop is where the thread waits)."""

    def __init__(self, bridge):
        super().__init__()
        self._bridge = bridge

    def register(self, fileobj, events, data=None):
        key = super().register(fileobj, events, data)
        try:
            self._bridge.watch(key.fd, events)
        except BaseException:
            super().unregister(fileobj)
            raise
        return key

    def unregister(self, fileobj):
        key = super().unregister(fileobj)
        if not self._bridge.closed:
            try:
                self._bridge.watch(key.fd, 0)
            except OSError:
                pass
        return key

    def select(self, timeout=None):
        return self._keys(self._bridge.take_events())

    def select_reported(self):
        """What the host reported since the last select, without polling."""
        return self._keys(self._bridge.take_events(False))

    def _keys(self, events):
        ready = []
        for fd, mask in events:
            key = self._fd_to_key.get(fd)
            if key is not None and mask & key.events:
                ready.append((key, mask & key.events))
        return ready

    def close(self):
        self._fd_to_key.clear()
        self._map = None


class BridgeEventLoop(LoopCore, asyncio.SelectorEventLoop):
    """Base class; use loopbridge.tk.EventLoop or loopbridge.glib.EventLoop.

    LoopCore (_loopcore.c) holds call_soon(), call_soon_threadsafe() and
    the running of ready handles, and the attributes they read: _ready,
    _closed, _debug, _bridge, _lb_owner, _lb_passes and _lb_woken.
    """

    def __init__(self, bridge):
        self._bridge = bridge
        self._lb_owner = threading.get_ident()
        self._lb_budget = DEFAULT_BUDGET
        self._lb_busy_since = None    # when passes began to follow back to back
        self._lb_deadline = None      # the when the C timer is armed for
        self._lb_run_depth = 0        # our own run_forever/run_until_complete
        self._lb_pass_depth = 0       # passes running on the stack
        self._lb_stopped = False
        self._lb_hosted = False
        self._lb_hosted_signal_fd = None  # the wakeup fd install() set
        self._lb_pending_exc = None
        self._lb_woken = False        # a wakeup byte is on its way
        self._lb_passes = 0           # passes begun, nested ones included
        self._lb_timer_woke = -1      # the pass in which call_at() last woke the host
        super().__init__(_BridgeSelector(bridge))

    # -- what the host calls -------------------------------------------

    def _lb_host_pass(self):
        # what the host calls (through a PassCall, _passcall.c)
        try:
            self._lb_pass()
        except (SystemExit, KeyboardInterrupt) as exc:
            if not self._lb_interrupted(exc):
                raise

    def _lb_interrupted(self, exc):
        """A KeyboardInterrupt or SystemExit in a pass: the waiting run_*()
        call raises it (True), or, with none waiting, it propagates to the
        host's caller (False). The loop asks for a pass again: the one
        interrupted may not have run or re-armed anything."""
        if not self._closed and not self._bridge.closed:
            self._bridge.schedule()
        if self._lb_run_depth > 0:
            self._lb_pending_exc = exc
            return True
        return False

    def _lb_pass(self):
        self._lb_passes += 1
        if self._closed:
            return
        if self._lb_stopped:
            if self._lb_run_depth > 0:
                # run_forever is about to return: as asyncio's loop, run
                # nothing more until it is run again.
                return
            self._lb_stopped = self._stopping = False
        outer_task = _compat.suspend_current_task(self)
        outer_loop = _compat.get_running_loop_or_none()
        if outer_loop is not self:
            _compat.set_running_loop(self)
        self._lb_pass_depth += 1
        try:
            self._lb_run_ready()
        finally:
            self._lb_pass_depth -= 1
            if outer_loop is not self:
                _compat.set_running_loop(outer_loop)
            _compat.resume_current_task(self, outer_task)
            if not self._closed:
                self._lb_rearm()

    def _lb_run_ready(self):
        # Iterations of the loop (what BaseEventLoop._run_once does, without
        # blocking) back to back until nothing is ready or the budget is
        # spent: a chain of callbacks then costs one iteration per hop, not
        # one turn of the host's loop.
        # The fds are polled at the start of the pass and then every
        # _POLL_INTERVAL: a system call per hop would double a hop's cost.
        last_poll = time.monotonic()
        stop_deadline = last_poll + self._lb_budget
        poll = True
        while self._lb_run_once(stop_deadline, poll):
            now = time.monotonic()
            if not self._ready or self._stopping or now >= stop_deadline:
                break
            poll = now - last_poll >= _POLL_INTERVAL
            if poll:
                last_poll = now

    def _lb_run_once(self, stop_deadline, poll=True):
        # One iteration, with the pass's time budget, and safe to enter
        # again from a callback. Returns False when the budget cut it
        # short.
        # Wakeups asked for from now on must reach the host (see
        # _write_to_self); what was asked before is seen below.
        self._lb_woken = False
        selector = self._selector
        self._process_events(selector.select(0) if poll else selector.select_reported())
        sched = self._scheduled
        if (len(sched) > _MIN_SCHEDULED_TIMER_HANDLES and
                self._timer_cancelled_count / len(sched) >
                _MIN_CANCELLED_TIMER_HANDLES_FRACTION):
            new_scheduled = []
            for handle in sched:
                if handle._cancelled:
                    _compat.handle_unschedule(handle)
                else:
                    new_scheduled.append(handle)
            heapq.heapify(new_scheduled)
            self._scheduled = new_scheduled
            self._timer_cancelled_count = 0
        self._lb_collect_due(self.time() + self._clock_resolution)
        ready = self._ready

        # A callback may open a nested main loop (a modal dialog): the
        # deadline and a pass for what is still ready must be waiting there.
        self._lb_rearm_timer()
        # A pass is kept waiting in the host while handles remain; the one
        # asked for stays waiting until the host runs a pass, which only a
        # nested loop can do before this one returns: ask again only after
        # a pass began.
        ntodo = len(ready)
        if not self._debug:
            ntodo = self._lb_run_handles(ntodo, stop_deadline)
        else:
            ntodo = self._lb_run_handles_debug(ntodo, stop_deadline)
        if self._stopping and ntodo <= 0:
            self._lb_stopped = True
        return ntodo <= 0

    def _lb_run_handles_debug(self, ntodo, stop_deadline):
        # LoopCore._lb_run_handles() with asyncio's debug-mode reporting of
        # slow callbacks
        ready = self._ready
        wake = self._bridge.wake
        passes_seen = -1
        while ntodo > 0 and ready:
            handle = ready.popleft()
            ntodo -= 1
            if handle._cancelled:
                continue
            if ready and self._lb_passes != passes_seen:
                passes_seen = self._lb_passes
                wake()
            try:
                self._current_handle = handle
                t0 = self.time()
                handle._run()
                dt = self.time() - t0
                if dt >= self.slow_callback_duration:
                    asyncio.log.logger.warning(
                        'Executing %s took %.3f seconds',
                        asyncio.base_events._format_handle(handle), dt)
            finally:
                self._current_handle = None
            if ntodo & 3 == 0 and ntodo > 0 and _monotonic() >= stop_deadline:
                break
        return ntodo

    def _lb_rearm(self):
        bridge = self._bridge
        if self._ready or (self._stopping and not self._lb_stopped):
            now = time.monotonic()
            if self._lb_busy_since is None:
                self._lb_busy_since = now
            if now - self._lb_busy_since >= _BUSY_STREAK:
                self._lb_busy_since = None
                bridge.schedule(_BUSY_PAUSE)
            else:
                bridge.schedule()
        else:
            self._lb_busy_since = None
        self._lb_rearm_timer()

    def _lb_rearm_timer(self):
        bridge = self._bridge
        sched = self._scheduled
        if sched:
            when = _compat.handle_when(sched[0])
            if when != self._lb_deadline or not bridge.timer_armed:
                limit = self.time() + _MAXIMUM_SELECT_TIMEOUT
                if not when < limit:
                    # a NaN when is due now, as asyncio finds it
                    bridge.set_timer(limit if when >= limit else self.time())
                else:
                    bridge.set_timer(when)
                self._lb_deadline = when
        elif self._lb_deadline is not None:
            bridge.set_timer(None)
            self._lb_deadline = None

    # -- asyncio's scheduling, told to the host ------------------------

    # asyncio's own scheduling methods, which LoopCore's call in debug mode
    # (for their checks and source tracebacks) and for keyword arguments
    # other than context; their _call_soon() is the one below.

    def _make_self_pipe(self):
        # asyncio's self-pipe, without its reader until a signal handler
        # is added (add_signal_handler() makes the pipe the wakeup fd):
        # nothing else writes to it here (see _write_to_self), and on Tk
        # a watched fd puts Tcl's notifier thread into every wait of the
        # loop's thread.
        self._ssock, self._csock = socket.socketpair()
        self._ssock.setblocking(False)
        self._csock.setblocking(False)
        self._internal_fds += 1
        self._lb_self_pipe_read = False

    def add_signal_handler(self, sig, callback, *args):
        super().add_signal_handler(sig, callback, *args)
        if not self._lb_self_pipe_read:
            self._add_reader(self._ssock.fileno(), self._read_from_self)
            self._lb_self_pipe_read = True

    def _lb_call_soon_py(self, *args, **kwargs):
        return _trimmed(_Selector.call_soon(self, *args, **kwargs))

    def _call_soon(self, callback, args, context):
        # asyncio's call_soon() and call_soon_threadsafe(), when LoopCore
        # takes their Python paths
        handle = super()._call_soon(callback, args, context)
        if _get_ident() == self._lb_owner:
            self._bridge.wake()
        return handle

    def _lb_call_soon_threadsafe_py(self, *args, **kwargs):
        return _trimmed(_Selector.call_soon_threadsafe(self, *args, **kwargs))

    def _write_to_self(self):
        # asyncio wakes its loop from another thread (and after a signal)
        # by writing to its self-pipe, a system call per post. Here the
        # host is woken as loopbridge wakes it from another thread (on Tk,
        # Tcl_ThreadAlert: the loop's thread is woken directly, not through
        # Tcl's notifier thread), and the pass runs from that wakeup. One
        # wakeup per iteration is enough: the iteration that clears the
        # flag then sees every handle posted before the flag was cleared,
        # and a post after it wakes again. LoopCore.call_soon_threadsafe()
        # does the same in C.
        if self._lb_woken:
            return
        self._lb_woken = True
        self._bridge.wake_threadsafe()

    def _lb_call_at_py(self, *args, **kwargs):
        return _trimmed(_Selector.call_at(self, *args, **kwargs))

    def _lb_call_later_py(self, delay, callback, *args, context=None):
        # asyncio's call_later(): debug mode, keywords other than context,
        # or a time() or call_at() that is not the loop's own
        if delay is None:
            raise TypeError('delay must not be None')
        return self.call_at(self.time() + delay, callback, *args, context=context)

    def stop(self):
        super().stop()
        if threading.get_ident() == self._lb_owner and not self._bridge.closed:
            self._bridge.schedule()

    # -- running -------------------------------------------------------

    def _lb_iterate(self):
        """Blocks in the host's main loop for one event."""
        raise NotImplementedError

    def _lb_raise_pending(self):
        exc = self._lb_pending_exc
        if exc is not None:
            self._lb_pending_exc = None
            raise exc

    def _lb_catch_signals(self):
        # A signal's Python handler runs when Python code runs next; while
        # the thread waits in the host, that is the next pass, maybe long
        # after. So, unless a wakeup fd is set already (asyncio's own, once
        # add_signal_handler() was used: the loop watches it), the bridge's
        # is set for the wait, and a signal runs a pass at once. Returns
        # the fd to take back, or None.
        if threading.current_thread() is not threading.main_thread() or self._bridge.closed:
            return None
        return _compat.set_wakeup_fd_if_unset(self._bridge.signal_fd())

    def _lb_nested(self):
        # Running, but called from the toolkit (a button of a hosted loop,
        # for instance), not from one of the loop's own callbacks: asyncio
        # refuses those, and so do we.
        return (self.is_running() and self._thread_id == threading.get_ident() and
                self._lb_pass_depth == 0)

    def _lb_wait(self, done):
        """Runs the host's main loop until done() is true."""
        self._lb_run_depth += 1
        signal_fd = self._lb_catch_signals()
        try:
            if not self._bridge.closed:
                self._bridge.schedule()
            while not done():
                self._lb_iterate()
                self._lb_raise_pending()
        finally:
            if signal_fd is not None:
                _loopbridge.release_wakeup_fd(signal_fd)
            self._lb_run_depth -= 1
            # Work left runs when the toolkit's loop (mainloop, update)
            # turns next, whoever turns it.
            if self._ready and not self._bridge.closed:
                self._bridge.schedule()

    def run_forever(self):
        if self._lb_nested():
            # Nested in a hosted loop or in a callback: run until stop().
            self._lb_stopped = False
            try:
                self._lb_wait(lambda: self._lb_stopped)
            finally:
                self._stopping = False
                self._lb_stopped = False
            return
        _compat.run_forever_setup(self)
        try:
            self._lb_stopped = False
            self._lb_wait(lambda: self._lb_stopped)
        finally:
            self._lb_stopped = False
            _compat.run_forever_cleanup(self)

    def run_until_complete(self, future):
        if not self._lb_nested():
            return super().run_until_complete(future)
        # Called from a button handler of a hosted loop or from inside a
        # callback: a nested main loop keeps the window and the tasks live.
        self._check_closed()
        future = asyncio.ensure_future(future, loop=self)
        self._lb_wait(future.done)
        return future.result()

    def install(self):
        """Hosted mode: the toolkit's main loop is the outer loop; the loop
        counts as running on this thread until close(), so that
        asyncio.create_task() and get_running_loop() work in the toolkit's
        callbacks. Returns the loop."""
        _compat.run_forever_setup(self)
        self._lb_hosted = True
        # The toolkit's loop sees a signal only with its next event (Ctrl+C
        # in tkinter's mainloop()): the bridge's wakeup fd makes the signal
        # an event, whose pass runs the handler; its KeyboardInterrupt comes
        # out of mainloop() (see "Signals" in docs/python.md).
        self._lb_hosted_signal_fd = self._lb_catch_signals()
        self._bridge.schedule()
        return self

    def is_hosted(self):
        return self._lb_hosted

    def close(self):
        if self._lb_hosted and self._lb_run_depth == 0:
            self._lb_hosted = False
            if self._lb_hosted_signal_fd is not None:
                _loopbridge.release_wakeup_fd(self._lb_hosted_signal_fd)
                self._lb_hosted_signal_fd = None
            _compat.run_forever_cleanup(self)
        if self._bridge.closed:
            return super().close()
        super().close()
        self._bridge.close()
        self._lb_host_close()

    def _lb_host_close(self):
        pass

    def set_budget(self, seconds):
        """How long one pass may run callbacks before the toolkit gets a
        turn (default 2 ms); the host loop's own budget is set too."""
        seconds = float(seconds)
        if not seconds > 0:
            raise ValueError("budget must be positive")
        self._lb_budget = seconds
        self._bridge.set_budget(seconds)
