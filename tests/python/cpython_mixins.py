"""CPython's own event-loop tests (Debian's libpython3.11-testsuite), run
against a loopbridge loop: test_events' EventLoopTestsMixin and
SubprocessTestsMixin, test_subprocess's SubprocessMixin,
test_sock_lowlevel's BaseSockTestsMixin and test_sendfile's mixins.

add_tests(namespace, factory, prefix, skips) defines the TestCase classes
in namespace; skips maps test names to the reason (docs/python.md lists
them)."""
import asyncio
import unittest

from test.test_asyncio import test_events, test_sendfile, test_sock_lowlevel, test_subprocess
from test.test_asyncio import utils as test_utils
from asyncio import unix_events


def _skipper(reason):
    def skipped(self):
        raise unittest.SkipTest(reason)
    return skipped


def add_tests(namespace, factory, prefix, skips=None):
    skips = skips or {}

    def define(name, bases, body):
        for test, reason in skips.items():
            if any(hasattr(base, test) for base in bases):
                body[test] = _skipper(reason)
        namespace[prefix + name] = type(prefix + name, bases, body)

    def create_event_loop(self):
        return factory()

    define("EventLoopTests",
           (test_events.UnixEventLoopTestsMixin, test_events.SubprocessTestsMixin,
            test_utils.TestCase),
           {"create_event_loop": create_event_loop})
    define("SockTests", (test_sock_lowlevel.BaseSockTestsMixin, test_utils.TestCase),
           {"create_event_loop": create_event_loop})
    define("SendfileTests", (test_sendfile.SendfileTestsBase, test_utils.TestCase),
           {"create_event_loop": create_event_loop})

    def subprocess_setup(self, watcher_class):
        test_utils.TestCase.setUp(self)
        self.loop = factory()
        self.set_event_loop(self.loop)
        watcher = watcher_class()
        watcher.attach_loop(self.loop)
        asyncio.get_event_loop_policy().set_child_watcher(watcher)

    def subprocess_teardown(self):
        test_utils.TestCase.tearDown(self)
        policy = asyncio.get_event_loop_policy()
        watcher = policy.get_child_watcher()
        policy.set_child_watcher(None)
        watcher.attach_loop(None)
        watcher.close()

    define("SubprocessThreadedWatcherTests",
           (test_subprocess.SubprocessMixin, test_utils.TestCase),
           {"setUp": lambda self: subprocess_setup(self, unix_events.ThreadedChildWatcher),
            "tearDown": subprocess_teardown})
    if test_subprocess.has_pidfd_support():
        define("SubprocessPidfdWatcherTests",
               (test_subprocess.SubprocessMixin, test_utils.TestCase),
               {"setUp": lambda self: subprocess_setup(self, unix_events.PidfdChildWatcher),
                "tearDown": subprocess_teardown})
