"""The private parts of oslo.messaging that compute_agent/rpc.py relies on.

TrackedRPCServer overrides ``_on_incoming`` and calls
``_process_incoming``, ``_work_executor`` and ``_target``; the drain
trusts that ``stop()`` returns only after the listener has handed every
request it consumed to ``_on_incoming``. None of that is oslo.messaging's
public API, so requirements.txt caps the version and these tests say
which hook moved when a new release changes one.
"""

from importlib import metadata
import inspect
import threading
from unittest import mock

from oslo_config import cfg
import oslo_messaging
from oslo_messaging import conffixture
from oslo_messaging._drivers import amqpdriver
from oslo_messaging._drivers import base as driver_base
from oslo_messaging.rpc import server as rpc_server
from oslo_messaging import server as msg_server

from compute_agent import remotable
from compute_agent import rpc
from compute_agent import tracker
from tests.unit import base

VERSION = metadata.version('oslo.messaging')
# Bounds every wait below; only a hang comes near it.
HANG_TIMEOUT = 10


def parameters(function):
    return list(inspect.signature(function).parameters)


class HookTestCase(base.TestCase):
    def assertHook(self, holds, hook, relied_on):
        if not holds:
            self.fail(f'oslo.messaging {VERSION}: {hook} changed. '
                      f'compute_agent/rpc.py relies on {relied_on}; adapt '
                      f'TrackedRPCServer (and the drain in service.py) '
                      f'before allowing this version in requirements.txt.')


class SignatureTest(HookTestCase):
    def test_rpc_server_init(self):
        self.assertHook(
            parameters(rpc_server.RPCServer.__init__)[:5] ==
            ['self', 'transport', 'target', 'dispatcher', 'executor'],
            'RPCServer.__init__',
            'RPCServer.__init__(transport, target, dispatcher, executor)')

    def test_on_incoming(self):
        self.assertHook(
            parameters(msg_server.MessageHandlingServer._on_incoming) ==
            ['self', 'incoming'],
            'MessageHandlingServer._on_incoming',
            'the listener calling server._on_incoming(incoming) with a '
            'list of consumed messages, which it overrides')

    def test_process_incoming(self):
        self.assertHook(
            parameters(rpc_server.RPCServer._process_incoming) ==
            ['self', 'incoming'],
            'RPCServer._process_incoming',
            'RPCServer._process_incoming([message]) acknowledging, '
            'dispatching and replying to one request')

    def test_incoming_message_fields(self):
        self.assertHook(
            parameters(driver_base.IncomingMessage.__init__)[:3] ==
            ['self', 'ctxt', 'message'],
            'IncomingMessage.__init__',
            "an incoming message's .ctxt (request_id) and .message "
            "(method, args)")

    def test_listener_adapter(self):
        self.assertHook(
            parameters(driver_base.PollStyleListenerAdapter.__init__) ==
            ['self', 'poll_style_listener', 'batch_size', 'batch_timeout'],
            'PollStyleListenerAdapter.__init__',
            'the polling listener adapter whose stop() hands over what '
            'was consumed (see StopHandsOverTest)')


class ServerAttributesTest(HookTestCase):
    def setUp(self):
        super().setUp()
        self.server = base.fake_rpc_server(self, 'host-a', [])
        self.transport = self.server.transport

    def test_target(self):
        self.assertHook(
            getattr(self.server, '_target', None) ==
            oslo_messaging.Target(topic=rpc.TOPIC, server='host-a'),
            'RPCServer._target',
            'the server keeping its target as ._target (for the topic it '
            'reports in flight)')

    def test_work_executor(self):
        self.assertHook(
            hasattr(self.server, '_work_executor'),
            'MessageHandlingServer._work_executor',
            'the server creating ._work_executor in __init__ (None) and '
            'start() (a pool with submit())')
        self.server.start()
        self.addCleanup(self.server.wait)
        self.addCleanup(self.server.stop)
        self.assertHook(
            callable(getattr(self.server._work_executor, 'submit', None)),
            'MessageHandlingServer._work_executor',
            'start() setting ._work_executor to a pool with submit()')


class NoopEndpoint:
    @remotable.mark
    def noop(self, ctxt):
        return None


class FakeRequest:
    """Just what RPCServer._process_incoming uses of a request."""

    client_timeout = None

    def __init__(self, number):
        self.ctxt = {'request_id': f'req-{number}'}
        self.message = {'method': 'noop', 'args': {}}
        self.msg_id = str(number)
        self.replied = threading.Event()

    def acknowledge(self):
        pass

    def reply(self, reply=None, failure=None):
        self.replied.set()


class ConsumedDuringStop(driver_base.PollStyleListener):
    """Holds requests the broker already delivered (and the rabbit driver
    acknowledged) but the polling thread has not yet passed on; it gives
    them up only once stopped, as a poll that ends during stop() does."""

    def __init__(self, requests):
        super().__init__()
        self._held = list(requests)
        self._stopped = threading.Event()

    def poll(self, timeout=None, batch_size=1, batch_timeout=None):
        if not self._stopped.wait(HANG_TIMEOUT):
            return []
        batch, self._held = self._held[:batch_size], self._held[batch_size:]
        return batch

    def stop(self):
        self._stopped.set()


class RecordingTracker(tracker.InFlightTracker):
    def __init__(self):
        super().__init__()
        self.registered = []

    def start(self, **kwargs):
        self.registered.append(kwargs['request_id'])
        return super().start(**kwargs)


class StopHandsOverTest(HookTestCase):
    """The property the drain is built on (rpc.TrackedRPCServer)."""

    def test_stop_returns_after_every_consumed_request_is_tracked(self):
        conf = cfg.ConfigOpts()
        self.useFixture(conffixture.ConfFixture(conf))
        transport = oslo_messaging.get_rpc_transport(conf, url='fake://')
        self.addCleanup(transport.cleanup)
        recorder = RecordingTracker()
        server = rpc.create_server(transport, rpc.TOPIC, 'host-a',
                                   [NoopEndpoint()], recorder)
        requests = [FakeRequest(number) for number in range(3)]
        listener = driver_base.PollStyleListenerAdapter(
            ConsumedDuringStop(requests), batch_size=1, batch_timeout=None)
        with mock.patch.object(server, '_create_listener',
                               return_value=listener):
            server.start()
        server.stop()
        tracked_at_stop = list(recorder.registered)
        for request in requests:
            self.assertTrue(request.replied.wait(HANG_TIMEOUT))
        server.wait()
        self.assertHook(
            tracked_at_stop == ['req-0', 'req-1', 'req-2'],
            'MessageHandlingServer.stop / PollStyleListenerAdapter.stop',
            'stop() returning only after the polling thread has handed '
            'every consumed request to _on_incoming (tracked at stop: '
            f'{tracked_at_stop})')

    def test_rabbit_listener_is_the_polling_adapter(self):
        driver = mock.Mock(spec=amqpdriver.AMQPDriverBase)
        driver._get_exchange.return_value = 'compute_agent'
        with mock.patch.object(amqpdriver, 'RpcAMQPListener') as consumer:
            consumer.return_value.prefetch_size = -1
            listener = amqpdriver.AMQPDriverBase.listen(
                driver, oslo_messaging.Target(topic=rpc.TOPIC,
                                              server='host-a'),
                batch_size=1, batch_timeout=None)
        self.assertHook(
            isinstance(listener, driver_base.PollStyleListenerAdapter),
            'AMQPDriverBase.listen',
            'the rabbit driver listening through PollStyleListenerAdapter, '
            'whose stop() joins the polling thread after it has passed on '
            'what it consumed')
