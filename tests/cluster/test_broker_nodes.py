"""The agent on a three-node RabbitMQ cluster that loses and restarts nodes.

Each test runs its own cluster (tests/fixtures/rabbitmq_cluster.py) and one
agent subprocess on libvirt's test:///default driver, given every node in
its transport_url, and talks to it with the wire-contract client.

With ``rabbit_quorum_queue = true`` the agent's topic queues are quorum
queues replicated on every node: the loss of the node leading them costs
no request, and requests queued while the agent is stopped survive a
restart of every node in turn. With classic queues they do not: the last
test shows the loss the operator guide documents.
"""

import threading
import time
import uuid

import testtools
from testtools import content

from tests.fixtures import agent as agent_fixture
from tests.fixtures.polling import wait_for
from tests.fixtures import rabbitmq_cluster
from tests.fixtures import rpc

# Generous bounds that only keep a broken run from hanging: the agent's
# first connection to a loaded cluster, and an answer across a node loss.
READY_TIMEOUT = 90
CALL_TIMEOUT = 60
EXIT_TIMEOUT = 30
SETTLE_TIMEOUT = 120
# Power-off/power-on cycles answered after the kill before the stream ends.
CYCLES_AFTER_KILL = 5
QUEUED_BUILDS = 5


def new_instance():
    instance_uuid = str(uuid.uuid4())
    return {'uuid': instance_uuid, 'name': f'cluster-{instance_uuid[:8]}',
            'vcpus': 1, 'memory_mb': 64,
            'image': {'id': str(uuid.uuid4()), 'properties': {}}}


class ClusterTestCase(testtools.TestCase):
    quorum = True

    def setUp(self):
        super().setUp()
        # Set up first, so stopped last: after the agent has drained.
        self.cluster = self.useFixture(rabbitmq_cluster.ClusterFixture())
        self.agent = self.useFixture(agent_fixture.AgentProcess(
            self.cluster.transport_url, extra_config={
                'oslo_messaging_rabbit': {
                    'rabbit_quorum_queue': str(self.quorum).lower()}}))
        self.agent.wait_ready(READY_TIMEOUT)
        self.client = self.useFixture(rpc.AgentRPCClient(
            self.cluster.transport_url, self.agent.host,
            timeout=CALL_TIMEOUT,
            rabbit_options={'rabbit_quorum_queue': self.quorum}))
        # New work arrives on topic compute, server <host>.
        self.queue_name = f'{rpc.TOPIC}.{self.agent.host}'

    def queued_messages(self):
        """Messages in the agent's queue; 0 once the queue is gone, None
        while the broker cannot tell."""
        try:
            return self.cluster.queue(self.queue_name)[2]
        except LookupError:
            return 0

    def counted_messages(self):
        """queued_messages once the broker can tell (a queue recovering
        from its nodes' restart shows no count for a moment)."""
        return wait_for(lambda: (lambda count: (count,) if count is not None
                                 else None)(self.queued_messages()),
                        SETTLE_TIMEOUT, 'a message count for the queue')[0]

    def wait_for_count(self, expected):
        """Reads the queue's count until it is expected, and attaches the
        distinct readings on the way. Right after a rolling restart, a
        quorum queue's count was read 0 (and blank, None) for a moment
        before the whole count showed; reading until the count is whole
        keeps that from passing for a loss, while a real loss still
        fails, at SETTLE_TIMEOUT, with what was read."""
        readings = []

        def whole():
            count = self.queued_messages()
            if not readings or readings[-1] != count:
                readings.append(count)
            return count == expected

        try:
            wait_for(whole, SETTLE_TIMEOUT, f'{expected} messages queued')
        finally:
            self.addDetail('queue-counts', content.text_content(
                f'{self.queue_name}: {readings}'))

    def queue_work_while_stopped(self):
        """SIGTERM the agent, then cast builds to it; their instances."""
        self.agent.sigterm()
        self.assertEqual(0, self.agent.wait_exit(EXIT_TIMEOUT))
        instances = [new_instance() for _ in range(QUEUED_BUILDS)]
        for instance in instances:
            self.client.cast('build_and_run_instance', instance=instance)
        wait_for(lambda: self.queued_messages() == QUEUED_BUILDS,
                 SETTLE_TIMEOUT, f'{QUEUED_BUILDS} builds queued')
        return instances

    def restart_agent(self):
        self.agent.restart()
        self.agent.wait_ready(READY_TIMEOUT)


class QuorumQueueTest(ClusterTestCase):

    def test_leader_killed_during_clean_power_offs(self):
        """Kills the node leading the agent's queue amid clean stops."""
        self.assertEqual('quorum', self.cluster.queue(self.queue_name)[0])
        guest = self.client.call('build_and_run_instance',
                                 instance=new_instance())['uuid']
        # The test driver powers a guest off at once, so no single stop
        # lasts long enough to aim at: a stream of clean stops and starts
        # runs instead, and the kill lands while one of them is under way.
        answers = []
        failures = []
        done = threading.Event()

        def power_cycles():
            try:
                while not done.is_set():
                    stopped = self.client.call(
                        'stop_instance', instance_uuid=guest,
                        shutdown_timeout=30)
                    answers.append(stopped['last_power_off']['result'])
                    self.client.call('start_instance', instance_uuid=guest)
                    answers.append('started')
            except Exception as error:  # reported by the test thread
                failures.append(error)

        stream = threading.Thread(target=power_cycles, daemon=True)
        stream.start()
        self.addCleanup(stream.join, CALL_TIMEOUT)
        self.addCleanup(done.set)
        wait_for(lambda: len(answers) >= 2 or failures, SETTLE_TIMEOUT,
                 'the first power cycle')
        leader = self.cluster.leader_of(self.queue_name)
        answered_before_kill = len(answers)
        killed = time.monotonic()
        self.cluster.kill(leader)
        wait_for(lambda: (len(answers) >= answered_before_kill +
                          2 * CYCLES_AFTER_KILL) or failures,
                 SETTLE_TIMEOUT, f'{CYCLES_AFTER_KILL} power cycles answered '
                 f'after the kill of {leader.node}')
        recovered = time.monotonic() - killed
        done.set()
        stream.join(CALL_TIMEOUT)
        self.assertFalse(stream.is_alive(), 'the last call is unanswered')
        self.assertEqual([], failures)
        self.addDetail('recovery', content.text_content(
            f'{answered_before_kill} answers before the kill of '
            f'{leader.node}, {len(answers)} in all; '
            f'{CYCLES_AFTER_KILL} cycles answered {recovered:.1f} s after '
            f'it'))

        self.assertEqual({'clean', 'started'}, set(answers))
        # Each request ran once: none was redelivered to run again.
        actions = [action['action'] for action in self.client.call(
            'get_instance_actions', instance_uuid=guest)]
        self.assertEqual(answers.count('clean'), actions.count('stop'))
        self.assertEqual(answers.count('started'), actions.count('start'))

        self.cluster.start(leader)
        self.assertNotEqual(leader, self.cluster.leader_of(self.queue_name))
        self.assertEqual('running',
                         self.client.call('get_service_status')['state'])

    def test_queued_work_survives_a_rolling_restart(self):
        """Queues builds for a stopped agent, restarts every node in turn."""
        instances = self.queue_work_while_stopped()
        self.cluster.rolling_restart()
        self.wait_for_count(QUEUED_BUILDS)

        self.restart_agent()
        for instance in instances:
            record = wait_for(
                lambda: self._built(instance['uuid']), SETTLE_TIMEOUT,
                f'instance {instance["uuid"]} built')
            self.assertEqual('active', record['vm_state'])
            # The record is committed a moment before the action closes.
            builds = wait_for(
                lambda: self._closed_builds(instance['uuid']),
                SETTLE_TIMEOUT, f'the build of {instance["uuid"]} closed')
            self.assertEqual(['success'],
                             [build['result'] for build in builds])
        # Nothing left to deliver a second time.
        wait_for(lambda: self.queued_messages() == 0, SETTLE_TIMEOUT,
                 'an empty queue')
        self.assertEqual(
            sorted(instance['uuid'] for instance in instances),
            sorted(record['uuid'] for record in
                   self.client.call('list_instances')))

    def test_node_of_the_callers_reply_queue_killed_during_a_call(self):
        """Kills the node holding a caller's reply queue while its build
        waits for an event: the caller still gets the answer."""
        before = self.reply_queues()
        caller = self.useFixture(rpc.AgentRPCClient(
            self.cluster.transport_url, self.agent.host,
            timeout=CALL_TIMEOUT,
            rabbit_options={'rabbit_quorum_queue': self.quorum}))
        caller.call('get_service_status')
        (reply_queue,) = self.reply_queues() - before
        instance = new_instance()
        plugged = {'name': 'network-vif-plugged', 'tag': 'port-1'}
        instance['wait_for_events'] = [plugged]
        answer = {}

        def build():
            try:
                answer['record'] = caller.call('build_and_run_instance',
                                               instance=instance)
            except Exception as error:  # reported by the test thread
                answer['error'] = error

        call = threading.Thread(target=build, daemon=True)
        call.start()
        self.addCleanup(call.join, CALL_TIMEOUT)
        wait_for(lambda: self._spawning(instance['uuid']), SETTLE_TIMEOUT,
                 'the build waiting for its event')
        home = self.cluster.node_of(reply_queue)
        self.cluster.kill(home)
        # The agent replies once the event has come: after the caller
        # has declared its reply queue again on a surviving node (and
        # oslo.messaging retries a reply whose queue is missing).
        self.client.call('external_instance_event', topic=rpc.ALT_TOPIC,
                         instance_uuid=instance['uuid'], **plugged)
        call.join(CALL_TIMEOUT)
        self.assertFalse(call.is_alive(), 'the build is unanswered')
        self.assertNotIn('error', answer)
        self.assertEqual('active', answer['record']['vm_state'])
        moved_to = self.cluster.node_of(reply_queue)
        self.addDetail('reply-queue', content.text_content(
            f'{reply_queue} on {home.node}, killed; declared again on '
            f'{moved_to.node}'))
        self.assertNotEqual(home, moved_to)
        self.assertEqual(['success'], [
            build['result'] for build in self._builds(instance['uuid'])])
        self.cluster.start(home)

    def reply_queues(self):
        return {name for name in self.cluster.queues()
                if name.startswith('reply_')}

    def _spawning(self, instance_uuid):
        return any(record['uuid'] == instance_uuid and
                   record['task_state'] == 'spawning'
                   for record in self.client.call('list_instances'))

    def _builds(self, instance_uuid):
        return [action for action in self.client.call(
            'get_instance_actions', instance_uuid=instance_uuid)
            if action['action'] == 'build']

    def _closed_builds(self, instance_uuid):
        builds = self._builds(instance_uuid)
        if builds and all(build['result'] != 'running' for build in builds):
            return builds
        return None

    def _built(self, instance_uuid):
        records = {record['uuid']: record
                   for record in self.client.call('list_instances')}
        record = records.get(instance_uuid)
        if record is not None and record['task_state'] is None:
            return record
        return None


class ClassicQueueTest(ClusterTestCase):
    quorum = False

    def test_queued_work_is_lost_in_a_rolling_restart(self):
        """Queues builds for a stopped agent on classic queues, restarts
        every node in turn: the builds are gone, as the docs say."""
        self.assertEqual('classic', self.cluster.queue(self.queue_name)[0])
        self.queue_work_while_stopped()
        self.cluster.rolling_restart()
        self.assertEqual(0, self.counted_messages())

        self.restart_agent()
        self.assertEqual([], self.client.call('list_instances'))
