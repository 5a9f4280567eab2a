"""The agent's service: two RPC servers and the SIGTERM drain.

Lifecycle (all transitions happen in ``_enter``)::

    created --start()--> running --stop()--> quiescing --> draining
        --> stopped

``quiescing`` lasts while the ``compute`` server stops consuming (well
under a second); it is reported as running, because new work may still
arrive. ``draining`` means no new work is taken any more.

On SIGTERM oslo.service's launcher calls ``stop()`` and, when it returns,
exits the process with status 0; a SIGALRM armed for
``graceful_shutdown_timeout`` is its hard backstop. So ``stop()`` performs
the whole ordered drain itself:

    stop compute -> wait for in-flight work -> stop compute-alt
    -> wait for what compute-alt took meanwhile -> return

``compute`` carries new work and stops first: requests sent to it later
stay queued on the broker for the next start. ``compute-alt`` carries the
continuation of work already started and keeps serving until nothing is in
flight. The drain returns the moment the tracker is empty; the servers'
``wait()`` (about a second of listener timeout) is not needed, because the
tracker already accounts for every request they consumed.
"""

import logging
import os
import select
import signal
import threading
import time

from oslo_service import service as oslo_service

from compute_agent import rpc
from compute_agent import systemd

LOG = logging.getLogger(__name__)

CREATED, RUNNING, QUIESCING, DRAINING, STOPPED = (
    'created', 'running', 'quiescing', 'draining', 'stopped')
_TRANSITIONS = {
    (CREATED, RUNNING),
    (RUNNING, QUIESCING),
    (QUIESCING, DRAINING),
    (DRAINING, STOPPED),
    (CREATED, STOPPED),
}

# The drain finishes this long before the launcher's SIGALRM fires, so the
# agent exits through its own ordered path and logs what it left behind.
ALARM_MARGIN = 1.0
DRAIN_REPORT_INTERVAL = 5.0
# The main thread re-checks whether it was stopped at least this often,
# should a wakeup ever be missed.
WAIT_SAFETY_NET = 5.0
# A listener's stop that has not returned within STOP_GRACE is waiting on
# a long broker poll: wake it, and again every WAKE_INTERVAL.
STOP_GRACE = 0.05
WAKE_INTERVAL = 0.25
# Cleanup after a power-off (undefine, record update) that the drain
# budget should leave room for beyond shutdown_timeout.
POWER_OFF_CLEANUP_ALLOWANCE = 30


class Service(oslo_service.ServiceBase):
    def __init__(self, conf, manager, transport, tracker,
                 clock=time.monotonic):
        self._conf = conf
        self._manager = manager
        self._transport = transport
        self._tracker = tracker
        self._clock = clock
        self._state = CREATED
        self._state_lock = threading.Lock()
        self._stopped = threading.Event()
        self._primary = None
        self._alt = None

    @property
    def state(self):
        return self._state

    @property
    def tracker(self):
        return self._tracker

    def _enter(self, new_state):
        """Move to new_state; False when that move is not allowed now."""
        with self._state_lock:
            if (self._state, new_state) not in _TRANSITIONS:
                return False
            LOG.debug('Service state %s -> %s', self._state, new_state)
            self._state = new_state
            return True

    def start(self):
        self._warn_if_drain_too_short()
        self._manager.init_host(self)
        host = self._conf.host
        endpoints = [self._manager]
        self._primary = rpc.create_server(
            self._transport, rpc.TOPIC, host, endpoints, self._tracker)
        self._alt = rpc.create_server(
            self._transport, rpc.ALT_TOPIC, host, endpoints, self._tracker)
        # compute-alt first: once new work can arrive, its continuation
        # must already have somewhere to go.
        self._alt.start()
        self._primary.start()
        self._enter(RUNNING)
        LOG.info('compute-agent serving topics %s and %s as host %s',
                 rpc.TOPIC, rpc.ALT_TOPIC, host)
        systemd.notify(READY=1, STATUS=f'serving as host {host}')

    def wait(self):
        """Block until stop() has run (the launcher calls this after
        start(), in the main thread, and exits when stop() returns).

        Python runs signal handlers only in the main thread, between
        bytecodes, and the kernel may hand SIGTERM to any thread. Seen
        here: a busy agent whose main thread slept in Event.wait() never
        ran its SIGTERM handler (about one SIGTERM in thirty under a burst
        of requests). The main thread therefore waits on the signal wakeup
        fd, which the C-level handler writes on whichever thread took the
        signal, so it wakes to run the handler.
        """
        if threading.current_thread() is not threading.main_thread():
            self._stopped.wait()
            return
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        os.set_blocking(write_fd, False)
        previous = signal.set_wakeup_fd(write_fd)
        try:
            while not self._stopped.is_set():
                select.select([read_fd], [], [], WAIT_SAFETY_NET)
                try:
                    os.read(read_fd, 512)   # drain; the handler has run
                except BlockingIOError:
                    pass
        finally:
            signal.set_wakeup_fd(previous)
            os.close(read_fd)
            os.close(write_fd)

    def reset(self):
        """SIGHUP: nothing to reload; options are read at start."""

    def stop(self, graceful=True):
        if not self._enter(QUIESCING):
            self._stopped.set()
            return
        started = self._clock()
        deadline = self._drain_deadline(started)
        self._ignore_signals_during_drain()
        systemd.notify(STOPPING=1, STATUS='stopping new work')
        self._stop_promptly(self._primary, rpc.TOPIC)
        self._enter(DRAINING)
        self._manager.drain_started(deadline)
        in_flight = len(self._tracker)
        LOG.info('Draining: stopped taking new work on topic %s; %d '
                 'operation(s) in flight; %s', rpc.TOPIC, in_flight,
                 self._budget_text(deadline, started))
        systemd.notify(STATUS=f'draining: {in_flight} operation(s) in flight')
        drained = self._wait_for_in_flight(deadline)
        self._stop_promptly(self._alt, rpc.ALT_TOPIC)
        drained = self._wait_for_in_flight(deadline) and drained

        if drained:
            LOG.info('Drained in %.3f s; exiting', self._clock() - started)
        else:
            LOG.error('Drain deadline reached after %.3f s with work still '
                      'running; exiting anyway. The next start reconciles '
                      'these instances: %s', self._clock() - started,
                      self._tracker.snapshot())
        systemd.notify(STATUS='stopped')
        self._enter(STOPPED)
        self._stopped.set()

    def _wait_for_in_flight(self, deadline):
        return self._tracker.wait_until_drained(
            deadline, report=self._report_progress,
            report_every=DRAIN_REPORT_INTERVAL)

    def _stop_promptly(self, server, topic):
        """Stop one RPC server without waiting out its poll timeout.

        The rabbit listener notices a stop only when its current poll of
        the broker ends, and an idle listener polls for up to 5 s. When the
        stop has not returned at once, a no-op request to the server's own
        queue ends that poll; it is re-sent until the stop returns. In the
        rare race where the poll ends by itself first, the wake-up stays
        queued and is answered, harmlessly, at the next start.
        """
        stopper = threading.Thread(target=server.stop,
                                   name=f'stop-{topic}', daemon=True)
        stopper.start()
        stopper.join(STOP_GRACE)
        if not stopper.is_alive():
            return
        wake = rpc.self_client(self._transport, topic, self._conf.host)
        while stopper.is_alive():
            try:
                wake.cast({}, rpc.WAKE_METHOD)
            except Exception:   # the stop must go on whatever the bus does
                LOG.debug('Could not wake the %s listener', topic,
                          exc_info=True)
            stopper.join(WAKE_INTERVAL)

    def status(self):
        """What get_service_status reports about the service itself."""
        return {
            'state': DRAINING if self._state in (DRAINING, STOPPED)
            else RUNNING,
            'in_flight': [op for op in self._tracker.snapshot()
                          if op['method'] != rpc.WAKE_METHOD],
            'graceful_shutdown_timeout':
                self._conf.graceful_shutdown_timeout,
        }

    def _drain_deadline(self, started):
        budget = self._conf.graceful_shutdown_timeout
        if not budget:
            return None
        return started + max(budget - ALARM_MARGIN, 0.0)

    def _budget_text(self, deadline, started):
        if deadline is None:
            return 'no drain deadline (graceful_shutdown_timeout = 0)'
        return f'deadline in {deadline - started:.1f} s'

    def _report_progress(self, operations):
        systemd.notify(
            STATUS=f'draining: {len(operations)} operation(s) in flight')
        for op in operations:
            LOG.info('Still draining: %(method)s instance=%(instance_uuid)s '
                     'request=%(request_id)s running for %(elapsed).1f s',
                     op)

    @staticmethod
    def _ignore_signals_during_drain():
        # The launcher already ignores a second SIGTERM; its SIGHUP handler
        # would raise through the drain, so SIGHUP is ignored from here on.
        # SIGINT stays an immediate exit, as the operator's last resort.
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def _warn_if_drain_too_short(self):
        budget = self._conf.graceful_shutdown_timeout
        needed = self._conf.shutdown_timeout + POWER_OFF_CLEANUP_ALLOWANCE
        if budget and budget < needed:
            LOG.warning(
                'graceful_shutdown_timeout (%d s) is shorter than '
                'shutdown_timeout (%d s) plus %d s of cleanup: a SIGTERM '
                'during a clean power-off may cut it short. Raise '
                'graceful_shutdown_timeout to at least %d.', budget,
                self._conf.shutdown_timeout, POWER_OFF_CLEANUP_ALLOWANCE,
                needed)
