"""SIGKILL of the agent in the middle of an operation on a real QEMU guest,
then a restart: the instance is settled from what libvirt says, and the
operation's action record is closed as interrupted, saying what the
recovery did.

A private libvirtd, a private RabbitMQ (shared by the process) and an
agent subprocess, as in tests/realguest. Skipped where real guests cannot
run.
"""

import os
import signal
import uuid

from tests.faults import base
from tests.fixtures import agent as agent_fixture
from tests.fixtures.polling import wait_for
from tests.fixtures import rabbitmq
from tests.fixtures import rpc
from tests.realguest import libvirtd

# Far longer than the tests: the clean power-off of a guest that ignores
# ACPI, and a build's wait for an event nobody sends, are still waiting
# when the agent is killed.
LONG_WAIT = 600


class SigkillRecoveryTest(base.TestCase):
    def setUp(self):
        super().setUp()
        available, reason = libvirtd.realguest_available()
        if not available:
            self.skipTest(reason)
        self.images = libvirtd.guest_images()
        self.broker = rabbitmq.shared_broker()
        self.hypervisor = self.useFixture(libvirtd.PrivateLibvirtd('host-a'))
        self.agent = self.useFixture(agent_fixture.AgentProcess(
            self.broker.transport_url, connection_uri=self.hypervisor.uri,
            virt_type='qemu', shutdown_timeout=LONG_WAIT,
            graceful_shutdown_timeout=30, shutdown_retry_interval=30,
            extra_config={'compute': {
                'instance_event_timeout': LONG_WAIT}}))
        self.agent.wait_ready()
        self.rpc = self.useFixture(rpc.AgentRPCClient(
            self.broker.transport_url, self.agent.host, timeout=180))

    def instance(self, **extra):
        return dict({
            'uuid': str(uuid.uuid4()), 'name': 'stubborn', 'vcpus': 1,
            'memory_mb': 128,
            'image': {'id': 'debian-busybox', 'properties': {},
                      'kernel': self.images['kernel'],
                      'ramdisk': self.images['initramfs_noacpi'],
                      'cmdline': libvirtd.GUEST_CMDLINE}}, **extra)

    def wait_until_guest_ready(self, instance_uuid):
        libvirtd.wait_until_guest_ready(os.path.join(
            self.agent.state_path, 'instances', instance_uuid,
            'console.log'))

    def wait_for_open_action(self, instance_uuid, action):
        def open_action():
            # A cast build creates its record, then opens its action.
            if instance_uuid not in {record['uuid'] for record in
                                     self.rpc.call('list_instances')}:
                return False
            actions = self.rpc.call('get_instance_actions',
                                    instance_uuid=instance_uuid)
            return bool(actions) and actions[-1]['action'] == action and \
                actions[-1]['result'] == 'running'
        wait_for(open_action, 60, f'the {action} action open')

    def kill_and_restart(self):
        self.agent.signal(signal.SIGKILL)
        self.assertEqual(-signal.SIGKILL, self.agent.wait_exit(30))
        self.agent.restart()
        self.agent.wait_ready()

    def last_action(self, instance_uuid):
        return self.rpc.call('get_instance_actions',
                             instance_uuid=instance_uuid)[-1]

    def report(self, record, action):
        self.add_finding(
            f'after restart: instance {record["vm_state"]}/'
            f'{record["power_state"]}, task {record["task_state"]}; '
            f'{action["action"]} action {action["result"]} at '
            f'{action["finish_time"]}: {action["message"]}')

    def test_sigkill_in_a_clean_power_off(self):
        """SIGKILL during the clean power-off of a guest ignoring ACPI,
        then restart"""
        instance = self.instance()
        self.rpc.call('build_and_run_instance', instance=instance)
        self.wait_until_guest_ready(instance['uuid'])
        self.rpc.cast('stop_instance', instance_uuid=instance['uuid'])
        self.wait_for_open_action(instance['uuid'], 'stop')
        wait_for(lambda: self.rpc.call('get_service_status')['in_flight'],
                 30, 'the stop in flight')

        self.kill_and_restart()
        record = self.rpc.call('get_instance',
                               instance_uuid=instance['uuid'])
        action = self.last_action(instance['uuid'])
        self.report(record, action)
        # Never destroyed: the guest runs on, and the record says so.
        self.assertEqual(('active', 'running', None),
                         (record['vm_state'], record['power_state'],
                          record['task_state']))
        self.assertEqual(('stop', 'interrupted'),
                         (action['action'], action['result']))
        self.assertIsNotNone(action['finish_time'])
        self.assertEqual(
            'interrupted by a stop of the agent; at restart libvirt '
            'reported the guest running, so the instance is now active',
            action['message'])
        # The settled instance takes new work.
        stopped = self.rpc.call('stop_instance',
                                instance_uuid=instance['uuid'],
                                clean_shutdown=False)
        self.assertEqual('stopped', stopped['vm_state'])

    def test_sigkill_in_a_build(self):
        """SIGKILL during a build waiting for an external event, then
        restart"""
        instance = self.instance(wait_for_events=[
            {'name': 'network-vif-plugged', 'tag': 'never-sent'}])
        self.rpc.cast('build_and_run_instance', instance=instance)
        self.wait_for_open_action(instance['uuid'], 'build')
        # The guest is defined and booted: the build waits for the event.
        self.wait_until_guest_ready(instance['uuid'])

        self.kill_and_restart()
        record = self.rpc.call('get_instance',
                               instance_uuid=instance['uuid'])
        action = self.last_action(instance['uuid'])
        self.report(record, action)
        self.assertEqual(('error', 'running', None),
                         (record['vm_state'], record['power_state'],
                          record['task_state']))
        self.assertEqual(('build', 'interrupted'),
                         (action['action'], action['result']))
        self.assertEqual(
            'interrupted by a stop of the agent; at restart libvirt '
            'reported the guest running; spawning was half done, so the '
            'instance is now error', action['message'])
        # An operator can delete what the build left.
        deleted = self.rpc.call('terminate_instance',
                                instance_uuid=instance['uuid'],
                                clean_shutdown=False)
        self.assertEqual('deleted', deleted['vm_state'])
