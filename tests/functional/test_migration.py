"""Live migration, cold migration and resize between two agent processes
on one private RabbitMQ, through the independent wire-contract client.

Both agents run on libvirt's test driver, which cannot migrate: there the
driver emulates the transfer of a live migration (it takes guest memory /
[libvirt] live_migration_bandwidth, reports progress, honours abort and
force-complete, and the destination defines the guest from the
migratable XML). Every RPC between the agents, every record, the drain
and the rollback are real; tests/realguest covers the libvirt transfer
with real QEMU guests.
"""

import uuid

import oslo_messaging
import testtools

from tests.fixtures import agent as agent_fixture
from tests.fixtures.polling import wait_for
from tests.fixtures import rabbitmq
from tests.fixtures import rpc

FINAL = ('completed', 'failed', 'cancelled', 'error')
SETTLE = 60
# With 64 MiB guests, an emulated transfer of 64 / 8 = 8 s: long enough
# to act on mid-flight.
SLOW_BANDWIDTH = 8
GUEST_MEMORY_MB = 64


class TwoAgentsTestCase(testtools.TestCase):
    source_config = None
    dest_config = None
    graceful_shutdown_timeout = 60

    def setUp(self):
        super().setUp()
        self.broker = rabbitmq.shared_broker()
        self.source = self._agent('src', self.source_config)
        self.dest = self._agent('dst', self.dest_config)
        for agent in (self.source, self.dest):
            agent.wait_ready()
        self.on_source = self.useFixture(rpc.AgentRPCClient(
            self.broker.transport_url, self.source.host))
        self.on_dest = self.useFixture(rpc.AgentRPCClient(
            self.broker.transport_url, self.dest.host))

    def _agent(self, role, config):
        return self.useFixture(agent_fixture.AgentProcess(
            self.broker.transport_url,
            host=f'{role}-{uuid.uuid4().hex[:8]}',
            graceful_shutdown_timeout=self.graceful_shutdown_timeout,
            shutdown_timeout=10, extra_config=config))

    def boot(self, client=None, **extra):
        instance = {'uuid': str(uuid.uuid4()), 'name': 'mover', 'vcpus': 1,
                    'memory_mb': GUEST_MEMORY_MB,
                    'image': {'id': 'img', 'properties': {}}}
        instance.update(extra)
        return (client or self.on_source).call('build_and_run_instance',
                                               instance=instance)

    def follow(self, client, migration_id, until=FINAL):
        """Poll get_migration on compute-alt, which answers while the host
        drains, until the status is one of until."""
        return wait_for(
            lambda: (lambda m: m if m['status'] in until else None)(
                client.call('get_migration', topic=rpc.ALT_TOPIC,
                            migration_id=migration_id)),
            SETTLE, f'migration {migration_id} reaches {until}')

    def assertRemoteError(self, exc_type, call, *args, **kwargs):
        error = self.assertRaises(oslo_messaging.RemoteError, call, *args,
                                  **kwargs)
        self.assertEqual(exc_type, error.exc_type, error.value)
        return error.value

    def assertOnHost(self, client, instance_uuid, vm_state='active'):
        record = client.call('get_instance', instance_uuid=instance_uuid)
        self.assertEqual((client.host, vm_state),
                         (record['host'], record['vm_state']))
        return record


class LiveMigrationTest(TwoAgentsTestCase):
    def test_live_migration_moves_the_instance_and_its_record(self):
        guest = self.boot()['uuid']
        migration = self.on_source.call(
            'live_migrate_instance', instance_uuid=guest,
            dest_host=self.dest.host)
        self.assertEqual(('live-migration', self.source.host,
                          self.dest.host),
                         (migration['kind'], migration['source_host'],
                          migration['dest_host']))
        done = self.follow(self.on_source, migration['id'])
        self.assertEqual('completed', done['status'], done['message'])
        arrived = self.assertOnHost(self.on_dest, guest)
        self.assertEqual('running', arrived['power_state'])
        self.assertRemoteError('InstanceNotFound', self.on_source.call,
                               'get_instance', instance_uuid=guest)
        self.assertEqual(['completed'], [
            m['status'] for m in self.on_dest.call(
                'list_migrations', topic=rpc.ALT_TOPIC,
                instance_uuid=guest)])

    def test_bad_and_impossible_requests_change_nothing(self):
        guest = self.boot()['uuid']
        self.assertRemoteError('InvalidInput', self.on_source.call,
                               'live_migrate_instance', instance_uuid=guest,
                               dest_host=self.source.host)
        self.assertRemoteError('InvalidInput', self.on_source.call,
                               'live_migrate_instance', instance_uuid=guest,
                               dest_host=self.dest.host, bogus=1)
        reason = self.assertRemoteError(
            'MigrationError', self.on_source.call, 'live_migrate_instance',
            instance_uuid=guest, dest_host='no-such-host')
        self.assertIn('no agent named no-such-host', reason)
        self.assertOnHost(self.on_source, guest)
        self.assertEqual([], self.on_source.call('list_migrations',
                                                 topic=rpc.ALT_TOPIC))


class SlowLiveMigrationTest(TwoAgentsTestCase):
    source_config = {'libvirt': {'live_migration_bandwidth':
                                 str(SLOW_BANDWIDTH)}}

    def start_migration(self):
        guest = self.boot()['uuid']
        migration = self.on_source.call(
            'live_migrate_instance', instance_uuid=guest,
            dest_host=self.dest.host)
        self.follow(self.on_source, migration['id'], until=('running',))
        return guest, migration

    def test_abort_rolls_back_and_leaves_the_guest_on_the_source(self):
        guest, migration = self.start_migration()
        self.on_source.call('live_migration_abort',
                            migration_id=migration['id'])
        done = self.follow(self.on_source, migration['id'])
        self.assertEqual('cancelled', done['status'])
        self.assertIn('aborted by request', done['message'])
        self.assertOnHost(self.on_source, guest)
        self.assertEqual('failed', self.on_dest.call(
            'get_migration', topic=rpc.ALT_TOPIC,
            migration_id=migration['id'])['status'])
        self.assertRemoteError('InstanceNotFound', self.on_dest.call,
                               'get_instance', instance_uuid=guest)

    def test_sigterm_of_the_source_mid_flight_lets_it_finish(self):
        guest, migration = self.start_migration()
        self.source.sigterm()
        # It still answers on compute-alt while it drains...
        wait_for(lambda: self.on_source.call(
            'get_service_status', topic=rpc.ALT_TOPIC)['state'] ==
            'draining', SETTLE, 'source draining')
        # ...and exits once the migration is over, which the destination
        # (up all along) records.
        self.assertEqual(0, self.source.wait_exit(SETTLE))
        done = self.on_dest.call('get_migration', topic=rpc.ALT_TOPIC,
                                 migration_id=migration['id'])
        self.assertEqual('completed', done['status'], done['message'])
        self.assertOnHost(self.on_dest, guest)

    def test_sigterm_of_the_destination_mid_flight_lets_it_finish(self):
        guest, migration = self.start_migration()
        self.dest.sigterm()
        done = self.follow(self.on_source, migration['id'])
        self.assertEqual('completed', done['status'], done['message'])
        self.assertEqual(0, self.dest.wait_exit(SETTLE))
        self.dest.restart()
        self.dest.wait_ready()
        self.assertOnHost(self.on_dest, guest)

    def test_a_queued_migration_is_cancelled_by_sigterm(self):
        _, running = self.start_migration()
        waiting = self.boot(name='second')['uuid']
        queued = self.on_source.call('live_migrate_instance',
                                     instance_uuid=waiting,
                                     dest_host=self.dest.host)
        self.assertEqual('queued', queued['status'])
        self.source.sigterm()
        self.assertEqual(0, self.source.wait_exit(SETTLE))
        self.source.restart()
        self.source.wait_ready()
        self.assertEqual(('cancelled', 'completed'), tuple(
            self.on_source.call('get_migration', migration_id=m['id'])[
                'status'] for m in (queued, running)))
        record = self.assertOnHost(self.on_source, waiting)
        self.assertIsNone(record['task_state'])


class DeadlineAbortTest(TwoAgentsTestCase):
    # An emulated transfer of 64 s against a 13 s drain budget: the
    # migration must be given up (10 s margin) before the deadline.
    source_config = {'libvirt': {'live_migration_bandwidth': '1'}}
    graceful_shutdown_timeout = 13

    def test_migration_that_would_overrun_the_drain_is_aborted(self):
        guest = self.boot()['uuid']
        migration = self.on_source.call(
            'live_migrate_instance', instance_uuid=guest,
            dest_host=self.dest.host)
        self.follow(self.on_source, migration['id'], until=('running',))
        self.source.sigterm()
        # 0: the agent's own drain ended it, before the launcher's SIGALRM
        # (exit 1) at graceful_shutdown_timeout.
        self.assertEqual(0, self.source.wait_exit(SETTLE))
        self.source.restart()
        self.source.wait_ready()
        done = self.on_source.call('get_migration',
                                   migration_id=migration['id'])
        self.assertEqual('cancelled', done['status'])
        self.assertIn('graceful_shutdown_timeout', done['message'])
        self.assertEqual('running', self.assertOnHost(
            self.on_source, guest)['power_state'])
        self.assertRemoteError('InstanceNotFound', self.on_dest.call,
                               'get_instance', instance_uuid=guest)


class DrainingDestinationTest(TwoAgentsTestCase):
    dest_config = {'compute': {'instance_event_timeout': '60'}}

    def test_a_draining_destination_refuses_new_migrations(self):
        guest = self.boot()['uuid']
        # A build waiting for its network event holds the destination's
        # drain open; the event comes in on compute-alt and ends it.
        waiting = str(uuid.uuid4())
        self.on_dest.cast('build_and_run_instance', instance={
            'uuid': waiting, 'name': 'held', 'vcpus': 1, 'memory_mb': 64,
            'image': {'id': 'img', 'properties': {}},
            'wait_for_events': [{'name': 'network-vif-plugged',
                                 'tag': 'port-1'}]})
        wait_for(lambda: self.on_dest.call(
            'get_service_status')['in_flight'], SETTLE, 'build in flight')
        self.dest.sigterm()
        wait_for(lambda: self.on_dest.call(
            'get_service_status', topic=rpc.ALT_TOPIC)['state'] ==
            'draining', SETTLE, 'destination draining')

        reason = self.assertRemoteError(
            'MigrationError', self.on_source.call, 'live_migrate_instance',
            instance_uuid=guest, dest_host=self.dest.host)
        self.assertIn('shutting down', reason)
        self.assertOnHost(self.on_source, guest)

        answer = self.on_dest.call(
            'external_instance_event', topic=rpc.ALT_TOPIC,
            instance_uuid=waiting, name='network-vif-plugged', tag='port-1')
        self.assertTrue(answer['delivered'])
        self.assertEqual(0, self.dest.wait_exit(SETTLE))
        self.dest.restart()
        self.dest.wait_ready()
        self.assertOnHost(self.on_dest, waiting)


class VersionPinTest(TwoAgentsTestCase):
    source_config = {'upgrade_levels': {'compute': '1.3'}}

    def test_a_source_pinned_below_1_4_refuses_clearly(self):
        guest = self.boot()['uuid']
        reason = self.assertRemoteError(
            'MigrationError', self.on_source.call, 'live_migrate_instance',
            instance_uuid=guest, dest_host=self.dest.host)
        self.assertIn('needs RPC 1.4, above the cap of 1.3', reason)
        self.assertOnHost(self.on_source, guest)


class AutoPinTest(TwoAgentsTestCase):
    source_config = {'upgrade_levels': {'compute': 'auto'}}
    dest_config = {'upgrade_levels': {'compute': 'auto'}}

    def test_auto_learns_the_peer_version_and_migrates(self):
        guest = self.boot()['uuid']
        migration = self.on_source.call(
            'live_migrate_instance', instance_uuid=guest,
            dest_host=self.dest.host)
        self.assertEqual('completed', self.follow(
            self.on_source, migration['id'])['status'])


class ColdMigrationTest(TwoAgentsTestCase):
    def migrate(self, guest, new_flavor=None, **kwargs):
        migration = self.on_dest.call(
            'prep_resize', instance_uuid=guest, new_flavor=new_flavor,
            source_host=self.source.host, **kwargs)
        return self.follow(self.on_dest, migration['id'])

    def test_resize_then_confirm(self):
        guest = self.boot()['uuid']
        done = self.migrate(guest, {'vcpus': 2, 'memory_mb': 128})
        self.assertEqual(('resize', 'completed'),
                         (done['kind'], done['status']), done['message'])
        resized = self.assertOnHost(self.on_dest, guest, 'resized')
        self.assertEqual({'vcpus': 2, 'memory_mb': 128}, resized['flavor'])
        self.assertEqual('clean', resized['last_power_off']['result'])
        confirmed = self.on_source.call('confirm_resize',
                                        migration_id=done['id'])
        self.assertEqual('confirmed', confirmed['status'])
        self.assertOnHost(self.on_dest, guest, 'active')

    def test_cold_migration_then_revert(self):
        guest = self.boot()['uuid']
        done = self.migrate(guest, clean_shutdown=False)
        self.assertEqual(('migration', 'completed'),
                         (done['kind'], done['status']), done['message'])
        original = self.on_dest.call('revert_resize',
                                     migration_id=done['id'])
        self.assertEqual((self.source.host, 'active', 'running'),
                         (original['host'], original['vm_state'],
                          original['power_state']))
        self.assertRemoteError('InstanceNotFound', self.on_dest.call,
                               'get_instance', instance_uuid=guest)
        self.assertEqual('reverted', self.on_source.call(
            'get_migration', topic=rpc.ALT_TOPIC,
            migration_id=done['id'])['status'])

    def test_revert_sent_to_a_draining_destination_runs_after_restart(self):
        guest = self.boot()['uuid']
        done = self.migrate(guest)
        self.dest.sigterm()
        # compute is stopped now: a revert sent to it waits for the
        # restart, and then completes.
        self.on_dest.cast('revert_resize', migration_id=done['id'])
        self.assertEqual(0, self.dest.wait_exit(SETTLE))
        self.dest.restart()
        self.dest.wait_ready()
        self.follow(self.on_dest, done['id'], until=('reverted',))
        self.assertOnHost(self.on_source, guest)

    def test_bad_requests_change_nothing(self):
        guest = self.boot()['uuid']
        self.assertRemoteError(
            'InvalidInput', self.on_dest.call, 'prep_resize',
            instance_uuid=guest, new_flavor={'vcpus': 'two'},
            source_host=self.source.host)
        self.assertRemoteError(
            'MigrationError', self.on_dest.call, 'prep_resize',
            instance_uuid=str(uuid.uuid4()), new_flavor=None,
            source_host=self.source.host)
        self.assertRemoteError('InvalidInput', self.on_source.call,
                               'confirm_resize',
                               migration_id=str(uuid.uuid4()))
        self.assertOnHost(self.on_source, guest)
