"""Live migration, cold migration, resize and external events between two
managers in one process: each has its own database and fake driver, and
their RPC calls to each other go through a loopback that behaves like
the bus (errors arrive as RemoteError)."""

import inspect
import os
import shutil
import tempfile
import threading
import time
import uuid

import fixtures
import oslo_messaging

from compute_agent import db
from compute_agent import events as instance_events
from compute_agent import exception
from compute_agent import image_store
from compute_agent import manager
from compute_agent import migrations
from compute_agent import tracker
from tests.fixtures.polling import wait_for
from tests.unit import base
from tests.unit import compute_host
from tests.unit import fakes

FINAL = ('completed', 'failed', 'cancelled', 'error')


class Service:
    def __init__(self):
        self.tracker = tracker.InFlightTracker()
        self.state = 'running'

    def status(self):
        return {'state': self.state, 'graceful_shutdown_timeout': 180,
                'in_flight': self.tracker.snapshot()}


class LoopbackPeers:
    """rpcapi.ComputeAPI's shape, calling the named host's manager
    directly; records each call as (host, method)."""

    def __init__(self, managers):
        self._managers = managers
        self.calls = []
        self.unreachable = set()

    def __getattr__(self, method):
        def call(ctxt, host, *args, timeout=None, alt=None, **kwargs):
            self.calls.append((host, method))
            if host in self.unreachable:
                raise oslo_messaging.MessagingTimeout('no answer')
            try:
                return getattr(self._managers[host], method)(
                    ctxt, *args, **kwargs)
            except oslo_messaging.ExpectedException as wrapped:
                error = wrapped.exc_info[1]
                raise oslo_messaging.RemoteError(
                    type(error).__name__, str(error)) from None
        return call


class TwoHostsTestCase(base.TestCase):
    settings = manager.MigrationSettings(instance_event_timeout=2)

    def setUp(self):
        super().setUp()
        self.base = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.base, True)
        self.fake_hosts = {}
        self.managers = {}
        self.peers = LoopbackPeers(self.managers)
        self.services = {}
        self.drivers = {}
        for host in ('host-a', 'host-b'):
            self.drivers[host] = fakes.FakeDriver(self.fake_hosts, host)
            self.managers[host] = self._manager(host)
        self.a, self.b = self.managers['host-a'], self.managers['host-b']
        self.ctxt = {'request_id': 'req-migrate'}

    def _manager(self, host):
        state = os.path.join(self.base, host)
        os.makedirs(os.path.join(state, 'images'), exist_ok=True)
        database = db.Database(os.path.join(state, 'agent.sqlite'))
        compute = manager.ComputeManager(
            host=host, driver=self.driver_of(host), database=database,
            image_store=image_store.ImageStore(
                os.path.join(state, 'images'), database),
            default_shutdown_timeout=60, shutdown_retry_interval=10,
            peers=self.peers, settings=self.settings)
        self.services[host] = Service()
        return compute_host.ComputeHost(compute, self.services[host])

    def driver_of(self, host):
        """The driver host's manager is given."""
        return self.drivers[host]

    def boot(self, compute=None, **extra):
        spec = {'uuid': str(uuid.uuid4()), 'name': 'web', 'vcpus': 1,
                'memory_mb': 128, 'image': {'id': 'img', 'properties': {}}}
        spec.update(extra)
        return (compute or self.a).build_and_run_instance(self.ctxt, spec)

    def unwrap(self, call, *args, **kwargs):
        try:
            call(*args, **kwargs)
        except oslo_messaging.ExpectedException as wrapped:
            return wrapped.exc_info[1]
        self.fail(f'{call.__name__} raised nothing')

    def wait_final(self, compute, migration_id, statuses=FINAL):
        return wait_for(
            lambda: (lambda m: m if m['status'] in statuses else None)(
                compute.get_migration(self.ctxt, migration_id)),
            10, f'migration {migration_id} ends')

    def tracked(self, host):
        return [op['method'] for op in self.services[host].tracker.snapshot()]

    def controls_handed_to(self, host, method):
        """The MigrationControl of each call of that host's driver
        method from now on, in order."""
        controls = []
        real = getattr(self.drivers[host], method)

        def capture(*args, **kwargs):
            controls.append(inspect.signature(real).bind(
                *args, **kwargs).arguments['control'])
            return real(*args, **kwargs)
        self.useFixture(fixtures.MockPatchObject(
            self.drivers[host], method, capture))
        return controls


class LiveMigrationTest(TwoHostsTestCase):
    def test_instance_moves_with_its_record(self):
        instance = self.boot()
        migration = self.a.live_migrate_instance(self.ctxt, instance['uuid'],
                                                 'host-b')
        self.assertEqual(('live-migration', 'host-a', 'host-b'),
                         (migration['kind'], migration['source_host'],
                          migration['dest_host']))
        done = self.wait_final(self.a, migration['id'])
        self.assertEqual('completed', done['status'])
        self.assertIsNotNone(done['finished_at'])
        moved = self.b.get_instance(self.ctxt, instance['uuid'])
        self.assertEqual(('host-b', 'active', None, 'running'),
                         (moved['host'], moved['vm_state'],
                          moved['task_state'], moved['power_state']))
        self.assertIn(instance['uuid'], self.drivers['host-b'].guests)
        self.assertNotIn(instance['uuid'], self.drivers['host-a'].guests)
        self.assertIsInstance(self.unwrap(
            self.a.get_instance, self.ctxt, instance['uuid']),
            exception.InstanceNotFound)
        self.assertEqual('completed', self.b.get_migration(
            self.ctxt, migration['id'])['status'])
        wait_for(lambda: not self.tracked('host-a') and
                 not self.tracked('host-b'), 5, 'no work left')
        self.assertEqual(
            [('host-b', 'get_service_status'),
             ('host-b', 'check_can_live_migrate_destination'),
             ('host-b', 'pre_live_migration'),
             ('host-b', 'post_live_migration_at_destination')],
            self.peers.calls)
        # And back again: host-a still holds the old record.
        back = self.b.live_migrate_instance(self.ctxt, instance['uuid'],
                                            'host-a')
        self.assertEqual('completed',
                         self.wait_final(self.b, back['id'])['status'])
        self.assertEqual('host-a', self.a.get_instance(
            self.ctxt, instance['uuid'])['host'])

    def test_bad_requests_change_nothing(self):
        instance = self.boot()
        for kwargs in ({'dest_host': 'host-a'}, {'dest_host': ''},
                       {'dest_host': 'host-b', 'block_migration': 'yes'},
                       {'dest_host': 'host-b', 'wait_for_events': 'x'}):
            self.assertIsInstance(self.unwrap(
                self.a.live_migrate_instance, self.ctxt, instance['uuid'],
                **kwargs), exception.InvalidInput)
        self.assertEqual(instance, self.a.get_instance(self.ctxt,
                                                       instance['uuid']))
        self.assertEqual([], self.a.list_migrations(self.ctxt))

    def test_a_draining_destination_refuses(self):
        instance = self.boot()
        self.services['host-b'].state = 'draining'
        error = self.unwrap(self.a.live_migrate_instance, self.ctxt,
                            instance['uuid'], 'host-b')
        self.assertIsInstance(error, exception.MigrationError)
        self.assertIn('host-b is shutting down', str(error))
        self.assertEqual((None, 'active'), (
            lambda r: (r['task_state'], r['vm_state']))(
                self.a.get_instance(self.ctxt, instance['uuid'])))

    def test_destination_that_cannot_run_the_image_refuses(self):
        instance = self.boot(image={'id': 'i', 'properties': {
            'fake_unbootable_on': 'host-b'}})
        error = self.unwrap(self.a.live_migrate_instance, self.ctxt,
                            instance['uuid'], 'host-b')
        self.assertIn('host host-b could not take this instance: '
                      'InvalidInput', str(error))

    def test_unreachable_destination_refuses(self):
        instance = self.boot()
        self.peers.unreachable.add('host-b')
        error = self.unwrap(self.a.live_migrate_instance, self.ctxt,
                            instance['uuid'], 'host-b')
        self.assertIn('did not answer in time', str(error))

    def test_libvirt_error_mid_migration_rolls_back(self):
        instance = self.boot()
        self.drivers['host-a'].fail_next['live_migration'] = \
            exception.MigrationError(reason='connection reset')
        migration = self.a.live_migrate_instance(self.ctxt, instance['uuid'],
                                                 'host-b')
        done = self.wait_final(self.a, migration['id'])
        self.assertEqual('failed', done['status'])
        self.assertIn('connection reset', done['message'])
        record = self.a.get_instance(self.ctxt, instance['uuid'])
        self.assertEqual(('active', None, 'running'),
                         (record['vm_state'], record['task_state'],
                          record['power_state']))
        self.assertIn(('host-b', 'rollback_live_migration_at_destination'),
                      self.peers.calls)
        self.assertEqual('failed', self.b.get_migration(
            self.ctxt, migration['id'])['status'])
        self.assertNotIn(instance['uuid'], self.drivers['host-b'].files)
        wait_for(lambda: not self.tracked('host-b'), 5, 'hold released')

    def test_a_failed_preparation_is_rolled_back_at_the_destination(self):
        instance = self.boot()
        self.drivers['host-b'].fail_next['pre_live_migration'] = \
            exception.MigrationError(reason='no room for the disk')
        migration = self.a.live_migrate_instance(self.ctxt, instance['uuid'],
                                                 'host-b')
        done = self.wait_final(self.a, migration['id'])
        self.assertEqual('failed', done['status'])
        # The destination accepted the rollback of what it had recorded.
        self.assertNotIn('rollback failed', done['message'])
        self.assertIn(('host-b', 'rollback_live_migration_at_destination'),
                      self.peers.calls)
        self.assertEqual('failed', self.b.get_migration(
            self.ctxt, migration['id'])['status'])
        self.assertEqual([], self.tracked('host-b'))

    def test_abort_leaves_the_guest_on_the_source(self):
        instance = self.boot()
        gate = self.drivers['host-a'].migration_gate = fakes.BlockingGate()
        migration = self.a.live_migrate_instance(self.ctxt, instance['uuid'],
                                                 'host-b')
        self.assertTrue(gate.entered.wait(5))
        running = self.a.get_migration(self.ctxt, migration['id'])
        self.assertEqual(('running', {'percent': 50}),
                         (running['status'], running['progress']))
        self.assertEqual(['live_migration'], self.tracked('host-a'))
        self.assertEqual(['incoming_live_migration'], self.tracked('host-b'))
        self.a.live_migration_abort(self.ctxt, migration['id'])
        done = self.wait_final(self.a, migration['id'])
        self.assertEqual('cancelled', done['status'])
        self.assertIn('aborted by request req-migrate', done['message'])
        self.assertIn(instance['uuid'], self.drivers['host-a'].guests)
        wait_for(lambda: not self.tracked('host-b'), 5, 'hold released')

    def test_force_complete_finishes_a_waiting_migration(self):
        instance = self.boot()
        gate = self.drivers['host-a'].migration_gate = fakes.BlockingGate()
        migration = self.a.live_migrate_instance(self.ctxt, instance['uuid'],
                                                 'host-b')
        self.assertTrue(gate.entered.wait(5))
        self.a.live_migration_force_complete(self.ctxt, migration['id'])
        self.assertEqual('completed',
                         self.wait_final(self.a, migration['id'])['status'])

    def test_abort_of_a_finished_migration_is_refused(self):
        instance = self.boot()
        migration = self.a.live_migrate_instance(self.ctxt, instance['uuid'],
                                                 'host-b')
        self.wait_final(self.a, migration['id'])
        error = self.unwrap(self.a.live_migration_abort, self.ctxt,
                            migration['id'])
        self.assertIn('is completed', str(error))
        error = self.unwrap(self.b.live_migration_abort, self.ctxt,
                            migration['id'])
        self.assertIn('only on its source, host-a', str(error))

    def test_drain_cancels_queued_and_aborts_running_before_deadline(self):
        first, second = self.boot(), self.boot(name='db')
        controls = self.controls_handed_to('host-a', 'live_migration')
        gate = self.drivers['host-a'].migration_gate = fakes.BlockingGate()
        running = self.a.live_migrate_instance(self.ctxt, first['uuid'],
                                               'host-b')
        self.assertTrue(gate.entered.wait(5))
        queued = self.a.live_migrate_instance(self.ctxt, second['uuid'],
                                              'host-b')
        self.assertEqual('queued', self.a.get_migration(
            self.ctxt, queued['id'])['status'])
        # The running migration's stop point is DRAIN_STOP_MARGIN before
        # the drain deadline: now, and not ten seconds from now.
        self.a.drain_started(time.monotonic() +
                             migrations.DRAIN_STOP_MARGIN)
        self.assertIn('graceful_shutdown_timeout', controls[0].abort_reason())
        cancelled = self.wait_final(self.a, queued['id'])
        self.assertEqual('cancelled', cancelled['status'])
        self.assertIn('began shutting down', cancelled['message'])
        self.assertEqual((None, 'active'), (
            lambda r: (r['task_state'], r['vm_state']))(
                self.a.get_instance(self.ctxt, second['uuid'])))
        aborted = self.wait_final(self.a, running['id'])
        self.assertEqual('cancelled', aborted['status'])
        self.assertIn('graceful_shutdown_timeout', aborted['message'])
        self.assertEqual('active', self.a.get_instance(
            self.ctxt, first['uuid'])['vm_state'])
        wait_for(lambda: not self.tracked('host-a'), 5, 'drained')

    def test_started_migration_finishes_during_the_drain(self):
        instance = self.boot()
        gate = self.drivers['host-a'].migration_gate = fakes.BlockingGate()
        migration = self.a.live_migrate_instance(self.ctxt, instance['uuid'],
                                                 'host-b')
        self.assertTrue(gate.entered.wait(5))
        self.a.drain_started(time.monotonic() + 60)
        self.b.drain_started(time.monotonic() + 60)
        gate.release()
        self.assertEqual('completed',
                         self.wait_final(self.a, migration['id'])['status'])

    def test_migration_waits_for_events_before_moving(self):
        instance = self.boot()
        waiting = threading.Event()
        real_wait = instance_events.EventWaiter.wait

        def wait(waiter, timeout):
            waiting.set()
            return real_wait(waiter, timeout)
        self.useFixture(fixtures.MockPatchObject(
            instance_events.EventWaiter, 'wait', wait))
        migration = self.a.live_migrate_instance(
            self.ctxt, instance['uuid'], 'host-b',
            wait_for_events=[{'name': 'network-vif-plugged', 'tag': 'p1'}])
        # Held in the wait until the event comes (or its timeout, a
        # failure): the guest cannot have moved yet.
        self.assertTrue(waiting.wait(5), 'the migration never waited')
        self.assertEqual('preparing', self.a.get_migration(
            self.ctxt, migration['id'])['status'])
        self.assertEqual([], self.drivers['host-a'].live_migrations)
        delivered = self.a.external_instance_event(
            self.ctxt, instance['uuid'], 'network-vif-plugged', 'p1')
        self.assertTrue(delivered['delivered'])
        self.assertEqual('completed',
                         self.wait_final(self.a, migration['id'])['status'])

    def test_restart_marks_an_interrupted_migration_error(self):
        instance = self.boot()
        gate = self.drivers['host-a'].migration_gate = fakes.BlockingGate()
        migration = self.a.live_migrate_instance(self.ctxt, instance['uuid'],
                                                 'host-b')
        self.assertTrue(gate.entered.wait(5))
        restarted = self._manager('host-b')
        record = restarted.get_migration(self.ctxt, migration['id'])
        self.assertEqual('error', record['status'])
        self.assertIn('interrupted while running', record['message'])
        gate.release()
        wait_for(lambda: not self.tracked('host-a'), 5,
                 'the first run of the migration over')


class ColdMigrationTest(TwoHostsTestCase):
    def migrate(self, instance, flavor=None, **kwargs):
        migration = self.b.prep_resize(self.ctxt, instance['uuid'], flavor,
                                       'host-a', **kwargs)
        return self.wait_final(self.b, migration['id'])

    def test_resize_confirm(self):
        instance = self.boot()
        done = self.migrate(instance, {'vcpus': 2, 'memory_mb': 256})
        self.assertEqual(('resize', 'completed'),
                         (done['kind'], done['status']))
        resized = self.b.get_instance(self.ctxt, instance['uuid'])
        self.assertEqual(('resized', 'running', {'vcpus': 2,
                                                 'memory_mb': 256}),
                         (resized['vm_state'], resized['power_state'],
                          resized['flavor']))
        self.assertEqual('clean', resized['last_power_off']['result'])
        self.assertEqual((2, 256),
                         self.drivers['host-b'].guests[
                             instance['uuid']]['flavor'])
        # The original is kept, powered off, for a revert.
        self.assertEqual('shutdown', self.drivers['host-a'].guests[
            instance['uuid']]['state'])
        # The source learnt where it could stream the disk to (1.5).
        self.assertEqual({'fake_host': 'host-b'},
                         self.drivers['host-a'].disk_targets[
                             instance['uuid']])
        confirmed = self.a.confirm_resize(self.ctxt, done['id'])
        self.assertEqual('confirmed', confirmed['status'])
        self.assertNotIn(instance['uuid'], self.drivers['host-a'].guests)
        self.assertEqual(('active', 'confirmed'), (
            self.b.get_instance(self.ctxt, instance['uuid'])['vm_state'],
            self.b.get_migration(self.ctxt, done['id'])['status']))

    def test_revert_restarts_the_original(self):
        instance = self.boot()
        done = self.migrate(instance, {'vcpus': 2, 'memory_mb': 256})
        original = self.b.revert_resize(self.ctxt, done['id'])
        self.assertEqual(('host-a', 'active', 'running',
                          {'vcpus': 1, 'memory_mb': 128}),
                         (original['host'], original['vm_state'],
                          original['power_state'], original['flavor']))
        self.assertNotIn(instance['uuid'], self.drivers['host-b'].guests)
        for compute in (self.a, self.b):
            self.assertEqual('reverted', compute.get_migration(
                self.ctxt, done['id'])['status'])
        self.assertIsInstance(self.unwrap(
            self.b.get_instance, self.ctxt, instance['uuid']),
            exception.InstanceNotFound)

    def test_cold_migration_of_a_stopped_instance_stays_stopped(self):
        instance = self.boot()
        self.a.stop_instance(self.ctxt, instance['uuid'])
        done = self.migrate(instance)
        self.assertEqual('migration', done['kind'])
        self.assertEqual('shutdown', self.b.get_instance(
            self.ctxt, instance['uuid'])['power_state'])
        self.a.confirm_resize(self.ctxt, done['id'])
        self.assertEqual('stopped', self.b.get_instance(
            self.ctxt, instance['uuid'])['vm_state'])

    def test_forced_and_timeout_reach_the_source_power_off(self):
        instance = self.boot()
        self.migrate(instance, clean_shutdown=False)
        self.assertEqual(False, self.drivers['host-a'].power_off_calls[-1][1])
        other = self.boot(name='other')
        self.migrate(other, shutdown_timeout=7)
        self.assertEqual(7, self.drivers['host-a'].power_off_calls[-1][2])

    def test_failure_on_the_destination_restarts_the_original(self):
        instance = self.boot()
        self.drivers['host-b'].fail_next['finish_migration'] = \
            exception.HypervisorError(action='define',
                                      instance_uuid=instance['uuid'],
                                      reason='no space')
        done = self.migrate(instance)
        self.assertEqual('failed', done['status'])
        self.assertIn('no space', done['message'])
        record = self.a.get_instance(self.ctxt, instance['uuid'])
        self.assertEqual(('active', None, 'running'),
                         (record['vm_state'], record['task_state'],
                          record['power_state']))
        self.assertNotIn(instance['uuid'], self.drivers['host-b'].guests)

    def test_bad_requests_change_nothing(self):
        instance = self.boot()
        cases = [({'new_flavor': {'vcpus': 0, 'memory_mb': 64}},
                  exception.InvalidInput),
                 ({'new_flavor': None, 'source_host': 'host-b'},
                  exception.InvalidInput),
                 ({'new_flavor': None, 'shutdown_timeout': -1},
                  exception.InvalidInput)]
        for kwargs, error in cases:
            arguments = dict({'source_host': 'host-a'}, **kwargs)
            self.assertIsInstance(self.unwrap(
                self.b.prep_resize, self.ctxt, instance['uuid'],
                **arguments), error)
        error = self.unwrap(self.b.prep_resize, self.ctxt, str(uuid.uuid4()),
                            None, 'host-a')
        self.assertIn('InstanceNotFound', str(error))
        self.assertEqual([], self.b.list_migrations(self.ctxt))

    def test_a_draining_source_starts_no_migration(self):
        instance = self.boot()
        self.services['host-a'].state = 'draining'
        error = self.unwrap(self.b.prep_resize, self.ctxt, instance['uuid'],
                            None, 'host-a')
        self.assertIn('source host-a is shutting down', str(error))

    def test_confirm_and_revert_only_where_they_belong(self):
        instance = self.boot()
        done = self.migrate(instance)
        self.assertIn('only on its source, host-a', str(self.unwrap(
            self.b.confirm_resize, self.ctxt, done['id'])))
        self.assertIn('only on its dest, host-b', str(self.unwrap(
            self.a.revert_resize, self.ctxt, done['id'])))
        self.a.confirm_resize(self.ctxt, done['id'])
        self.assertIn('reverted only while it is completed', str(self.unwrap(
            self.b.revert_resize, self.ctxt, done['id'])))

    def test_drain_cancels_a_queued_resize(self):
        gate = threading.Event()
        flow = self.b.resize_destination
        original = flow._resize
        flow._resize = lambda *args: (gate.wait(5), original(*args))
        first, second, third = (self.boot(name=n) for n in 'xyz')
        started = [self.b.prep_resize(self.ctxt, i['uuid'], None, 'host-a')
                   for i in (first, second)]
        queued = self.b.prep_resize(self.ctxt, third['uuid'], None, 'host-a')
        self.b.drain_started(time.monotonic() + 60)
        self.assertEqual('cancelled',
                         self.wait_final(self.b, queued['id'])['status'])
        gate.set()
        for migration in started:
            self.assertEqual('completed', self.wait_final(
                self.b, migration['id'])['status'])
        self.assertEqual('active', self.a.get_instance(
            self.ctxt, third['uuid'])['vm_state'])

    def test_a_disk_copy_at_the_drain_deadline_stops_and_the_guest_stays(
            self):
        # The source's SIGTERM comes mid-copy; a copy that would outlast
        # the drain is stopped before the deadline, the original restarted.
        instance = self.boot()
        controls = self.controls_handed_to('host-a', 'migrate_disk')
        gate = self.drivers['host-a'].disk_copy_gate = fakes.BlockingGate()
        migration = self.b.prep_resize(self.ctxt, instance['uuid'], None,
                                       'host-a')
        self.assertTrue(gate.entered.wait(5))
        # The copy's stop point is DRAIN_STOP_MARGIN before the drain
        # deadline: now, and not ten seconds from now.
        self.a.drain_started(time.monotonic() +
                             migrations.DRAIN_STOP_MARGIN)
        self.assertIn('graceful_shutdown_timeout', controls[0].abort_reason())
        done = self.wait_final(self.b, migration['id'])
        self.assertFalse(gate.released())
        self.assertEqual('failed', done['status'])
        self.assertIn('the disk copy was stopped', done['message'])
        self.assertIn('graceful_shutdown_timeout', done['message'])
        record = self.a.get_instance(self.ctxt, instance['uuid'])
        self.assertEqual(('host-a', 'active', None, 'running'),
                         (record['host'], record['vm_state'],
                          record['task_state'], record['power_state']))
        self.assertNotIn(instance['uuid'], self.drivers['host-b'].guests)

    def test_a_copy_asked_for_during_the_drain_has_the_deadline_at_once(
            self):
        instance = self.boot()
        gate = self.drivers['host-a'].disk_copy_gate = fakes.BlockingGate()
        # Draining already: resize_instance still comes, on compute-alt.
        self.a.drain_started(time.monotonic() +
                             migrations.DRAIN_STOP_MARGIN + 0.5)
        migration = self.b.prep_resize(self.ctxt, instance['uuid'], None,
                                       'host-a')
        done = self.wait_final(self.b, migration['id'])
        self.assertEqual('failed', done['status'])
        self.assertIn('the disk copy was stopped', done['message'])
        self.assertEqual('running', self.a.get_instance(
            self.ctxt, instance['uuid'])['power_state'])
        gate.release()

    def test_a_copy_that_ends_in_time_is_not_stopped(self):
        instance = self.boot()
        gate = self.drivers['host-a'].disk_copy_gate = fakes.BlockingGate()
        migration = self.b.prep_resize(self.ctxt, instance['uuid'], None,
                                       'host-a')
        self.assertTrue(gate.entered.wait(5))
        self.a.drain_started(time.monotonic() + 60)
        gate.release()
        self.assertEqual('completed',
                         self.wait_final(self.b, migration['id'])['status'])


class EventTest(TwoHostsTestCase):
    def test_build_waits_for_its_event(self):
        spec_uuid = str(uuid.uuid4())
        result = {}
        builder = threading.Thread(target=lambda: result.update(self.boot(
            uuid=spec_uuid, wait_for_events=[{'name': 'network-vif-plugged',
                                              'tag': 'port-1'}])))
        builder.start()
        wait_for(lambda: self.a.events.waiting_for(spec_uuid), 5,
                 'build waits')
        self.assertEqual('building', self.a._db.get_instance(
            spec_uuid)['vm_state'])
        self.a.external_instance_event(self.ctxt, spec_uuid,
                                       'network-vif-plugged', 'port-1')
        builder.join(5)
        self.assertEqual('active', result['vm_state'])

    def test_event_arriving_first_is_kept_for_the_build(self):
        spec_uuid = str(uuid.uuid4())
        answer = self.a.external_instance_event(self.ctxt, spec_uuid,
                                                'network-vif-plugged')
        self.assertFalse(answer['delivered'])
        record = self.boot(uuid=spec_uuid, wait_for_events=[
            {'name': 'network-vif-plugged'}])
        self.assertEqual('active', record['vm_state'])

    def test_build_whose_event_never_comes_fails_and_removes_the_guest(self):
        spec_uuid = str(uuid.uuid4())
        error = self.unwrap(self.boot, uuid=spec_uuid, wait_for_events=[
            {'name': 'network-vif-plugged', 'tag': 'p'}])
        self.assertIn('no network-vif-plugged-p event', str(error))
        self.assertEqual('error', self.a._db.get_instance(
            spec_uuid)['vm_state'])
        self.assertNotIn(spec_uuid, self.drivers['host-a'].guests)

    def test_bad_events_are_refused(self):
        for name, tag in (('', None), (3, None), ('x', 5)):
            self.assertIsInstance(self.unwrap(
                self.a.external_instance_event, self.ctxt,
                str(uuid.uuid4()), name, tag), exception.InvalidInput)

    def test_serial_console(self):
        instance = self.boot()
        self.assertEqual('file', self.a.get_serial_console(
            self.ctxt, instance['uuid'])['type'])


class LostGuestTest(TwoHostsTestCase):
    def test_a_guest_gone_from_the_source_after_a_failure_is_an_error(self):
        instance = self.boot()
        source = self.drivers['host-a']
        original = source.live_migration

        def lose_it(uuid_, *args):
            source.guests[uuid_]['state'] = 'shutdown'
            raise exception.MigrationError(reason='connection lost')
        source.live_migration = lose_it
        self.addCleanup(setattr, source, 'live_migration', original)
        migration = self.a.live_migrate_instance(self.ctxt, instance['uuid'],
                                                 'host-b')
        self.assertEqual('error',
                         self.wait_final(self.a, migration['id'])['status'])
        self.assertEqual('error', self.a.get_instance(
            self.ctxt, instance['uuid'])['vm_state'])
