"""SIGTERM and SIGHUP recorded for the main thread (compute_agent/signals.py).

These tests signal their own process: each restores the handlers, the
wakeup fd and the alarm it changed.
"""

import os
import signal
import threading
import time

from compute_agent import signals
from tests.unit import base


class SignalInboxTest(base.TestCase):
    def setUp(self):
        super().setUp()
        if threading.current_thread() is not threading.main_thread():
            self.skipTest('signal handlers are set in the main thread')
        for signum in (signal.SIGTERM, signal.SIGHUP):
            self.addCleanup(signal.signal, signum, signal.getsignal(signum))
        self.addCleanup(signal.alarm, 0)
        self.addCleanup(signal.set_wakeup_fd, signal.set_wakeup_fd(-1))

    def test_sigterm_is_recorded_once_and_arms_the_alarm(self):
        inbox = signals.SignalInbox(alarm_seconds=30)
        inbox.install()
        self.assertIsNone(inbox.terminate_requested_at)
        before = time.monotonic()
        os.kill(os.getpid(), signal.SIGTERM)
        first = inbox.terminate_requested_at
        self.assertIsNotNone(first)
        self.assertGreaterEqual(first, before)
        # The alarm is the launcher's hard backstop: armed at SIGTERM.
        self.assertGreater(signal.alarm(0), 0)
        os.kill(os.getpid(), signal.SIGTERM)
        self.assertEqual(first, inbox.terminate_requested_at)
        self.assertEqual(0, signal.alarm(0), 'a second SIGTERM re-armed')

    def test_no_alarm_without_a_graceful_shutdown_timeout(self):
        inbox = signals.SignalInbox(alarm_seconds=0)
        inbox.install()
        os.kill(os.getpid(), signal.SIGTERM)
        self.assertIsNotNone(inbox.terminate_requested_at)
        self.assertEqual(0, signal.alarm(0))

    def test_sighup_is_recorded_until_taken(self):
        inbox = signals.SignalInbox(alarm_seconds=30)
        inbox.install()
        self.assertFalse(inbox.take_reload_request())
        os.kill(os.getpid(), signal.SIGHUP)
        os.kill(os.getpid(), signal.SIGHUP)
        self.assertTrue(inbox.take_reload_request())
        self.assertFalse(inbox.take_reload_request())
        self.assertIsNone(inbox.terminate_requested_at)

    def test_ignored_sighup_is_not_recorded(self):
        inbox = signals.SignalInbox(alarm_seconds=30)
        inbox.install()
        inbox.ignore_reloads()
        os.kill(os.getpid(), signal.SIGHUP)
        self.assertFalse(inbox.take_reload_request())

    def test_wait_returns_when_a_signal_arrives_from_another_thread(self):
        inbox = signals.SignalInbox(alarm_seconds=30)
        inbox.install()
        timer = threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGHUP))
        timer.start()
        self.addCleanup(timer.cancel)
        started = time.monotonic()
        while not inbox.take_reload_request():
            self.assertLess(time.monotonic() - started, 30, 'never woken')
            inbox.wait(30)
