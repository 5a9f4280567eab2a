"""Versioned notifications of the agent's work, sent on the bus through
oslo.messaging's Notifier (doc/source/notifications.rst is their
reference: every event, its payload's schema and a sample).

Off by default: ``[oslo_messaging_notifications] driver`` (e.g.
``messagingv2``) turns them on; with no driver, or only ``noop``, nothing
here is built. Topics, the transport and retries are that group's options
as in any oslo.messaging service.

Every payload is an envelope naming its schema and version::

    {"compute_agent_object.name": "InstanceActionPayload",
     "compute_agent_object.version": "1.0",
     "compute_agent_object.data": {...}}

Adding a field bumps the minor version; removing or changing one bumps
the major version.

Sending never holds up the work: a send over RabbitMQ is synchronous and,
with the broker gone, retries for as long as ``retry`` says (forever by
default). So the observer only queues each notification, and one thread
of its own (QueuedSender) sends them in order; when the queue is full the
newest are dropped, with a warning. At the service's stop the queue gets
FLUSH_TIMEOUT to empty before the process exits.
"""

import collections
import logging
import threading
import time

import oslo_messaging
from oslo_messaging import opts as messaging_opts

from compute_agent import concurrency
from compute_agent import telemetry

LOG = logging.getLogger(__name__)

GROUP = 'oslo_messaging_notifications'
PUBLISHER = 'compute-agent'
NAME = 'compute_agent_object.name'
VERSION = 'compute_agent_object.version'
DATA = 'compute_agent_object.data'
INFO, ERROR = 'info', 'error'

# Payload schemas: (name, version).
SERVICE_STATUS = ('ServiceStatusPayload', '1.0')
INSTANCE_ACTION = ('InstanceActionPayload', '1.0')
INSTANCE_ACTION_END = ('InstanceActionEndPayload', '1.0')
INSTANCE_ACTION_ERROR = ('InstanceActionErrorPayload', '1.0')
POWER_OFF_START = ('PowerOffStartPayload', '1.0')
POWER_OFF_END = ('PowerOffEndPayload', '1.0')
DRAIN_START = ('DrainStartPayload', '1.0')
DRAIN_END = ('DrainEndPayload', '1.0')
# The fields of one operation in a drain's in_flight and left lists.
IN_FLIGHT_FIELDS = ('method', 'instance_uuid', 'request_id', 'topic',
                    'elapsed')

# Queued notifications beyond this are dropped (the bus is not taking
# them); at stop, how long the queue may take to empty: less than the
# drain leaves before the launcher's hard exit (service.ALARM_MARGIN).
MAX_QUEUED = 1000
FLUSH_TIMEOUT = 0.5


def event_type(action, phase):
    """instance.<verb>.<phase>; the verb is the operation's action name
    with '_' for '-' (shelve-offload: instance.shelve_offload.start)."""
    return f"instance.{action.replace('-', '_')}.{phase}"


def payload(schema, **data):
    name, version = schema
    return {NAME: name, VERSION: version, DATA: data}


def _operations(descriptions):
    return [{field: op.get(field) for field in IN_FLIGHT_FIELDS}
            for op in descriptions]


class Notifications(telemetry.Observer):
    """Turns the agent's events into notifications for sender (send(
    priority, event_type, payload) and flush(timeout), a QueuedSender)."""

    def __init__(self, host, sender):
        self._host = host
        self._sender = sender

    def _send(self, priority, name, schema, **data):
        self._sender.send(priority, name,
                          payload(schema, host=self._host, **data))

    def _service_update(self, state, service_version, rpc_api_version):
        self._send(INFO, 'service.update', SERVICE_STATUS, state=state,
                   service_version=service_version,
                   rpc_api_version=rpc_api_version)

    def service_started(self, host, service_version, rpc_api_version):
        self._service_update('running', service_version, rpc_api_version)

    def service_stopped(self, host, service_version, rpc_api_version):
        self._service_update('stopped', service_version, rpc_api_version)
        if not self._sender.flush(FLUSH_TIMEOUT):
            LOG.warning('Exiting with notifications not yet sent: the bus '
                        'did not take them within %.1f s', FLUSH_TIMEOUT)

    def operation_started(self, operation, instance_uuid, request_id):
        self._send(INFO, event_type(operation, 'start'), INSTANCE_ACTION,
                   instance_uuid=instance_uuid, action=operation,
                   request_id=request_id)

    def operation_ended(self, operation, instance_uuid, request_id,
                        seconds, error=None):
        common = dict(instance_uuid=instance_uuid, action=operation,
                      request_id=request_id, seconds=round(seconds, 3))
        if error is None:
            self._send(INFO, event_type(operation, 'end'),
                       INSTANCE_ACTION_END, **common)
        else:
            self._send(ERROR, event_type(operation, 'error'),
                       INSTANCE_ACTION_ERROR, **common,
                       error_type=type(error).__name__,
                       error_message=str(error))

    def power_off_started(self, instance_uuid, operation, requested,
                          timeout, timeout_source):
        self._send(INFO, 'instance.power_off.start', POWER_OFF_START,
                   instance_uuid=instance_uuid, action=operation,
                   requested=requested, timeout=timeout,
                   timeout_source=timeout_source)

    def power_off_ended(self, instance_uuid, operation, outcome):
        self._send(INFO, 'instance.power_off.end', POWER_OFF_END,
                   instance_uuid=instance_uuid, action=operation,
                   requested=outcome['requested'],
                   result=outcome['result'], method=outcome['method'],
                   seconds=outcome['seconds'], timeout=outcome['timeout'],
                   timeout_source=outcome['timeout_source'],
                   detected_by=outcome.get('detected_by'),
                   note=outcome.get('note'))

    def drain_started(self, in_flight):
        self._send(INFO, 'service.drain.start', DRAIN_START,
                   in_flight=_operations(in_flight))

    def drain_ended(self, seconds, drained, left):
        self._send(INFO, 'service.drain.end', DRAIN_END,
                   seconds=round(seconds, 3), drained=drained,
                   left=_operations(left))


class QueuedSender:
    """Sends notifications through an oslo.messaging Notifier, in order,
    on a thread of its own. Owns ``_queued`` (notifications not yet
    handed to the notifier), ``_sending`` and ``_dropped`` under the
    condition ``_changed``, which also wakes the thread and a flush."""

    def __init__(self, notifier, capacity=MAX_QUEUED):
        self._notifier = notifier
        self._capacity = capacity
        self._changed = threading.Condition()
        self._queued = collections.deque()
        self._sending = False
        self._dropped = 0
        concurrency.spawn(self._send_queued, 'notifications')

    def send(self, priority, event_type, payload):
        """Queue one notification; never waits for the bus."""
        with self._changed:
            if len(self._queued) >= self._capacity:
                self._dropped += 1
                if self._dropped == 1:
                    LOG.warning('The bus is not taking notifications (%d '
                                'queued): dropping %s and any more until '
                                'it does', len(self._queued), event_type)
                return
            self._queued.append((priority, event_type, payload))
            self._changed.notify_all()

    def flush(self, timeout):
        """Wait up to timeout seconds for every queued notification to be
        sent; False when some were not."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._queued or self._sending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True

    def _send_queued(self):
        while True:
            with self._changed:
                while not self._queued:
                    self._changed.wait()
                priority, event_type, payload = self._queued.popleft()
                self._sending = True
            try:
                getattr(self._notifier, priority)({}, event_type, payload)
            except Exception:   # the next notifications still go
                LOG.exception('Could not send notification %s', event_type)
            with self._changed:
                self._sending = False
                dropped, self._dropped = self._dropped, 0
                self._changed.notify_all()
            if dropped:
                LOG.warning('The bus takes notifications again; %d were '
                            'dropped meanwhile', dropped)


def enabled(conf):
    """Whether [oslo_messaging_notifications] names a driver that sends
    (anything but noop)."""
    for group, opts in messaging_opts.list_opts():
        if group == GROUP:
            conf.register_opts(opts, group=GROUP)
    return bool(set(conf.oslo_messaging_notifications.driver) - {'noop'})


def from_config(conf):
    """The Notifications observer the configuration asks for, or None
    when notifications are off (then no transport is built)."""
    if not enabled(conf):
        return None
    notifier = oslo_messaging.Notifier(
        oslo_messaging.get_notification_transport(conf),
        publisher_id=f'{PUBLISHER}.{conf.host}')
    LOG.info('Sending notifications through %s on topics %s',
             ', '.join(conf.oslo_messaging_notifications.driver),
             ', '.join(conf.oslo_messaging_notifications.topics))
    return Notifications(conf.host, QueuedSender(notifier))
