"""A migration's agent killed at a failpoint, on either end, and what its
restart and the other end make of it: the instance ends up owned by
exactly one host, both migration records end, nothing is left held.

A kill is modelled in one process: the armed failpoint raises Killed in
the killed host's code; the loopback bus restarts that host (a new
manager on the same database and fake hypervisor, whose recovery runs)
and answers the caller on the other host with a timeout, as the bus does
when a request's agent died; code of the killed host further up the same
thread unwinds with Killed too, as if it had never run.
"""

import threading
import uuid as uuid_lib

import fixtures
import oslo_messaging

from compute_agent import failpoints
from compute_agent import peers
from tests.fixtures.polling import wait_for
from tests.unit import test_manager_migrate


class Killed(BaseException):
    """The process of a host died here."""


class CrashingPeers(test_manager_migrate.LoopbackPeers):
    def __init__(self, managers, restart):
        super().__init__(managers)
        self._restart = restart
        self._running_as = threading.local()
        self.generation = {}   # host -> how many times it was restarted

    def host(self):
        """The host whose code the calling thread runs."""
        return getattr(self._running_as, 'host', None)

    def _alive_since(self, host, generation):
        return self.generation.get(host, 0) == generation

    def as_host(self, host, call, *args, **kwargs):
        """Run call as host's code. A Killed raised in it restarts host;
        when the host of the code around it died meanwhile, that code
        unwinds with Killed."""
        outer = self.host()
        generations = (self.generation.get(host, 0),
                       self.generation.get(outer, 0))
        self._running_as.host = host
        try:
            return call(*args, **kwargs)
        except Killed:
            if self._alive_since(host, generations[0]):
                self.generation[host] = generations[0] + 1
                self._restart(host)
            raise
        finally:
            self._running_as.host = outer
            if outer not in (None, host) and \
                    not self._alive_since(outer, generations[1]):
                raise Killed(outer)

    def __getattr__(self, method):
        def call(ctxt, host, *args, timeout=None, alt=None, **kwargs):
            self.calls.append((host, method))
            caller = self.host()
            generation = self.generation.get(caller, 0)
            try:
                return self.as_host(host, self._dispatch, host, method,
                                    ctxt, *args, **kwargs)
            except Killed:
                if self._alive_since(caller, generation):
                    raise oslo_messaging.MessagingTimeout(
                        f'{host} died before it answered') from None
                raise
        return call

    def _dispatch(self, host, method, ctxt, *args, **kwargs):
        try:
            return getattr(self._managers[host], method)(ctxt, *args,
                                                         **kwargs)
        except oslo_messaging.ExpectedException as wrapped:
            error = wrapped.exc_info[1]
            raise oslo_messaging.RemoteError(
                type(error).__name__, str(error)) from None


class CrashTestCase(test_manager_migrate.TwoHostsTestCase):
    """Arms one failpoint on one host."""

    def setUp(self):
        self.armed = None   # (host, failpoint)
        self.killed = threading.Event()
        super().setUp()
        self.peers = CrashingPeers(self.managers, self.restart)
        for host in ('host-a', 'host-b'):
            self.managers[host] = self._manager(host)
        self.useFixture(fixtures.MonkeyPatch(
            'compute_agent.failpoints.reach', self._reach))
        self.useFixture(fixtures.MonkeyPatch(
            'compute_agent.peers.call_watched',
            self._watched(peers.call_watched)))

    def _watched(self, real):
        """peers.call_watched, whose call runs as its caller's host in
        its own thread; the caller unwinds with Killed when its host died
        meanwhile."""
        def call_watched(peers_api, ctxt, host, method, call, **kwargs):
            caller = self.peers.host()
            generation = self.peers.generation.get(caller, 0)

            def as_caller():
                try:
                    return self.peers.as_host(caller, call)
                except Killed:
                    raise RuntimeError(f'{caller} died') from None
            try:
                return real(peers_api, ctxt, host, method, as_caller,
                            **kwargs)
            finally:
                if not self.peers._alive_since(caller, generation):
                    raise Killed(caller)
        return call_watched

    def _manager(self, host):
        compute = super()._manager(host)
        work = compute.work
        real_submit = work.submit

        def submit(*args, **kwargs):
            run = kwargs['run']
            kwargs['run'] = lambda: self._background(host, run)
            return real_submit(*args, **kwargs)
        work.submit = submit
        return compute

    def _background(self, host, run):
        try:
            self.peers.as_host(host, run)
        except Killed:
            pass   # the thread of a dead process

    def _reach(self, name):
        if self.armed == (self.peers.host(), name):
            self.armed = None
            self.killed.set()
            raise Killed(name)

    def restart(self, host):
        self.managers[host] = self._manager(host)
        self.restarted = host

    def call(self, host, method, *args, **kwargs):
        """A client's request to host."""
        return self.peers.as_host(
            host, getattr(self.managers[host], method), self.ctxt, *args,
            **kwargs)

    def record(self, host, uuid):
        return self.managers[host].compute._db.get_instance(uuid)

    def migration(self, host, migration_id):
        return self.managers[host].compute._db.get_migration(migration_id)

    def owners(self, uuid):
        """Hosts whose own record of the instance says it is there."""
        return [host for host in ('host-a', 'host-b')
                if (self.record(host, uuid) or {}).get('host') == host]

    def killed_and_settled(self, uuid, migration_id):
        """The kill happened, and both ends are done with the migration.
        """
        if not self.killed.is_set():
            return False
        for host in ('host-a', 'host-b'):
            record = self.record(host, uuid)
            if record is not None and record['task_state'] is not None:
                return False
            migration = self.migration(host, migration_id)
            if migration is not None and \
                    migration['status'] in ('queued', 'preparing',
                                            'running'):
                return False
            if self.managers[host].compute._db.list_open_actions():
                return False   # the restart has not closed them yet
        return True

    def assert_settled(self, uuid, owner, migration_id, status):
        self.assertEqual([owner], self.owners(uuid))
        for host in ('host-a', 'host-b'):
            record = self.record(host, uuid)
            if record is not None:
                self.assertIsNone(record['task_state'], host)
            migration = self.migration(host, migration_id)
            if migration is not None:
                self.assertEqual(status, migration['status'],
                                 f'{host}: {migration["message"]}')
            self.assertEqual([], [
                action for action in self.managers[host].compute._db
                .list_open_actions()], host)
        guests_on = [host for host in ('host-a', 'host-b')
                     if uuid in self.drivers[host].guests]
        self.assertIn(owner, guests_on)


class LiveMigrationCrashTest(CrashTestCase):
    def _crash(self, host, failpoint, moved):
        uuid = self.boot()['uuid']
        self.armed = (host, failpoint)
        migration = self.call('host-a', 'live_migrate_instance', uuid,
                              'host-b')
        wait_for(lambda: self.killed_and_settled(uuid, migration['id']), 10,
                 'the kill and the settling')
        owner = 'host-b' if moved else 'host-a'
        self.assert_settled(uuid, owner, migration['id'],
                            'completed' if moved else 'failed')
        if failpoint in (failpoints.LIVE_SOURCE_STARTED,
                         failpoints.LIVE_SOURCE_DEST_PREPARED,
                         failpoints.LIVE_SOURCE_MOVED):
            # The killed source closes the action it left open (after the
            # move, the action had ended before the kill).
            action = self.managers['host-a'].compute._db.list_actions(
                uuid)[-1]
            self.assertEqual(('live-migrate', 'interrupted'),
                             (action['action'], action['result']))
            self.assertIn('was settled', action['message'])
        self.assertEqual({}, self.managers['host-b'].compute.migrations
                         ._incoming_holds)
        if not moved:
            self.assertNotIn(uuid, self.drivers['host-b'].files)
        # And it can go (again, or back) from where it is.
        other = 'host-a' if owner == 'host-b' else 'host-b'
        again = self.call(owner, 'live_migrate_instance', uuid, other)
        self.assertEqual('completed', self.wait_final(
            self.managers[owner], again['id'])['status'])

    def test_source_killed_when_started(self):
        self._crash('host-a', failpoints.LIVE_SOURCE_STARTED, False)

    def test_source_killed_when_the_destination_was_prepared(self):
        self._crash('host-a', failpoints.LIVE_SOURCE_DEST_PREPARED, False)

    def test_destination_killed_when_prepared(self):
        self._crash('host-b', failpoints.LIVE_DEST_PREPARED, False)

    def test_source_killed_when_the_guest_had_moved(self):
        self._crash('host-a', failpoints.LIVE_SOURCE_MOVED, True)

    def test_source_killed_when_the_destination_had_taken_over(self):
        self._crash('host-a', failpoints.LIVE_SOURCE_DEST_FINISHED, True)

    def test_source_killed_when_cleaned_up(self):
        self._crash('host-a', failpoints.LIVE_SOURCE_CLEANED_UP, True)

    def test_destination_killed_when_the_guest_was_defined(self):
        self._crash('host-b', failpoints.LIVE_DEST_DEFINED, True)

    def test_destination_killed_when_it_had_taken_over(self):
        self._crash('host-b', failpoints.LIVE_DEST_FINISHED, True)


class ColdMigrationCrashTest(CrashTestCase):
    """prep_resize at host-b (the destination), from host-a."""

    def _resize(self, uuid):
        migration = self.call('host-b', 'prep_resize', uuid,
                              {'vcpus': 2, 'memory_mb': 256}, 'host-a')
        wait_for(lambda: self.killed_and_settled(uuid, migration['id']), 10,
                 'the kill and the settling')
        return migration

    def _crash(self, host, failpoint, arrived):
        uuid = self.boot()['uuid']
        self.armed = (host, failpoint)
        migration = self._resize(uuid)
        if not arrived:
            self.assert_settled(uuid, 'host-a', migration['id'], 'failed')
            record = self.record('host-a', uuid)
            self.assertEqual(('active', 'running'),
                             (record['vm_state'], record['power_state']))
            self.assertNotIn(uuid, self.drivers['host-b'].guests)
            # It can be resized again.
            again = self._resize(uuid)
            self.assertEqual('completed', self.migration(
                'host-b', again['id'])['status'])
            return
        self.assert_settled(uuid, 'host-b', migration['id'], 'completed')
        self.assertEqual('resized', self.record('host-b', uuid)['vm_state'])
        self.assertEqual(('host-b', 'resized'), (
            lambda r: (r['host'], r['vm_state']))(
                self.record('host-a', uuid)))
        # And it can be confirmed.
        self.call('host-a', 'confirm_resize', migration['id'])
        self.assertEqual('active', self.record('host-b', uuid)['vm_state'])
        self.assertNotIn(uuid, self.drivers['host-a'].guests)

    def test_destination_killed_when_started(self):
        self._crash('host-b', failpoints.RESIZE_DEST_STARTED, False)

    def test_source_killed_when_claimed(self):
        self._crash('host-a', failpoints.RESIZE_SOURCE_CLAIMED, False)

    def test_source_killed_when_powered_off(self):
        self._crash('host-a', failpoints.RESIZE_SOURCE_POWERED_OFF, False)

    def test_source_killed_when_the_disk_was_copied(self):
        self._crash('host-a', failpoints.RESIZE_SOURCE_DISK_COPIED, False)

    def test_destination_killed_when_the_disk_was_copied(self):
        self._crash('host-b', failpoints.RESIZE_DEST_DISK_COPIED, False)

    def test_destination_killed_when_the_guest_was_defined(self):
        self._crash('host-b', failpoints.RESIZE_DEST_DEFINED, False)

    def test_source_killed_when_the_destination_had_started_it(self):
        self._crash('host-a', failpoints.RESIZE_SOURCE_DEST_FINISHED, True)

    def test_destination_killed_when_handed_over(self):
        self._crash('host-b', failpoints.RESIZE_DEST_HANDED_OVER, True)


class ConfirmRevertCrashTest(CrashTestCase):
    def setUp(self):
        super().setUp()
        self.uuid = self.boot()['uuid']
        migration = self.call('host-b', 'prep_resize', self.uuid,
                              {'vcpus': 2, 'memory_mb': 256}, 'host-a')
        self.migration_id = self.wait_final(self.b, migration['id'])['id']

    def _interrupt(self, host, failpoint, caller, method):
        self.armed = (host, failpoint)
        try:
            self.call(caller, method, self.migration_id)
        except (Killed, oslo_messaging.ExpectedException):
            pass   # the caller's agent died, or answered an error
        self.assertTrue(self.killed.is_set())
        wait_for(lambda: self.killed_and_settled(self.uuid,
                                                 self.migration_id),
                 10, 'the settling')

    def _assert_confirmed(self):
        self.assert_settled(self.uuid, 'host-b', self.migration_id,
                            'confirmed')
        self.assertEqual('active', self.record('host-b', self.uuid)[
            'vm_state'])
        self.assertNotIn(self.uuid, self.drivers['host-a'].guests)

    def _assert_reverted(self):
        self.assert_settled(self.uuid, 'host-a', self.migration_id,
                            'reverted')
        self.assertEqual(('active', 'running', 1), (
            lambda r: (r['vm_state'], r['power_state'], r['flavor'][
                'vcpus']))(self.record('host-a', self.uuid)))
        self.assertNotIn(self.uuid, self.drivers['host-b'].guests)

    def _confirm(self, host, failpoint):
        self._interrupt(host, failpoint, 'host-a', 'confirm_resize')
        if self.migration('host-a', self.migration_id)['status'] == \
                'completed':
            self.call('host-a', 'confirm_resize', self.migration_id)
        self._assert_confirmed()

    def _revert(self, host, failpoint):
        self._interrupt(host, failpoint, 'host-b', 'revert_resize')
        if host == 'host-b':
            # The killed destination closes the action it left open.
            action = self.managers['host-b'].compute._db.list_actions(
                self.uuid)[-1]
            self.assertEqual(('revert-resize', 'interrupted'),
                             (action['action'], action['result']))
            self.assertIn('was settled', action['message'])
        if self.migration('host-b', self.migration_id)['status'] == \
                'completed':
            self.call('host-b', 'revert_resize', self.migration_id)
        self._assert_reverted()

    def test_confirm_source_killed_when_started(self):
        self._confirm('host-a', failpoints.CONFIRM_SOURCE_STARTED)

    def test_confirm_source_killed_when_the_destination_confirmed(self):
        self._confirm('host-a', failpoints.CONFIRM_SOURCE_DEST_CONFIRMED)

    def test_confirm_source_killed_when_the_original_was_removed(self):
        self._confirm('host-a', failpoints.CONFIRM_SOURCE_REMOVED)

    def test_confirm_destination_killed_when_claimed(self):
        self._confirm('host-b', failpoints.CONFIRM_DEST_CLAIMED)

    def test_revert_destination_killed_when_started(self):
        self._revert('host-b', failpoints.REVERT_DEST_STARTED)

    def test_revert_destination_killed_when_its_copy_was_removed(self):
        self._revert('host-b', failpoints.REVERT_DEST_REMOVED)

    def test_revert_destination_killed_when_the_record_moved(self):
        self._revert('host-b', failpoints.REVERT_DEST_RECORD_MOVED)

    def test_revert_destination_killed_when_the_source_restarted(self):
        self._revert('host-b', failpoints.REVERT_DEST_SOURCE_RESTARTED)

    def test_revert_source_killed_when_started(self):
        self._revert('host-a', failpoints.REVERT_SOURCE_STARTED)

    def test_revert_source_killed_when_restarted(self):
        self._revert('host-a', failpoints.REVERT_SOURCE_RESTARTED)


class UnreachablePeerTest(test_manager_migrate.TwoHostsTestCase):
    def test_a_silent_peer_is_asked_once_per_restart(self):
        # systemd's start timeout would kill an agent asking a dead peer
        # about each of its migrations in turn: a restart loop.
        database = self.a.compute._db
        moved = []
        for _ in range(2):
            uuid = self.boot()['uuid']
            database.update_instance(uuid, task_state='migrating')
            self.drivers['host-a'].guests.pop(uuid)   # the guest left
            moved.append(database.put_migration(
                id=str(uuid_lib.uuid4()), kind='live-migration',
                instance_uuid=uuid, source_host='host-a',
                dest_host='host-b', status='running', request_id=None,
                details={'block_migration': False})['id'])
        self.peers.unreachable.add('host-b')
        self.peers.calls.clear()
        self._manager('host-a')
        self.assertEqual(1, self.peers.calls.count(
            ('host-b', 'get_instance')), self.peers.calls)
        for migration_id in moved:
            migration = database.get_migration(migration_id)
            self.assertEqual('error', migration['status'])
            self.assertIn('did not answer', migration['message'])
