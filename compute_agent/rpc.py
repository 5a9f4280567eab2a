"""Server side of the RPC wire: transport, topics and the tracked server.

Only the versioned API is reachable on the bus: the servers dispatch the
endpoint methods marked by compute_agent.remotable and refuse every other
name.
"""

import logging
import threading
import time

import oslo_messaging
from oslo_messaging.rpc import dispatcher as rpc_dispatcher
from oslo_messaging.rpc import server as rpc_server

from compute_agent import concurrency
from compute_agent import remotable
from compute_agent import telemetry as telemetry_module

TOPIC = 'compute'
ALT_TOPIC = 'compute-alt'
DEFAULT_EXCHANGE = 'compute_agent'
# A read-only method the service casts to itself to wake a stopping
# listener; also hidden from the in-flight list it reports.
WAKE_METHOD = 'get_service_status'
# What rpc_request_ended names a method outside the API (any name a
# caller sends would otherwise become a label of its own), and the
# outcome of a request never dispatched (its acknowledgement failed, so
# the caller gets no reply).
OTHER_METHOD = 'other'
OK = 'ok'
UNANSWERED = 'unanswered'

LOG = logging.getLogger(__name__)


def set_defaults():
    oslo_messaging.set_transport_defaults(control_exchange=DEFAULT_EXCHANGE)


def get_transport(conf):
    return oslo_messaging.get_rpc_transport(conf)


class RemotableOnlyPolicy(rpc_dispatcher.RPCAccessPolicyBase):
    """Allows the endpoint methods marked remotable, nothing else."""

    def is_allowed(self, endpoint, method):
        return remotable.is_remotable(getattr(endpoint, method, None))


class APIDispatcher(rpc_dispatcher.RPCDispatcher):
    """Answers a request for a method outside the API (NoSuchMethod) or
    a version newer than it (UnsupportedVersion) with that error and one
    warning line: a stray or hostile request is the caller's mistake, not
    the agent's, so it leaves no traceback at ERROR.

    It also notes the outcome of each request (OK, or the name of the
    error the caller gets) for the server to report: on the thread that
    dispatched it, where take_outcome() reads it once the reply is sent.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._outcome = threading.local()

    def api_method(self, method):
        """method when it is in the API, else OTHER_METHOD."""
        if isinstance(method, str) and any(
                self.access_policy.is_allowed(endpoint, method)
                for endpoint in self.endpoints):
            return method
        return OTHER_METHOD

    def take_outcome(self):
        """The outcome of the request this thread dispatched last, once;
        None when it dispatched none since."""
        outcome, self._outcome.name = getattr(self._outcome, 'name',
                                              None), None
        return outcome

    def dispatch(self, incoming):
        try:
            result = self._dispatch_api(incoming)
        except rpc_dispatcher.ExpectedException as expected:
            self._outcome.name = type(expected.exc_info[1]).__name__
            raise
        except Exception as error:
            self._outcome.name = type(error).__name__
            raise
        self._outcome.name = OK
        return result

    def _dispatch_api(self, incoming):
        method = incoming.message.get('method')
        try:
            if not isinstance(method, str):
                # The base class would fail on it with a TypeError.
                raise rpc_dispatcher.NoSuchMethod(method)
            return super().dispatch(incoming)
        except (rpc_dispatcher.NoSuchMethod,
                rpc_dispatcher.UnsupportedVersion):
            LOG.warning('Refused RPC request %s for %r version %r: not in '
                        'the compute API',
                        (incoming.ctxt or {}).get('request_id'), method,
                        incoming.message.get('version'))
            # Replies with the error being handled.
            raise rpc_dispatcher.ExpectedException()


class TrackedRPCServer(rpc_server.RPCServer):
    """An RPC server that registers each request with an in-flight tracker.

    The rabbit driver acknowledges a request the moment it is consumed, and
    ``stop()`` returns only after the polling thread has handed every
    consumed request to ``_on_incoming``. Registering the request there, on
    the polling thread and before a worker picks it up, means that once
    ``stop()`` has returned the tracker knows every request this server
    will ever run: the drain can wait on the tracker alone and skip the
    listener's slow ``wait()``.

    Each request's time from its arrival here to its reply, and the
    outcome the dispatcher noted, go to ``telemetry.rpc_request_ended``.
    """

    def __init__(self, transport, target, dispatcher, tracker,
                 telemetry=None):
        super().__init__(transport, target, dispatcher,
                         executor=concurrency.rpc_executor())
        self._tracker = tracker
        self._telemetry = telemetry or telemetry_module.Telemetry()

    def _on_incoming(self, incoming):
        for message in incoming:
            received_at = time.monotonic()
            token = self._tracker.start(
                topic=self._target.topic,
                method=message.message.get('method', '?'),
                instance_uuid=_instance_uuid_of(message.message),
                request_id=(message.ctxt or {}).get('request_id'))
            self._work_executor.submit(self._process_tracked, message, token,
                                       received_at)

    def _process_tracked(self, message, token, received_at):
        self.dispatcher.take_outcome()   # none left from another request
        try:
            self._process_incoming([message])
        finally:
            self._tracker.end(token)
            self._telemetry.rpc_request_ended(
                self.dispatcher.api_method(message.message.get('method')),
                self._target.topic,
                self.dispatcher.take_outcome() or UNANSWERED,
                time.monotonic() - received_at)


def _instance_uuid_of(payload):
    args = payload.get('args') or {}
    if not isinstance(args, dict):
        return None
    if isinstance(args.get('instance_uuid'), str):
        return args['instance_uuid']
    instance = args.get('instance')
    if isinstance(instance, dict) and isinstance(instance.get('uuid'), str):
        return instance['uuid']
    return None


def self_client(transport, topic, host):
    """A client for the service's own queue. Its casts try the broker once
    (retry=0): the caller, a drain with a deadline, retries itself and
    must not be held in a reconnect loop while the broker is gone."""
    target = oslo_messaging.Target(topic=topic, server=host)
    return oslo_messaging.get_rpc_client(transport, target, retry=0)


def create_server(transport, topic, host, endpoints, tracker,
                  telemetry=None):
    """The tracked server of topic; telemetry (a telemetry.Telemetry)
    hears of every request it answers."""
    target = oslo_messaging.Target(topic=topic, server=host)
    dispatcher = APIDispatcher(endpoints, oslo_messaging.NoOpSerializer(),
                               RemotableOnlyPolicy)
    return TrackedRPCServer(transport, target, dispatcher, tracker,
                            telemetry=telemetry)
