"""Threads that must not die: libvirt's event loop and the event dispatcher.

Such a thread runs one step over and over. When a step fails unexpectedly
the error is logged with its traceback and the loop goes on after a pause
that grows while the failures repeat, so a persistent error neither ends
the thread nor spins. The restarts and the last error are kept for the
service status.
"""

import logging
import threading
import time

from compute_agent import concurrency

LOG = logging.getLogger(__name__)

RUNNING = 'running'
RESTARTING = 'restarting'
STOPPED = 'stopped'

# The pause after the first failure, doubled after each further failure
# in a row up to the maximum.
FIRST_PAUSE = 0.1
MAX_PAUSE = 5.0


class Backoff:
    """Pauses that double from first up to maximum, until reset()."""

    def __init__(self, first=FIRST_PAUSE, maximum=MAX_PAUSE):
        self._first = first
        self._maximum = maximum
        self._next = first

    def next_pause(self):
        pause = self._next
        self._next = min(pause * 2, self._maximum)
        return pause

    def reset(self):
        self._next = self._first


def describe(error):
    return f'{type(error).__name__}: {error}'


class SupervisedLoop:
    """Runs step() on a daemon thread named name, again and again.

    ``_lock`` guards the restart count, the last error and whether the
    loop is pausing after one, which health() reads from other threads.
    A native loop (a step that blocks in C, such as libvirt's event loop)
    runs on an OS thread in every concurrency mode, with a native lock and
    sleep; any other loop is a worker (a green thread in eventlet mode).
    """

    def __init__(self, name, step, backoff=None, sleep=None, native=False):
        self._name = name
        self._step = step
        self._backoff = backoff or Backoff()
        self._native = native
        if sleep is None:
            sleep = concurrency.native_sleep if native else time.sleep
        self._sleep = sleep
        self._thread = None
        self._lock = (concurrency.native_lock() if native
                      else threading.Lock())
        self._pausing = False
        self._restarts = 0
        self._last_error = None
        self._last_error_at = None

    def start(self):
        if self._native:
            self._thread = concurrency.spawn_native(self._run, self._name)
        else:
            self._thread = concurrency.spawn(self._run, self._name)

    def _run(self):
        while True:
            try:
                self._step()
            except Exception as error:
                pause = self._backoff.next_pause()
                LOG.exception('%s failed unexpectedly; restarting it in '
                              '%.1f s', self._name, pause)
                with self._lock:
                    self._pausing = True
                    self._restarts += 1
                    self._last_error = describe(error)
                    self._last_error_at = time.monotonic()
                self._sleep(pause)
                with self._lock:
                    self._pausing = False
            else:
                self._backoff.reset()

    def health(self):
        """{'state': RUNNING|RESTARTING|STOPPED, 'restarts',
        'last_error': text or None, 'last_error_at': monotonic time}."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                state = STOPPED
            else:
                state = RESTARTING if self._pausing else RUNNING
            return {'state': state, 'restarts': self._restarts,
                    'last_error': self._last_error,
                    'last_error_at': self._last_error_at}
