"""Prometheus metrics of the agent's work, served on /metrics.

``MetricsObserver`` is a telemetry observer: the work reports to it
through the agent's Telemetry, and it keeps counters, histograms and
gauges in a registry of its own (not prometheus_client's global one, so
that nothing else in the process adds to what the agent serves). The
libvirt link is read when Prometheus scrapes, from the driver's health
report, by ``HypervisorHealthCollector``.

``MetricsServer`` serves that registry over HTTP on ``[metrics] host``
and ``port``, on a daemon thread (a green thread in eventlet mode, as
every worker is there): it never keeps the process alive, and the drain
exits without waiting for it.

Every label value comes from a small fixed set (verbs, results, methods
of the API, error class names): instance uuids and request ids never
become labels, whose every value is a time series of its own.
``bounded_label`` is the last guard: a value that looks like an
identifier is reported as ``other``.
"""

import logging
import re
import threading
import time

import prometheus_client
from prometheus_client import core as prometheus_core

from compute_agent import concurrency
from compute_agent import telemetry

LOG = logging.getLogger(__name__)

PREFIX = 'compute_agent_'
OTHER = 'other'

# What the service is doing, for compute_agent_service_state.
STARTING = 'starting'
RUNNING = 'running'
DRAINING = 'draining'
STOPPED = 'stopped'
SERVICE_STATES = (STARTING, RUNNING, DRAINING, STOPPED)

# Seconds. A power-off takes from milliseconds (forced) to its timeout
# (minutes); a detection lag is milliseconds unless the event was lost and
# the state poll (every 2 s) saw the guest off; an RPC request is
# milliseconds, or as long as the power-off it waits for.
POWER_OFF_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)
DETECTION_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                         0.25, 0.5, 1, 2.5, 5)
RPC_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
               30, 60, 300)

# A label value is a word of the code (a verb, a method, an error class
# name); anything else, and anything with a run of hex digits as long as
# a uuid's first group, is not.
_LABEL_WORD = re.compile(r'[A-Za-z][A-Za-z0-9_.-]{0,63}')
_HEX_RUN = re.compile(r'[0-9a-fA-F]{8}')


def bounded_label(value):
    """value when it can only be a word of the code, else OTHER."""
    if isinstance(value, str) and _LABEL_WORD.fullmatch(value) and \
            not _HEX_RUN.search(value):
        return value
    return OTHER


def error_name(error):
    """The outcome label of an operation: 'ok' or its error's class."""
    return 'ok' if error is None else bounded_label(type(error).__name__)


class MetricsError(Exception):
    """The metrics endpoint cannot be served as configured."""


class MetricsObserver(telemetry.Observer):
    """Turns the agent's events into metrics in ``registry``.

    ``_lock`` guards the two pieces of state the events leave between
    them: when each instance's guest was seen off (from its power-off's
    end until its operation's end, for the detection lag) and when the
    drain started and how long it took (read at scrape time).
    """

    def __init__(self, hypervisor_health=None, clock=time.monotonic):
        """:param hypervisor_health: the driver's health(), read at each
            scrape; None leaves the libvirt gauges out.
        :param clock: the clock a power-off's off_event_at was read on
            (the libvirt Host's, time.monotonic)."""
        self._clock = clock
        self.registry = prometheus_client.CollectorRegistry()
        self._lock = threading.Lock()
        self._off_seen_at = {}     # instance uuid -> clock() of its event
        self._drain_started_at = None
        self._drain_seconds = None
        registry = self.registry
        self._power_offs = prometheus_client.Counter(
            PREFIX + 'power_offs',
            'Power-offs by what was requested (clean or forced), what '
            'happened (clean: the guest went off by itself; forced: it was '
            'destroyed) and how (acpi, guest-agent, destroy, already-off).',
            ['requested', 'result', 'method'], registry=registry)
        self._power_off_seconds = prometheus_client.Histogram(
            PREFIX + 'power_off_seconds',
            'How long each power-off took, from the first shutdown request '
            'to the guest being off.',
            ['requested', 'result'], buckets=POWER_OFF_BUCKETS,
            registry=registry)
        self._detection_lag = prometheus_client.Histogram(
            PREFIX + 'power_off_detection_lag_seconds',
            'From libvirt\'s event that the guest went off reaching the '
            'agent to the end of the operation that waited for it (clean '
            'power-offs ended by the event only).',
            buckets=DETECTION_LAG_BUCKETS, registry=registry)
        self._rpc_requests = prometheus_client.Counter(
            PREFIX + 'rpc_requests',
            'RPC requests answered, by method (other: not in the API), '
            'topic and outcome (ok, or the error the caller got).',
            ['method', 'topic', 'outcome'], registry=registry)
        self._rpc_seconds = prometheus_client.Histogram(
            PREFIX + 'rpc_request_seconds',
            'From an RPC request\'s arrival to its reply.',
            ['method', 'topic'], buckets=RPC_BUCKETS, registry=registry)
        self._operations = prometheus_client.Counter(
            PREFIX + 'operations',
            'Operations on instances that ended, by verb and outcome (ok, '
            'or the error the request got).',
            ['operation', 'outcome'], registry=registry)
        self._in_flight = prometheus_client.Gauge(
            PREFIX + 'operations_in_flight',
            'Operations on instances running now, by verb.',
            ['operation'], registry=registry)
        self._state = prometheus_client.Enum(
            PREFIX + 'service_state',
            'What the service is doing: starting, running (serving), '
            'draining (after SIGTERM: no new work) or stopped.',
            states=list(SERVICE_STATES), registry=registry)
        self._service = prometheus_client.Info(
            PREFIX + 'service',
            'The running agent: host, service and RPC API versions, '
            'concurrency mode.', registry=registry)
        registry.register(_DrainCollector(self._drain_duration))
        if hypervisor_health is not None:
            registry.register(HypervisorHealthCollector(hypervisor_health))

    def service_started(self, host, service_version, rpc_api_version):
        self._service.info({'host': str(host),
                            'service_version': str(service_version),
                            'rpc_api_version': str(rpc_api_version),
                            'concurrency': concurrency.mode()})
        self._state.state(RUNNING)

    def service_stopped(self, host, service_version, rpc_api_version):
        self._state.state(STOPPED)

    def operation_started(self, operation, instance_uuid, request_id):
        self._in_flight.labels(bounded_label(operation)).inc()

    def operation_ended(self, operation, instance_uuid, request_id,
                        seconds, error=None):
        verb = bounded_label(operation)
        self._in_flight.labels(verb).dec()
        self._operations.labels(verb, error_name(error)).inc()
        with self._lock:
            seen_at = self._off_seen_at.pop(instance_uuid, None)
        if seen_at is not None:
            self._detection_lag.observe(max(self._clock() - seen_at, 0))

    def power_off_ended(self, instance_uuid, operation, outcome):
        requested = bounded_label(outcome.get('requested'))
        result = bounded_label(outcome.get('result'))
        self._power_offs.labels(requested, result,
                                bounded_label(outcome.get('method'))).inc()
        self._power_off_seconds.labels(requested, result).observe(
            outcome.get('seconds') or 0)
        off_event_at = outcome.get('off_event_at')
        if off_event_at is not None:
            with self._lock:
                self._off_seen_at[instance_uuid] = off_event_at

    def drain_started(self, in_flight):
        with self._lock:
            self._drain_started_at = self._clock()
        self._state.state(DRAINING)

    def drain_ended(self, seconds, drained, left):
        with self._lock:
            self._drain_seconds = seconds

    def rpc_request_ended(self, method, topic, outcome, seconds):
        method, topic = bounded_label(method), bounded_label(topic)
        self._rpc_requests.labels(method, topic,
                                  bounded_label(outcome)).inc()
        self._rpc_seconds.labels(method, topic).observe(seconds)

    def _drain_duration(self):
        """The drain's seconds so far, or in all once it ended; None
        before it starts."""
        with self._lock:
            if self._drain_seconds is not None:
                return self._drain_seconds
            if self._drain_started_at is not None:
                return self._clock() - self._drain_started_at
            return None


class _DrainCollector:
    """compute_agent_drain_seconds, read at scrape time."""

    def __init__(self, duration):
        self._duration = duration

    def describe(self):
        return [self._family()]

    def collect(self):
        family = self._family()
        seconds = self._duration()
        if seconds is not None:
            family.add_metric([], seconds)
        return [family]

    @staticmethod
    def _family():
        return prometheus_core.GaugeMetricFamily(
            PREFIX + 'drain_seconds',
            'How long the drain after SIGTERM has been running, or took '
            'once it ended; absent before a drain starts.')


class HypervisorHealthCollector:
    """The libvirt link, from the driver's health() at each scrape: is
    the connection up, are the event loop and the event dispatcher
    running, how often it reconnected."""

    def __init__(self, health):
        self._health = health

    def describe(self):
        return self._families()

    def collect(self):
        families = self._families()
        try:
            health = self._health()
        except Exception:
            LOG.exception('Reading the hypervisor health for /metrics '
                          'failed')
            return []
        if not health:
            return []
        connected, loop, dispatcher, reconnects = families
        connected.add_metric([], 1 if health.get('connected') else 0)
        loop.add_metric([], 1 if health.get('event_loop') == RUNNING
                        else 0)
        dispatcher.add_metric([], 1 if health.get('dispatcher') == RUNNING
                              else 0)
        reconnects.add_metric([], health.get('reconnects') or 0)
        return families

    @staticmethod
    def _families():
        return [
            prometheus_core.GaugeMetricFamily(
                PREFIX + 'libvirt_connected',
                '1 while the libvirt connection is alive, else 0.'),
            prometheus_core.GaugeMetricFamily(
                PREFIX + 'libvirt_event_loop_alive',
                '1 while libvirt\'s event-loop thread runs (0: stopped, '
                'or restarting after an error): without it no lifecycle '
                'event arrives and power-offs are seen only by the state '
                'poll.'),
            prometheus_core.GaugeMetricFamily(
                PREFIX + 'libvirt_event_dispatcher_alive',
                '1 while the thread that hands lifecycle events to the '
                'waiting power-offs runs, else 0.'),
            prometheus_core.CounterMetricFamily(
                PREFIX + 'libvirt_reconnects',
                'Times the agent reconnected to libvirt after losing the '
                'connection.'),
        ]


class MetricsServer:
    """Serves a registry's /metrics over HTTP on a daemon thread."""

    def __init__(self, registry, host, port):
        self._registry = registry
        self._host = host
        self._port = port
        self._server = None

    def start(self):
        """Listen now; MetricsError, naming the options, when the address
        cannot be bound (a port in use, an address not on this host)."""
        try:
            self._server, _thread = prometheus_client.start_http_server(
                self._port, addr=self._host, registry=self._registry)
        except OSError as error:
            raise MetricsError(
                f'cannot serve /metrics on [metrics] host = {self._host}, '
                f'port = {self._port}: {error.strerror or error}. Choose '
                f'a free [metrics] port, or set [metrics] enabled = '
                f'false') from None
        LOG.info('Serving Prometheus metrics on http://%s:%d/metrics',
                 self._host, self.port)

    @property
    def port(self):
        """The port listened on (the one chosen, when configured as 0)."""
        return self._server.server_address[1]

    def stop(self):
        self._server.shutdown()
        self._server.server_close()


def from_config(conf, hypervisor_health):
    """The observer and its started server when [metrics] enabled, else
    (None, None). Raises MetricsError when the endpoint cannot listen."""
    if not conf.metrics.enabled:
        return None, None
    observer = MetricsObserver(hypervisor_health=hypervisor_health)
    server = MetricsServer(observer.registry, conf.metrics.host,
                           conf.metrics.port)
    server.start()
    return observer, server
