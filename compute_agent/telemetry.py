"""What the agent tells its watchers: the seam between the work and the
notifications (notifications.py) and metrics (metrics.py) that report it.

The code that does the work (operations, power-offs, the drain, the RPC
servers) calls one ``Telemetry`` it was given; ``Telemetry`` hands each
event to every ``Observer`` registered with it. An observer that fails is
logged and skipped: reporting must never fail or stall the work it reports.

Observers are called on the thread that did the work, so each must be
quick and must not block (a notifier's send is asynchronous enough; a
metric is a counter increment).
"""

import logging

LOG = logging.getLogger(__name__)


class Observer:
    """One watcher of the agent's work; every event is a no-op here, so an
    observer overrides only the events it reports.

    ``operation`` is the verb of the request (``stop``, ``delete``,
    ``rescue``, ...); ``outcome`` of a power-off is its last_power_off
    record (requested, result, method, seconds, timeout) with
    timeout_source, and off_event_at when libvirt's off event told the
    agent (the time.monotonic() at which that event reached it).
    """

    def service_started(self, host, service_version, rpc_api_version):
        pass

    def service_stopped(self, host, service_version, rpc_api_version):
        pass

    def operation_started(self, operation, instance_uuid, request_id):
        pass

    def operation_ended(self, operation, instance_uuid, request_id,
                        seconds, error=None):
        """error is None on success, else the exception that ended it."""

    def power_off_started(self, instance_uuid, operation, requested,
                          timeout, timeout_source):
        pass

    def power_off_ended(self, instance_uuid, operation, outcome):
        pass

    def drain_started(self, in_flight):
        """in_flight: the tracker's descriptions of the work drained."""

    def drain_ended(self, seconds, drained, left):
        """drained: False when the deadline cut it short, left naming
        the work still in flight then."""

    def rpc_request_ended(self, method, topic, outcome, seconds):
        """outcome: 'ok' or the name of the error the caller got."""


class Telemetry(Observer):
    """The fan-out the workers call: each event goes to every observer."""

    def __init__(self, observers=()):
        self._observers = tuple(observers)

    def _each(self, event, *args, **kwargs):
        for observer in self._observers:
            try:
                getattr(observer, event)(*args, **kwargs)
            except Exception:
                LOG.exception('Reporting %s through %s failed; the work '
                              'goes on', event, type(observer).__name__)

    def service_started(self, *args, **kwargs):
        self._each('service_started', *args, **kwargs)

    def service_stopped(self, *args, **kwargs):
        self._each('service_stopped', *args, **kwargs)

    def operation_started(self, *args, **kwargs):
        self._each('operation_started', *args, **kwargs)

    def operation_ended(self, *args, **kwargs):
        self._each('operation_ended', *args, **kwargs)

    def power_off_started(self, *args, **kwargs):
        self._each('power_off_started', *args, **kwargs)

    def power_off_ended(self, *args, **kwargs):
        self._each('power_off_ended', *args, **kwargs)

    def drain_started(self, *args, **kwargs):
        self._each('drain_started', *args, **kwargs)

    def drain_ended(self, *args, **kwargs):
        self._each('drain_ended', *args, **kwargs)

    def rpc_request_ended(self, *args, **kwargs):
        self._each('rpc_request_ended', *args, **kwargs)
