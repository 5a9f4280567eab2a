"""The agent's service lifecycle as an operator sees it.

Each test starts a real agent process (libvirt's test:///default driver)
against the process's private RabbitMQ broker, talks to it with the
independent wire-contract client, and signals it like systemd would.

Not covered here: a request cast while a drain is still waiting on a long
operation. The test driver has no operation slow enough to hold a drain
open; the variant below casts after the (quick) idle drain has exited.
How quickly an agent exits (idle, or busy) is measured, not asserted, by
tools/bench/agent_bench.py.
"""

import threading
import uuid

import oslo_messaging
import testtools
from testtools import matchers

from compute_agent import concurrency
from tests.fixtures import agent as agent_fixture
from tests.fixtures.polling import wait_for
from tests.fixtures import rabbitmq
from tests.fixtures import rpc

# Generous bounds for things that happen "soon": they only keep a broken
# agent from hanging the run, they do not measure speed.
EXIT_TIMEOUT = 30
SETTLE_TIMEOUT = 30


def new_instance():
    instance_uuid = str(uuid.uuid4())
    return {
        'uuid': instance_uuid,
        'name': f'test-{instance_uuid[:8]}',
        'vcpus': 1,
        'memory_mb': 128,
        'image': {'id': str(uuid.uuid4()), 'properties': {}},
    }


class ServiceLifecycleTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.broker = rabbitmq.shared_broker()
        self.agent = self.useFixture(agent_fixture.AgentProcess(
            self.broker.transport_url, graceful_shutdown_timeout=60))
        self.agent.wait_ready()
        self.client = self.useFixture(rpc.AgentRPCClient(
            self.broker.transport_url, self.agent.host))

    def _notified(self, field):
        return [n for n in self.agent.notifications
                if n.fields.get(field) == '1']

    def test_status_answers_on_both_topics(self):
        # systemd's default NotifyAccess=main ignores readiness from any
        # process but the one it started.
        self.assertEqual([self.agent.pid],
                         [n.pid for n in self._notified('READY')])

        expected = matchers.ContainsDict({
            'host': matchers.Equals(self.agent.host),
            'state': matchers.Equals('running'),
            'in_flight': matchers.IsInstance(list),
            'graceful_shutdown_timeout': matchers.Equals(
                self.agent.graceful_shutdown_timeout),
            # The agent inherits the tests' COMPUTE_AGENT_CONCURRENCY.
            'concurrency': matchers.Equals(concurrency.mode()),
            # compute-alt arrived with RPC API 1.1 and service version 2.
            'service_version': matchers.GreaterThan(1),
            'rpc_api_version': matchers.AfterPreprocessing(
                lambda version: tuple(map(int, version.split('.'))),
                matchers.GreaterThan((1, 0))),
        })
        for topic in (rpc.TOPIC, rpc.ALT_TOPIC):
            status = self.client.call('get_service_status', topic=topic)
            self.assertThat(status, expected,
                            f'get_service_status on topic {topic}')

    def test_idle_sigterm_drains_and_exits_0(self):
        self.agent.sigterm()

        # The launcher's SIGALRM, graceful_shutdown_timeout after the
        # SIGTERM, would end the agent with 1: 0 is its own drain's exit.
        self.assertEqual(0, self.agent.wait_exit(EXIT_TIMEOUT))
        self.assertTrue(self._notified('STOPPING'),
                        f'no STOPPING=1 in {self.agent.notifications}')
        log = self.agent.log_text()
        self.assertRegex(log, r'Draining: stopped taking new work on topic '
                              r'compute; 0 operation\(s\) in flight')
        self.assertRegex(log, r'(?i)\bdrained\b')
        # Both listeners stopped: none was left behind at the deadline.
        self.assertNotIn('leaving it behind', log)

    def test_request_cast_after_sigterm_waits_for_restart(self):
        instance = new_instance()
        queue = f'{rpc.TOPIC}.{self.agent.host}'
        self.agent.sigterm()
        self.assertEqual(0, self.agent.wait_exit(EXIT_TIMEOUT))

        self.client.cast('build_and_run_instance', instance=instance)

        # Published without confirms: give the broker a moment to enqueue.
        wait_for(lambda: self.broker.queue_depth(queue) == 1,
                 SETTLE_TIMEOUT, f'the cast queued on {queue}')

        self.agent.restart()
        self.agent.wait_ready()

        record = wait_for(lambda: self._built(instance['uuid']),
                          SETTLE_TIMEOUT, 'the queued build served')
        self.assertEqual('active', record['vm_state'])
        self.assertEqual(self.agent.host, record['host'])
        self.assertEqual(instance['name'], record['name'])
        self.assertEqual(0, self.broker.queue_depth(queue))

    def _built(self, instance_uuid):
        try:
            record = self.client.call('get_instance',
                                      instance_uuid=instance_uuid)
        except oslo_messaging.RemoteError as error:
            if error.exc_type == 'InstanceNotFound':
                return None
            raise
        return record if record['vm_state'] != 'building' else None


class BusyDrainTest(testtools.TestCase):
    """SIGTERM while a burst of requests is in flight on compute-alt:
    the agent exits 0, and every request is answered, before the exit or
    after the next start.

    Repeated because what it guards against was intermittent: a busy
    agent once ignored SIGTERM in about one run in thirty."""

    REPEAT = 5
    BURST = 12

    def test_every_request_is_answered_and_the_agent_exits(self):
        broker = rabbitmq.shared_broker()
        for _ in range(self.REPEAT):
            agent = self.useFixture(agent_fixture.AgentProcess(
                broker.transport_url, graceful_shutdown_timeout=60))
            agent.wait_ready()
            client = self.useFixture(rpc.AgentRPCClient(
                broker.transport_url, agent.host))
            uuids = [client.call('build_and_run_instance',
                                 instance=new_instance())['uuid']
                     for _ in range(self.BURST)]
            answers = []

            def stop(instance_uuid):
                answers.append(client.call(
                    'stop_instance', topic=rpc.ALT_TOPIC,
                    instance_uuid=instance_uuid)['vm_state'])
            threads = [threading.Thread(target=stop, args=(u,))
                       for u in uuids]
            for thread in threads:
                thread.start()
            agent.sigterm()
            self.assertEqual(0, agent.wait_exit(EXIT_TIMEOUT))
            # What the agent took before it stopped compute-alt was
            # answered; what reached the broker later (the threads may
            # not all have published by then) waits there for the next
            # start. Either way nothing is lost.
            agent.restart()
            agent.wait_ready()
            for thread in threads:
                thread.join(EXIT_TIMEOUT)
            self.assertEqual(['stopped'] * self.BURST, answers)
