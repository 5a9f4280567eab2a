"""compute-agent-client: argument handling, output and exit status.

The RPC client class and the transport are mocked: no broker is needed.
"""

import concurrent.futures
import io
import json
import os
import re
import socket
import tempfile
import threading
from unittest import mock

import fixtures
import oslo_messaging

from compute_agent import conf as agent_conf
from compute_agent import rpcapi
from compute_agent.cmd import client
from compute_agent.cmd import client_format
from compute_agent.cmd import client_host
from compute_agent.cmd import client_progress
from tests.unit import base

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


class ClientTestCase(base.TestCase):
    # False: the real ComputeAPI, with the RPC client factory mocked.
    mock_api = True

    def setUp(self):
        super().setUp()
        # main() parses the process-wide CONF; leave it as found.
        agent_conf.CONF.reset()
        self.addCleanup(agent_conf.CONF.reset)
        self.get_transport = self.useFixture(fixtures.MockPatchObject(
            oslo_messaging, 'get_rpc_transport')).mock
        self.transport = self.get_transport.return_value
        if self.mock_api:
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

    def test_status_names_the_concurrency_mode_when_the_agent_does(self):
        self.api.get_service_status.return_value = dict(
            STATUS, concurrency='eventlet')
        self.assertEqual(0, self.run_client('status'))
        self.assertIn('concurrency     eventlet\n', self.stdout.getvalue())
        # An older agent does not say.
        self.stdout.seek(0)
        self.stdout.truncate()
        self.api.get_service_status.return_value = STATUS
        self.assertEqual(0, self.run_client('status'))
        self.assertNotIn('concurrency', self.stdout.getvalue())

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


def write_config(test, text):
    fd, path = tempfile.mkstemp(suffix='.conf')
    test.addCleanup(os.unlink, path)
    with os.fdopen(fd, 'w') as f:
        f.write(text)
    return path


class TestConfiguration(ClientTestCase):
    def write_config(self, text):
        return write_config(self, text)

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


# -- rescue, shelve, actions, host-stop-all, progress (RPC API 1.2) ------

UUID_3 = '9a5e1f3c-2b7d-4c1e-8f6a-3d2c1b0a9e8f'
UUID_4 = 'c4b3a291-8e7f-4d6c-9b5a-1f2e3d4c5b6a'
CLEAN_ACPI = {'requested': 'clean', 'result': 'clean', 'seconds': 1.42,
              'timeout': 60, 'method': 'acpi'}
TIMED_OUT = {'requested': 'clean', 'result': 'forced', 'seconds': 60.25,
             'timeout': 60, 'method': 'destroy'}
FORCED = {'requested': 'forced', 'result': 'forced', 'seconds': 0.05,
          'timeout': 60, 'method': 'destroy'}
ALREADY_OFF = {'requested': 'clean', 'result': 'clean', 'seconds': 0.0,
               'timeout': 60, 'method': 'already-off'}
WAITING = {'elapsed': 12.34, 'timeout': 60, 'method': 'acpi', 'requests': 2}
RESCUE_SPEC_ARGS = ('--kernel', '/boot/vmlinuz', '--ramdisk', '/boot/initrd',
                    '--cmdline', 'console=ttyS0')
ACTIONS = [
    {'id': 1, 'request_id': 'req-1', 'action': 'build',
     'start_time': '2026-11-23T12:00:01.250000Z',
     'finish_time': '2026-11-23T12:00:03Z', 'result': 'success',
     'power_off': None, 'message': None},
    {'id': 2, 'request_id': 'req-2', 'action': 'shelve',
     'start_time': '2026-11-23T12:05:00Z',
     'finish_time': '2026-11-23T12:06:00Z', 'result': 'error',
     'power_off': TIMED_OUT, 'message': 'snapshot failed: disk full'},
    {'id': 3, 'request_id': 'req-3', 'action': 'stop',
     'start_time': '2026-11-23T12:07:00Z', 'finish_time': None,
     'result': 'running', 'power_off': None, 'message': None},
]


def a_record(**changes):
    return dict(RECORD, **changes)


class TestNewVerbRequests(ClientTestCase):
    def test_rescue_defaults_to_the_instances_own_image_clean(self):
        self.api.rescue_instance.return_value = a_record(
            vm_state='rescued', last_power_off=CLEAN_ACPI)
        self.assertEqual(0, self.run_client('rescue', UUID))
        self.api.rescue_instance.assert_called_once_with(
            mock.ANY, HOST, UUID, rescue_image=None, clean_shutdown=True,
            shutdown_timeout=None, timeout=None)

    def test_rescue_from_a_local_snapshot_forced_with_timeouts(self):
        # --image is the short spelling of --rescue-image-id.
        self.api.rescue_instance.return_value = a_record(
            last_power_off=FORCED)
        for option in ('--rescue-image-id', '--image'):
            self.api.rescue_instance.reset_mock()
            self.assertEqual(0, self.run_client(
                '--rpc-timeout', '400', 'rescue', UUID, option, 'snap-1',
                '--force', '--timeout', '9'))
            self.api.rescue_instance.assert_called_once_with(
                mock.ANY, HOST, UUID, rescue_image='snap-1',
                clean_shutdown=False, shutdown_timeout=9, timeout=400)

    def test_rescue_from_an_image_spec(self):
        self.api.rescue_instance.return_value = a_record(
            last_power_off=CLEAN_ACPI)
        self.assertEqual(0, self.run_client('rescue', UUID,
                                            *RESCUE_SPEC_ARGS))
        self.assertEqual(
            {'id': 'rescue', 'properties': {}, 'kernel': '/boot/vmlinuz',
             'ramdisk': '/boot/initrd', 'cmdline': 'console=ttyS0'},
            self.api.rescue_instance.call_args.kwargs['rescue_image'])
        self.assertEqual(0, self.run_client('rescue', UUID, '--disk',
                                            '/images/rescue.qcow2'))
        self.assertEqual(
            {'id': 'rescue', 'properties': {},
             'disk': '/images/rescue.qcow2'},
            self.api.rescue_instance.call_args.kwargs['rescue_image'])

    def test_rescue_with_snapshot_id_and_spec_is_exit_2(self):
        # Either names the rescue image: taking one silently would boot
        # something the operator did not mean.
        self.assertEqual(2, self.run_client(
            'rescue', UUID, '--rescue-image-id', 'snap-1', '--disk', '/d'))
        [line] = self.stderr_lines()
        self.assertIn('either --rescue-image-id or an image spec', line)
        self.api.rescue_instance.assert_not_called()

    def test_shelve_and_shelve_offload_pass_force_and_timeout(self):
        for verb, method in (
                ('shelve', self.api.shelve_instance),
                ('shelve-offload', self.api.shelve_offload_instance)):
            method.return_value = a_record(last_power_off=FORCED)
            self.assertEqual(0, self.run_client(verb, UUID))
            self.assertEqual(0, self.run_client(verb, UUID, '--force',
                                                '--timeout', '15'))
            self.assertEqual(
                [mock.call(mock.ANY, HOST, UUID, clean_shutdown=True,
                           shutdown_timeout=None, timeout=None),
                 mock.call(mock.ANY, HOST, UUID, clean_shutdown=False,
                           shutdown_timeout=15, timeout=None)],
                method.call_args_list, verb)

    def test_unrescue_and_unshelve_pass_the_rpc_timeout(self):
        for verb, method in (('unrescue', self.api.unrescue_instance),
                             ('unshelve', self.api.unshelve_instance)):
            method.return_value = a_record(vm_state='active')
            self.assertEqual(0, self.run_client('--rpc-timeout', '200',
                                                verb, UUID))
            method.assert_called_once_with(mock.ANY, HOST, UUID, timeout=200)
            # Nothing was powered off by this request: no outcome line.
            self.assertTrue(self.stdout.getvalue().startswith('uuid '),
                            verb)
            self.stdout.seek(0)
            self.stdout.truncate()

    def test_shelved_record_shows_its_snapshot(self):
        self.api.get_instance.return_value = a_record(
            vm_state='shelved', snapshot_id='snap-77')
        self.assertEqual(0, self.run_client('show', UUID))
        self.assertRegex(self.stdout.getvalue(), r'\nsnapshot +snap-77\n')

    def test_console_log_prints_the_log_as_it_is(self):
        self.api.get_console_output.return_value = 'boot\nREADY'
        self.assertEqual(0, self.run_client('console-log', UUID,
                                            '--bytes', '100'))
        self.api.get_console_output.assert_called_once_with(
            mock.ANY, HOST, UUID, max_bytes=100)
        self.assertEqual('boot\nREADY\n', self.stdout.getvalue())

    def test_actions_table(self):
        self.api.get_instance_actions.return_value = ACTIONS
        self.assertEqual(0, self.run_client('actions', UUID))
        self.api.get_instance_actions.assert_called_once_with(
            mock.ANY, HOST, UUID)
        header, build, shelve, stop = self.stdout.getvalue().splitlines()
        self.assertEqual(['STARTED', 'ACTION', 'RESULT', 'POWER-OFF',
                          'REQUEST', 'MESSAGE'], header.split())
        self.assertEqual(['2026-11-23', '12:00:01Z', 'build', 'success', '-',
                          'req-1', '-'], build.split())
        self.assertEqual(
            ['2026-11-23', '12:05:00Z', 'shelve', 'error', 'forced',
             '60.25', 's', '(asked', 'clean)', 'req-2', 'snapshot',
             'failed:', 'disk', 'full'], shelve.split())
        self.assertEqual(['2026-11-23', '12:07:00Z', 'stop', 'running', '-',
                          'req-3', '-'], stop.split())

    def test_actions_json_and_empty(self):
        self.api.get_instance_actions.return_value = ACTIONS
        self.assertEqual(0, self.run_client('--json', 'actions', UUID))
        self.assertEqual(ACTIONS, json.loads(self.stdout.getvalue()))
        self.stdout.seek(0)
        self.stdout.truncate()
        self.api.get_instance_actions.return_value = []
        self.assertEqual(0, self.run_client('actions', UUID))
        self.assertEqual('no actions\n', self.stdout.getvalue())


class TestVersionPinnedBelowNewVerbs(ClientTestCase):
    """The real ComputeAPI pinned to 1.1: the 1.2 verbs are refused in the
    client, before anything is sent, as a usage error."""

    mock_api = False

    def test_each_new_verb_is_exit_2_and_sends_nothing(self):
        path = write_config(self, '[upgrade_levels]\ncompute = 1.1\n')
        get_client = self.useFixture(fixtures.MockPatchObject(
            oslo_messaging, 'get_rpc_client')).mock
        for verb in (['rescue', UUID], ['unrescue', UUID], ['shelve', UUID],
                     ['shelve-offload', UUID], ['unshelve', UUID],
                     ['actions', UUID]):
            self.stderr.seek(0)
            self.stderr.truncate()
            self.assertEqual(2, client.main(['--config-file', path,
                                             '--host', HOST, *verb]))
            [line] = self.stderr_lines()
            self.assertIn('version, 1.2 is incompatible', line)
            self.assertIn('version cap 1.1', line)
            self.assertIn('pinned too low', line)
        get_client.assert_not_called()
        self.assertEqual('', self.stdout.getvalue())


class TestOutcomeLine(ClientTestCase):
    def outcome(self):
        return self.stdout.getvalue().splitlines()[0]

    def test_each_power_off_verb_prints_its_outcome_then_the_record(self):
        cases = [
            (['stop', UUID], self.api.stop_instance, CLEAN_ACPI,
             'stopped web-1: clean in 1.42 s (acpi)'),
            (['delete', '--force', UUID], self.api.terminate_instance,
             FORCED, 'deleted web-1: forced in 0.05 s (as requested)'),
            (['rescue', UUID], self.api.rescue_instance,
             dict(CLEAN_ACPI, method='guest-agent', seconds=3),
             'rescued web-1: clean in 3.00 s (guest-agent)'),
            (['shelve', UUID], self.api.shelve_instance, TIMED_OUT,
             'shelved web-1: forced after 60.25 s (guest did not power off '
             'in 60 s)'),
            (['reboot', '--hard', UUID], self.api.reboot_instance, FORCED,
             'rebooted web-1: forced in 0.05 s (as requested)'),
            (['stop', UUID], self.api.stop_instance, ALREADY_OFF,
             'stopped web-1: already off'),
        ]
        for argv, method, power_off, expected in cases:
            self.stdout.seek(0)
            self.stdout.truncate()
            method.return_value = a_record(last_power_off=power_off)
            self.assertEqual(0, self.run_client(*argv))
            self.assertEqual(expected, self.outcome())
            # The usual record follows.
            self.assertIn('\nuuid ', self.stdout.getvalue())

    def test_json_prints_only_the_record(self):
        self.api.stop_instance.return_value = a_record(
            last_power_off=CLEAN_ACPI)
        self.assertEqual(0, self.run_client('--json', 'stop', UUID))
        self.assertEqual(a_record(last_power_off=CLEAN_ACPI),
                         json.loads(self.stdout.getvalue()))

    def test_offload_after_shelve_says_it_powered_nothing_off(self):
        # The record still carries the shelve's power-off; this request's
        # own action record has none.
        self.api.shelve_offload_instance.return_value = a_record(
            vm_state='shelved_offloaded', last_power_off=CLEAN_ACPI)

        def actions(ctxt, host, instance_uuid):
            sent = self.sent_context(self.api.shelve_offload_instance)
            return [dict(ACTIONS[1], power_off=CLEAN_ACPI),
                    dict(ACTIONS[1], request_id=sent['request_id'],
                         power_off=None)]
        self.api.get_instance_actions.side_effect = actions
        self.assertEqual(0, self.run_client('shelve-offload', UUID))
        self.assertEqual(
            'offloaded web-1: no power-off of its own, the guest was off',
            self.outcome())

    def test_offload_that_powered_off_reports_its_action_power_off(self):
        self.api.shelve_offload_instance.return_value = a_record(
            last_power_off=TIMED_OUT)

        def actions(ctxt, host, instance_uuid):
            sent = self.sent_context(self.api.shelve_offload_instance)
            return [dict(ACTIONS[1], request_id=sent['request_id'],
                         power_off=FORCED)]
        self.api.get_instance_actions.side_effect = actions
        self.assertEqual(0, self.run_client('shelve-offload', UUID))
        self.assertEqual('offloaded web-1: forced in 0.05 s (as requested)',
                         self.outcome())

    def test_offload_outcome_falls_back_to_the_record(self):
        # The offload succeeded: a failed look-up of its action must not
        # turn that into an error.
        self.api.shelve_offload_instance.return_value = a_record(
            last_power_off=CLEAN_ACPI)
        self.api.get_instance_actions.side_effect = (
            oslo_messaging.MessagingTimeout('slow'))
        self.assertEqual(0, self.run_client('shelve-offload', UUID))
        self.assertEqual('offloaded web-1: clean in 1.42 s (acpi)',
                         self.outcome())
        self.assertEqual('', self.stderr.getvalue())


class TestFormatting(base.TestCase):
    def test_power_off_outcome(self):
        cases = [
            (CLEAN_ACPI, None, 'clean in 1.42 s (acpi)'),
            (dict(CLEAN_ACPI, method=None), None, 'clean in 1.42 s'),
            (FORCED, 'acpi', 'forced in 0.05 s (as requested)'),
            (TIMED_OUT, 'acpi', 'forced after 60.25 s (guest ignored acpi)'),
            (TIMED_OUT, None,
             'forced after 60.25 s (guest did not power off in 60 s)'),
            # Cut short by a forced request (or a paused guest).
            (dict(TIMED_OUT, seconds=3.1), 'acpi',
             'forced after 3.10 s (clean power-off cut short before its '
             '60 s timeout)'),
            (ALREADY_OFF, None, 'already off'),
            (None, None, 'no power-off of its own, the guest was off'),
        ]
        for power_off, tried, expected in cases:
            self.assertEqual(
                expected, client_format.power_off_outcome(power_off, tried))

    def test_progress_for_one_guest(self):
        self.assertEqual(
            'waiting for web-1 to power off: 12.3 s of 60 s (acpi, '
            '2 requests)',
            client_format.progress([('web-1', WAITING)]))
        one = dict(WAITING, method='guest-agent', requests=1)
        self.assertEqual(
            'waiting for web-1 to power off: 12.3 s of 60 s (guest-agent, '
            '1 request)', client_format.progress([('web-1', one)]))

    def test_progress_before_the_first_request(self):
        # The agent reports the wait before it names a method.
        starting = dict(WAITING, method=None, requests=0, elapsed=0)
        self.assertEqual(
            'waiting for web-1 to power off: 0.0 s of 60 s (0 requests)',
            client_format.progress([('web-1', starting)]))

    def test_progress_for_several_guests_longest_waiting_first(self):
        short = dict(WAITING, elapsed=2.0, timeout=30, requests=1)
        self.assertEqual(
            'waiting for 2 guests to power off: web-1 12.3 s of 60 s '
            '(acpi, 2 requests); db-1 2.0 s of 30 s (acpi, 1 request)',
            client_format.progress([('db-1', short), ('web-1', WAITING)]))

    def test_no_progress_is_an_empty_line(self):
        self.assertEqual('', client_format.progress([]))

    def test_status_shows_a_waiting_power_off(self):
        status = dict(STATUS, in_flight=[
            dict(STATUS['in_flight'][0], power_off=WAITING),
            dict(STATUS['in_flight'][0], request_id='req-other')])
        lines = client_format.status(status).splitlines()
        self.assertTrue(lines[-2].endswith(
            'for 12.3 s, waiting for power-off: 12.3 s of 60 s (acpi, '
            '2 requests)'), lines[-2])
        self.assertTrue(lines[-1].endswith('req-other for 12.3 s'),
                        lines[-1])

    def test_status_shows_the_hypervisor_link(self):
        health = {'driver': 'libvirt', 'uri': 'qemu:///system',
                  'connected': False, 'reconnects': 2,
                  'event_loop': 'running', 'event_loop_restarts': 0,
                  'dispatcher': 'restarting', 'dispatcher_restarts': 3,
                  'last_error': 'RuntimeError: boom'}
        lines = client_format.status(dict(STATUS, hypervisor=health))
        self.assertIn(
            'hypervisor      libvirt qemu:///system: NOT CONNECTED, event '
            'loop running, dispatcher restarting, 2 reconnects, 3 thread '
            'restarts; last error: RuntimeError: boom', lines.splitlines())
        self.assertNotIn('hypervisor', client_format.status(STATUS))

    def test_action_times_are_shown_in_utc(self):
        for start, shown in (
                ('2026-11-23T12:00:01.9Z', '2026-11-23 12:00:01Z'),
                ('2026-11-23T14:00:01+02:00', '2026-11-23 12:00:01Z'),
                ('yesterday', 'yesterday')):
            table = client_format.actions([dict(ACTIONS[0],
                                                start_time=start)])
            self.assertTrue(table.splitlines()[1].startswith(shown), start)

    def test_an_interrupted_action_keeps_the_columns_aligned(self):
        message = ('interrupted by a stop of the agent; at restart libvirt '
                   'reported the guest running, so the instance is now '
                   'active')
        header, row = client_format.actions([dict(
            ACTIONS[2], result='interrupted',
            finish_time='2026-11-23T12:09:00Z', message=message)]).split(
                '\n')
        for column, value in (('RESULT', 'interrupted'), ('REQUEST', 'req-3'),
                              ('MESSAGE', message)):
            self.assertEqual(header.index(column), row.index(value), column)


class TTYStream(io.StringIO):
    def isatty(self):
        return True


class TestStatusLine(base.TestCase):
    def setUp(self):
        super().setUp()
        self.stream = io.StringIO()
        self.line = client_progress.StatusLine(self.stream)

    def test_show_rewrites_the_line_in_place(self):
        self.line.show('one')
        self.line.show('two')
        self.assertEqual('\rone\x1b[K\rtwo\x1b[K', self.stream.getvalue())

    def test_empty_text_erases_a_shown_line_only(self):
        self.line.show('')
        self.assertEqual('', self.stream.getvalue())
        self.line.show('one')
        self.line.show('')
        self.assertEqual('\rone\x1b[K' + client_progress.ERASE_LINE,
                         self.stream.getvalue())

    def test_long_text_is_cut_to_the_terminal_width(self):
        # A line that wrapped could not be rewritten by a carriage return.
        self.line.show('x' * 200)
        shown = self.stream.getvalue()
        self.assertEqual(client_progress.DEFAULT_COLUMNS - 1,
                         shown.count('x'))

    def test_print_above_erases_then_prints_elsewhere(self):
        other = io.StringIO()
        self.line.show('waiting')
        self.line.print_above('web-1 done', other)
        self.assertEqual('web-1 done\n', other.getvalue())
        self.assertTrue(self.stream.getvalue().endswith(
            client_progress.ERASE_LINE))

    def test_close_erases_and_silences_later_shows(self):
        self.line.show('waiting')
        self.line.close()
        self.line.show('late poll')
        self.assertEqual('\rwaiting\x1b[K' + client_progress.ERASE_LINE,
                         self.stream.getvalue())


class TestPowerOffProgress(base.TestCase):
    def setUp(self):
        super().setUp()
        self.api = mock.create_autospec(rpcapi.ComputeAPI, instance=True)
        self.api.get_instance.return_value = RECORD
        self.stream = io.StringIO()
        self.progress = client_progress.PowerOffProgress(
            self.api, HOST, client_progress.StatusLine(self.stream))

    def in_flight(self, *entries):
        self.api.get_service_status.return_value = dict(
            STATUS, in_flight=[dict(STATUS['in_flight'][0], **entry)
                               for entry in entries])

    def test_poll_shows_only_watched_requests_that_wait(self):
        self.progress.watch('req-mine', 'web-1')
        self.progress.watch('req-not-waiting', 'db-1')
        self.in_flight({'request_id': 'req-mine', 'power_off': WAITING},
                       {'request_id': 'req-not-waiting'},
                       {'request_id': 'req-someone-else',
                        'power_off': WAITING})
        self.progress.poll()
        self.assertEqual(
            '\rwaiting for web-1 to power off: 12.3 s of 60 s (acpi, '
            '2 requests)\x1b[K', self.stream.getvalue())
        # compute-alt, which still answers while the agent drains.
        self.api.get_service_status.assert_called_once_with(
            mock.ANY, HOST, alt=True,
            timeout=client_progress.POLL_RPC_TIMEOUT)

    def test_name_is_looked_up_once_when_not_given(self):
        self.progress.watch('req-mine')
        self.in_flight({'request_id': 'req-mine', 'power_off': WAITING})
        self.progress.poll()
        self.progress.poll()
        self.api.get_instance.assert_called_once_with(
            mock.ANY, HOST, UUID, timeout=client_progress.POLL_RPC_TIMEOUT)
        self.assertIn('waiting for web-1 ', self.stream.getvalue())

    def test_name_falls_back_to_the_uuid(self):
        self.api.get_instance.side_effect = oslo_messaging.MessagingTimeout()
        self.progress.watch('req-mine')
        self.in_flight({'request_id': 'req-mine', 'power_off': WAITING})
        self.progress.poll()
        self.assertIn(f'waiting for {UUID} to power off',
                      self.stream.getvalue())

    def test_line_clears_when_the_wait_is_over_or_forgotten(self):
        self.progress.watch('req-mine', 'web-1')
        self.in_flight({'request_id': 'req-mine', 'power_off': WAITING})
        self.progress.poll()
        self.progress.forget('req-mine')
        self.progress.poll()
        self.assertTrue(self.stream.getvalue().endswith(
            '\x1b[K' + client_progress.ERASE_LINE))

    def test_failed_poll_changes_nothing(self):
        # A status call that fails must not disturb the call waited on.
        self.progress.watch('req-mine', 'web-1')
        self.api.get_service_status.side_effect = (
            oslo_messaging.MessagingTimeout('busy'))
        self.progress.poll()
        self.assertEqual('', self.stream.getvalue())

    def test_remembers_the_method_tried(self):
        self.progress.watch('req-mine', 'web-1')
        self.assertIsNone(self.progress.tried_method('req-mine'))
        self.in_flight({'request_id': 'req-mine',
                        'power_off': dict(WAITING, method='guest-agent')})
        self.progress.poll()
        self.in_flight({'request_id': 'req-mine',
                        'power_off': dict(WAITING, method=None)})
        self.progress.poll()
        self.assertEqual('guest-agent',
                         self.progress.tried_method('req-mine'))

    def test_poller_thread_polls_until_stopped_then_clears(self):
        polled = threading.Event()

        def status(ctxt, host, alt, timeout):
            polled.set()
            return dict(STATUS, in_flight=[
                dict(STATUS['in_flight'][0], request_id='req-mine',
                     power_off=WAITING)])
        self.api.get_service_status.side_effect = status
        self.progress = client_progress.PowerOffProgress(
            self.api, HOST, client_progress.StatusLine(self.stream),
            # Not 0: a green thread waiting 0 s never yields to the test.
            interval=0.001)
        self.progress.watch('req-mine', 'web-1')
        with self.progress:
            # Generous bound: only keeps a broken poller from hanging.
            self.assertTrue(polled.wait(10))
        self.assertNotIn('power-off-progress',
                         [t.name for t in threading.enumerate()])
        shown = self.stream.getvalue()
        self.assertIn('waiting for web-1', shown)
        self.assertTrue(shown.endswith(client_progress.ERASE_LINE))
        # A poll that was under way when stop() came writes nothing: the
        # line is closed, the result printed next is not overwritten.
        self.progress.poll()
        self.assertEqual(shown, self.stream.getvalue())


class TestProgressInTheCLI(ClientTestCase):
    def use_tty(self):
        self.stderr = TTYStream()
        self.useFixture(fixtures.MonkeyPatch('sys.stderr', self.stderr))

    def test_when_progress_is_shown(self):
        progress_class = self.useFixture(fixtures.MockPatchObject(
            client_progress, 'PowerOffProgress')).mock
        progress = progress_class.return_value.__enter__.return_value
        progress.tried_method.return_value = None
        for method in (self.api.stop_instance, self.api.reboot_instance,
                       self.api.shelve_instance, self.api.get_instance):
            method.return_value = RECORD
        cases = [
            (False, ['stop', UUID], False),
            (False, ['--progress', 'stop', UUID], True),
            (True, ['stop', UUID], True),
            (True, ['shelve', UUID], True),
            (True, ['reboot', UUID], True),
            # A hard reboot does not wait for the guest.
            (True, ['reboot', '--hard', UUID], False),
            (True, ['--json', 'stop', UUID], False),
            (False, ['--json', '--progress', 'stop', UUID], False),
            (True, ['show', UUID], False),
        ]
        for tty, argv, shown in cases:
            if tty:
                self.use_tty()
            else:
                self.useFixture(fixtures.MonkeyPatch('sys.stderr',
                                                     io.StringIO()))
            progress_class.reset_mock()
            self.assertEqual(0, self.run_client(*argv))
            self.assertEqual(shown, progress_class.called, (tty, argv))

    def test_host_stop_all_prints_above_the_progress_line(self):
        # Rows printed straight to stdout would land in the middle of the
        # progress line on the terminal.
        progress_class = self.useFixture(fixtures.MockPatchObject(
            client_progress, 'PowerOffProgress')).mock
        progress = progress_class.return_value.__enter__.return_value
        progress.tried_method.return_value = None
        self.api.list_instances.return_value = [running(UUID, 'web-1')]
        self.api.stop_instance.return_value = running(
            UUID, 'web-1', last_power_off=CLEAN_ACPI)
        self.assertEqual(0, self.run_client('--progress', 'host-stop-all'))
        header, row, summary = [
            c.args[0] for c in progress.print_above.call_args_list]
        self.assertTrue(header.startswith('NAME '), header)
        self.assertTrue(row.startswith('web-1 '), row)
        self.assertTrue(summary.startswith('1 guest in '), summary)
        self.assertEqual('', self.stdout.getvalue())
        progress.watch.assert_called_once_with(mock.ANY, 'web-1')

    def test_stop_shows_its_own_wait_then_the_outcome(self):
        # Not 0: a green thread waiting 0 s never yields (eventlet mode).
        self.useFixture(fixtures.MonkeyPatch(
            'compute_agent.cmd.client_progress.POLL_INTERVAL', 0.001))
        self.use_tty()
        sent = {}
        polled = threading.Event()

        def stop(ctxt, host, instance_uuid, **kwargs):
            sent['request_id'] = ctxt['request_id']
            # The call is answered only once a poll has seen it waiting;
            # the bound only keeps a broken poller from hanging the test.
            polled.wait(10)
            return a_record(last_power_off=TIMED_OUT)

        def status(ctxt, host, alt, timeout):
            entries = [dict(STATUS['in_flight'][0], request_id=request_id,
                            power_off=WAITING)
                       for request_id in sent.values()]
            if entries:
                polled.set()
            return dict(STATUS, in_flight=entries)
        self.api.stop_instance.side_effect = stop
        self.api.get_service_status.side_effect = status
        self.api.get_instance.return_value = RECORD

        self.assertEqual(0, self.run_client('stop', UUID))
        self.assertTrue(polled.is_set())
        err = self.stderr.getvalue()
        self.assertIn('\rwaiting for web-1 to power off: 12.3 s of 60 s '
                      '(acpi, 2 requests)\x1b[K', err)
        self.assertTrue(err.endswith(client_progress.ERASE_LINE), err)
        # What the poll saw names the method the guest ignored.
        self.assertEqual('stopped web-1: forced after 60.25 s (guest '
                         'ignored acpi)',
                         self.stdout.getvalue().splitlines()[0])


def running(uuid, name, **changes):
    return {**RECORD, 'uuid': uuid, 'name': name, 'vm_state': 'active',
            'power_state': 'running', 'last_power_off': None, **changes}


class ConcurrencyProbe:
    """A stop_instance that records how many calls are in at once.

    Each call stays in until `limit` calls are in together or every guest
    has been asked: a pool of `limit` workers always gets there, so
    `most` equals `limit` unless the calls do not overlap as they should.
    Whether a wider pool would ever exceed it depends on thread timing,
    so the tests also read the pool's width.
    """

    def __init__(self, total, limit):
        self.total, self.limit = total, limit
        self.active = self.started = self.most = 0
        self._changed = threading.Condition()

    def __call__(self, ctxt, host, instance_uuid, **kwargs):
        with self._changed:
            self.active += 1
            self.started += 1
            self.most = max(self.most, self.active)
            self._changed.notify_all()
            # The bound only keeps a too-small pool from hanging the run.
            self._changed.wait_for(
                lambda: (self.active >= self.limit
                         or self.started == self.total), timeout=10)
            self.active -= 1
        return running(instance_uuid, 'g', vm_state='stopped',
                       power_state='shutdown', last_power_off=CLEAN_ACPI)


class TestHostStopAll(ClientTestCase):
    GUESTS = [running(UUID, 'web-1'), running(UUID_2, 'db-1'),
              running(UUID_3, 'cache-1'), running(UUID_4, 'api-1')]

    def stop_by_uuid(self, outcomes):
        def stop(ctxt, host, instance_uuid, **kwargs):
            outcome = outcomes[instance_uuid]
            if isinstance(outcome, Exception):
                raise outcome
            return dict(running(instance_uuid, 'x'), vm_state='stopped',
                        last_power_off=outcome)
        self.api.stop_instance.side_effect = stop

    def test_stops_only_active_running_guests_with_the_options(self):
        self.api.list_instances.return_value = [
            running(UUID, 'web-1'),
            running(UUID_2, 'old-1', vm_state='stopped',
                    power_state='shutdown'),
            running(UUID_3, 'paused-1', power_state='paused'),
            running(UUID_4, 'rescue-1', vm_state='rescued')]
        self.stop_by_uuid({UUID: FORCED})
        self.assertEqual(0, self.run_client(
            '--rpc-timeout', '99', 'host-stop-all', '--force', '--timeout',
            '20'))
        self.api.stop_instance.assert_called_once_with(
            mock.ANY, HOST, UUID, clean_shutdown=False, shutdown_timeout=20,
            timeout=99)

    def test_each_guest_has_its_own_request_and_timeout_by_default(self):
        self.api.list_instances.return_value = self.GUESTS[:2]
        self.stop_by_uuid({UUID: CLEAN_ACPI, UUID_2: CLEAN_ACPI})
        self.assertEqual(0, self.run_client('host-stop-all'))
        calls = self.api.stop_instance.call_args_list
        self.assertEqual({UUID, UUID_2}, {c.args[2] for c in calls})
        # No --timeout: each guest's image or agent config decides.
        self.assertEqual([(True, None)] * 2,
                         [(c.kwargs['clean_shutdown'],
                           c.kwargs['shutdown_timeout']) for c in calls])
        request_ids = {c.args[0]['request_id'] for c in calls}
        self.assertEqual(2, len(request_ids))

    def test_reports_every_guest_and_fails_when_one_did(self):
        self.api.list_instances.return_value = self.GUESTS
        self.stop_by_uuid({
            UUID: CLEAN_ACPI, UUID_2: TIMED_OUT, UUID_3: ALREADY_OFF,
            UUID_4: oslo_messaging.RemoteError(
                'InstanceInvalidState', 'api-1 is busy with rebooting')})
        self.assertEqual(1, self.run_client('host-stop-all'))
        header, *rows, summary = self.stdout.getvalue().splitlines()
        self.assertEqual(['NAME', 'UUID', 'OUTCOME', 'SECONDS', 'DETAIL'],
                         header.split())
        # Rows come as guests finish: compare them in any order.
        self.assertEqual(
            sorted([['web-1', UUID, 'clean', '1.42', 's', 'acpi'],
                    ['db-1', UUID_2, 'forced', '60.25', 's', 'guest', 'did',
                     'not', 'power', 'off', 'in', '60', 's'],
                    ['cache-1', UUID_3, 'already-off', '0.00', 's', '-'],
                    ['api-1', UUID_4, 'error', '<seconds>', 's',
                     'InstanceInvalidState:', 'api-1', 'is', 'busy', 'with',
                     'rebooting']]),
            sorted(row.split()[:3] + ['<seconds>'] + row.split()[4:]
                   if row.split()[2] == 'error' else row.split()
                   for row in rows))
        self.assertRegex(summary, r'^4 guests in [0-9.]+ s: 1 clean, '
                                  r'1 forced, 1 already-off, 1 error$')

    def test_all_stopped_is_exit_0(self):
        self.api.list_instances.return_value = self.GUESTS[:2]
        self.stop_by_uuid({UUID: CLEAN_ACPI, UUID_2: FORCED})
        self.assertEqual(0, self.run_client('host-stop-all'))
        self.assertRegex(self.stdout.getvalue().splitlines()[-1],
                         r'^2 guests in [0-9.]+ s: 1 clean, 1 forced, '
                         r'0 already-off, 0 error$')

    def test_unanswered_guest_is_an_error_row(self):
        self.api.list_instances.return_value = self.GUESTS[:1]
        self.stop_by_uuid({UUID: oslo_messaging.MessagingTimeout('late')})
        self.assertEqual(1, self.run_client('host-stop-all'))
        [row] = self.stdout.getvalue().splitlines()[1:-1]
        self.assertIn('error', row)
        self.assertIn('no answer from the agent within the RPC timeout', row)

    def test_json_lists_guests_in_host_order(self):
        self.api.list_instances.return_value = self.GUESTS[:2]
        self.stop_by_uuid({
            UUID: CLEAN_ACPI,
            UUID_2: oslo_messaging.RemoteError('InstanceNotFound', 'gone')})
        self.assertEqual(1, self.run_client('--json', 'host-stop-all'))
        web, db = json.loads(self.stdout.getvalue())
        self.assertEqual((UUID, 'web-1', 'clean', 1.42, 'acpi', CLEAN_ACPI),
                         (web['uuid'], web['name'], web['outcome'],
                          web['seconds'], web['detail'],
                          web['record']['last_power_off']))
        self.assertEqual((UUID_2, 'error', 'InstanceNotFound: gone', None),
                         (db['uuid'], db['outcome'], db['detail'],
                          db['record']))
        self.assertRegex(web['request_id'], REQUEST_ID)

    def test_no_running_guests(self):
        self.api.list_instances.return_value = [
            running(UUID, 'old-1', vm_state='stopped',
                    power_state='shutdown')]
        self.assertEqual(0, self.run_client('host-stop-all'))
        self.assertEqual(f'no running instances on host {HOST}\n',
                         self.stdout.getvalue())
        self.api.stop_instance.assert_not_called()

    def test_unreachable_host_is_exit_3(self):
        self.api.list_instances.side_effect = (
            oslo_messaging.MessagingTimeout('no reply'))
        self.assertEqual(3, self.run_client('host-stop-all'))
        self.assertIn(f'no answer from host {HOST}', self.stderr.getvalue())

    def test_parallel_below_1_is_a_usage_error(self):
        for value in ('0', '-2', 'many'):
            error = self.assertRaises(SystemExit, self.run_client,
                                      'host-stop-all', '--parallel', value)
            self.assertEqual(2, error.code)
            self.assertIn('at least 1', self.stderr.getvalue())
        self.api_class.assert_not_called()

    def pool_widths(self):
        """max_workers of every thread pool made, while the test runs."""
        widths = []
        real = concurrent.futures.ThreadPoolExecutor

        def recording(*args, max_workers, **kwargs):
            widths.append(max_workers)
            return real(*args, max_workers=max_workers, **kwargs)
        self.useFixture(fixtures.MockPatchObject(
            concurrent.futures, 'ThreadPoolExecutor', recording))
        return widths

    def run_probe(self, total, limit, *options):
        self.api.list_instances.return_value = [
            running(f'uuid-{n}', f'g-{n}') for n in range(total)]
        probe = ConcurrencyProbe(total, limit)
        self.api.stop_instance.side_effect = probe
        widths = self.pool_widths()
        self.assertEqual(0, self.run_client('host-stop-all', *options))
        return probe, widths

    def test_at_most_parallel_guests_at_once(self):
        probe, widths = self.run_probe(5, 2, '--parallel', '2')
        self.assertEqual((5, 2, [2]), (probe.started, probe.most, widths))

    def test_default_is_at_most_eight_at_once(self):
        probe, widths = self.run_probe(10, 8)
        self.assertEqual((10, 8, [8]), (probe.started, probe.most, widths))

    def test_default_is_no_wider_than_the_guests(self):
        # No idle threads for a host with few guests.
        probe, widths = self.run_probe(3, 3)
        self.assertEqual((3, 3, [3]), (probe.started, probe.most, widths))

    def test_ctrl_c_asks_no_further_guest(self):
        # One worker: web-1 finishes, db-1 may already be under way when
        # the interrupt arrives, cache-1 must never be asked.
        asked = []
        release = threading.Event()
        self.addCleanup(release.set)

        def stop(ctxt, host, instance_uuid, **kwargs):
            asked.append(instance_uuid)
            if instance_uuid == UUID_2:
                release.wait(10)
            return dict(running(instance_uuid, 'x'),
                        last_power_off=CLEAN_ACPI)
        self.api.stop_instance.side_effect = stop

        def interrupt(result):
            raise KeyboardInterrupt
        self.assertRaises(KeyboardInterrupt, client_host.stop_guests,
                          self.api, HOST, self.GUESTS[:3], parallel=1,
                          report=interrupt)
        # Let the worker run out: had cache-1 been left queued, it would
        # be asked now.
        release.set()
        for thread in threading.enumerate():
            if thread.name.startswith('host-stop-all'):
                thread.join(10)
        self.assertNotIn(UUID_3, asked)
        self.assertEqual(UUID, asked[0])

    def test_progress_follows_every_guest_in_flight(self):
        progress = mock.Mock(spec=client_progress.PowerOffProgress)
        progress.tried_method.return_value = 'acpi'
        self.stop_by_uuid({UUID: TIMED_OUT})
        [result] = client_host.stop_guests(
            self.api, HOST, self.GUESTS[:1], progress=progress)
        request_id = self.sent_context(self.api.stop_instance)['request_id']
        progress.watch.assert_called_once_with(request_id, 'web-1')
        progress.forget.assert_called_once_with(request_id)
        self.assertEqual(('forced', 'guest ignored acpi'),
                         (result['outcome'], result['detail']))
