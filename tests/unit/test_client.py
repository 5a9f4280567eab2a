"""compute-agent-client: argument handling, output and exit status.

The RPC client class and the transport are mocked: no broker is needed.
"""

import io
import json
import os
import re
import socket
import tempfile
from unittest import mock

import fixtures
import oslo_messaging
import testtools

from compute_agent import conf as agent_conf
from compute_agent import rpcapi
from compute_agent.cmd import client

HOST = 'hv-1'
UUID = '6f1a5a3e-58f5-4c5e-9b89-0c6f1d2b7a10'
UUID_2 = '0d7c3c84-3f7e-4f33-a8a3-8f4e47d9c0b1'
REQUEST_ID = re.compile(r'req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-'
                        r'[0-9a-f]{4}-[0-9a-f]{12}')

RECORD = {
    'uuid': UUID, 'name': 'web-1', 'host': HOST, 'vm_state': 'stopped',
    'task_state': None, 'power_state': 'shutdown',
    'flavor': {'vcpus': 2, 'memory_mb': 512},
    'image': {'id': 'cirros-0.6', 'properties': {}},
    'last_power_off': {'requested': 'clean', 'result': 'forced',
                       'seconds': 60.25, 'timeout': 60},
}
STATUS = {
    'host': HOST, 'service_version': 2, 'rpc_api_version': '1.1',
    'state': 'draining', 'graceful_shutdown_timeout': 180,
    'in_flight': [{'method': 'stop_instance', 'instance_uuid': UUID,
                   'request_id': 'req-abc', 'elapsed': 12.34}],
}


class ClientTestCase(testtools.TestCase):
    def setUp(self):
        super().setUp()
        # main() parses the process-wide CONF; leave it as found.
        agent_conf.CONF.reset()
        self.addCleanup(agent_conf.CONF.reset)
        self.get_transport = self.useFixture(fixtures.MockPatchObject(
            oslo_messaging, 'get_rpc_transport')).mock
        self.transport = self.get_transport.return_value
        self.api_class = self.useFixture(fixtures.MockPatchObject(
            rpcapi, 'ComputeAPI', autospec=True)).mock
        self.api = self.api_class.return_value
        self.stdout = io.StringIO()
        self.stderr = io.StringIO()
        self.useFixture(fixtures.MonkeyPatch('sys.stdout', self.stdout))
        self.useFixture(fixtures.MonkeyPatch('sys.stderr', self.stderr))

    def run_client(self, *argv):
        return client.main(['--host', HOST] + list(argv))

    def sent_context(self, method):
        return method.call_args.args[0]

    def stderr_lines(self):
        return self.stderr.getvalue().splitlines()


class TestOutput(ClientTestCase):
    def test_show(self):
        self.api.get_instance.return_value = RECORD
        self.assertEqual(0, self.run_client('show', UUID))
        self.api.get_instance.assert_called_once_with(mock.ANY, HOST, UUID)
        out = self.stdout.getvalue()
        for text in (UUID, 'web-1', HOST, 'stopped', 'shutdown',
                     '2 vCPU, 512 MiB', 'cirros-0.6',
                     'forced (requested clean) in 60.25 s, timeout 60 s'):
            self.assertIn(text, out)
        self.assertEqual('', self.stderr.getvalue())

    def test_show_without_power_off_or_task(self):
        record = dict(RECORD, last_power_off=None, task_state=None)
        self.api.get_instance.return_value = record
        self.assertEqual(0, self.run_client('show', UUID))
        self.assertRegex(self.stdout.getvalue(), r'task_state +-\n')
        self.assertRegex(self.stdout.getvalue(), r'last power-off +-$')

    def test_list(self):
        other = dict(RECORD, uuid=UUID_2, name='db-1', vm_state='active',
                     power_state='running', task_state='powering_off')
        self.api.list_instances.return_value = [RECORD, other]
        self.assertEqual(0, self.run_client('list'))
        self.api.list_instances.assert_called_once_with(mock.ANY, HOST)
        lines = self.stdout.getvalue().splitlines()
        self.assertEqual(3, len(lines))
        self.assertEqual(['UUID', 'NAME', 'VM_STATE', 'POWER', 'TASK'],
                         lines[0].split())
        self.assertEqual([UUID, 'web-1', 'stopped', 'shutdown', '-'],
                         lines[1].split())
        self.assertEqual([UUID_2, 'db-1', 'active', 'running',
                          'powering_off'], lines[2].split())

    def test_list_empty(self):
        self.api.list_instances.return_value = []
        self.assertEqual(0, self.run_client('list'))
        self.assertEqual('no instances\n', self.stdout.getvalue())

    def test_status(self):
        self.api.get_service_status.return_value = STATUS
        self.assertEqual(0, self.run_client('status'))
        self.api.get_service_status.assert_called_once_with(
            mock.ANY, HOST, alt=False)
        out = self.stdout.getvalue()
        for text in (HOST, 'draining', 'service version 2', '1.1', '180',
                     'in flight       1', 'stop_instance', UUID, 'req-abc',
                     '12.3 s'):
            self.assertIn(text, out)

    def test_status_alt(self):
        self.api.get_service_status.return_value = dict(STATUS, in_flight=[])
        self.assertEqual(0, self.run_client('status', '--alt'))
        self.api.get_service_status.assert_called_once_with(
            mock.ANY, HOST, alt=True)

    def test_json(self):
        for verb, method, result in (
                (['show', UUID], self.api.get_instance, RECORD),
                (['list'], self.api.list_instances, [RECORD]),
                (['status'], self.api.get_service_status, STATUS)):
            self.stdout.seek(0)
            self.stdout.truncate()
            method.return_value = result
            self.assertEqual(0, self.run_client('--json', *verb))
            self.assertEqual(result, json.loads(self.stdout.getvalue()))

    def test_each_request_has_its_own_request_id(self):
        self.api.get_instance.return_value = RECORD
        self.run_client('show', UUID)
        self.run_client('show', UUID)
        first, second = [c.args[0]['request_id']
                         for c in self.api.get_instance.call_args_list]
        self.assertRegex(first, REQUEST_ID)
        self.assertNotEqual(first, second)


class TestErrors(ClientTestCase):
    def test_remote_error_is_one_line_with_request_id(self):
        message = f'Instance {UUID} is not known on host {HOST}.'
        self.api.get_instance.side_effect = oslo_messaging.RemoteError(
            'InstanceNotFound', message,
            ['Traceback (most recent call last):\n',
             '  File "manager.py", line 1, in get_instance\n',
             'compute_agent.exception.InstanceNotFound: ...\n'])
        self.assertEqual(1, self.run_client('show', UUID))
        request_id = self.sent_context(
            self.api.get_instance)['request_id']
        self.assertEqual(
            [f'error: InstanceNotFound: {message} ({request_id})'],
            self.stderr_lines())
        self.assertRegex(request_id, REQUEST_ID)
        self.assertEqual('', self.stdout.getvalue())
        self.transport.cleanup.assert_called_once_with()

    def test_timeout_is_exit_3_with_a_hint(self):
        self.api.stop_instance.side_effect = oslo_messaging.MessagingTimeout(
            'Timed out waiting for a reply')
        self.assertEqual(3, self.run_client('stop', UUID))
        [line] = self.stderr_lines()
        self.assertTrue(line.startswith('error: '), line)
        self.assertIn(f'no answer from host {HOST}', line)
        self.assertIn('compute-agent running', line)
        self.assertRegex(line, REQUEST_ID)
        self.assertEqual('', self.stdout.getvalue())

    def test_other_messaging_error_is_exit_3(self):
        self.api.list_instances.side_effect = (
            oslo_messaging.MessageDeliveryFailure('broker gone'))
        self.assertEqual(3, self.run_client('list'))
        [line] = self.stderr_lines()
        self.assertIn(f'cannot reach host {HOST}', line)
        self.assertIn('broker gone', line)

    def test_bad_property_is_exit_2(self):
        for prop in ('novalue', '=value'):
            self.stderr.seek(0)
            self.stderr.truncate()
            self.assertEqual(2, self.run_client('boot', 'web-1',
                                                '--property', prop))
            [line] = self.stderr_lines()
            self.assertIn('--property takes KEY=VALUE', line)
            self.assertIn(repr(prop), line)
        self.api.build_and_run_instance.assert_not_called()

    def test_invalid_transport_url_is_exit_2(self):
        self.get_transport.side_effect = oslo_messaging.InvalidTransportURL(
            'bogus:/', 'No scheme specified in "bogus:/"')
        self.assertEqual(2, self.run_client('list'))
        [line] = self.stderr_lines()
        self.assertTrue(line.startswith('error: '), line)
        self.api_class.assert_not_called()

    def test_unknown_verb_is_usage_error(self):
        error = self.assertRaises(SystemExit, self.run_client, 'explode')
        self.assertEqual(2, error.code)
        self.api_class.assert_not_called()


class TestRequests(ClientTestCase):
    def test_stop_is_clean_by_default(self):
        self.api.stop_instance.return_value = RECORD
        self.assertEqual(0, self.run_client('stop', UUID))
        self.api.stop_instance.assert_called_once_with(
            mock.ANY, HOST, UUID, clean_shutdown=True, shutdown_timeout=None,
            timeout=None)

    def test_stop_force(self):
        self.api.stop_instance.return_value = RECORD
        self.assertEqual(0, self.run_client('stop', '--force', UUID))
        self.api.stop_instance.assert_called_once_with(
            mock.ANY, HOST, UUID, clean_shutdown=False,
            shutdown_timeout=None, timeout=None)

    def test_stop_timeout(self):
        self.api.stop_instance.return_value = RECORD
        self.assertEqual(0, self.run_client('stop', '--timeout', '30', UUID))
        self.api.stop_instance.assert_called_once_with(
            mock.ANY, HOST, UUID, clean_shutdown=True, shutdown_timeout=30,
            timeout=None)

    def test_delete_force_with_timeout_and_rpc_timeout(self):
        self.api.terminate_instance.return_value = RECORD
        self.assertEqual(0, self.run_client(
            '--rpc-timeout', '500', 'delete', '--force', '--timeout', '5',
            UUID))
        self.api.terminate_instance.assert_called_once_with(
            mock.ANY, HOST, UUID, clean_shutdown=False, shutdown_timeout=5,
            timeout=500)
        self.api.stop_instance.assert_not_called()

    def test_reboot_soft_and_hard(self):
        self.api.reboot_instance.return_value = RECORD
        self.assertEqual(0, self.run_client('reboot', UUID))
        self.assertEqual(0, self.run_client('reboot', '--hard', UUID))
        self.assertEqual(
            [mock.call(mock.ANY, HOST, UUID, 'SOFT', timeout=None),
             mock.call(mock.ANY, HOST, UUID, 'HARD', timeout=None)],
            self.api.reboot_instance.call_args_list)

    def test_start(self):
        self.api.start_instance.return_value = RECORD
        self.assertEqual(0, self.run_client('start', UUID))
        self.api.start_instance.assert_called_once_with(mock.ANY, HOST, UUID)

    def test_boot_builds_the_instance_spec(self):
        self.api.build_and_run_instance.return_value = RECORD
        self.assertEqual(0, self.run_client(
            'boot', 'web-1', '--uuid', UUID, '--vcpus', '2',
            '--memory-mb', '512', '--image-id', 'cirros',
            '--property', 'os_shutdown_timeout=30',
            '--property', 'note=a=b',
            '--kernel', '/boot/vmlinuz', '--ramdisk', '/boot/initrd',
            '--cmdline', 'console=ttyS0'))
        self.api.build_and_run_instance.assert_called_once_with(
            mock.ANY, HOST,
            {'uuid': UUID, 'name': 'web-1', 'vcpus': 2, 'memory_mb': 512,
             'image': {'id': 'cirros',
                       'properties': {'os_shutdown_timeout': '30',
                                      'note': 'a=b'},
                       'kernel': '/boot/vmlinuz', 'ramdisk': '/boot/initrd',
                       'cmdline': 'console=ttyS0'}},
            timeout=None)

    def test_boot_without_uuid_makes_one(self):
        self.api.build_and_run_instance.return_value = RECORD
        self.assertEqual(0, self.run_client('boot', 'web-1', '--disk',
                                            '/var/lib/images/base.qcow2'))
        spec = self.api.build_and_run_instance.call_args.args[2]
        self.assertRegex(spec['uuid'], r'^[0-9a-f-]{36}$')
        self.assertEqual({'id': 'none', 'properties': {},
                          'disk': '/var/lib/images/base.qcow2'},
                         spec['image'])


class TestConfiguration(ClientTestCase):
    def write_config(self, text):
        fd, path = tempfile.mkstemp(suffix='.conf')
        self.addCleanup(os.unlink, path)
        with os.fdopen(fd, 'w') as f:
            f.write(text)
        return path

    def test_transport_url_option(self):
        self.api.list_instances.return_value = []
        self.assertEqual(0, self.run_client(
            '--transport-url', 'rabbit://u:p@broker:5672/', 'list'))
        self.get_transport.assert_called_once_with(
            agent_conf.CONF, url='rabbit://u:p@broker:5672/')
        self.api_class.assert_called_once_with(
            self.transport, None, retry=client.CONNECTION_RETRIES)
        self.transport.cleanup.assert_called_once_with()

    def test_host_and_pin_from_config_file_do_not_leak(self):
        path = self.write_config('[DEFAULT]\nhost = hv-from-file\n'
                                 '[upgrade_levels]\ncompute = 1.0\n')
        self.api.list_instances.return_value = []
        self.assertEqual(0, client.main(['--config-file', path, 'list']))
        self.api_class.assert_called_once_with(
            self.transport, '1.0', retry=client.CONNECTION_RETRIES)
        self.api.list_instances.assert_called_once_with(
            mock.ANY, 'hv-from-file')

        # A second run without the file sees none of its values.
        self.api_class.reset_mock()
        self.api.list_instances.reset_mock()
        self.assertEqual(0, client.main(['list']))
        self.api_class.assert_called_once_with(
            self.transport, None, retry=client.CONNECTION_RETRIES)
        self.api.list_instances.assert_called_once_with(
            mock.ANY, socket.gethostname())

    def test_host_option_beats_config_file(self):
        path = self.write_config('[DEFAULT]\nhost = hv-from-file\n')
        self.api.list_instances.return_value = []
        self.assertEqual(0, client.main(['--config-file', path, '--host',
                                         'hv-cli', 'list']))
        self.api.list_instances.assert_called_once_with(mock.ANY, 'hv-cli')

    def test_unreadable_config_file_is_exit_2(self):
        self.assertEqual(2, client.main(['--config-file',
                                         '/nonexistent/agent.conf', 'list']))
        [line] = self.stderr_lines()
        self.assertTrue(line.startswith('error: '), line)
        self.api_class.assert_not_called()
