"""SIGTERM and SIGHUP recorded for the main thread (compute_agent/signals.py).

These tests signal their own process: each restores the handlers, the
wakeup fd and the alarm it changed.
"""

import itertools
import os
import signal
import subprocess
import threading

from compute_agent import signals
from tests.unit import base

HANG_TIMEOUT = 30


class SignalInboxTest(base.TestCase):
    def setUp(self):
        super().setUp()
        try:
            # Only the main OS thread may set handlers (asked this way
            # rather than through threading, which eventlet mode patches).
            signal.signal(signal.SIGHUP, signal.getsignal(signal.SIGHUP))
        except ValueError:
            self.skipTest('signal handlers are set in the main thread')
        for signum in (signal.SIGTERM, signal.SIGHUP):
            self.addCleanup(signal.signal, signum, signal.getsignal(signum))
        self.addCleanup(signal.alarm, 0)
        self.addCleanup(signal.set_wakeup_fd, signal.set_wakeup_fd(-1))

    def test_sigterm_is_recorded_once_and_arms_the_alarm(self):
        readings = itertools.count(1.0)
        inbox = signals.SignalInbox(alarm_seconds=30,
                                    clock=lambda: next(readings))
        inbox.install()
        self.assertIsNone(inbox.terminate_requested_at)
        os.kill(os.getpid(), signal.SIGTERM)
        # The clock's first reading, taken in the handler.
        self.assertEqual(1.0, inbox.terminate_requested_at)
        # The alarm is the launcher's hard backstop: armed at SIGTERM.
        self.assertGreater(signal.alarm(0), 0)
        os.kill(os.getpid(), signal.SIGTERM)
        self.assertEqual(1.0, inbox.terminate_requested_at)
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
        # Returns when the SIGHUP wakes it; the timeout is a hang guard.
        inbox.wait(HANG_TIMEOUT)
        self.assertTrue(inbox.take_reload_request(), 'woken, but not by the '
                                                     'SIGHUP')

    def test_wait_returns_when_a_signal_arrives_from_another_process(self):
        # As systemd sends it: nothing in this process runs meanwhile (in
        # eventlet mode the hub sleeps in the kernel).
        inbox = signals.SignalInbox(alarm_seconds=30)
        inbox.install()
        sender = subprocess.Popen(
            ['sh', '-c', f'sleep 0.1; kill -HUP {os.getpid()}'])
        self.addCleanup(sender.wait, HANG_TIMEOUT)
        inbox.wait(HANG_TIMEOUT)
        self.assertTrue(inbox.take_reload_request(), 'woken, but not by the '
                                                     'SIGHUP')
