"""Peer-to-peer and destructive RPC methods called by someone who has no
business calling them: a migration id this host never saw, a host asked
to play a role it does not play, an instance that is not the one the
migration moves, a migration that is over, an instance this host owns
and is not migrating. Each request must get a contract error and change
nothing: no driver call, no database write, no drain hold taken or
released, no call to the other host."""

import os
import re
import uuid

import sqlalchemy as sa
import testtools

from compute_agent import db
from compute_agent import exception
from compute_agent import manager
from compute_agent import rpc
from tests.fixtures.polling import wait_for
from tests.unit import fakes
from tests.unit import test_manager_migrate


class DriverCalls:
    """Stands in for a manager's driver and notes every call made."""

    def __init__(self, driver):
        self._driver = driver
        self.calls = []

    def __getattr__(self, name):
        attribute = getattr(self._driver, name)
        if not callable(attribute):
            return attribute

        def call(*args, **kwargs):
            self.calls.append(name)
            return attribute(*args, **kwargs)
        return call


def _rows(database):
    """Every row of every table, as it stands."""
    with database._engine.connect() as connection:
        return {table.name: sorted(
            (tuple(row) for row in connection.execute(sa.select(table))),
            key=repr) for table in db.Base.metadata.sorted_tables}


class HostileRequestTestCase(test_manager_migrate.TwoHostsTestCase):
    def setUp(self):
        super().setUp()
        for calls in self.driver_calls.values():
            calls.calls.clear()   # what init_host called

    def driver_of(self, host):
        if not hasattr(self, 'driver_calls'):
            self.driver_calls = {}
        self.driver_calls[host] = DriverCalls(self.drivers[host])
        return self.driver_calls[host]

    # -- what "nothing changed" means ----------------------------------

    def _state(self):
        return {host: {
            'rows': _rows(compute._db),
            'guests': repr(self.drivers[host].guests),
            'files': repr(self.drivers[host].files),
            'tracked': sorted((op['method'], op['instance_uuid'])
                              for op in self.services[host]
                              .tracker.snapshot()),
            'holds': sorted(compute.migrations._incoming_holds),
        } for host, compute in self.managers.items()}

    def assertRefused(self, error_type, method, *args, **kwargs):
        """method(*args, **kwargs) raises error_type and changes nothing
        on either host."""
        before = self._state()
        peer_calls = len(self.peers.calls)
        for calls in self.driver_calls.values():
            calls.calls.clear()
        error = self.unwrap(method, self.ctxt, *args, **kwargs)
        self.assertIsInstance(error, error_type, str(error))
        self.assertEqual({host: [] for host in self.driver_calls},
                         {host: calls.calls for host, calls
                          in self.driver_calls.items()})
        self.assertEqual(peer_calls, len(self.peers.calls))
        self.assertEqual(before, self._state())
        return error

    # -- scenes --------------------------------------------------------

    def stopped(self, compute):
        instance = self.boot(compute)
        return compute.stop_instance(self.ctxt, instance['uuid'])

    def past_migration(self, compute, instance_uuid, status,
                       kind='live-migration', source='host-a',
                       dest='host-b'):
        """A migration record as compute would keep it."""
        flavor = {'vcpus': 1, 'memory_mb': 128}
        details = {'block_migration': False} if kind == 'live-migration' \
            else {'old_flavor': flavor, 'new_flavor': flavor,
                  'clean_shutdown': True, 'shutdown_timeout': None,
                  'shared_storage': False, 'power_on': True,
                  'vm_state': 'active'}
        return compute._db.put_migration(
            id=str(uuid.uuid4()), kind=kind, instance_uuid=instance_uuid,
            source_host=source, dest_host=dest, status=status,
            request_id='req-earlier', details=details)

    def incoming_live_migration(self):
        """A live migration from host-a held half-way: host-b holds its
        drain for it and keeps its record as running."""
        instance = self.boot()
        gate = self.drivers['host-a'].migration_gate = fakes.BlockingGate()
        migration = self.a.live_migrate_instance(self.ctxt, instance['uuid'],
                                                 'host-b')
        self.assertTrue(gate.entered.wait(5))
        self.addCleanup(self.wait_final, self.a, migration['id'])
        self.addCleanup(gate.release)
        return instance, self.b.get_migration(self.ctxt, migration['id'])

    def incoming_cold_migration(self):
        """A cold migration to host-b held in its disk copy on host-a."""
        instance = self.boot()
        gate = self.drivers['host-a'].disk_copy_gate = fakes.BlockingGate()
        migration = self.b.prep_resize(self.ctxt, instance['uuid'], None,
                                       'host-a')
        self.assertTrue(gate.entered.wait(5))
        self.addCleanup(self.wait_final, self.b, migration['id'])
        self.addCleanup(gate.release)
        return instance, self.b.get_migration(self.ctxt, migration['id'])

    def resized(self):
        """A cold migration host-a -> host-b awaiting confirm or revert."""
        instance = self.boot()
        migration = self.b.prep_resize(self.ctxt, instance['uuid'], None,
                                       'host-a')
        return instance, self.wait_final(self.b, migration['id'])


class RollbackAtDestinationTest(HostileRequestTestCase):
    def test_an_unknown_migration_leaves_a_stopped_instance_alone(self):
        # Issue 9, item 1: this undefined the stopped instance's domain.
        instance = self.stopped(self.b)
        error = self.assertRefused(
            exception.InvalidInput,
            self.b.rollback_live_migration_at_destination,
            instance_uuid=instance['uuid'], migration_id=str(uuid.uuid4()))
        self.assertIn('knows no migration', str(error))
        started = self.b.start_instance(self.ctxt, instance['uuid'])
        self.assertEqual('active', started['vm_state'])

    def test_on_the_source(self):
        instance, migration = self.incoming_live_migration()
        self.assertRefused(exception.InvalidInput,
                           self.a.rollback_live_migration_at_destination,
                           instance['uuid'], migration['id'])

    def test_an_instance_the_migration_does_not_move(self):
        _, migration = self.incoming_live_migration()
        bystander = self.stopped(self.b)
        error = self.assertRefused(
            exception.InvalidInput,
            self.b.rollback_live_migration_at_destination,
            bystander['uuid'], migration['id'])
        self.assertIn('not ' + bystander['uuid'], str(error))

    def test_a_migration_that_completed(self):
        instance = self.boot()
        migration = self.past_migration(self.b, instance['uuid'],
                                        'completed')
        self.assertRefused(exception.InvalidInput,
                           self.b.rollback_live_migration_at_destination,
                           instance['uuid'], migration['id'])

    def test_a_cold_migration(self):
        instance, migration = self.incoming_cold_migration()
        self.assertRefused(exception.InvalidInput,
                           self.b.rollback_live_migration_at_destination,
                           instance['uuid'], migration['id'])

    def test_an_instance_this_host_owns(self):
        instance = self.stopped(self.b)
        migration = self.past_migration(self.b, instance['uuid'], 'running')
        self.assertRefused(exception.InstanceInvalidState,
                           self.b.rollback_live_migration_at_destination,
                           instance['uuid'], migration['id'])

    def test_a_rollback_the_driver_refuses_changes_nothing(self):
        # As the libvirt driver refuses when the guest runs or is defined
        # here: it may have arrived, so the migration stays open to be
        # taken over (or rolled back once more).
        instance, migration = self.incoming_live_migration()
        self.drivers['host-b'].fail_next[
            'rollback_live_migration_at_destination'] = \
            exception.MigrationError(reason='the migration arrived')
        before = self._state()
        error = self.unwrap(self.b.rollback_live_migration_at_destination,
                            self.ctxt, instance['uuid'], migration['id'])
        self.assertIsInstance(error, exception.MigrationError)
        self.assertEqual(before, self._state())
        self.b.rollback_live_migration_at_destination(
            self.ctxt, instance['uuid'], migration['id'])
        self.assertEqual('failed', self.b.get_migration(
            self.ctxt, migration['id'])['status'])


class PostLiveMigrationAtDestinationTest(HostileRequestTestCase):
    def post(self, compute, instance, migration, **changes):
        return self.assertRefused(
            changes.pop('error', exception.InvalidInput),
            compute.post_live_migration_at_destination, instance,
            dict(migration, **changes), '<domain/>')

    def test_an_unknown_migration(self):
        instance, migration = self.incoming_live_migration()
        error = self.post(self.b, instance, migration, id=str(uuid.uuid4()))
        self.assertIn('knows no migration', str(error))

    def test_on_the_source(self):
        instance, migration = self.incoming_live_migration()
        self.post(self.a, instance, migration)

    def test_an_instance_the_migration_does_not_move(self):
        _, migration = self.incoming_live_migration()
        other = self.boot()
        self.post(self.b, other, migration)
        self.post(self.b, other, migration, instance_uuid=other['uuid'])

    def test_a_record_that_does_not_match_this_hosts(self):
        instance, migration = self.incoming_live_migration()
        self.post(self.b, instance, migration, source_host='host-c')

    def test_a_migration_that_failed(self):
        instance = self.boot()
        migration = self.past_migration(self.b, instance['uuid'], 'failed')
        self.post(self.b, instance, migration)

    def test_an_instance_this_host_owns(self):
        instance = self.stopped(self.b)
        migration = self.past_migration(self.b, instance['uuid'], 'running')
        self.post(self.b, instance, migration,
                  error=exception.InstanceInvalidState)
        self.assertEqual('stopped', self.b.get_instance(
            self.ctxt, instance['uuid'])['vm_state'])


class PreLiveMigrationTest(HostileRequestTestCase):
    def pre(self, instance, error=exception.InvalidInput, compute=None,
            **changes):
        migration = {'id': str(uuid.uuid4()), 'kind': 'live-migration',
                     'instance_uuid': instance['uuid'],
                     'source_host': 'host-a', 'dest_host': 'host-b',
                     'status': 'queued', 'request_id': 'req-x',
                     'details': {'block_migration': False}}
        migration.update(changes)
        return self.assertRefused(
            error, (compute or self.b).pre_live_migration, instance,
            migration, '<domain/>')

    def test_a_migration_id_this_host_already_has(self):
        instance = self.boot()
        known = self.past_migration(self.b, instance['uuid'], 'failed')
        self.pre(instance, id=known['id'])

    def test_on_the_source(self):
        instance = self.boot()
        self.pre(instance, compute=self.a)
        self.pre(instance, source_host='host-b', dest_host='host-b')

    def test_an_instance_the_migration_does_not_move(self):
        instance = self.boot()
        self.pre(instance, instance_uuid=str(uuid.uuid4()))

    def test_a_migration_that_is_over_or_of_another_kind(self):
        instance = self.boot()
        self.pre(instance, status='completed')
        self.pre(instance, kind='resize')

    def test_an_instance_this_host_owns(self):
        instance = self.stopped(self.b)
        self.pre(instance, error=exception.InstanceInvalidState)

    def test_an_instance_already_on_its_way_here(self):
        instance, _ = self.incoming_live_migration()
        self.pre(instance, error=exception.InstanceInvalidState)


class LiveMigrationControlTest(HostileRequestTestCase):
    def test_abort_and_force_complete(self):
        instance, migration = self.incoming_live_migration()
        for method in ('live_migration_abort',
                       'live_migration_force_complete'):
            # Unknown here; on the destination; over; not a live one.
            self.assertRefused(exception.InvalidInput,
                               getattr(self.a, method), str(uuid.uuid4()))
            self.assertRefused(exception.InvalidInput,
                               getattr(self.b, method), migration['id'])
            old = self.past_migration(self.a, instance['uuid'], 'failed')
            self.assertRefused(exception.InvalidInput,
                               getattr(self.a, method), old['id'])
            cold = self.past_migration(self.a, instance['uuid'], 'running',
                                       kind='migration')
            self.assertRefused(exception.InvalidInput,
                               getattr(self.a, method), cold['id'])

    def test_check_can_live_migrate_to_a_host_that_has_it(self):
        instance = self.stopped(self.b)
        self.assertRefused(exception.InvalidInput,
                           self.b.check_can_live_migrate_destination,
                           instance)


class PrepResizeTest(HostileRequestTestCase):
    def test_an_instance_this_host_owns_or_is_receiving(self):
        instance = self.stopped(self.b)
        self.assertRefused(exception.InvalidInput, self.b.prep_resize,
                           instance['uuid'], None, 'host-a')
        self.assertRefused(exception.InvalidInput, self.b.prep_resize,
                           instance['uuid'], None, 'host-b')
        arriving, _ = self.incoming_cold_migration()
        self.assertRefused(exception.InstanceInvalidState,
                           self.b.prep_resize, arriving['uuid'], None,
                           'host-a')


class FinishResizeTest(HostileRequestTestCase):
    def finish(self, compute, instance, migration,
               error=exception.InvalidInput, **changes):
        return self.assertRefused(
            error, compute.finish_resize, dict(migration, **changes),
            instance, False, True)

    def test_an_unknown_migration(self):
        instance, migration = self.incoming_cold_migration()
        self.finish(self.b, instance, migration, id=str(uuid.uuid4()))

    def test_on_the_source(self):
        instance, migration = self.incoming_cold_migration()
        self.finish(self.a, instance, migration)

    def test_an_instance_the_migration_does_not_move(self):
        _, migration = self.incoming_cold_migration()
        other = self.boot()
        self.finish(self.b, other, migration)
        self.finish(self.b, other, migration, instance_uuid=other['uuid'])

    def test_a_migration_that_is_over_or_of_another_kind(self):
        instance = self.boot()
        for status, kind in (('failed', 'migration'),
                             ('completed', 'resize'),
                             ('running', 'live-migration')):
            migration = self.past_migration(self.b, instance['uuid'],
                                            status, kind=kind)
            self.finish(self.b, instance, migration)

    def test_an_instance_this_host_owns(self):
        instance = self.stopped(self.b)
        migration = self.past_migration(self.b, instance['uuid'], 'running',
                                        kind='migration')
        self.finish(self.b, instance, migration,
                    error=exception.InstanceInvalidState)


class ResizeInstanceTest(HostileRequestTestCase):
    def hand_over(self, instance, error=exception.InvalidInput,
                  compute=None, **changes):
        flavor = {'vcpus': 1, 'memory_mb': 128}
        migration = {'id': str(uuid.uuid4()), 'kind': 'migration',
                     'instance_uuid': instance['uuid'],
                     'source_host': 'host-a', 'dest_host': 'host-b',
                     'status': 'running', 'request_id': 'req-x',
                     'details': {'old_flavor': flavor,
                                 'new_flavor': flavor,
                                 'clean_shutdown': True,
                                 'shutdown_timeout': None,
                                 'shared_storage': False}}
        migration.update(changes)
        return self.assertRefused(
            error, (compute or self.a).resize_instance, migration,
            '/fake/host-b/' + instance['uuid'], False)

    def test_a_migration_id_this_host_already_has(self):
        instance = self.boot()
        known = self.past_migration(self.a, instance['uuid'], 'completed',
                                    kind='migration')
        self.hand_over(instance, id=known['id'])

    def test_on_the_destination(self):
        instance = self.boot()
        self.hand_over(instance, compute=self.b)
        self.hand_over(instance, source_host='host-a', dest_host='host-a')

    def test_an_instance_this_host_does_not_have(self):
        self.hand_over({'uuid': str(uuid.uuid4())},
                       error=exception.InstanceNotFound)

    def test_a_migration_that_is_over_or_of_another_kind(self):
        instance = self.boot()
        self.hand_over(instance, status='failed')
        self.hand_over(instance, kind='live-migration')

    def test_an_instance_that_cannot_move_now(self):
        instance = self.boot()
        self.a.rescue_instance(self.ctxt, instance['uuid'])
        self.hand_over(instance, error=exception.InstanceInvalidState)
        other = self.boot()
        self.a._db.update_instance(other['uuid'], task_state='rebooting')
        self.hand_over(other, error=exception.InstanceInvalidState)

    def test_shared_storage_check_for_an_instance_elsewhere(self):
        self.assertRefused(exception.InstanceNotFound,
                           self.a.check_instance_shared_storage,
                           str(uuid.uuid4()), '.marker-1')


class ConfirmAndRevertTest(HostileRequestTestCase):
    """confirm_resize and finish_revert_resize on the source,
    finish_confirm_resize and revert_resize on the destination."""

    SOURCE = ('confirm_resize', 'finish_revert_resize')
    DEST = ('finish_confirm_resize', 'revert_resize')

    def refuse_all(self, error, migration_id, source=None, dest=None):
        for method in self.SOURCE:
            self.assertRefused(error, getattr(source or self.a, method),
                               migration_id)
        for method in self.DEST:
            self.assertRefused(error, getattr(dest or self.b, method),
                               migration_id)

    def test_an_unknown_migration(self):
        self.resized()
        self.refuse_all(exception.InvalidInput, str(uuid.uuid4()))

    def test_each_on_the_wrong_end(self):
        _, migration = self.resized()
        self.refuse_all(exception.InvalidInput, migration['id'],
                        source=self.b, dest=self.a)

    def test_a_live_migration(self):
        instance = self.boot()
        migration = self.a.live_migrate_instance(self.ctxt, instance['uuid'],
                                                 'host-b')
        self.wait_final(self.a, migration['id'])
        # The record says completed before the source's background work
        # has closed its action record: wait for that too.
        wait_for(lambda: not self.tracked('host-a'), 10,
                 'the live migration work ends')
        self.refuse_all(exception.InvalidInput, migration['id'])

    def test_a_migration_that_is_over(self):
        instance, migration = self.resized()
        for status in ('failed', 'confirmed', 'reverted'):
            for compute in (self.a, self.b):
                compute._db.update_migration(migration['id'], status=status)
            self.refuse_all(exception.InvalidInput, migration['id'])

    def test_an_instance_each_host_owns_and_is_not_resizing(self):
        # The source took the instance back (e.g. a later migration) and
        # the destination's copy is active: neither may be touched.
        instance, migration = self.resized()
        self.a._db.update_instance(instance['uuid'], host='host-a',
                                   vm_state='stopped')
        self.b._db.update_instance(instance['uuid'], vm_state='active')
        self.refuse_all(exception.InstanceInvalidState, migration['id'])

    def test_a_source_record_that_was_never_handed_over(self):
        instance = self.boot()
        migration = self.past_migration(self.a, instance['uuid'],
                                        'completed', kind='migration')
        for method in self.SOURCE:
            self.assertRefused(exception.InstanceInvalidState,
                               getattr(self.a, method), migration['id'])


class DrainHoldTest(HostileRequestTestCase):
    def test_a_failed_record_write_does_not_keep_the_hold(self):
        # Issue 9, item 5: the hold was taken before the write and never
        # released, so the drain waited out its deadline.
        instance = self.boot()

        def broken(**values):
            raise sa.exc.OperationalError('INSERT', {}, 'disk I/O error')
        self.b._db.put_migration = broken
        migration = {'id': str(uuid.uuid4()), 'kind': 'live-migration',
                     'instance_uuid': instance['uuid'],
                     'source_host': 'host-a', 'dest_host': 'host-b',
                     'status': 'queued', 'request_id': 'req-x',
                     'details': {'block_migration': False}}
        self.assertRaises(sa.exc.OperationalError,
                          self.b.pre_live_migration, self.ctxt, instance,
                          migration, '<domain/>')
        self.assertEqual([], self.tracked('host-b'))
        self.assertEqual({}, self.b.migrations._incoming_holds)
        self.assertEqual([], self.driver_calls['host-b'].calls)

    def test_a_failed_status_write_releases_the_hold(self):
        instance = self.boot()
        real_update = self.b._db.update_migration

        def broken(migration_id, **values):
            if values.get('status') == 'running':
                raise sa.exc.OperationalError('UPDATE', {}, 'disk full')
            return real_update(migration_id, **values)
        self.b._db.update_migration = broken
        migration = {'id': str(uuid.uuid4()), 'kind': 'live-migration',
                     'instance_uuid': instance['uuid'],
                     'source_host': 'host-a', 'dest_host': 'host-b',
                     'status': 'queued', 'request_id': 'req-x',
                     'details': {'block_migration': False}}
        self.assertRaises(sa.exc.OperationalError,
                          self.b.pre_live_migration, self.ctxt, instance,
                          migration, '<domain/>')
        self.assertEqual([], self.tracked('host-b'))
        self.assertEqual({}, self.b.migrations._incoming_holds)
        self.assertEqual('failed', self.b.get_migration(
            self.ctxt, migration['id'])['status'])

    def test_a_refused_rollback_keeps_the_hold_and_the_real_one_ends_it(
            self):
        instance, migration = self.incoming_live_migration()
        self.assertRefused(exception.InvalidInput,
                           self.b.rollback_live_migration_at_destination,
                           str(uuid.uuid4()), migration['id'])
        self.assertEqual(['incoming_live_migration'], self.tracked('host-b'))
        self.a.live_migration_abort(self.ctxt, migration['id'])
        self.assertEqual('cancelled', self.wait_final(
            self.a, migration['id'])['status'])
        wait_for(lambda: not self.tracked('host-b'), 5, 'hold released')
        self.assertEqual('failed', self.b.get_migration(
            self.ctxt, migration['id'])['status'])


AUDIT = os.path.join(os.path.dirname(__file__), '..', '..', 'doc', 'source',
                     'rpc-audit.rst')


class AuditTableTest(testtools.TestCase):
    """doc/source/rpc-audit.rst has one row per RPC method, no more."""

    def test_every_rpc_method_has_one_row(self):
        policy = rpc.RemotableOnlyPolicy()
        methods = {name for endpoint in manager.ENDPOINT_CLASSES
                   for name in dir(endpoint)
                   if policy.is_allowed(endpoint, name)}
        with open(AUDIT, encoding='utf-8') as audit:
            rows = re.findall(r'^   \* - ``(\w+)``$', audit.read(),
                              re.MULTILINE)
        self.assertEqual(len(rows), len(set(rows)), 'a method has two rows')
        self.assertEqual(
            set(), methods - set(rows),
            'RPC methods without a row in doc/source/rpc-audit.rst: say '
            'what each may destroy or change and what it checks first')
        self.assertEqual(set(), set(rows) - methods,
                         'rows in doc/source/rpc-audit.rst for methods '
                         'that are not RPC methods')
