"""Measuring helpers for the loop tests: wakeups, CPU, and how long the
loop keeps the host busy in one go (a pass)."""
import os
import time

# The loop's own longest pass may never exceed this (CPU time of the thread,
# so that a loaded machine preempting the pass does not count).
PASS_LIMIT = 0.005


def wakeups():
    """Voluntary context switches of the calling thread: each time it slept
    and was woken."""
    with open("/proc/thread-self/status") as status:
        for line in status:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise RuntimeError("no voluntary_ctxt_switches in /proc/thread-self/status")


def machine_is_quiet():
    """True when the machine has a core free: wall-clock gaps then measure
    the loop, not the scheduler."""
    return os.getloadavg()[0] < (os.cpu_count() or 1)


class PassTimer:
    """Wraps loop._lb_run_ready (one pass: what the loop runs before the
    host gets its turn back) and records the longest, in CPU time of the
    thread and in wall-clock time."""

    def __init__(self, loop):
        self.count = 0
        self.max_cpu = 0.0
        self.max_wall = 0.0
        run_ready = loop._lb_run_ready

        def timed():
            self.count += 1
            cpu, wall = time.thread_time(), time.monotonic()
            try:
                run_ready()
            finally:
                self.max_cpu = max(self.max_cpu, time.thread_time() - cpu)
                self.max_wall = max(self.max_wall, time.monotonic() - wall)
        loop._lb_run_ready = timed

    def reset(self):
        self.count = 0
        self.max_cpu = self.max_wall = 0.0
