"""The Prometheus endpoint of a real agent process, scraped over HTTP while
requests reach it through a real broker: the values move as operations
run, and a port in use stops the agent at start with a line naming the
option."""

import os
import socket
import urllib.request
import uuid

import oslo_messaging
from prometheus_client import parser
import testtools

from tests.fixtures import agent as agent_fixture
from tests.fixtures.polling import wait_for
from tests.fixtures import rabbitmq
from tests.fixtures import rpc

# Bounds every scrape and wait; only a hang comes near it.
DEADLINE = 30


def free_port():
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def metrics_config(port):
    return {'metrics': {'enabled': 'true', 'host': '127.0.0.1',
                        'port': str(port)}}


class MetricsTest(testtools.TestCase):
    def setUp(self):
        super().setUp()
        broker = rabbitmq.shared_broker()
        self.port = free_port()
        self.agent = self.useFixture(agent_fixture.AgentProcess(
            broker.transport_url, extra_config=metrics_config(self.port)))
        self.agent.wait_ready()
        self.rpc = self.useFixture(rpc.AgentRPCClient(broker.transport_url,
                                                      self.agent.host))

    def scrape(self):
        """{(name, frozenset(labels)): value} of /metrics now."""
        url = f'http://127.0.0.1:{self.port}/metrics'
        with urllib.request.urlopen(url, timeout=DEADLINE) as reply:
            self.assertEqual(200, reply.status)
            text = reply.read().decode()
        return {(sample.name, frozenset(sample.labels.items())): sample.value
                for family in parser.text_string_to_metric_families(text)
                for sample in family.samples}

    def total(self, scraped, name, **labels):
        """The sum of name's samples whose labels include labels."""
        wanted = set(labels.items())
        return sum(value for (sample, found), value in scraped.items()
                   if sample == name and wanted <= found)

    def wait_for_total(self, name, expected, **labels):
        """Scrape until name's total over labels is expected (an RPC
        request is reported just after its reply is sent)."""
        wait_for(lambda: self.total(self.scrape(), name, **labels)
                 == expected, DEADLINE, f'{name} {labels} = {expected}')

    def build(self):
        instance = {'uuid': str(uuid.uuid4()), 'name': 'scraped',
                    'vcpus': 1, 'memory_mb': 64,
                    'image': {'id': 'img', 'properties': {}}}
        return self.rpc.call('build_and_run_instance',
                             instance=instance)['uuid']

    def test_the_values_move_as_operations_run(self):
        before = self.scrape()
        mode = os.environ.get('COMPUTE_AGENT_CONCURRENCY') or 'threading'
        self.assertEqual(1, self.total(
            before, 'compute_agent_service_info', host=self.agent.host,
            concurrency=mode))
        self.assertEqual(1, self.total(
            before, 'compute_agent_service_state',
            compute_agent_service_state='running'))
        self.assertEqual(1, self.total(before,
                                       'compute_agent_libvirt_connected'))
        self.assertEqual(1, self.total(
            before, 'compute_agent_libvirt_event_loop_alive'))
        self.assertEqual(0, self.total(before,
                                       'compute_agent_power_offs_total'))

        uuid_ = self.build()
        clean = self.rpc.call('stop_instance', instance_uuid=uuid_)
        self.assertEqual('event', clean['last_power_off']['detected_by'])
        self.rpc.call('start_instance', instance_uuid=uuid_)
        self.rpc.call('stop_instance', instance_uuid=uuid_,
                      clean_shutdown=False)
        self.assertRaises(oslo_messaging.RemoteError, self.rpc.call,
                          'get_instance', instance_uuid=str(uuid.uuid4()))

        self.wait_for_total('compute_agent_rpc_requests_total', 1,
                            method='get_instance', topic='compute',
                            outcome='InstanceNotFound')
        after = self.scrape()
        self.assertEqual(2, self.total(
            after, 'compute_agent_rpc_requests_total',
            method='stop_instance', topic='compute', outcome='ok'))
        self.assertEqual(1, self.total(
            after, 'compute_agent_rpc_requests_total',
            method='build_and_run_instance', outcome='ok'))
        self.assertEqual(3, self.total(
            after, 'compute_agent_rpc_request_seconds_count',
            method='stop_instance') + self.total(
            after, 'compute_agent_rpc_request_seconds_count',
            method='build_and_run_instance'))
        self.assertEqual(1, self.total(
            after, 'compute_agent_power_offs_total', requested='clean',
            result='clean'))
        self.assertEqual(1, self.total(
            after, 'compute_agent_power_offs_total', requested='forced',
            result='forced', method='destroy'))
        self.assertEqual(2, self.total(
            after, 'compute_agent_power_off_seconds_count'))
        self.assertEqual(1, self.total(
            after, 'compute_agent_power_off_detection_lag_seconds_count'))
        self.assertEqual(2, self.total(
            after, 'compute_agent_operations_total', operation='stop',
            outcome='ok'))
        self.assertEqual(0, self.total(
            after, 'compute_agent_operations_in_flight'))
        labels = {value for _, found in after for _, value in found}
        self.assertNotIn(uuid_, labels)

    def test_a_scrape_left_open_does_not_hold_the_exit(self):
        self.scrape()
        # A client that connected and never finished its request keeps a
        # server thread reading: the drain must exit all the same.
        stalled = socket.create_connection(('127.0.0.1', self.port),
                                           timeout=DEADLINE)
        self.addCleanup(stalled.close)
        stalled.sendall(b'GET /metrics HTTP/1.1\r\n')
        self.agent.sigterm()
        self.assertEqual(0, self.agent.wait_exit(DEADLINE))
        self.assertIn('Serving Prometheus metrics on http://127.0.0.1:'
                      f'{self.port}/metrics', self.agent.log_text())


class PortInUseTest(testtools.TestCase):
    def test_the_agent_does_not_start_and_says_which_option(self):
        broker = rabbitmq.shared_broker()
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(('127.0.0.1', 0))
        taken.listen()
        port = taken.getsockname()[1]
        agent = self.useFixture(agent_fixture.AgentProcess(
            broker.transport_url, extra_config=metrics_config(port)))
        self.assertEqual(1, agent.wait_exit(DEADLINE))
        log = agent.log_text() + agent.output_text()
        self.assertIn(f'[metrics] host = 127.0.0.1, port = {port}', log)
        self.assertNotIn('Traceback', log)
