"""The few asyncio internals loopbridge's loops rely on, in one place.

asyncio's private names differ between Python 3.11, 3.12 and 3.13; every
use of them goes through this module so a new Python needs changes here
only.
"""
import signal
import sys
import threading
from asyncio import events, tasks

__all__ = ["run_forever_setup", "run_forever_cleanup", "suspend_current_task",
           "report_handle_error", "use_handles", "set_wakeup_fd_if_unset",
           "resume_current_task", "get_running_loop_or_none", "set_running_loop"]


def get_running_loop_or_none():
    return events._get_running_loop()


def set_running_loop(loop):
    events._set_running_loop(loop)


def run_forever_setup(loop):
    """What BaseEventLoop.run_forever does before its first iteration."""
    if hasattr(loop, "_run_forever_setup"):  # 3.12 and later
        loop._run_forever_setup()
        return
    loop._check_closed()
    loop._check_running()
    loop._set_coroutine_origin_tracking(loop._debug)
    loop._lb_old_agen_hooks = sys.get_asyncgen_hooks()
    loop._thread_id = threading.get_ident()
    sys.set_asyncgen_hooks(firstiter=loop._asyncgen_firstiter_hook,
                           finalizer=loop._asyncgen_finalizer_hook)
    events._set_running_loop(loop)


def run_forever_cleanup(loop):
    """What BaseEventLoop.run_forever does after its last iteration."""
    if hasattr(loop, "_run_forever_cleanup"):  # 3.12 and later
        loop._run_forever_cleanup()
        return
    loop._stopping = False
    loop._thread_id = None
    events._set_running_loop(None)
    loop._set_coroutine_origin_tracking(False)
    hooks = getattr(loop, "_lb_old_agen_hooks", None)
    if hooks is not None:
        sys.set_asyncgen_hooks(*hooks)
        loop._lb_old_agen_hooks = None


def suspend_current_task(loop):
    """Leaves the task that runs beneath a nested main loop, so that other
    tasks can step (asyncio refuses to enter a task while another one is
    current). Returns it for resume_current_task()."""
    task = tasks.current_task(loop)
    if task is not None:
        tasks._leave_task(loop, task)
    return task


def resume_current_task(loop, task):
    if task is not None:
        tasks._enter_task(loop, task)


# Timer handles: their deadline and the 'is in the heap' flag (the C
# paths, _looptimers.c, read and write both directly).
def handle_when(handle):
    return handle._when


def handle_unschedule(handle):
    handle._scheduled = False


def report_handle_error(handle, exc):
    """What Handle._run does with an exception from its callback; LoopCore
    runs handles without calling _run."""
    from asyncio import format_helpers
    source = format_helpers._format_callback_source(handle._callback, handle._args)
    context = {
        'message': f'Exception in callback {source}',
        'exception': exc,
        'handle': handle,
    }
    if handle._source_traceback:
        context['source_traceback'] = handle._source_traceback
    handle._loop.call_exception_handler(context)


def use_handles(core_module):
    """Tells LoopCore asyncio's handle classes; False when their slots are
    not the ones it knows (it then makes and runs them the generic way)."""
    return core_module.use_handles(events.Handle, events.TimerHandle, report_handle_error)


def set_wakeup_fd_if_unset(fd):
    """signal.set_wakeup_fd(fd) unless another fd is set; returns fd when
    it was set, else None."""
    old = signal.set_wakeup_fd(fd)
    if old != -1:
        signal.set_wakeup_fd(old)
        return None
    return fd

