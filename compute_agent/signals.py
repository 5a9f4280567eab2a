"""SIGTERM and SIGHUP, recorded for the main thread to act on.

oslo.service's launcher (``no_fork``) runs the whole drain inside its
SIGTERM handler, on the main thread interrupted wherever it happened to
be, even in the middle of ``Service.start()``; and its SIGHUP handler ends
the process. The agent's handlers only note the signal: the service acts
on it from the main thread, at points where it can (see service.py).

SIGINT and SIGALRM stay the launcher's: an immediate exit with status 1.
"""

import os
import select
import signal
import time


class SignalInbox:
    """What SIGTERM and SIGHUP asked for, since install().

    The handlers only assign attributes (a lock taken in a handler could be
    the one the interrupted code holds). The kernel may hand a signal to
    any thread while Python runs handlers only in the main thread between
    bytecodes, so the C-level handler also writes to a wakeup fd that
    wait() watches: a main thread asleep in wait() wakes to run them.
    """

    def __init__(self, alarm_seconds, clock=time.monotonic):
        """:param alarm_seconds: the hard backstop armed at SIGTERM, as the
            launcher does (graceful_shutdown_timeout; 0 for none): its
            SIGALRM handler exits with status 1.
        """
        self._alarm_seconds = alarm_seconds
        self._clock = clock
        self.terminate_requested_at = None   # clock() of the first SIGTERM
        self._reload_requested = False
        self._wakeup_read = None

    def install(self):
        """Take over SIGTERM and SIGHUP. Main thread only; again after
        the launcher has set its own handlers."""
        signal.signal(signal.SIGTERM, self._on_sigterm)
        signal.signal(signal.SIGHUP, self._on_sighup)
        if self._wakeup_read is None:
            self._wakeup_read, write_fd = os.pipe()
            os.set_blocking(self._wakeup_read, False)
            os.set_blocking(write_fd, False)
            signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)

    def _on_sigterm(self, signum, frame):
        if self.terminate_requested_at is not None:
            return   # a second SIGTERM changes nothing
        self.terminate_requested_at = self._clock()
        if self._alarm_seconds:
            signal.alarm(self._alarm_seconds)

    def _on_sighup(self, signum, frame):
        self._reload_requested = True

    def take_reload_request(self):
        """True once per burst of SIGHUPs since the last call."""
        requested, self._reload_requested = self._reload_requested, False
        return requested

    def ignore_reloads(self):
        """From now on SIGHUP does nothing (the drain has begun)."""
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        self._reload_requested = False

    def wait(self, timeout):
        """Sleep until a signal arrives or timeout seconds pass (after
        install())."""
        select.select([self._wakeup_read], [], [], timeout)
        try:
            os.read(self._wakeup_read, 512)
        except BlockingIOError:
            pass
