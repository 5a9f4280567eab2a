"""The instance lifecycle through a real broker and a real agent process.

The operator's CLI runs as a subprocess exactly as typed at a shell; the
wire-contract client (tests/fixtures/rpc.py, which does not import the
agent's code) checks the error types an independent client relies on.
"""

import json
import subprocess
import sys
import uuid

import oslo_messaging
import testtools

from tests.fixtures import agent as agent_fixture
from tests.fixtures import rabbitmq
from tests.fixtures import rpc

CONFIG_SHUTDOWN_TIMEOUT = 10


class AgentTestCase(testtools.TestCase):
    extra_config = None

    def setUp(self):
        super().setUp()
        broker = rabbitmq.shared_broker()
        self.agent = self.useFixture(agent_fixture.AgentProcess(
            broker.transport_url,
            shutdown_timeout=CONFIG_SHUTDOWN_TIMEOUT,
            extra_config=self.extra_config))
        self.agent.wait_ready()
        self.rpc = self.useFixture(rpc.AgentRPCClient(broker.transport_url,
                                                      self.agent.host))

    def cli(self, *args, expect=0):
        """Run compute-agent-client; return parsed JSON or stderr."""
        command = [sys.executable, '-m', 'compute_agent.cmd.client',
                   '--config-file', self.agent.config_file, *args]
        done = subprocess.run(command, capture_output=True, text=True,
                              timeout=120)
        self.assertEqual(expect, done.returncode,
                         f'{" ".join(args)}: {done.stdout}{done.stderr}')
        if expect:
            return done.stderr
        return json.loads(done.stdout) if '--json' in args else done.stdout


class CliLifecycleTest(AgentTestCase):
    def test_boot_stop_start_reboot_delete(self):
        record = self.cli('--json', 'boot', 'web-1', '--property',
                          'os_shutdown_timeout=7')
        uuid_ = record['uuid']
        self.assertEqual(('active', 'running', self.agent.host),
                         (record['vm_state'], record['power_state'],
                          record['host']))

        stopped = self.cli('--json', 'stop', uuid_)
        self.assertEqual(('stopped', 'shutdown'),
                         (stopped['vm_state'], stopped['power_state']))
        last = stopped['last_power_off']
        self.assertEqual(('clean', 'clean', 7),
                         (last['requested'], last['result'],
                          last['timeout']))

        self.cli('start', uuid_)
        forced = self.cli('--json', 'stop', '--force', uuid_)
        self.assertEqual(('forced', 'forced'),
                         (forced['last_power_off']['requested'],
                          forced['last_power_off']['result']))

        self.cli('start', uuid_)
        per_request = self.cli('--json', 'stop', '--timeout', '3', uuid_)
        self.assertEqual(3, per_request['last_power_off']['timeout'])

        self.cli('start', uuid_)
        soft = self.cli('--json', 'reboot', uuid_)
        self.assertEqual(('active', 'clean'),
                         (soft['vm_state'],
                          soft['last_power_off']['result']))
        hard = self.cli('--json', 'reboot', '--hard', uuid_)
        self.assertEqual('forced', hard['last_power_off']['result'])

        listed = self.cli('--json', 'list')
        self.assertEqual([uuid_], [r['uuid'] for r in listed])
        human = self.cli('show', uuid_)
        self.assertIn('active', human)
        self.assertIn('web-1', human)

        deleted = self.cli('--json', 'delete', uuid_)
        self.assertEqual('deleted', deleted['vm_state'])
        self.assertEqual([], self.cli('--json', 'list'))

    def test_errors_are_one_clear_line_and_change_nothing(self):
        record = self.cli('--json', 'boot', 'db-1')
        uuid_ = record['uuid']
        cases = [
            (('show', str(uuid.uuid4())), 'InstanceNotFound'),
            (('stop', 'not-a-uuid'), 'InvalidInput'),
            (('stop', '--timeout', '-1', uuid_), 'InvalidInput'),
            (('start', uuid_), 'InstanceInvalidState'),
        ]
        for args, exc_type in cases:
            stderr = self.cli(*args, expect=1)
            lines = stderr.strip().splitlines()
            self.assertEqual(1, len(lines), stderr)
            self.assertTrue(lines[0].startswith(f'error: {exc_type}: '),
                            lines[0])
        self.assertEqual(record, self.cli('--json', 'show', uuid_))

    def test_unreachable_agent_is_reported(self):
        stderr = self.cli('--host', 'no-such-host', '--rpc-timeout', '2',
                          'list', expect=3)
        self.assertIn('no-such-host', stderr)


class SiteExchangeTest(AgentTestCase):
    """An operator who sets control_exchange sets it for agent and CLI
    alike, in the config file both read."""

    extra_config = {'DEFAULT': {'control_exchange': 'site_compute'}}

    def test_cli_reaches_an_agent_on_a_configured_exchange(self):
        record = self.cli('--json', 'boot', 'site-1')
        self.assertEqual([record['uuid']],
                         [r['uuid'] for r in self.cli('--json', 'list')])


class WireContractTest(AgentTestCase):
    def build(self, **image_properties):
        instance = {'uuid': str(uuid.uuid4()), 'name': 'wire', 'vcpus': 1,
                    'memory_mb': 64,
                    'image': {'id': 'img', 'properties': image_properties}}
        return self.rpc.call('build_and_run_instance', instance=instance)

    def assertRemoteError(self, exc_type, method, **kwargs):
        error = self.assertRaises(oslo_messaging.RemoteError, self.rpc.call,
                                  method, **kwargs)
        self.assertEqual(exc_type, error.exc_type)
        return error

    def test_error_types_of_the_contract(self):
        record = self.build()
        self.assertRemoteError('InstanceNotFound', 'get_instance',
                               instance_uuid=str(uuid.uuid4()))
        self.assertRemoteError('InvalidInput', 'stop_instance',
                               instance_uuid=record['uuid'],
                               shutdown_timeout='soon')
        self.assertRemoteError('InvalidInput', 'reboot_instance',
                               instance_uuid=record['uuid'],
                               reboot_type='WARM')
        self.assertRemoteError('InvalidInput', 'build_and_run_instance',
                               instance={'uuid': 'x'})
        self.assertRemoteError('InstanceInvalidState', 'start_instance',
                               instance_uuid=record['uuid'])
        # None of it disturbed the agent or the record.
        self.assertEqual(record, self.rpc.call(
            'get_instance', instance_uuid=record['uuid']))
        self.assertEqual('running',
                         self.rpc.call('get_service_status')['state'])

    def test_shutdown_timeout_precedence(self):
        from_image = self.build(os_shutdown_timeout='7')
        stopped = self.rpc.call('stop_instance',
                                instance_uuid=from_image['uuid'])
        self.assertEqual(7, stopped['last_power_off']['timeout'])

        invalid_image = self.build(os_shutdown_timeout='soon')
        stopped = self.rpc.call('stop_instance',
                                instance_uuid=invalid_image['uuid'])
        self.assertEqual(CONFIG_SHUTDOWN_TIMEOUT,
                         stopped['last_power_off']['timeout'])
        self.assertIn('os_shutdown_timeout', self.agent.log_text())

        from_request = self.build(os_shutdown_timeout='7')
        stopped = self.rpc.call('stop_instance',
                                instance_uuid=from_request['uuid'],
                                shutdown_timeout=2)
        self.assertEqual(2, stopped['last_power_off']['timeout'])

    def test_timeout_zero_powers_off_at_once(self):
        record = self.build()
        stopped = self.rpc.call('terminate_instance',
                                instance_uuid=record['uuid'],
                                shutdown_timeout=0)
        self.assertEqual(('clean', 'forced'),
                         (stopped['last_power_off']['requested'],
                          stopped['last_power_off']['result']))
