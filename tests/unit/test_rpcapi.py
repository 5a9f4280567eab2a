"""Client side of the compute RPC API: versions, routing, wire arguments."""

import inspect
import logging
from unittest import mock

import oslo_messaging

from compute_agent import endpoints
from compute_agent import manager
from compute_agent import rpcapi
from compute_agent import rpcapi_versions
from tests.unit import base

HOST = 'hv-1'
UUID = '6f1a5a3e-58f5-4c5e-9b89-0c6f1d2b7a10'
CTXT = {'request_id': 'req-test'}
_CLIENT_SIGNATURE = inspect.signature(
    rpcapi_versions.VersionedClients._client)


def _endpoint_method(name):
    """The RPC method name on whichever endpoint class holds it."""
    found = [getattr(endpoint, name) for endpoint in manager.ENDPOINT_CLASSES
             if hasattr(endpoint, name)]
    assert len(found) == 1, name
    return found[0]


def _endpoint_parameters(func):
    """Parameter names of an endpoint method, looking through decorators
    (such as oslo.messaging's expected_exceptions) that hide them."""
    while True:
        params = list(inspect.signature(func).parameters)
        if params[:1] == ['self']:
            return params
        inner = [cell.cell_contents for cell in func.__closure__ or ()
                 if inspect.isfunction(cell.cell_contents)]
        if len(inner) != 1:
            raise AssertionError(f'cannot see through {func!r}')
        func = inner[0]


class FakeClock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


class TestVersionsInStep(base.TestCase):
    def test_client_and_endpoint_versions_match(self):
        self.assertEqual(rpcapi.VERSION, endpoints.RPC_API_VERSION)
        for endpoint in manager.ENDPOINT_CLASSES:
            self.assertEqual(rpcapi.VERSION, endpoint.target.version,
                             endpoint.__name__)

    def test_service_version_maps_to_client_version(self):
        self.assertEqual(
            rpcapi.VERSION,
            rpcapi.SERVICE_VERSION_TO_RPC[endpoints.SERVICE_VERSION])
        self.assertEqual(endpoints.SERVICE_VERSION,
                         max(rpcapi.SERVICE_VERSION_TO_RPC))

    def test_current_version_is_in_the_changelog(self):
        self.assertIn(f'* {rpcapi.VERSION} -', rpcapi.__doc__)


class _APITestCase(base.TestCase):
    """ComputeAPI with VersionedClients._client mocked: records (host,
    topic, version, timeout) of every client made; no transport or broker
    needed."""

    def setUp(self):
        super().setUp()
        self.clock = FakeClock()
        self.client = mock.Mock(name='rpc_client')
        self.client.call.return_value = {'service_version': 2}
        patcher = mock.patch.object(rpcapi_versions.VersionedClients,
                                    '_client', autospec=True,
                                    return_value=self.client)
        self.make_client = patcher.start()
        self.addCleanup(patcher.stop)

    def api(self, pin=None):
        return rpcapi.ComputeAPI(mock.sentinel.transport, version_pin=pin,
                                 clock=self.clock)

    def clients_made(self):
        """(host, topic, version, timeout) of each client, in order."""
        made = []
        for call in self.make_client.call_args_list:
            bound = _CLIENT_SIGNATURE.bind(*call.args, **call.kwargs)
            bound.apply_defaults()
            args = bound.arguments
            made.append((args['host'], args['topic'], args['version'],
                         args['timeout']))
        return made

    def status_probes(self):
        return [c for c in self.client.call.call_args_list
                if c.args[1] == 'get_service_status']


class TestClientTarget(base.TestCase):
    def test_client_targets_exchange_topic_server_and_version(self):
        api = rpcapi_versions.VersionedClients(
            mock.sentinel.transport, rpcapi.VERSION,
            rpcapi.SERVICE_VERSION_TO_RPC)
        with mock.patch.object(oslo_messaging, 'get_rpc_client') as get:
            api._client(HOST, rpcapi_versions.ALT_TOPIC, '1.1', timeout=42)
        get.assert_called_once_with(mock.sentinel.transport, mock.ANY,
                                    timeout=42, retry=None,
                                    transport_options=mock.ANY)
        # Mandatory publishing: a request to a host without a queue fails
        # at once instead of timing out.
        self.assertTrue(
            get.call_args.kwargs['transport_options'].at_least_once)
        target = get.call_args.args[1]
        # No exchange: the transport's [DEFAULT] control_exchange applies,
        # the one the agent listens on.
        self.assertEqual(
            (None, 'compute-alt', HOST, '1.1'),
            (target.exchange, target.topic, target.server, target.version))


class TestAltRouting(_APITestCase):
    def test_unpinned_goes_to_alt_topic(self):
        result = self.api().prepare_for_alt_rpcserver(HOST, '1.1')
        self.assertIs(self.client, result)
        self.assertEqual([(HOST, 'compute-alt', '1.1', None)],
                         self.clients_made())
        self.assertEqual([], self.status_probes())

    def test_pinned_to_1_1_goes_to_alt_topic(self):
        self.api('1.1').prepare_for_alt_rpcserver(HOST, '1.1', timeout=9)
        self.assertEqual([(HOST, 'compute-alt', '1.1', 9)],
                         self.clients_made())

    def test_pinned_to_1_0_falls_back_to_compute_and_logs(self):
        with self.assertLogs(rpcapi_versions.__name__, logging.INFO) as logs:
            self.api('1.0').prepare_for_alt_rpcserver(HOST, '1.0')
        self.assertEqual([(HOST, 'compute', '1.0', None)],
                         self.clients_made())
        [line] = logs.output
        self.assertIn(HOST, line)
        self.assertIn('compute-alt', line)
        self.assertIn('1.0', line)

    def test_unpinned_does_not_log_a_fallback(self):
        with self.assertNoLogs(rpcapi_versions.__name__, logging.DEBUG):
            self.api().prepare_for_alt_rpcserver(HOST, '1.1')

    def test_pinned_below_the_method_raises_instead_of_downgrading(self):
        # A peer capped below the version a method needs cannot take it on
        # either topic: refuse, rather than send arguments it cannot read.
        for pin in ('1.0', '1.2'):
            self.assertRaises(oslo_messaging.RPCVersionCapError,
                              self.api(pin).prepare_for_alt_rpcserver,
                              HOST, '1.3')
        self.assertEqual([], self.clients_made())

    def test_console_output_goes_to_alt_topic_as_1_3(self):
        self.client.call.return_value = 'READY\n'
        self.assertEqual('READY\n', self.api().get_console_output(
            CTXT, HOST, 'u-1', max_bytes=100))
        self.assertEqual([(HOST, 'compute-alt', '1.3', None)],
                         self.clients_made())
        self.client.call.assert_called_once_with(
            CTXT, 'get_console_output', instance_uuid='u-1', max_bytes=100)

    def test_alt_status_goes_to_alt_topic(self):
        # get_service_status exists since 1.0; compute-alt since 1.1.
        self.api().get_service_status(CTXT, HOST, alt=True)
        self.assertEqual([(HOST, 'compute-alt', '1.0', None)],
                         self.clients_made())
        self.client.call.assert_called_once_with(CTXT, 'get_service_status')

    def test_status_goes_to_compute_topic(self):
        self.api().get_service_status(CTXT, HOST)
        self.assertEqual([(HOST, 'compute', '1.0', None)],
                         self.clients_made())


class TestAutoPin(_APITestCase):
    def test_auto_asks_the_host_once_and_caches(self):
        self.client.call.return_value = {'service_version': 1}
        api = self.api('auto')
        with self.assertLogs(rpcapi_versions.__name__, logging.INFO):
            api.prepare_for_alt_rpcserver(HOST, '1.0')
            api.prepare_for_alt_rpcserver(HOST, '1.0')
        self.assertEqual(1, len(self.status_probes()))
        self.assertEqual(
            [(HOST, 'compute-alt', '1.0', rpcapi_versions.DISCOVERY_TIMEOUT),
             (HOST, 'compute', '1.0', None),
             (HOST, 'compute', '1.0', None)],
            self.clients_made())

    def test_auto_asks_compute_alt_first_so_a_draining_host_answers(self):
        # While draining, the host's compute server is stopped: only
        # compute-alt answers, and that must be enough.
        def answer(ctxt, method):
            topic = self.clients_made()[-1][1]
            if topic == 'compute':
                raise oslo_messaging.MessagingTimeout('compute stopped')
            return {'service_version': 2}
        self.client.call.side_effect = answer
        api = self.api('auto')
        self.assertEqual('1.1', api.version_cap(HOST))
        self.assertEqual(['compute-alt'],
                         [made[1] for made in self.clients_made()])

    def test_auto_falls_back_to_compute_for_a_host_without_alt_queue(self):
        def answer(ctxt, method):
            topic = self.clients_made()[-1][1]
            if topic == 'compute-alt':
                raise oslo_messaging.MessageUndeliverable(
                    Exception('no route'), 'compute_agent', 'compute-alt.x',
                    {})
            return {'service_version': 1}
        self.client.call.side_effect = answer
        self.assertEqual('1.0', self.api('auto').version_cap(HOST))
        self.assertEqual(['compute-alt', 'compute'],
                         [made[1] for made in self.clients_made()])

    def test_auto_with_new_agent_uses_alt_topic(self):
        self.client.call.return_value = {'service_version': 2}
        self.api('auto').prepare_for_alt_rpcserver(HOST, '1.1')
        self.assertEqual('compute-alt', self.clients_made()[-1][1])

    def test_auto_with_unknown_service_version_uses_newest(self):
        self.client.call.return_value = {'service_version': 99}
        self.assertEqual(rpcapi.VERSION, self.api('auto').version_cap(HOST))

    def test_auto_caches_per_host(self):
        api = self.api('auto')
        self.client.call.side_effect = [{'service_version': 1},
                                        {'service_version': 2}]
        self.assertEqual('1.0', api.version_cap('hv-old'))
        self.assertEqual('1.1', api.version_cap('hv-new'))
        self.assertEqual('1.0', api.version_cap('hv-old'))
        self.assertEqual('1.1', api.version_cap('hv-new'))
        self.assertEqual(2, len(self.status_probes()))
        self.assertEqual(['hv-old', 'hv-new'],
                         [made[0] for made in self.clients_made()])

    def test_auto_cache_expires(self):
        api = self.api('auto')
        self.client.call.side_effect = [{'service_version': 1},
                                        {'service_version': 2}]
        self.assertEqual('1.0', api.version_cap(HOST))
        self.clock.now += rpcapi_versions.AUTO_PIN_CACHE_SECONDS - 1
        self.assertEqual('1.0', api.version_cap(HOST))
        self.assertEqual(1, len(self.status_probes()))
        self.clock.now += 1
        self.assertEqual('1.1', api.version_cap(HOST))
        self.assertEqual(2, len(self.status_probes()))

    def test_fixed_pin_never_asks(self):
        self.assertEqual('1.0', self.api('1.0').version_cap(HOST))
        self.assertEqual(rpcapi.VERSION, self.api().version_cap(HOST))
        self.assertEqual([], self.clients_made())


class TestVersionCap(_APITestCase):
    def test_version_above_pin_raises(self):
        clients = rpcapi_versions.VersionedClients(
            mock.sentinel.transport, rpcapi.VERSION,
            rpcapi.SERVICE_VERSION_TO_RPC, version_pin='1.0')
        error = self.assertRaises(oslo_messaging.RPCVersionCapError,
                                  clients.prepare, HOST, '1.1')
        self.assertEqual(('1.1', '1.0'), (error.version, error.version_cap))
        self.assertEqual([], self.clients_made())

    def test_method_above_pin_raises_and_sends_nothing(self):
        api = self.api('0.9')
        self.assertRaises(oslo_messaging.RPCVersionCapError,
                          api.stop_instance, CTXT, HOST, UUID)
        self.client.call.assert_not_called()

    def test_method_within_pin_is_sent(self):
        self.api('1.0').list_instances(CTXT, HOST)
        self.client.call.assert_called_once_with(CTXT, 'list_instances')


class TestPowerCallTimeout(_APITestCase):
    DEFAULT_CALL_TIMEOUT = (rpcapi_versions.DEFAULT_POWER_TIMEOUT +
                            rpcapi_versions.POWER_CALL_MARGIN)

    def timeout_of_last_client(self):
        return self.clients_made()[-1][3]

    def test_stop_timeout_follows_shutdown_timeout(self):
        self.api().stop_instance(CTXT, HOST, UUID, shutdown_timeout=30)
        self.assertEqual(30 + rpcapi_versions.POWER_CALL_MARGIN,
                         self.timeout_of_last_client())

    def test_terminate_timeout_follows_shutdown_timeout(self):
        self.api().terminate_instance(CTXT, HOST, UUID, shutdown_timeout=0)
        self.assertEqual(rpcapi_versions.POWER_CALL_MARGIN,
                         self.timeout_of_last_client())

    def test_default_when_shutdown_timeout_unset(self):
        expected = self.DEFAULT_CALL_TIMEOUT
        api = self.api()
        api.stop_instance(CTXT, HOST, UUID)
        self.assertEqual(expected, self.timeout_of_last_client())
        api.reboot_instance(CTXT, HOST, UUID)
        self.assertEqual(expected, self.timeout_of_last_client())

    def test_explicit_call_timeout_wins(self):
        self.api().stop_instance(CTXT, HOST, UUID, shutdown_timeout=30,
                                 timeout=5)
        self.assertEqual(5, self.timeout_of_last_client())

    def test_new_power_off_methods_follow_shutdown_timeout(self):
        # rescue and shelve wait out the same clean power-off as stop: a
        # shorter reply timeout would give up on a call still working.
        api = self.api()
        for method in ('rescue_instance', 'shelve_instance',
                       'shelve_offload_instance'):
            getattr(api, method)(CTXT, HOST, UUID, shutdown_timeout=45)
            self.assertEqual(45 + rpcapi_versions.POWER_CALL_MARGIN,
                             self.timeout_of_last_client(), method)
            getattr(api, method)(CTXT, HOST, UUID)
            self.assertEqual(self.DEFAULT_CALL_TIMEOUT,
                             self.timeout_of_last_client(), method)
            getattr(api, method)(CTXT, HOST, UUID, shutdown_timeout=45,
                                 timeout=7)
            self.assertEqual(7, self.timeout_of_last_client(), method)

    def test_unrescue_and_unshelve_take_the_callers_timeout(self):
        # They power nothing off clean: the messaging default applies
        # unless the caller (--rpc-timeout) says otherwise.
        api = self.api()
        for method in ('unrescue_instance', 'unshelve_instance'):
            getattr(api, method)(CTXT, HOST, UUID)
            self.assertIsNone(self.timeout_of_last_client(), method)
            getattr(api, method)(CTXT, HOST, UUID, timeout=90)
            self.assertEqual(90, self.timeout_of_last_client(), method)

    def test_status_and_show_take_a_timeout_for_progress_polls(self):
        # The CLI's progress poller must not hang on a slow agent.
        api = self.api()
        api.get_service_status(CTXT, HOST, alt=True, timeout=2)
        self.assertEqual((HOST, 'compute-alt', '1.0', 2),
                         self.clients_made()[-1])
        api.get_instance(CTXT, HOST, UUID, timeout=3)
        self.assertEqual((HOST, 'compute', '1.0', 3),
                         self.clients_made()[-1])


class TestVersion12Methods(_APITestCase):
    """The methods added in 1.2 need an agent that has them: they are
    sent as 1.2, and a client pinned lower refuses them before sending."""

    METHODS = ('rescue_instance', 'unrescue_instance', 'shelve_instance',
               'shelve_offload_instance', 'unshelve_instance',
               'get_instance_actions')

    def test_sent_as_1_2_on_topic_compute(self):
        for method in self.METHODS:
            getattr(self.api(), method)(CTXT, HOST, UUID)
            self.assertEqual((HOST, 'compute', '1.2'),
                             self.clients_made()[-1][:3], method)

    def test_pinned_to_1_1_raises_and_sends_nothing(self):
        for method in self.METHODS:
            error = self.assertRaises(oslo_messaging.RPCVersionCapError,
                                      getattr(self.api('1.1'), method),
                                      CTXT, HOST, UUID)
            self.assertEqual(('1.2', '1.1'),
                             (error.version, error.version_cap), method)
        self.assertEqual([], self.clients_made())
        self.client.call.assert_not_called()

    def test_auto_pin_on_a_1_1_agent_raises(self):
        # An agent of SERVICE_VERSION 2 predates these methods.
        self.client.call.return_value = {'service_version': 2}
        self.assertRaises(oslo_messaging.RPCVersionCapError,
                          self.api('auto').shelve_instance, CTXT, HOST, UUID)
        self.assertEqual(['get_service_status'],
                         [c.args[1] for c in self.client.call.call_args_list])

    def test_auto_pin_on_a_1_2_agent_sends(self):
        self.client.call.return_value = {'service_version': 3}
        self.api('auto').shelve_instance(CTXT, HOST, UUID)
        self.assertEqual('shelve_instance',
                         self.client.call.call_args_list[-1].args[1])


class TestWireArguments(_APITestCase):
    """Each method sends the method name and argument names of the wire
    contract, and the endpoint accepts exactly those arguments."""

    INSTANCE = {'uuid': UUID, 'name': 'web-1', 'vcpus': 1, 'memory_mb': 64,
                'image': {'id': 'cirros', 'properties': {}}}
    RESCUE_SPEC = {'id': 'rescue', 'properties': {},
                   'kernel': '/boot/vmlinuz', 'ramdisk': '/boot/initrd'}

    CASES = [
        ('get_service_status', (), {}, {}),
        ('list_instances', (), {}, {}),
        ('get_instance', (UUID,), {}, {'instance_uuid': UUID}),
        ('build_and_run_instance', (INSTANCE,), {}, {'instance': INSTANCE}),
        ('start_instance', (UUID,), {}, {'instance_uuid': UUID}),
        ('stop_instance', (UUID,), {},
         {'instance_uuid': UUID, 'clean_shutdown': True,
          'shutdown_timeout': None}),
        ('stop_instance', (UUID,),
         {'clean_shutdown': False, 'shutdown_timeout': 12},
         {'instance_uuid': UUID, 'clean_shutdown': False,
          'shutdown_timeout': 12}),
        ('reboot_instance', (UUID,), {},
         {'instance_uuid': UUID, 'reboot_type': 'SOFT'}),
        ('reboot_instance', (UUID, 'HARD'), {},
         {'instance_uuid': UUID, 'reboot_type': 'HARD'}),
        ('terminate_instance', (UUID,), {},
         {'instance_uuid': UUID, 'clean_shutdown': True,
          'shutdown_timeout': None}),
        ('terminate_instance', (UUID,),
         {'clean_shutdown': False, 'shutdown_timeout': 3},
         {'instance_uuid': UUID, 'clean_shutdown': False,
          'shutdown_timeout': 3}),
        ('rescue_instance', (UUID,), {},
         {'instance_uuid': UUID, 'rescue_image': None,
          'clean_shutdown': True, 'shutdown_timeout': None}),
        ('rescue_instance', (UUID,),
         {'rescue_image': 'snap-1', 'clean_shutdown': False,
          'shutdown_timeout': 4},
         {'instance_uuid': UUID, 'rescue_image': 'snap-1',
          'clean_shutdown': False, 'shutdown_timeout': 4}),
        ('rescue_instance', (UUID, RESCUE_SPEC), {},
         {'instance_uuid': UUID, 'rescue_image': RESCUE_SPEC,
          'clean_shutdown': True, 'shutdown_timeout': None}),
        ('unrescue_instance', (UUID,), {}, {'instance_uuid': UUID}),
        ('shelve_instance', (UUID,), {},
         {'instance_uuid': UUID, 'clean_shutdown': True,
          'shutdown_timeout': None}),
        ('shelve_instance', (UUID,),
         {'clean_shutdown': False, 'shutdown_timeout': 8},
         {'instance_uuid': UUID, 'clean_shutdown': False,
          'shutdown_timeout': 8}),
        ('shelve_offload_instance', (UUID,), {},
         {'instance_uuid': UUID, 'clean_shutdown': True,
          'shutdown_timeout': None}),
        ('shelve_offload_instance', (UUID,),
         {'clean_shutdown': False, 'shutdown_timeout': 0},
         {'instance_uuid': UUID, 'clean_shutdown': False,
          'shutdown_timeout': 0}),
        ('unshelve_instance', (UUID,), {}, {'instance_uuid': UUID}),
        ('get_instance_actions', (UUID,), {}, {'instance_uuid': UUID}),
    ]

    def test_methods_send_contract_arguments(self):
        for method, args, kwargs, wire in self.CASES:
            self.client.call.reset_mock()
            self.client.call.return_value = mock.sentinel.result
            api = self.api()
            result = getattr(api, method)(CTXT, HOST, *args, **kwargs)
            self.assertIs(mock.sentinel.result, result, method)
            self.client.call.assert_called_once_with(CTXT, method, **wire)

    def test_endpoint_accepts_the_sent_arguments(self):
        for method, _args, _kwargs, wire in self.CASES:
            params = _endpoint_parameters(
                _endpoint_method(method))
            self.assertEqual(['self', 'ctxt'], params[:2], method)
            self.assertEqual(sorted(wire), sorted(params[2:]), method)


# Optional arguments a later version added to 1.4 methods; a 1.4 peer is
# sent the call without them.
ARGUMENTS_SINCE_1_5 = {'resize_instance': ['migration_target']}


class TestVersion14Methods(_APITestCase):
    """Migrations: new work on topic compute, its continuation on
    compute-alt, every method sent as 1.4 with the endpoint's arguments."""

    MIGRATION = {'id': UUID, 'kind': 'resize'}
    INSTANCE = {'uuid': UUID}
    FLAVOR = {'vcpus': 2, 'memory_mb': 256}
    # (method, positional args, wire arguments, topic)
    CASES = [
        ('live_migrate_instance', (UUID, 'hv-2'),
         {'instance_uuid': UUID, 'dest_host': 'hv-2',
          'block_migration': False, 'wait_for_events': None}, 'compute'),
        ('check_can_live_migrate_destination', (INSTANCE, True),
         {'instance': INSTANCE, 'block_migration': True}, 'compute'),
        ('live_migration_abort', (UUID,), {'migration_id': UUID}, 'compute'),
        ('live_migration_force_complete', (UUID,), {'migration_id': UUID},
         'compute'),
        ('prep_resize', (UUID, FLAVOR, 'hv-2'),
         {'instance_uuid': UUID, 'new_flavor': FLAVOR, 'source_host': 'hv-2',
          'clean_shutdown': True, 'shutdown_timeout': None}, 'compute'),
        ('confirm_resize', (UUID,), {'migration_id': UUID}, 'compute'),
        ('revert_resize', (UUID,), {'migration_id': UUID}, 'compute'),
        ('pre_live_migration', (INSTANCE, MIGRATION, '<domain/>', False),
         {'instance': INSTANCE, 'migration': MIGRATION,
          'migratable_xml': '<domain/>', 'block_migration': False},
         'compute-alt'),
        ('post_live_migration_at_destination',
         (INSTANCE, MIGRATION, '<domain/>'),
         {'instance': INSTANCE, 'migration': MIGRATION,
          'destination_xml': '<domain/>'}, 'compute-alt'),
        ('rollback_live_migration_at_destination', (UUID, UUID, 'why'),
         {'instance_uuid': UUID, 'migration_id': UUID, 'reason': 'why'},
         'compute-alt'),
        ('check_instance_shared_storage', (UUID, '.m'),
         {'instance_uuid': UUID, 'marker': '.m'}, 'compute-alt'),
        ('resize_instance', (MIGRATION, '/x', False),
         {'migration': MIGRATION, 'destination_path': '/x',
          'shared_storage': False, 'clean_shutdown': True,
          'shutdown_timeout': None}, 'compute-alt'),
        ('finish_resize', (MIGRATION, INSTANCE, True, True),
         {'migration': MIGRATION, 'instance': INSTANCE, 'has_disk': True,
          'power_on': True}, 'compute-alt'),
        ('finish_confirm_resize', (UUID,), {'migration_id': UUID},
         'compute-alt'),
        ('finish_revert_resize', (UUID,), {'migration_id': UUID},
         'compute-alt'),
        ('get_migration', (UUID,), {'migration_id': UUID}, 'compute-alt'),
        ('list_migrations', (), {'instance_uuid': None}, 'compute-alt'),
        ('external_instance_event', (UUID, 'network-vif-plugged'),
         {'instance_uuid': UUID, 'name': 'network-vif-plugged',
          'tag': None}, 'compute-alt'),
        ('get_serial_console', (UUID,), {'instance_uuid': UUID},
         'compute-alt'),
    ]

    def test_topic_version_and_arguments(self):
        for method, args, wire, topic in self.CASES:
            self.client.call.reset_mock()
            getattr(self.api(), method)(CTXT, HOST, *args)
            self.assertEqual((HOST, topic, '1.4'),
                             self.clients_made()[-1][:3], method)
            self.client.call.assert_called_once_with(CTXT, method, **wire)

    def test_endpoint_accepts_the_sent_arguments(self):
        for method, _args, wire, _topic in self.CASES:
            params = _endpoint_parameters(
                _endpoint_method(method))
            self.assertEqual(sorted(list(wire) + ARGUMENTS_SINCE_1_5.get(
                method, [])), sorted(params[2:]), method)

    def test_agent_older_than_1_4_gets_nothing(self):
        self.client.call.return_value = {'service_version': 4}
        for method, args, _wire, _topic in self.CASES:
            self.assertRaises(oslo_messaging.RPCVersionCapError,
                              getattr(self.api('auto'), method),
                              CTXT, HOST, *args)
        self.assertEqual({'get_service_status'},
                         {c.args[1] for c in self.client.call.call_args_list})

    def test_each_peer_gets_its_own_cap(self):
        # A 1.4 destination is migrated to while a 1.3 host is refused.
        versions = {'hv-new': 5, 'hv-old': 4}
        self.client.call.side_effect = lambda ctxt, method, **kw: {
            'service_version': versions[self.clients_made()[-1][0]]}
        api = self.api('auto')
        self.assertEqual(('1.4', '1.3'), (api.version_cap('hv-new'),
                                          api.version_cap('hv-old')))

    def test_resize_instance_timeout_covers_power_off_and_copy(self):
        self.api().resize_instance(CTXT, HOST, self.MIGRATION, '/x', False,
                                   shutdown_timeout=100)
        self.assertEqual(100 + rpcapi_versions.POWER_CALL_MARGIN +
                         rpcapi.DISK_COPY_TIMEOUT, self.clients_made()[-1][3])


class TestVersion15ResizeInstance(_APITestCase):
    """1.5: the destination tells the source where to stream the disk, and
    sends a source too old to take that the 1.4 call without it."""

    MIGRATION = {'id': UUID, 'kind': 'resize'}
    TARGET = {'libvirt_uri': 'qemu+tls://hv-1/system'}

    def resize(self, api):
        api.resize_instance(CTXT, HOST, self.MIGRATION, '/x', False,
                            migration_target=self.TARGET)
        return self.client.call.call_args

    def test_current_peer_gets_the_target_as_1_5(self):
        call = self.resize(self.api())
        self.assertEqual((HOST, 'compute-alt', '1.5'),
                         self.clients_made()[-1][:3])
        self.assertEqual(self.TARGET, call.kwargs['migration_target'])
        self.assertIn('migration_target', _endpoint_parameters(
            _endpoint_method('resize_instance')))

    def test_older_peer_gets_1_4_without_it_and_it_is_logged(self):
        for api in (self.api('1.4'), self._auto_api(service_version=5)):
            with self.assertLogs(rpcapi.__name__, logging.INFO) as logs:
                call = self.resize(api)
            self.assertEqual((HOST, 'compute-alt', '1.4'),
                             self.clients_made()[-1][:3])
            self.assertNotIn('migration_target', call.kwargs)
            self.assertIn('only copy it through a mounted path',
                          logs.output[0])

    def test_without_a_target_the_call_stays_1_4(self):
        self.api().resize_instance(CTXT, HOST, self.MIGRATION, '/x', False)
        self.assertEqual('1.4', self.clients_made()[-1][2])
        self.assertNotIn('migration_target',
                         self.client.call.call_args.kwargs)

    def _auto_api(self, service_version):
        self.client.call.return_value = {'service_version': service_version}
        api = self.api('auto')
        api.version_cap(HOST)
        return api


class TestBuildWithEvents(_APITestCase):
    INSTANCE = {'uuid': UUID, 'name': 'web-1', 'vcpus': 1, 'memory_mb': 64,
                'image': {'id': 'cirros', 'properties': {}}}
    WAITING = dict(INSTANCE, wait_for_events=[{'name': 'network-vif-plugged',
                                               'tag': 'p1'}])

    def test_plain_build_stays_1_0(self):
        self.api().build_and_run_instance(CTXT, HOST, self.INSTANCE)
        self.assertEqual((HOST, 'compute', '1.0', None),
                         self.clients_made()[-1])

    def test_build_waiting_for_events_is_1_4_and_waits_long_enough(self):
        self.api().build_and_run_instance(CTXT, HOST, self.WAITING,
                                          event_timeout=100)
        self.assertEqual((HOST, 'compute', '1.4',
                          100 + rpcapi_versions.POWER_CALL_MARGIN),
                         self.clients_made()[-1])

    def test_build_waiting_for_events_refused_below_1_4(self):
        self.assertRaises(oslo_messaging.RPCVersionCapError,
                          self.api('1.3').build_and_run_instance,
                          CTXT, HOST, self.WAITING)
        self.client.call.assert_not_called()
