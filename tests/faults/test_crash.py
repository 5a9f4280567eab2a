"""SIGKILL of the agent in the middle of an operation on a real QEMU guest,
settled at the next start.

Each test runs a private libvirtd, an agent process on it and a private
RabbitMQ. The agent is killed with no chance to clean up while it holds
an instance in a task state; after the restart the instance must have no
task state left, its record must agree with what libvirt says, and it
must start and stop again, and the interrupted operation's action
record must be closed as interrupted, saying what the recovery did.
"""

import json
import signal
import uuid

import libvirt
from testtools import content

from tests.faults import base
from tests.fixtures import agent as agent_fixture
from tests.fixtures.polling import wait_for
from tests.fixtures import rabbitmq
from tests.fixtures import rpc
from tests.realguest import base as realguest_base
from tests.realguest import libvirtd

_LIBVIRT_POWER = {libvirt.VIR_DOMAIN_RUNNING: 'running',
                  libvirt.VIR_DOMAIN_BLOCKED: 'running',
                  libvirt.VIR_DOMAIN_PAUSED: 'paused',
                  libvirt.VIR_DOMAIN_SHUTOFF: 'shutdown'}
# An event the test never sends: the build waits for it, spawned.
NEVER_SENT = {'name': 'network-vif-plugged', 'tag': 'never-sent'}


class CrashTest(base.TestCase, realguest_base.TestCase):
    def setUp(self):
        super().setUp()
        broker = rabbitmq.shared_broker()
        self.hypervisor = self.useFixture(libvirtd.PrivateLibvirtd('crash'))
        self.agent = self.useFixture(agent_fixture.AgentProcess(
            broker.transport_url, connection_uri=self.hypervisor.uri,
            virt_type='qemu', shutdown_timeout=60,
            graceful_shutdown_timeout=120, shutdown_retry_interval=30))
        self.agent.wait_ready()
        self.rpc = self.useFixture(rpc.AgentRPCClient(
            broker.transport_url, self.agent.host, timeout=180))
        self.libvirt = libvirt.open(self.hypervisor.uri)
        self.addCleanup(self.libvirt.close)

    def _instance(self, **extra):
        return dict({
            'uuid': str(uuid.uuid4()), 'name': 'crash', 'vcpus': 1,
            'memory_mb': 128,
            'image': {'id': 'debian-busybox', 'properties': {},
                      'kernel': self.images['kernel'],
                      # Ignores the ACPI button: a clean power-off waits.
                      'ramdisk': self.images['initramfs_noacpi'],
                      'cmdline': libvirtd.GUEST_CMDLINE}}, **extra)

    def _libvirt_power_state(self, instance_uuid):
        try:
            domain = self.libvirt.lookupByUUIDString(instance_uuid)
        except libvirt.libvirtError:
            return 'nostate'
        return _LIBVIRT_POWER.get(domain.state()[0], 'nostate')

    def _record(self, instance_uuid):
        return self.rpc.call('get_instance', instance_uuid=instance_uuid)

    def _kill_and_restart(self):
        self.agent.signal(signal.SIGKILL)
        self.assertEqual(-signal.SIGKILL, self.agent.wait_exit(30))
        self.agent.restart()
        self.agent.wait_ready()

    def _check_settled(self, instance_uuid, action):
        """No task state left, the record agrees with libvirt; the
        interrupted action's record is reported as a finding."""
        record = self._record(instance_uuid)
        self.addDetail('record-after-restart', content.json_content(record))
        self.assertIsNone(record['task_state'])
        self.assertEqual(self._libvirt_power_state(instance_uuid),
                         record['power_state'])
        actions = self.rpc.call('get_instance_actions',
                                instance_uuid=instance_uuid)
        interrupted = [entry for entry in actions
                       if entry['action'] == action]
        # The crash left the action open; the restart closed it and said
        # what it did.
        self.assertEqual('interrupted', interrupted[-1]['result'])
        self.assertIsNotNone(interrupted[-1]['finish_time'])
        self.assertIn('interrupted by a stop of the agent; at restart '
                      'libvirt reported the guest ' + record['power_state'],
                      interrupted[-1]['message'])
        self.add_finding(
            f'after the restart: vm_state {record["vm_state"]}, '
            f'power_state {record["power_state"]} (libvirt agrees); the '
            f'{action} action record: ' + json.dumps(
                [{key: entry.get(key) for key in
                  ('result', 'finish_time', 'message')}
                 for entry in interrupted]))
        return record

    def _check_usable(self, instance_uuid, record):
        """Brought to active (a hard reboot from error), stopped and
        started again, libvirt agreeing at each step."""
        if record['vm_state'] == 'error':
            record = self.rpc.call('reboot_instance',
                                   instance_uuid=instance_uuid,
                                   reboot_type='HARD')
        self.assertEqual(('active', 'running'),
                         (record['vm_state'], record['power_state']))
        stopped = self.rpc.call('stop_instance', instance_uuid=instance_uuid,
                                clean_shutdown=False)
        self.assertEqual(('stopped', 'shutdown', 'shutdown'),
                         (stopped['vm_state'], stopped['power_state'],
                          self._libvirt_power_state(instance_uuid)))
        started = self.rpc.call('start_instance',
                                instance_uuid=instance_uuid)
        self.assertEqual(('active', 'running', 'running'),
                         (started['vm_state'], started['power_state'],
                          self._libvirt_power_state(instance_uuid)))

    def test_sigkill_during_clean_power_off(self):
        """SIGKILLed the agent while a clean power-off waited for a guest
        that ignores ACPI, restarted it: the stop is settled (no task
        state, record agrees with libvirt) and the instance stops and
        starts again."""
        instance = self._instance()
        self.rpc.call('build_and_run_instance', instance=instance)
        self.rpc.cast('stop_instance', instance_uuid=instance['uuid'],
                      shutdown_timeout=60)
        wait_for(lambda: self._record(instance['uuid'])['task_state'] ==
                 'powering_off', 30, 'the stop waiting for the guest')

        self._kill_and_restart()

        record = self._check_settled(instance['uuid'], 'stop')
        # The guest was never destroyed, so it still runs.
        self.assertEqual(('active', 'running'),
                         (record['vm_state'], record['power_state']))
        self._check_usable(instance['uuid'], record)

    def test_sigkill_during_build(self):
        """SIGKILLed the agent while a build waited for an external event
        with the guest already spawned, restarted it: the build is
        settled (no task state, record agrees with libvirt) and the
        instance runs, stops and starts again."""
        instance = self._instance(wait_for_events=[NEVER_SENT])
        self.rpc.cast('build_and_run_instance', instance=instance)
        wait_for(lambda: self._libvirt_power_state(instance['uuid']) ==
                 'running', 60, 'the guest spawned by the build')
        self.assertEqual('spawning',
                         self._record(instance['uuid'])['task_state'])

        self._kill_and_restart()

        record = self._check_settled(instance['uuid'], 'build')
        self._check_usable(instance['uuid'], record)
