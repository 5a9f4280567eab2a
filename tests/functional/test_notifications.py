"""Notifications from a real agent process, consumed from the real broker.

The test's notification listener (its own queue, bound to the agent's
exchange for notifications.info and notifications.error) is consuming
before the agent starts: RabbitMQ drops what no queue is bound to.
Each test keeps only what its agent published (publisher_id
compute-agent.<host>), since other agents share the broker.
"""

import threading
import uuid

from oslo_config import cfg
import oslo_messaging
from oslo_messaging import conffixture
import testtools

from compute_agent import concurrency
from tests.faults import held_work
from tests.fixtures import agent as agent_fixture
from tests.fixtures.polling import wait_for
from tests.fixtures import rabbitmq
from tests.fixtures import rpc

EXCHANGE = 'compute_agent'
# Generous bounds that only keep a broken agent from hanging the run.
SETTLE = 30
CONFIG_SHUTDOWN_TIMEOUT = 10
DATA = 'compute_agent_object.data'


class RecordingEndpoint:
    """Keeps, in arrival order, the notifications publisher_id sent."""

    def __init__(self, publisher_id):
        self.publisher_id = publisher_id
        self._lock = threading.Lock()
        self._received = []

    def _record(self, priority, publisher_id, event_type, payload):
        if publisher_id == self.publisher_id:
            with self._lock:
                self._received.append((event_type, priority, payload))

    def info(self, ctxt, publisher_id, event_type, payload, metadata):
        self._record('INFO', publisher_id, event_type, payload)

    def error(self, ctxt, publisher_id, event_type, payload, metadata):
        self._record('ERROR', publisher_id, event_type, payload)

    @property
    def received(self):
        with self._lock:
            return list(self._received)


class NotificationsTestCase(testtools.TestCase):
    def setUp(self):
        super().setUp()
        broker = rabbitmq.shared_broker()
        host = f'agent-{uuid.uuid4().hex[:10]}'
        self.endpoint = RecordingEndpoint(f'compute-agent.{host}')
        self._listen(broker.transport_url)
        self.agent = self.useFixture(agent_fixture.AgentProcess(
            broker.transport_url, host=host,
            shutdown_timeout=CONFIG_SHUTDOWN_TIMEOUT,
            extra_config={'oslo_messaging_notifications': {
                'driver': 'messagingv2'}}))
        self.agent.wait_ready()
        self.client = self.useFixture(rpc.AgentRPCClient(
            broker.transport_url, host))
        self.assertEqual('running', self.wait_for_event(
            'service.update')[DATA]['state'])

    def _listen(self, transport_url):
        conf = cfg.ConfigOpts()
        self.useFixture(conffixture.ConfFixture(conf))
        transport = oslo_messaging.get_notification_transport(
            conf, url=transport_url)
        self.addCleanup(transport.cleanup)
        listener = oslo_messaging.get_notification_listener(
            transport, [oslo_messaging.Target(topic='notifications',
                                              exchange=EXCHANGE)],
            [self.endpoint], executor=concurrency.rpc_executor(),
            pool=f'test-notifications-{uuid.uuid4().hex[:8]}')
        # One worker: the notifications are recorded in the order sent.
        listener.start(override_pool_size=1)
        self.addCleanup(listener.wait)
        self.addCleanup(listener.stop)

    def events(self, *event_types):
        return [(event_type, priority, payload)
                for event_type, priority, payload in self.endpoint.received
                if not event_types or event_type in event_types]

    def wait_for_event(self, event_type, count=1, priority='INFO'):
        """The payload of the count-th notification of event_type."""
        found = wait_for(lambda: self.events(event_type)[count - 1:],
                         SETTLE, f'notification {event_type} #{count}')
        self.assertEqual(priority, found[0][1], event_type)
        return found[0][2]

    def types_for(self, instance_uuid):
        return [event_type for event_type, _, payload in self.events()
                if payload[DATA].get('instance_uuid') == instance_uuid]

    def boot(self):
        instance = {'uuid': str(uuid.uuid4()), 'name': 'watched',
                    'vcpus': 1, 'memory_mb': 128,
                    'image': {'id': str(uuid.uuid4()), 'properties': {}}}
        return self.client.call('build_and_run_instance',
                                instance=instance)['uuid']


class InstanceNotificationsTest(NotificationsTestCase):
    def test_a_clean_stop(self):
        guest = self.boot()
        self.client.call('stop_instance', instance_uuid=guest,
                         request_id='req-clean-stop')
        self.wait_for_event('instance.stop.end')
        self.assertEqual(
            ['instance.build.start', 'instance.build.end',
             'instance.stop.start', 'instance.power_off.start',
             'instance.power_off.end', 'instance.stop.end'],
            self.types_for(guest))
        start = self.wait_for_event('instance.stop.start')
        self.assertEqual(
            {'name': 'InstanceActionPayload', 'version': '1.0'},
            {'name': start['compute_agent_object.name'],
             'version': start['compute_agent_object.version']})
        self.assertEqual(('stop', 'req-clean-stop', self.agent.host),
                         (start[DATA]['action'], start[DATA]['request_id'],
                          start[DATA]['host']))
        outcome = self.wait_for_event('instance.power_off.end')[DATA]
        self.assertEqual(
            ('clean', 'clean', CONFIG_SHUTDOWN_TIMEOUT, 'config'),
            (outcome['requested'], outcome['result'], outcome['timeout'],
             outcome['timeout_source']))
        self.assertEqual('stop', outcome['action'])
        self.assertIsInstance(outcome['seconds'], float)

    def test_a_forced_stop_and_a_refused_one(self):
        guest = self.boot()
        self.client.call('stop_instance', instance_uuid=guest,
                         clean_shutdown=False)
        started = self.wait_for_event('instance.power_off.start')[DATA]
        self.assertEqual(('forced', 0, 'request'),
                         (started['requested'], started['timeout'],
                          started['timeout_source']))
        outcome = self.wait_for_event('instance.power_off.end')[DATA]
        self.assertEqual(('forced', 'forced', 'destroy'),
                         (outcome['requested'], outcome['result'],
                          outcome['method']))
        self.wait_for_event('instance.stop.end')

        # Stopped already: refused, and said so at ERROR.
        self.assertRaises(oslo_messaging.RemoteError, self.client.call,
                          'stop_instance', instance_uuid=guest)
        error = self.wait_for_event('instance.stop.error',
                                    priority='ERROR')[DATA]
        self.assertEqual('InstanceInvalidState', error['error_type'])
        self.assertIn(guest, error['error_message'])
        self.assertEqual(2, len(self.events('instance.stop.start')))


class ServiceNotificationsTest(NotificationsTestCase):
    def test_a_drain_with_work_in_flight_then_the_stop(self):
        build = held_work.held_instance()
        self.client.cast(held_work.BUILD, instance=build)
        # Recorded: its operation has begun (instance.build.start).
        wait_for(lambda: held_work.builds_recorded(self.client), SETTLE,
                 'the held build in flight')

        self.agent.sigterm()
        in_flight = self.wait_for_event('service.drain.start')[DATA][
            'in_flight']
        self.assertEqual([(held_work.BUILD, build['uuid'], 'compute')],
                         [(op['method'], op['instance_uuid'], op['topic'])
                          for op in in_flight])
        self.assertEqual([], self.events('service.drain.end'))

        self.assertTrue(held_work.release(self.client, build['uuid']))
        self.assertEqual(0, self.agent.wait_exit(SETTLE))
        drained = self.wait_for_event('service.drain.end')[DATA]
        self.assertEqual((True, []), (drained['drained'], drained['left']))
        self.assertIsInstance(drained['seconds'], float)
        stopped = self.wait_for_event('service.update', count=2)[DATA]
        self.assertEqual('stopped', stopped['state'])
        self.assertEqual(
            ['service.update', 'instance.build.start', 'service.drain.start',
             'instance.build.end', 'service.drain.end', 'service.update'],
            [event_type for event_type, _, _ in self.events()])
        status = self.wait_for_event('service.update')[DATA]
        self.assertEqual((self.agent.host, 'running'),
                         (status['host'], status['state']))
        self.assertEqual(
            (status['service_version'], status['rpc_api_version']),
            (stopped['service_version'], stopped['rpc_api_version']))
