"""Live migration, run by the source host.

live_migrate_instance (topic compute: new work) checks the destination
and returns the migration record at once; the migration itself runs as
background work, which the SIGTERM drain waits for:

    queued -> preparing  pre_live_migration at the destination (compute-alt)
           -> running    the driver moves the guest, reporting progress
           -> completed  post_live_migration_at_destination (compute-alt)
    or     -> failed / cancelled, after
                         rollback_live_migration_at_destination (compute-alt)

A migration still queued when the drain begins is cancelled and the
instance is left as it was. One running when the drain begins goes on,
but is aborted migrations.DRAIN_STOP_MARGIN seconds before the drain's
deadline, so that the guest is back running on the source, and the
destination told so, before the agent has to exit: never half-moved.

The destination holds its own drain from pre_live_migration until the
source reports the end (live_migration_destination.py), so either end
can be SIGTERMed mid-flight.
"""

import logging
import time
import uuid as uuidlib

from compute_agent import events as instance_events
from compute_agent import exception
from compute_agent import failpoints
from compute_agent import migration_checks as checks
from compute_agent import migration_recovery
from compute_agent import operations
from compute_agent import peers
from compute_agent.virt import driver as virt_driver
from compute_agent.virt import migration as virt_migration
from compute_agent.vm_states import ACTIVE, ERROR

LOG = logging.getLogger(__name__)

IN_PROGRESS = ('queued', 'preparing', 'running')


class LiveMigrationSource:
    def __init__(self, host, driver, database, peers_api, migrations,
                 operations_, work, events, settings):
        """:param peers_api: a compute_agent.rpcapi.ComputeAPI to the
            other agents; migrations: the MigrationRegistry; operations_:
            the Operations; work: the BackgroundWork; events: the
            InstanceEvents; settings: a MigrationSettings."""
        self._host = host
        self._driver = driver
        self._db = database
        self._peers = peers_api
        self._migrations = migrations
        self._ops = operations_
        self._work = work
        self._events = events
        self._settings = settings

    # -- new work -------------------------------------------------------------

    def live_migrate(self, ctxt, uuid, dest, block, events):
        if dest == self._host:
            raise exception.InvalidInput(
                reason=f'dest_host {dest} is this host; a live migration '
                       f'needs another one')
        # The claim stays after this returns: the background work below
        # finishes the operation.
        with self._ops.run(ctxt, uuid, 'live-migrate', {ACTIVE},
                           'migrating', recorded=False) as operation:
            record = operation.record
            if self._driver.get_power_state(uuid) != virt_driver.RUNNING:
                raise exception.InstanceInvalidState(
                    action='live-migrate', instance_uuid=uuid,
                    state='not running', allowed='the guest runs')
            target = self._check_destination(ctxt, dest, record, block)
        migration = self._db.put_migration(
            id=str(uuidlib.uuid4()), kind='live-migration',
            instance_uuid=uuid, source_host=self._host, dest_host=dest,
            status='queued', request_id=operations.request_id(ctxt),
            details={'block_migration': block, 'target': target,
                     'wait_for_events': [
                         {'name': name, 'tag': tag} for name, tag in events]})
        control = virt_migration.MigrationControl()
        self._migrations.add_live(migration['id'], control)
        LOG.info('Live migration %s of instance %s to %s queued',
                 migration['id'], uuid, dest)
        self._work.submit(
            'live_migration', self._settings.max_concurrent_live_migrations,
            uuid, migration['request_id'],
            run=lambda: self._live_migrate(ctxt, migration, record, control,
                                           events),
            cancel=lambda reason: self._cancel_queued(migration, reason),
            cancel_reason=control.abort_reason)
        return migration

    def _check_destination(self, ctxt, dest, record, block):
        peers.require_running(self._peers, ctxt, dest, 'destination')
        with peers.calling(dest, 'take this instance'):
            return self._peers.check_can_live_migrate_destination(
                ctxt, dest, instance=record, block_migration=block)

    def _cancel_queued(self, migration, reason):
        self._migrations.forget_live(migration['id'])
        self._ops.finish(migration['instance_uuid'])
        self._db.update_migration(migration['id'], status='cancelled',
                                  message=f'cancelled before it started: '
                                          f'{reason}')
        LOG.info('Live migration %s cancelled before it started: %s',
                 migration['id'], reason)

    # -- the migration itself -------------------------------------------------

    def _live_migrate(self, ctxt, migration, record, control, events):
        uuid, dest = record['uuid'], migration['dest_host']
        block = migration['details']['block_migration']
        target = migration['details']['target']
        started = time.monotonic()
        timeout = self._settings.live_migration_completion_timeout
        if timeout:
            control.set_deadline(
                started + timeout,
                f'it did not complete within {timeout} s '
                f'(live_migration_completion_timeout)')
        self._db.update_migration(migration['id'], status='preparing')
        prepared = False
        try:
            with self._ops.action_record(ctxt, uuid, 'live-migrate'):
                failpoints.reach(failpoints.LIVE_SOURCE_STARTED)
                xml = self._driver.get_migratable_xml(uuid)
                waiter = self._events.prepare(
                    uuid, [instance_events.event_key(*e) for e in events])
                with peers.calling(dest, 'prepare for the instance'):
                    prepared = True
                    destination_xml = peers.call_watched(
                        self._peers, ctxt, dest, 'pre_live_migration',
                        lambda: self._peers.pre_live_migration(
                            ctxt, dest, instance=record,
                            migration=migration, migratable_xml=xml,
                            block_migration=block))
                failpoints.reach(failpoints.LIVE_SOURCE_DEST_PREPARED)
                self._events.wait_for(waiter, 'live-migrate', uuid)
                # Kept for a restart, which may have to ask the
                # destination to take the guest over (migration_recovery).
                migration = self._db.update_migration(
                    migration['id'], status='running',
                    details=dict(migration['details'],
                                 destination_xml=destination_xml))
                self._driver.live_migration(uuid, target, destination_xml,
                                            block, control)
                failpoints.reach(failpoints.LIVE_SOURCE_MOVED)
        except Exception as error:
            self._failed(ctxt, migration, record, control, error, prepared)
            return
        finally:
            self._migrations.forget_live(migration['id'])
        self._done(ctxt, migration, record, destination_xml,
                   time.monotonic() - started)

    def _failed(self, ctxt, migration, record, control, error, prepared):
        uuid, dest = record['uuid'], migration['dest_host']
        aborted = control.abort_reason()
        message = str(error)
        if prepared:
            try:
                with peers.calling(dest, 'roll the migration back'):
                    peers.call_watched(
                        self._peers, ctxt, dest,
                        'rollback_live_migration_at_destination',
                        lambda: self._peers
                        .rollback_live_migration_at_destination(
                            ctxt, dest, instance_uuid=uuid,
                            migration_id=migration['id'], reason=message))
            except exception.MigrationError as rollback_error:
                LOG.error('Live migration %s: %s; clean the destination up '
                          'by hand', migration['id'], rollback_error)
                message += f' (and the rollback failed: {rollback_error})'
        status = 'cancelled' if aborted else 'failed'
        if not isinstance(error, exception.ComputeAgentError):
            LOG.exception('Live migration %s failed unexpectedly',
                          migration['id'])
        power_state = self._ops.power_state(uuid)
        if power_state != virt_driver.RUNNING:
            # Lost on the way: an operator must find out where it runs.
            status = 'error'
        self._ops.finish(uuid, power_state=power_state,
                         vm_state=ACTIVE if status != 'error' else ERROR)
        self._db.update_migration(migration['id'], status=status,
                                  message=message,
                                  progress=control.progress() or None)
        LOG.warning('Live migration %s of instance %s to %s %s: %s; the '
                    'instance stays here', migration['id'], uuid, dest,
                    status, message)

    def _done(self, ctxt, migration, record, destination_xml, seconds):
        uuid, dest = record['uuid'], migration['dest_host']
        try:
            with peers.calling(dest, 'take the migrated instance over'):
                peers.call_watched(
                    self._peers, ctxt, dest,
                    'post_live_migration_at_destination',
                    lambda: self._peers.post_live_migration_at_destination(
                        ctxt, dest, instance=record, migration=migration,
                        destination_xml=destination_xml))
        except exception.MigrationError as first_error:
            error = self._take_over_again(ctxt, migration, record,
                                          first_error)
        else:
            error = None
        if error is not None:
            # The guest runs there now; only its record is in doubt.
            self._db.update_instance(uuid, host=dest, task_state=None,
                                     vm_state=ERROR)
            self._db.update_migration(migration['id'], status='error',
                                      message=f'the guest runs on {dest}, '
                                              f'but {error}')
            LOG.error('Live migration %s: the guest runs on %s, but %s',
                      migration['id'], dest, error)
            return
        failpoints.reach(failpoints.LIVE_SOURCE_DEST_FINISHED)
        try:
            self._driver.cleanup_after_live_migration(uuid)
        except exception.ComputeAgentError as error:
            LOG.warning('Live migration %s: could not remove the files the '
                        'instance left here: %s', migration['id'], error)
        failpoints.reach(failpoints.LIVE_SOURCE_CLEANED_UP)
        self._ops.finish(uuid, host=dest)
        self._db.update_migration(migration['id'], status='completed',
                                  progress={'percent': 100})
        LOG.info('Live-migrated instance %s to %s in %.2f s (migration %s)',
                 uuid, dest, seconds, migration['id'])

    def _take_over_again(self, ctxt, migration, record, error):
        """The destination's answer to the take-over did not come (its
        agent may have restarted): ask it whether it owns the instance,
        and once more to take it over if not. Returns the error left."""
        LOG.warning('Live migration %s: %s; asking %s again',
                    migration['id'], error, migration['dest_host'])
        try:
            migration_recovery.take_over_at_destination(
                self._peers, ctxt, migration, record)
        except exception.MigrationError as again:
            return again
        return None

    # -- requests about a migration in progress -------------------------------

    def _running(self, migration_id, action):
        migration = self._migrations.own(migration_id, 'source_host', action)
        checks.require_step(migration, action, checks.LIVE, IN_PROGRESS)
        control = self._migrations.live(migration['id'])
        if control is None:
            raise exception.InvalidInput(
                reason=f'migration {migration["id"]} is not running on '
                       f'{self._host} now; only a live migration in '
                       f'progress can be {action}')
        return migration, control

    def abort(self, ctxt, migration_id):
        migration, control = self._running(migration_id, 'aborted')
        control.request_abort(
            f'aborted by request {operations.request_id(ctxt)}')
        LOG.info('Abort of live migration %s requested', migration['id'])
        return self._db.get_migration(migration['id'])

    def force_complete(self, ctxt, migration_id):
        migration, control = self._running(migration_id,
                                           'forced to complete')
        if migration['status'] != 'running':
            raise exception.InvalidInput(
                reason=f'migration {migration["id"]} is '
                       f'{migration["status"]}; it can be forced to '
                       f'complete once it is running')
        control.request_force_complete()
        LOG.info('Forced completion of live migration %s requested',
                 migration['id'])
        return self._db.get_migration(migration['id'])
