"""The agent's service: two RPC servers, its signals and the SIGTERM drain.

Lifecycle (all transitions happen in ``_enter``)::

    created --start()--> starting --> running --stop()--> quiescing
        --> draining --> stopped
    created, starting --stopped before any server started--> stopped

``quiescing`` lasts while the ``compute`` server stops consuming (well
under a second); it is reported as running, because new work may still
arrive. ``draining`` means no new work is taken any more.

oslo.service's launcher (``no_fork``) runs start() and then wait() on the
main thread. start() first hands SIGTERM and SIGHUP to a SignalInbox,
whose handlers only record them, and the main thread acts on them where
it safely can:

* SIGTERM before the RPC servers start: init_host, if running, finishes;
  no server starts, so nothing is taken, and the process exits 0.
* SIGTERM once they start: both start, then wait() runs the drain
  (stop()) and returns, and the entry point exits 0.
* SIGHUP: wait() re-reads the mutable options and reopens the log files
  while the servers keep serving; ignored once the drain has begun.
* SIGINT and SIGALRM stay the launcher's: exit at once with status 1.

A SIGTERM that comes before start() finds the launcher's handler, which
calls stop() in ``created`` (nothing to drain) and exits 0.

The drain, all in stop():

    stop compute -> wait for in-flight work -> stop compute-alt
    -> wait for what compute-alt took meanwhile -> return

``compute`` carries new work and stops first: requests sent to it later
stay queued on the broker for the next start. ``compute-alt`` carries the
continuation of work already started and keeps serving until nothing is in
flight. The drain returns the moment the tracker is empty; the servers'
``wait()`` (about a second of listener timeout) is not needed, because the
tracker already accounts for every request they consumed.

Every wait in stop() ends by the drain deadline, graceful_shutdown_timeout
after the SIGTERM less ALARM_MARGIN, so that the agent exits through its
own path before the launcher's SIGALRM: a listener still not stopped then
(its broker is gone) is left behind on its daemon thread.
"""

import logging
import threading
import time

from oslo_service import service as oslo_service

from compute_agent import concurrency
from compute_agent import endpoints
from compute_agent import rpc
from compute_agent import systemd
from compute_agent import telemetry as telemetry_module

LOG = logging.getLogger(__name__)

CREATED, STARTING, RUNNING, QUIESCING, DRAINING, STOPPED = (
    'created', 'starting', 'running', 'quiescing', 'draining', 'stopped')
_TRANSITIONS = {
    (CREATED, STARTING),
    (STARTING, RUNNING),
    (RUNNING, QUIESCING),
    (QUIESCING, DRAINING),
    (DRAINING, STOPPED),
    # Stopped before any RPC server started (or a start that failed).
    (CREATED, STOPPED),
    (STARTING, STOPPED),
}

# The drain finishes this long before the launcher's SIGALRM fires, so the
# agent exits through its own ordered path and logs what it left behind.
ALARM_MARGIN = 1.0
DRAIN_REPORT_INTERVAL = 5.0
# The main thread re-checks whether it was stopped at least this often,
# should a wakeup ever be missed.
WAIT_SAFETY_NET = 5.0
# A listener's stop that has not returned within STOP_GRACE is waiting on
# a long broker poll: wake it, and again every WAKE_INTERVAL. A stop()
# waiting for a start re-checks its deadline as often.
STOP_GRACE = 0.05
WAKE_INTERVAL = 0.25
# Cleanup after a power-off (undefine, record update) that the drain
# budget should leave room for beyond shutdown_timeout.
POWER_OFF_CLEANUP_ALLOWANCE = 30


class Service(oslo_service.ServiceBase):
    def __init__(self, conf, manager, transport, tracker,
                 clock=time.monotonic, signals=None, reload_config=None,
                 telemetry=telemetry_module.Telemetry()):
        """:param signals: a signals.SignalInbox that start() installs;
            None leaves the signals to whoever calls stop() (tests).
        :param reload_config: run on SIGHUP; returns a line saying what
            changed.
        :param telemetry: told of the service's start, drain and stop.
        """
        self._conf = conf
        self._manager = manager
        self._transport = transport
        self._tracker = tracker
        self._clock = clock
        self._signals = signals
        self._reload_config = reload_config
        self._telemetry = telemetry
        self._state = CREATED
        self._state_lock = threading.Lock()
        self._stop_called_at = None   # clock() of the first stop() call
        self._start_ended = threading.Event()
        self._stopped = threading.Event()
        self._primary = None
        self._alt = None

    @property
    def state(self):
        return self._state

    @property
    def tracker(self):
        return self._tracker

    @property
    def stop_requested(self):
        """True once stop() was called or SIGTERM recorded."""
        return self._stop_requested_at() is not None

    def _stop_requested_at(self):
        times = [self._stop_called_at]
        if self._signals is not None:
            times.append(self._signals.terminate_requested_at)
        times = [when for when in times if when is not None]
        return min(times) if times else None

    def _enter(self, new_state):
        """Move to new_state; False when that move is not allowed now."""
        with self._state_lock:
            if (self._state, new_state) not in _TRANSITIONS:
                return False
            LOG.debug('Service state %s -> %s', self._state, new_state)
            self._state = new_state
            return True

    def start(self):
        if self._signals is not None:
            self._signals.install()
        if not self._enter(STARTING):
            return   # stopped before it started
        try:
            self._start()
        finally:
            self._start_ended.set()

    def _start(self):
        self._warn_if_drain_too_short()
        # A stop requested from here on is honoured at the next point
        # where nothing is cut short: init_host completes, and once the
        # servers start, both start and stop() drains them.
        if not self.stop_requested:
            endpoints = self._manager.init_host(self._tracker, self.status)
        if self.stop_requested:
            self._stop_before_serving()
            return
        host = self._conf.host
        self._primary = rpc.create_server(
            self._transport, rpc.TOPIC, host, endpoints, self._tracker,
            telemetry=self._telemetry)
        self._alt = rpc.create_server(
            self._transport, rpc.ALT_TOPIC, host, endpoints, self._tracker,
            telemetry=self._telemetry)
        # compute-alt first: once new work can arrive, its continuation
        # must already have somewhere to go.
        self._alt.start()
        self._primary.start()
        self._enter(RUNNING)
        LOG.info('compute-agent serving topics %s and %s as host %s',
                 rpc.TOPIC, rpc.ALT_TOPIC, host)
        systemd.notify(READY=1, STATUS=f'serving as host {host}')
        self._telemetry.service_started(*self._versions())

    def _versions(self):
        return (self._conf.host, endpoints.SERVICE_VERSION,
                endpoints.RPC_API_VERSION)

    def _stop_before_serving(self):
        if not self._enter(STOPPED):
            return
        LOG.info('Stop requested before any RPC server took work: nothing '
                 'to drain; exiting')
        systemd.notify(STATUS='stopped')
        self._stopped.set()

    def wait(self):
        """Block until the service has stopped.

        The launcher calls this after start(), in the main thread. With a
        signal inbox, this is where its signals are acted on: SIGTERM runs
        the drain, SIGHUP the reload.
        """
        if self._signals is None:
            self._stopped.wait()
            return
        while not self._stopped.is_set():
            if self._signals.terminate_requested_at is not None:
                self.stop()
            elif self._signals.take_reload_request():
                self._reload()
            else:
                self._signals.wait(WAIT_SAFETY_NET)

    def reset(self):
        """Unused: the launcher restarts nothing with no_fork, and SIGHUP
        reloads in place (wait())."""

    def _reload(self):
        try:
            changed = (self._reload_config() if self._reload_config
                       else 'nothing to reload')
        except (Exception, SystemExit) as error:
            # A config file left half-edited must not end the agent.
            LOG.exception('SIGHUP: could not re-read the configuration, '
                          'keeping the options in force: %s', error)
            return
        LOG.info('SIGHUP: re-read the configuration without a restart: %s',
                 changed)

    def stop(self, graceful=True):
        if self._stop_called_at is None:
            self._stop_called_at = self._clock()
        requested = self._stop_requested_at()
        deadline = self._drain_deadline(requested)
        if self._state == STARTING and not self._wait_for_start(deadline):
            return
        if self._enter(QUIESCING):
            self._drain(requested, deadline)
        elif self._enter(STOPPED):
            LOG.info('Stop requested before the service served: nothing '
                     'to drain; exiting')
            self._stopped.set()
        elif self._state in (QUIESCING, DRAINING):
            # Another stop() is draining; return when it has.
            self._stopped.wait(self._wait_slice(deadline, None))
        else:
            self._stopped.set()

    def _wait_for_start(self, deadline):
        """Let a start in progress end: it stops before serving by itself,
        or serves and can then be drained. False if it has not ended by the
        deadline."""
        while not self._start_ended.wait(
                self._wait_slice(deadline, WAKE_INTERVAL)):
            if self._past(deadline):
                LOG.error('Stop requested during the start, which had not '
                          'finished by the drain deadline; exiting without '
                          'draining')
                self._stopped.set()
                return False
        return True

    def _drain(self, requested, deadline):
        if self._signals is not None:
            self._signals.ignore_reloads()
        systemd.notify(STOPPING=1, STATUS='stopping new work')
        self._stop_promptly(self._primary, rpc.TOPIC, deadline)
        self._enter(DRAINING)
        self._manager.drain_started(deadline)
        self._telemetry.drain_started(self._in_flight())
        in_flight = len(self._tracker)
        LOG.info('Draining: stopped taking new work on topic %s; %d '
                 'operation(s) in flight; %s', rpc.TOPIC, in_flight,
                 self._budget_text(deadline))
        systemd.notify(STATUS=f'draining: {in_flight} operation(s) in flight')
        drained = self._wait_for_in_flight(deadline)
        self._stop_promptly(self._alt, rpc.ALT_TOPIC, deadline)
        drained = self._wait_for_in_flight(deadline) and drained

        seconds, left = self._clock() - requested, self._in_flight()
        if drained:
            LOG.info('Drained in %.3f s; exiting', seconds)
        else:
            LOG.error('Drain deadline reached after %.3f s with work still '
                      'running; exiting anyway. The next start reconciles '
                      'these instances: %s', seconds, left)
        self._telemetry.drain_ended(seconds, drained, left)
        self._telemetry.service_stopped(*self._versions())
        systemd.notify(STATUS='stopped')
        self._enter(STOPPED)
        self._stopped.set()

    def _wait_for_in_flight(self, deadline):
        return self._tracker.wait_until_drained(
            deadline, report=self._report_progress,
            report_every=DRAIN_REPORT_INTERVAL)

    def _stop_promptly(self, server, topic, deadline):
        """Stop one RPC server without waiting out its poll timeout, and
        without waiting past the deadline.

        The rabbit listener notices a stop only when its current poll of
        the broker ends, and an idle listener polls for up to 5 s. When the
        stop has not returned at once, a no-op request to the server's own
        queue ends that poll; it is re-sent until the stop returns. In the
        rare race where the poll ends by itself first, the wake-up stays
        queued and is answered, harmlessly, at the next start.

        With the broker gone the listener is reconnecting and its stop
        does not return: each wake-up is tried once (rpc.self_client), on
        a thread of its own so that a cast stuck on the bus holds nothing,
        and at the deadline the listener is left behind.
        """
        stopper = threading.Thread(target=server.stop,
                                   name=f'stop-{topic}', daemon=True)
        stopper.start()
        stopper.join(self._wait_slice(deadline, STOP_GRACE))
        if not stopper.is_alive():
            return
        wake = rpc.self_client(self._transport, topic, self._conf.host)
        casting = None
        while stopper.is_alive():
            if self._past(deadline):
                LOG.warning('The %s listener had not stopped by the drain '
                            'deadline (is the broker reachable?); leaving '
                            'it behind', topic)
                return
            if casting is None or not casting.is_alive():
                casting = threading.Thread(
                    target=self._wake, args=(wake, topic),
                    name=f'wake-{topic}', daemon=True)
                casting.start()
            stopper.join(self._wait_slice(deadline, WAKE_INTERVAL))

    @staticmethod
    def _wake(client, topic):
        try:
            client.cast({}, rpc.WAKE_METHOD)
        except Exception:   # the stop must go on whatever the bus does
            LOG.debug('Could not wake the %s listener', topic,
                      exc_info=True)

    def _past(self, deadline):
        return deadline is not None and self._clock() >= deadline

    def _wait_slice(self, deadline, at_most):
        """How long one wait may last: at most at_most seconds (None: no
        limit), and never past the deadline."""
        if deadline is None:
            return at_most
        remaining = max(deadline - self._clock(), 0.0)
        return remaining if at_most is None else min(at_most, remaining)

    def status(self):
        """What get_service_status reports about the service itself."""
        return {
            'state': DRAINING if self._state in (DRAINING, STOPPED)
            else RUNNING,
            'in_flight': self._in_flight(),
            'graceful_shutdown_timeout':
                self._conf.graceful_shutdown_timeout,
            'concurrency': concurrency.mode(),
        }

    def _in_flight(self):
        """The tracker's work, less the wake-ups the drain sent itself."""
        return [op for op in self._tracker.snapshot()
                if op['method'] != rpc.WAKE_METHOD]

    def _drain_deadline(self, started):
        budget = self._conf.graceful_shutdown_timeout
        if not budget:
            return None
        return started + max(budget - ALARM_MARGIN, 0.0)

    def _budget_text(self, deadline):
        if deadline is None:
            return 'no drain deadline (graceful_shutdown_timeout = 0)'
        return f'deadline in {deadline - self._clock():.1f} s'

    def _report_progress(self, operations):
        systemd.notify(
            STATUS=f'draining: {len(operations)} operation(s) in flight')
        for op in operations:
            LOG.info('Still draining: %(method)s instance=%(instance_uuid)s '
                     'request=%(request_id)s running for %(elapsed).1f s',
                     op)

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
