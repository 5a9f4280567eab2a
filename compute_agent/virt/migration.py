"""What a running live migration shares with the rest of the agent.

The manager creates one ``MigrationControl`` per live migration and hands
it to the driver, which polls it while libvirt moves the guest: the
manager (or an operator's request) asks for an abort or a forced
completion, the service's drain sets a deadline, and the driver reports
progress back. Every method is safe to call from any thread, native
ones included (a disk copy checks for an abort from one in eventlet
mode).
"""

import threading
import time

from compute_agent import concurrency


class MigrationControl:
    """What the manager asks of one running migration (abort, a deadline,
    forced completion) and the progress the driver reports back.

    ``_lock`` guards the requests and the progress; it is native, never
    held across a wait, so that a native thread may take it too.
    ``_changed`` wakes a driver waiting for a new request.
    """

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._lock = concurrency.native_lock()
        self._changed = threading.Event()
        self._abort_reason = None
        self._deadline = None
        self._deadline_reason = None
        self._force_complete = False
        self._progress = {}

    # -- requests (manager side) -----------------------------------------

    def request_abort(self, reason):
        with self._lock:
            if self._abort_reason is None:
                self._abort_reason = reason
        self._changed.set()

    def request_force_complete(self):
        with self._lock:
            self._force_complete = True
        self._changed.set()

    def set_deadline(self, deadline, reason):
        """Abort when the clock passes deadline (a value of this control's
        clock), unless the migration has finished by then."""
        with self._lock:
            if self._deadline is None or deadline < self._deadline:
                self._deadline = deadline
                self._deadline_reason = reason
        self._changed.set()

    # -- driver side ------------------------------------------------------

    def abort_reason(self):
        """Why the migration must stop now, or None to go on."""
        with self._lock:
            if self._abort_reason is not None:
                return self._abort_reason
            if self._deadline is not None and \
                    self._clock() >= self._deadline:
                return self._deadline_reason
            return None

    def take_force_complete(self):
        """True once after request_force_complete()."""
        with self._lock:
            wanted, self._force_complete = self._force_complete, False
            return wanted

    def wait(self, seconds):
        """Sleep up to seconds, waking early on any request."""
        with self._lock:
            if self._deadline is not None:
                seconds = max(0.0, min(seconds,
                                       self._deadline - self._clock()))
        self._changed.wait(seconds)
        self._changed.clear()

    def report(self, **progress):
        """Record progress: e.g. memory_total, memory_processed,
        memory_remaining, disk_total, disk_processed (bytes), percent."""
        with self._lock:
            self._progress = dict(progress)

    def progress(self):
        with self._lock:
            return dict(self._progress)
