"""Each RPC request the server answers is reported once, with its method
(``other`` for a name outside the API), topic, the outcome the caller got
and its seconds."""

from oslo_config import cfg
import oslo_messaging
from oslo_messaging import conffixture

from compute_agent import rpc
from compute_agent import rpcapi
from compute_agent import service
from compute_agent import telemetry
from compute_agent import tracker
from tests.fixtures.polling import wait_for
from tests.unit import test_manager
from tests.unit import test_service

HOST = test_manager.HOST
CALL_TIMEOUT = 30
UNKNOWN = '5e5b6e0f-0b6a-4a8c-9f51-2f2d0cbb0a11'


class Requests(telemetry.Observer):
    def __init__(self):
        self.ended = []

    def rpc_request_ended(self, method, topic, outcome, seconds):
        self.ended.append((method, topic, outcome, seconds))


class RPCTelemetryTest(test_manager.ManagerTestCase):
    def setUp(self):
        super().setUp()
        conf = cfg.ConfigOpts()
        self.useFixture(conffixture.ConfFixture(conf))
        transport = oslo_messaging.get_rpc_transport(conf, url='fake://')
        self.addCleanup(transport.cleanup)
        self.requests = Requests()
        self.tracker = tracker.InFlightTracker()
        server = rpc.create_server(
            transport, rpc.TOPIC, HOST, self.manager.endpoints,
            self.tracker, telemetry=telemetry.Telemetry([self.requests]))
        server.start()
        self.addCleanup(server.wait)
        self.addCleanup(server.stop)
        self.client = oslo_messaging.get_rpc_client(
            transport, oslo_messaging.Target(topic=rpc.TOPIC, server=HOST,
                                             version=rpcapi.VERSION),
            timeout=CALL_TIMEOUT)

    def call(self, method, **kwargs):
        """Call method; the error the caller got, or None."""
        try:
            self.client.call({'request_id': 'req-telemetry'}, method,
                             **kwargs)
        except Exception as error:
            return getattr(error, 'exc_type', type(error).__name__)
        return None

    def reported(self, count):
        wait_for(lambda: len(self.requests.ended) >= count, CALL_TIMEOUT,
                 f'{count} rpc_request_ended')
        return [(method, topic, outcome)
                for method, topic, outcome, _ in self.requests.ended]

    def test_a_request_answered(self):
        self.assertIsNone(self.call('get_service_status'))
        self.assertEqual([('get_service_status', 'compute', 'ok')],
                         self.reported(1))
        self.assertIsInstance(self.requests.ended[0][3], float)

    def test_a_contract_error_is_the_outcome(self):
        self.assertEqual('InstanceNotFound',
                         self.call('get_instance', instance_uuid=UNKNOWN))
        self.assertEqual([('get_instance', 'compute', 'InstanceNotFound')],
                         self.reported(1))

    def test_a_method_outside_the_api_is_other(self):
        self.assertEqual('NoSuchMethod', self.call('drain_started'))
        self.assertEqual('NoSuchMethod', self.call('x' + UNKNOWN))
        self.assertEqual([('other', 'compute', 'NoSuchMethod')] * 2,
                         self.reported(2))

    def test_a_version_too_new_is_refused(self):
        client = self.client.prepare(version='99.0')
        try:
            client.call({'request_id': 'r'}, 'get_service_status')
        except Exception as error:
            outcome = getattr(error, 'exc_type', type(error).__name__)
        self.assertEqual('UnsupportedVersion', outcome)
        self.assertEqual(
            [('get_service_status', 'compute', 'UnsupportedVersion')],
            self.reported(1))

    def test_no_telemetry_is_a_quiet_default(self):
        server = rpc.create_server(
            self.client.transport, rpc.ALT_TOPIC, HOST,
            self.manager.endpoints, self.tracker)
        self.assertIsInstance(server._telemetry, telemetry.Telemetry)


class ServiceServersTest(test_service.ServiceTestCase):
    def test_both_servers_report_to_the_services_telemetry(self):
        reporting = telemetry.Telemetry([Requests()])
        svc = self.make_service(telemetry=reporting)
        svc.start()
        self.addCleanup(svc.stop)
        calls = service.rpc.create_server.call_args_list
        self.assertEqual([(rpc.TOPIC, reporting), (rpc.ALT_TOPIC, reporting)],
                         sorted((call.args[1], call.kwargs.get('telemetry'))
                                for call in calls))
