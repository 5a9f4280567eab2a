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
but is aborted base.DRAIN_STOP_MARGIN seconds before the drain's
deadline, so that the guest is back running on the source, and the
destination told so, before the agent has to exit: never half-moved.

The destination holds its own drain from pre_live_migration until the
source reports the end, so either end can be SIGTERMed mid-flight.
"""

import logging
import time
import uuid as uuidlib

from compute_agent import events as instance_events
from compute_agent import exception
from compute_agent import manager_base as base
from compute_agent import migration_checks as checks
from compute_agent import peers
from compute_agent import validation
from compute_agent.virt import driver as virt_driver
from compute_agent.virt import migration as virt_migration

LOG = logging.getLogger(__name__)

remotable = base.remotable

# How much longer than the completion timeout a destination waits for
# the source to say how an incoming migration ended (without a completion
# timeout: a day; the drain's own deadline still applies).
INCOMING_HOLD_MARGIN = 300
UNLIMITED_HOLD = 86400
IN_PROGRESS = ('queued', 'preparing', 'running')
# The destination's record of an incoming live migration: running once
# pre_live_migration prepared it; error when this agent restarted while
# it was on its way (the guest may have arrived all the same); failed
# when the preparation failed (the rollback still cleans up after it).
TAKE_OVER_FROM = ('running', 'error')
ROLL_BACK_FROM = ('preparing', 'running', 'failed', 'error')


class LiveMigrationMixin:
    # -- source: new work --------------------------------------------------

    @remotable
    def live_migrate_instance(self, ctxt, instance_uuid, dest_host,
                              block_migration=False, wait_for_events=None):
        uuid = validation.instance_uuid(instance_uuid)
        dest = validation.host_name(dest_host, 'dest_host')
        block = validation.boolean(block_migration, 'block_migration')
        events = validation.event_list(wait_for_events)
        if dest == self._host:
            raise exception.InvalidInput(
                reason=f'dest_host {dest} is this host; a live migration '
                       f'needs another one')
        record = self._begin(uuid, 'live-migrate', {base.ACTIVE},
                             'migrating')
        try:
            if self._driver.get_power_state(uuid) != virt_driver.RUNNING:
                raise exception.InstanceInvalidState(
                    action='live-migrate', instance_uuid=uuid,
                    state='not running', allowed='the guest runs')
            target = self._check_destination(ctxt, dest, record, block)
        except Exception as error:
            raise self._fail(uuid, 'live-migrate', error)
        migration = self._db.put_migration(
            id=str(uuidlib.uuid4()), kind='live-migration',
            instance_uuid=uuid, source_host=self._host, dest_host=dest,
            status='queued', request_id=(ctxt or {}).get('request_id'),
            details={'block_migration': block, 'target': target,
                     'wait_for_events': [
                         {'name': name, 'tag': tag} for name, tag in events]})
        control = virt_migration.MigrationControl()
        with self._migrations_lock:
            self._live_controls[migration['id']] = control
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
        self._require_peer_running(ctxt, dest, 'destination')
        with peers.calling(dest, 'take this instance'):
            return self._peers.check_can_live_migrate_destination(
                ctxt, dest, instance=record, block_migration=block)

    def _cancel_queued(self, migration, reason):
        self._forget_control(migration['id'])
        self._finish(migration['instance_uuid'])
        self._db.update_migration(migration['id'], status='cancelled',
                                  message=f'cancelled before it started: '
                                          f'{reason}')
        LOG.info('Live migration %s cancelled before it started: %s',
                 migration['id'], reason)

    # -- source: the migration itself ---------------------------------------

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
            with self._action(ctxt, uuid, 'live-migrate'):
                xml = self._driver.get_migratable_xml(uuid)
                waiter = self._events.prepare(
                    uuid, [instance_events.event_key(*e) for e in events])
                with peers.calling(dest, 'prepare for the instance'):
                    prepared = True
                    destination_xml = self._peers.pre_live_migration(
                        ctxt, dest, instance=record, migration=migration,
                        migratable_xml=xml, block_migration=block)
                self._wait_for_events(waiter, 'live-migrate', uuid)
                self._db.update_migration(migration['id'], status='running')
                self._driver.live_migration(uuid, target, destination_xml,
                                            block, control)
        except Exception as error:
            self._live_migration_failed(ctxt, migration, record, control,
                                        error, prepared)
            return
        finally:
            self._forget_control(migration['id'])
        self._live_migration_done(ctxt, migration, record, destination_xml,
                                  time.monotonic() - started)

    def _live_migration_failed(self, ctxt, migration, record, control, error,
                               prepared):
        uuid, dest = record['uuid'], migration['dest_host']
        aborted = control.abort_reason()
        message = str(error)
        if prepared:
            try:
                with peers.calling(dest, 'roll the migration back'):
                    self._peers.rollback_live_migration_at_destination(
                        ctxt, dest, instance_uuid=uuid,
                        migration_id=migration['id'], reason=message)
            except exception.MigrationError as rollback_error:
                LOG.error('Live migration %s: %s; clean the destination up '
                          'by hand', migration['id'], rollback_error)
                message += f' (and the rollback failed: {rollback_error})'
        status = 'cancelled' if aborted else 'failed'
        if not isinstance(error, exception.ComputeAgentError):
            LOG.exception('Live migration %s failed unexpectedly',
                          migration['id'])
        power_state = self._safe_power_state(uuid)
        if power_state != virt_driver.RUNNING:
            # Lost on the way: an operator must find out where it runs.
            status = 'error'
        self._finish(uuid, power_state=power_state,
                     vm_state=base.ACTIVE if status != 'error'
                     else base.ERROR)
        self._db.update_migration(migration['id'], status=status,
                                  message=message,
                                  progress=control.progress() or None)
        LOG.warning('Live migration %s of instance %s to %s %s: %s; the '
                    'instance stays here', migration['id'], uuid, dest,
                    status, message)

    def _live_migration_done(self, ctxt, migration, record, destination_xml,
                             seconds):
        uuid, dest = record['uuid'], migration['dest_host']
        try:
            with peers.calling(dest, 'take the migrated instance over'):
                self._peers.post_live_migration_at_destination(
                    ctxt, dest, instance=record, migration=migration,
                    destination_xml=destination_xml)
        except exception.MigrationError as error:
            # The guest runs there now; only its record is in doubt.
            self._db.update_instance(uuid, host=dest, task_state=None,
                                     vm_state=base.ERROR)
            self._db.update_migration(migration['id'], status='error',
                                      message=f'the guest runs on {dest}, '
                                              f'but {error}')
            LOG.error('Live migration %s: the guest runs on %s, but %s',
                      migration['id'], dest, error)
            return
        try:
            self._driver.cleanup_after_live_migration(uuid)
        except exception.ComputeAgentError as error:
            LOG.warning('Live migration %s: could not remove the files the '
                        'instance left here: %s', migration['id'], error)
        self._db.update_instance(uuid, host=dest, task_state=None)
        self._db.update_migration(migration['id'], status='completed',
                                  progress={'percent': 100})
        LOG.info('Live-migrated instance %s to %s in %.2f s (migration %s)',
                 uuid, dest, seconds, migration['id'])

    def _forget_control(self, migration_id):
        with self._migrations_lock:
            self._live_controls.pop(migration_id, None)

    def _live_control(self, migration_id, action):
        migration = self._own_migration(migration_id, 'source_host', action)
        checks.require_step(migration, action, checks.LIVE, IN_PROGRESS)
        with self._migrations_lock:
            control = self._live_controls.get(migration['id'])
        if control is None:
            raise exception.InvalidInput(
                reason=f'migration {migration["id"]} is not running on '
                       f'{self._host} now; only a live migration in '
                       f'progress can be {action}')
        return migration, control

    @remotable
    def live_migration_abort(self, ctxt, migration_id):
        migration, control = self._live_control(migration_id, 'aborted')
        control.request_abort(
            f'aborted by request {(ctxt or {}).get("request_id")}')
        LOG.info('Abort of live migration %s requested', migration['id'])
        return self._db.get_migration(migration['id'])

    @remotable
    def live_migration_force_complete(self, ctxt, migration_id):
        migration, control = self._live_control(migration_id,
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

    # -- destination ----------------------------------------------------------

    @remotable
    def check_can_live_migrate_destination(self, ctxt, instance,
                                           block_migration=False):
        record = validation.peer_instance(instance)
        validation.boolean(block_migration, 'block_migration')
        if self._work.draining:
            raise exception.MigrationError(
                reason=f'host {self._host} is shutting down')
        existing = self._db.get_instance(record['uuid'])
        if existing is not None and existing['host'] == self._host:
            raise exception.InvalidInput(
                reason=f'instance {record["uuid"]} is already on host '
                       f'{self._host}')
        self._driver.check_image(record['image'])
        return dict(self._driver.migration_target(), host=self._host)

    @remotable
    def pre_live_migration(self, ctxt, instance, migration, migratable_xml,
                           block_migration=False):
        record = validation.peer_instance(instance)
        migration = self._peer_migration(migration, 'dest_host')
        validation.short_text(migratable_xml, 'migratable_xml', 1 << 20)
        block = validation.boolean(block_migration, 'block_migration')
        uuid = record['uuid']
        # This request begins this host's part: the migration must be new
        # here, and the instance neither this host's own nor arriving.
        checks.require_new(self._db, self._host, migration)
        checks.require_step(migration, 'prepared for', checks.LIVE,
                            ('queued', 'preparing'), uuid)
        checks.require_not_owned(self._db, self._host, uuid, 'receive')
        checks.require_no_other_arrival(self._db, self._host, uuid,
                                        'receive')
        self._record_new_migration(migration, status='preparing')
        # The hold comes after the record, and is released on every
        # failure after it: nothing else would release it.
        hold = self._work.hold(
            'incoming_live_migration', uuid, (ctxt or {}).get('request_id'),
            (self._settings.live_migration_completion_timeout or
             UNLIMITED_HOLD) + INCOMING_HOLD_MARGIN)
        try:
            destination_xml = self._driver.pre_live_migration(
                uuid, migratable_xml, record['image'], block)
            with self._migrations_lock:
                self._incoming_holds[migration['id']] = hold
            self._db.update_migration(migration['id'], status='running')
        except Exception as error:
            self._release_hold(migration['id'])
            hold.release()
            self._db.update_migration(migration['id'], status='failed',
                                      message=str(error))
            raise
        return destination_xml

    @remotable
    def post_live_migration_at_destination(self, ctxt, instance, migration,
                                           destination_xml):
        record = validation.peer_instance(instance)
        validation.short_text(destination_xml, 'destination_xml', 1 << 20)
        uuid = record['uuid']
        migration = self._recorded_peer_migration(migration, 'dest_host',
                                                  'taken over')
        checks.require_step(migration, 'taken over', checks.LIVE,
                            TAKE_OVER_FROM, uuid)
        # The record written below must not replace this host's own.
        checks.require_not_owned(self._db, self._host, uuid,
                                 'take over')
        try:
            self._driver.post_live_migration_at_destination(
                uuid, destination_xml)
            arrived = self._db.put_instance(
                uuid=uuid, name=record['name'], host=self._host,
                vm_state=base.ACTIVE, task_state=None,
                power_state=self._safe_power_state(uuid),
                vcpus=record['flavor']['vcpus'],
                memory_mb=record['flavor']['memory_mb'],
                image=record['image'],
                last_power_off=record.get('last_power_off'),
                snapshot_id=None)
            self._db.update_migration(migration['id'], status='completed')
            LOG.info('Instance %s arrived by live migration %s from %s',
                     uuid, migration['id'], migration['source_host'])
            return arrived
        finally:
            self._release_hold(migration['id'])

    @remotable
    def rollback_live_migration_at_destination(self, ctxt, instance_uuid,
                                               migration_id, reason=''):
        uuid = validation.instance_uuid(instance_uuid)
        migration_id = validation.migration_id(migration_id)
        validation.short_text(reason, 'reason')
        migration = self._own_migration(migration_id, 'dest_host',
                                        'rolled back')
        checks.require_step(migration, 'rolled back', checks.LIVE,
                            ROLL_BACK_FROM, uuid)
        # The rollback destroys the domain: never that of an instance
        # this host owns, nor of one another migration is bringing here.
        checks.require_not_owned(self._db, self._host, uuid,
                                 'roll back the arrival of')
        checks.require_no_other_arrival(
            self._db, self._host, uuid, 'roll back the arrival of',
            besides=migration_id)
        try:
            self._driver.rollback_live_migration_at_destination(uuid)
        finally:
            self._release_hold(migration_id)
            self._db.update_migration(migration_id, status='failed',
                                      message=reason)
        LOG.info('Rolled back incoming live migration %s of instance %s: '
                 '%s', migration_id, uuid, reason)
        return None

    def _release_hold(self, migration_id):
        with self._migrations_lock:
            hold = self._incoming_holds.pop(migration_id, None)
        if hold is not None:
            hold.release()
