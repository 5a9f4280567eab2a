"""Live and cold migration of real QEMU guests between two agents, each on
its own private libvirtd, with the source or the destination agent
SIGTERMed while the migration is in flight.

The guests are the small busybox guests of the other real-guest tests
(128 MiB, TCG). A bandwidth cap on the source keeps a live migration in
flight for several seconds, long enough to signal an agent in the middle
of it; an ACPI-ignoring guest with a short shutdown timeout does the same
for the source's power-off in a cold migration.
"""

import os
import uuid

import libvirt

from tests.fixtures import agent as agent_fixture
from tests.fixtures.polling import wait_for
from tests.fixtures import rabbitmq
from tests.fixtures import rpc
from tests.realguest import base
from tests.realguest import libvirtd
from tests.realguest import test_power_off

FINAL = ('completed', 'failed', 'cancelled', 'error')
SETTLE = 180
# MiB/s: a 128 MiB guest's memory takes seconds, not a blink.
SLOW_BANDWIDTH = 4


class TwoHostsTestCase(base.TestCase):
    source_bandwidth = 0
    # [libvirt] cold_migration_disk_transfer of the source's agent.
    source_disk_transfer = 'auto'
    # role -> COMPUTE_AGENT_CONCURRENCY for that agent; a role not named
    # runs in the tests' own mode.
    concurrency_modes = {}

    def setUp(self):
        super().setUp()
        self.broker = rabbitmq.shared_broker()
        self.hypervisors = {}
        self.agents = {}
        self.clients = {}
        for role in ('source', 'dest'):
            hypervisor = self.useFixture(libvirtd.PrivateLibvirtd(role))
            config = {'libvirt': {
                'live_migration_bandwidth': str(
                    self.source_bandwidth if role == 'source' else 0),
                'cold_migration_disk_transfer': (
                    self.source_disk_transfer if role == 'source'
                    else 'auto')}}
            agent = self.useFixture(agent_fixture.AgentProcess(
                self.broker.transport_url, connection_uri=hypervisor.uri,
                host=f'{role}-{uuid.uuid4().hex[:6]}', virt_type='qemu',
                shutdown_timeout=60, graceful_shutdown_timeout=150,
                shutdown_retry_interval=test_power_off.RETRY_INTERVAL,
                extra_config=config,
                environment=self._mode_environment(role)))
            self.hypervisors[role] = hypervisor
            self.agents[role] = agent
        for role, agent in self.agents.items():
            agent.wait_ready()
            self.clients[role] = self.useFixture(rpc.AgentRPCClient(
                self.broker.transport_url, agent.host, timeout=240))

    def _mode_environment(self, role):
        if role not in self.concurrency_modes:
            return {}
        return {'COMPUTE_AGENT_CONCURRENCY': self.concurrency_modes[role]}

    def boot(self, honours_acpi=True, with_disk=False):
        image = {'id': 'debian-busybox', 'properties': {},
                 'kernel': self.images['kernel'],
                 'ramdisk': self.images['initramfs_acpi' if honours_acpi
                                        else 'initramfs_noacpi'],
                 'cmdline': libvirtd.GUEST_CMDLINE}
        if with_disk:
            image['disk'] = self.images['disk']
        record = self.clients['source'].call(
            'build_and_run_instance', instance={
                'uuid': str(uuid.uuid4()), 'name': 'traveller', 'vcpus': 1,
                'memory_mb': 128, 'image': image})
        self.wait_until_ready('source', record['uuid'])
        return record['uuid']

    def wait_until_ready(self, role, instance_uuid):
        libvirtd.wait_until_guest_ready(os.path.join(
            self.agents[role].state_path, 'instances', instance_uuid,
            'console.log'))

    def follow(self, role, migration_id, until=FINAL):
        client = self.clients[role]
        return wait_for(
            lambda: (lambda m: m if m['status'] in until else None)(
                client.call('get_migration', topic=rpc.ALT_TOPIC,
                            migration_id=migration_id, timeout=30)),
            SETTLE, f'migration {migration_id} reaches {until}')

    def libvirt_state(self, role, instance_uuid):
        """What that host's libvirtd says of the guest, or None."""
        connection = libvirt.open(self.hypervisors[role].uri)
        try:
            domain = connection.lookupByUUIDString(instance_uuid)
            return domain.info()[0]
        except libvirt.libvirtError:
            return None
        finally:
            connection.close()

    def sigterm_restart(self, role):
        """SIGTERM the agent mid-flight: it must drain (exit 0, which the
        launcher's SIGALRM at graceful_shutdown_timeout would make 1);
        then start it again."""
        agent = self.agents[role]
        in_flight = self.clients[role].call(
            'get_service_status', topic=rpc.ALT_TOPIC)['in_flight']
        self.assertNotEqual([], in_flight, f'nothing in flight on {role}')
        agent.sigterm()
        self.assertEqual(0, agent.wait_exit(SETTLE))
        agent.restart()
        agent.wait_ready()

    def assertRunsOn(self, role, instance_uuid, vm_state='active'):
        record = self.clients[role].call('get_instance',
                                         instance_uuid=instance_uuid)
        self.assertEqual((self.agents[role].host, vm_state, 'running'),
                         (record['host'], record['vm_state'],
                          record['power_state']))
        self.assertEqual(libvirt.VIR_DOMAIN_RUNNING,
                         self.libvirt_state(role, instance_uuid))
        other = 'dest' if role == 'source' else 'source'
        self.assertNotEqual(libvirt.VIR_DOMAIN_RUNNING,
                            self.libvirt_state(other, instance_uuid))


class LiveMigrationTest(TwoHostsTestCase):
    source_bandwidth = SLOW_BANDWIDTH

    def migrate_and_sigterm(self, role):
        guest = self.boot()
        migration = self.clients['source'].call(
            'live_migrate_instance', instance_uuid=guest,
            dest_host=self.agents['dest'].host)
        self.follow('source', migration['id'], until=('running',))
        self.sigterm_restart(role)
        done = self.follow('source', migration['id'])
        self.assertEqual('completed', done['status'], done['message'])
        self.assertRunsOn('dest', guest)
        # The guest's console goes to the destination's own file now (it
        # printed its READY line before it moved, to the source's).
        console = self.clients['dest'].call(
            'get_serial_console', topic=rpc.ALT_TOPIC, instance_uuid=guest)
        self.assertEqual(os.path.join(self.agents['dest'].state_path,
                                      'instances', guest, 'console.log'),
                         console.get('path'), console)

    def test_sigterm_of_the_source_mid_flight(self):
        self.migrate_and_sigterm('source')

    def test_sigterm_of_the_destination_mid_flight(self):
        self.migrate_and_sigterm('dest')


class _ColdMigrationTestCase(TwoHostsTestCase):
    def migrate_and_sigterm(self, role):
        # The guest ignores ACPI: the source's power-off waits out its
        # 8 s timeout, with the migration in flight on both hosts.
        guest = self.boot(honours_acpi=False, with_disk=True)
        migration = self.clients['dest'].call(
            'prep_resize', instance_uuid=guest,
            new_flavor={'vcpus': 1, 'memory_mb': 192},
            source_host=self.agents['source'].host, shutdown_timeout=8)
        self.follow('dest', migration['id'], until=('running',))
        wait_for(lambda: self.clients['source'].call(
            'get_service_status', topic=rpc.ALT_TOPIC)['in_flight'],
            30, 'resize_instance in flight on the source')
        self.sigterm_restart(role)
        done = self.follow('dest', migration['id'])
        self.assertEqual('completed', done['status'], done['message'])
        record = self.clients['dest'].call('get_instance',
                                           instance_uuid=guest)
        self.assertEqual(('resized', 'forced', 192),
                         (record['vm_state'],
                          record['last_power_off']['result'],
                          record['flavor']['memory_mb']))
        self.assertRunsOn('dest', guest, vm_state='resized')
        self.wait_until_ready('dest', guest)
        return guest, done


class StreamedColdMigrationTest(_ColdMigrationTestCase):
    """The source streams the disk through the destination's libvirtd,
    as between hosts that share no storage, while it drains."""

    source_disk_transfer = 'stream'

    def test_sigterm_of_the_source_mid_flight_then_confirm(self):
        guest, done = self.migrate_and_sigterm('source')
        self.assertIn(f'Streamed the disk of instance {guest} to',
                      self.agents['source'].log_text())
        confirmed = self.clients['source'].call('confirm_resize',
                                                migration_id=done['id'])
        self.assertEqual('confirmed', confirmed['status'])
        self.assertIsNone(self.libvirt_state('source', guest))
        self.assertRunsOn('dest', guest)


class ColdMigrationTest(_ColdMigrationTestCase):
    """The source copies the disk through the filesystem: it sees the
    destination's instance directory (both run on this machine)."""

    def test_sigterm_of_the_destination_mid_flight_then_revert(self):
        guest, done = self.migrate_and_sigterm('dest')
        log = self.agents['source'].log_text()
        self.assertIn(f'Copied the disk of instance {guest} to', log)
        self.assertNotIn('Streamed the disk', log)
        original = self.clients['dest'].call('revert_resize',
                                             migration_id=done['id'])
        self.assertEqual(128, original['flavor']['memory_mb'])
        self.assertRunsOn('source', guest)
        self.assertIsNone(self.libvirt_state('dest', guest))


class FailedLiveMigrationTest(TwoHostsTestCase):
    source_bandwidth = SLOW_BANDWIDTH

    def test_libvirt_error_mid_flight_rolls_back_to_the_source(self):
        guest = self.boot()
        migration = self.clients['source'].call(
            'live_migrate_instance', instance_uuid=guest,
            dest_host=self.agents['dest'].host)
        self.follow('source', migration['id'], until=('running',))
        # The incoming guest dies on the destination: libvirt fails the
        # migration on the source, and the agents roll it back.
        wait_for(lambda: self.libvirt_state('dest', guest) is not None,
                 60, 'the incoming guest on the destination')
        connection = libvirt.open(self.hypervisors['dest'].uri)
        try:
            connection.lookupByUUIDString(guest).destroy()
        except libvirt.libvirtError as error:
            # Gone already: the migration failed by itself meanwhile.
            if error.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise
        finally:
            connection.close()
        done = self.follow('source', migration['id'])
        self.assertEqual('failed', done['status'])
        self.assertIn('the guest still runs on this host', done['message'])
        self.assertRunsOn('source', guest)
        self.assertIsNone(self.libvirt_state('dest', guest))
        self.assertEqual('failed', self.clients['dest'].call(
            'get_migration', topic=rpc.ALT_TOPIC,
            migration_id=migration['id'])['status'])
        # The destination let go of it: nothing holds its drain.
        self.assertEqual([], self.clients['dest'].call(
            'get_service_status', topic=rpc.ALT_TOPIC)['in_flight'])
