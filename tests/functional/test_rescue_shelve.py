"""Rescue, shelve and the action history through a real broker and agent
on libvirt's test driver (whose guests have no disks and power off at
once), using the independent wire-contract client."""

import uuid

import oslo_messaging

from tests.functional import test_instance_lifecycle

AgentTestCase = test_instance_lifecycle.AgentTestCase


class RescueShelveTest(AgentTestCase):
    def build(self):
        instance = {'uuid': str(uuid.uuid4()), 'name': 'shelf', 'vcpus': 1,
                    'memory_mb': 64, 'image': {'id': 'img',
                                               'properties': {}}}
        return self.rpc.call('build_and_run_instance',
                             instance=instance)['uuid']

    def test_rescue_unrescue(self):
        guest = self.build()
        rescued = self.rpc.call('rescue_instance', instance_uuid=guest)
        self.assertEqual(('rescued', 'running', 'clean'),
                         (rescued['vm_state'], rescued['power_state'],
                          rescued['last_power_off']['result']))
        back = self.rpc.call('unrescue_instance', instance_uuid=guest)
        self.assertEqual(('active', 'running'),
                         (back['vm_state'], back['power_state']))

    def test_shelve_offload_unshelve_and_the_action_history(self):
        guest = self.build()
        shelved = self.rpc.call('shelve_instance', instance_uuid=guest,
                                clean_shutdown=False)
        self.assertEqual(('shelved', 'forced'),
                         (shelved['vm_state'],
                          shelved['last_power_off']['result']))
        self.assertIsNotNone(shelved['snapshot_id'])
        offloaded = self.rpc.call('shelve_offload_instance',
                                  instance_uuid=guest)
        self.assertEqual(('shelved_offloaded', 'nostate'),
                         (offloaded['vm_state'], offloaded['power_state']))
        unshelved = self.rpc.call('unshelve_instance', instance_uuid=guest)
        self.assertEqual(('active', 'running'),
                         (unshelved['vm_state'], unshelved['power_state']))

        actions = self.rpc.call('get_instance_actions', instance_uuid=guest)
        self.assertEqual(
            ['build', 'shelve', 'shelve-offload', 'unshelve'],
            [a['action'] for a in actions])
        self.assertTrue(all(a['result'] == 'success' for a in actions))
        self.assertEqual('forced', actions[1]['power_off']['result'])

    def test_bad_requests(self):
        guest = self.build()
        for method, kwargs, exc_type in (
                ('rescue_instance', {'rescue_image': 'no-such-image'},
                 'InvalidInput'),
                ('shelve_instance', {'shutdown_timeout': -3},
                 'InvalidInput'),
                ('unshelve_instance', {}, 'InstanceInvalidState'),
                ('unrescue_instance', {}, 'InstanceInvalidState')):
            error = self.assertRaises(oslo_messaging.RemoteError,
                                      self.rpc.call, method,
                                      instance_uuid=guest, **kwargs)
            self.assertEqual(exc_type, error.exc_type, method)
        self.rpc.call('terminate_instance', instance_uuid=guest)
        error = self.assertRaises(oslo_messaging.RemoteError, self.rpc.call,
                                  'shelve_instance', instance_uuid=guest)
        self.assertEqual('InstanceInvalidState', error.exc_type)
        self.assertEqual('deleted', self.rpc.call(
            'get_instance', instance_uuid=guest)['vm_state'])


class CliTest(AgentTestCase):
    def test_rescue_shelve_actions_and_host_stop_all_verbs(self):
        guest = self.cli('--json', 'boot', 'cli-1')['uuid']
        other = self.cli('--json', 'boot', 'cli-2')['uuid']
        self.assertEqual('rescued',
                         self.cli('--json', 'rescue', guest)['vm_state'])
        self.assertEqual('active',
                         self.cli('--json', 'unrescue', guest)['vm_state'])
        self.assertEqual('shelved', self.cli(
            '--json', 'shelve', '--timeout', '5', guest)['vm_state'])
        self.assertEqual('shelved_offloaded', self.cli(
            '--json', 'shelve-offload', guest)['vm_state'])
        self.assertEqual('active',
                         self.cli('--json', 'unshelve', guest)['vm_state'])

        actions = self.cli('--json', 'actions', guest)
        self.assertEqual(['build', 'rescue', 'unrescue', 'shelve',
                          'shelve-offload', 'unshelve'],
                         [a['action'] for a in actions])
        human = self.cli('actions', guest)
        self.assertIn('shelve-offload', human)

        report = self.cli('host-stop-all', '--parallel', '2')
        self.assertIn('cli-1', report)
        self.assertIn('cli-2', report)
        for uuid_ in (guest, other):
            self.assertEqual('stopped', self.rpc.call(
                'get_instance', instance_uuid=uuid_)['vm_state'])

        # The test driver's guests have no console log.
        self.assertEqual('', self.cli('console-log', guest))

        stderr = self.cli('shelve', '--timeout', '-2', guest, expect=1)
        self.assertIn('InvalidInput', stderr)
