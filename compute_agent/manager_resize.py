"""Cold migration and resize, run by the destination host.

prep_resize (topic compute, new work, sent to the destination) checks
that the source can give the instance and this host can run it, records
the migration and returns it at once; the rest runs as background work,
which the SIGTERM drain of the destination waits for:

    queued -> preparing  check_instance_shared_storage at the source
           -> running    resize_instance at the source: clean-then-forced
                         power-off, disk copy, then finish_resize here
           -> completed  the guest runs here, vm_state resized
           -> confirmed  confirm_resize at the source removes the original
    or     -> reverted   revert_resize here, finish_revert_resize at the
                         source restarts the original
    or     -> failed / cancelled (the original is back as it was)

Every step one agent asks of the other goes to topic compute-alt: once a
cold migration has started, a drain on either host lets it finish. The
source keeps the original guest defined (powered off) until the
migration is confirmed, so a revert needs no copy back.
"""

import logging
import uuid as uuidlib

from compute_agent import exception
from compute_agent import manager_base as base
from compute_agent import migration_checks as checks
from compute_agent import peers
from compute_agent import rpcapi
from compute_agent import validation
from compute_agent.virt import driver as virt_driver
from compute_agent.virt import migration as virt_migration

LOG = logging.getLogger(__name__)

remotable = base.remotable

RESIZED = 'resized'


class ResizeMixin:
    # -- destination: new work ----------------------------------------------

    @remotable
    def prep_resize(self, ctxt, instance_uuid, new_flavor, source_host,
                    clean_shutdown=True, shutdown_timeout=None):
        uuid, clean, timeout = validation.power_off_request(
            instance_uuid, clean_shutdown, shutdown_timeout)
        flavor = validation.flavor(new_flavor)
        source = validation.host_name(source_host, 'source_host')
        if source == self._host:
            raise exception.InvalidInput(
                reason=f'source_host {source} is this host; resizing in '
                       f'place is not supported, choose another host')
        existing = self._db.get_instance(uuid)
        if existing is not None and existing['host'] == self._host:
            raise exception.InvalidInput(
                reason=f'instance {uuid} is already on host {self._host}')
        checks.require_no_other_arrival(self._db, self._host, uuid,
                                        'migrate')
        record = self._source_instance(ctxt, source, uuid)
        self._driver.check_image(record['image'])
        kind = 'resize' if flavor and flavor != record['flavor'] \
            else 'migration'
        migration = self._db.put_migration(
            id=str(uuidlib.uuid4()), kind=kind, instance_uuid=uuid,
            source_host=source, dest_host=self._host, status='queued',
            request_id=(ctxt or {}).get('request_id'),
            details={'old_flavor': record['flavor'],
                     'new_flavor': flavor or record['flavor'],
                     'clean_shutdown': clean,
                     'shutdown_timeout': timeout})
        LOG.info('%s %s of instance %s from %s queued', kind.capitalize(),
                 migration['id'], uuid, source)
        self._work.submit(
            'resize', self._settings.max_concurrent_resizes, uuid,
            migration['request_id'],
            run=lambda: self._resize(ctxt, migration, record),
            cancel=lambda reason: self._db.update_migration(
                migration['id'], status='cancelled',
                message=f'cancelled before it started: {reason}'))
        return migration

    def _source_instance(self, ctxt, source, uuid):
        self._require_peer_running(ctxt, source, 'source')
        with peers.calling(source, f'describe instance {uuid}'):
            record = self._peers.get_instance(
                ctxt, source, uuid, timeout=rpcapi.PEER_CHECK_TIMEOUT)
        if record['task_state'] is not None or \
                record['vm_state'] not in (base.ACTIVE, base.STOPPED):
            raise exception.InstanceInvalidState(
                action='migrate', instance_uuid=uuid,
                state=record['vm_state'] + (
                    f' with task {record["task_state"]} in progress'
                    if record['task_state'] else ''),
                allowed='vm_state is active or stopped and no task is in '
                        'progress')
        return validation.peer_instance(record)

    # -- destination: the migration itself ---------------------------------

    def _resize(self, ctxt, migration, record):
        uuid, source = record['uuid'], migration['source_host']
        details = migration['details']
        try:
            self._step(migration, 'preparing', 'checking for shared storage')
            shared = self._shares_storage_with(ctxt, source, uuid)
            migration = self._step(
                migration, 'running',
                f'powering off and moving the instance on {source}',
                details=dict(details, shared_storage=shared))
            with peers.calling(source, 'hand the instance over'):
                self._peers.resize_instance(
                    ctxt, source, migration=migration,
                    destination_path=self._driver.instance_path(uuid),
                    migration_target=self._driver.migration_target(),
                    shared_storage=shared,
                    clean_shutdown=details['clean_shutdown'],
                    shutdown_timeout=details['shutdown_timeout'])
        except Exception as error:
            if not isinstance(error, exception.ComputeAgentError):
                LOG.exception('%s %s failed unexpectedly', migration['kind'],
                              migration['id'])
            self._db.update_migration(migration['id'], status='failed',
                                      message=str(error), progress=None)
            LOG.warning('%s %s of instance %s failed: %s',
                        migration['kind'].capitalize(), migration['id'],
                        uuid, error)
            return
        self._db.update_migration(migration['id'], status='completed',
                                  progress={'step': 'awaiting confirm or '
                                                    'revert'})
        LOG.info('%s %s: instance %s runs here as resized; confirm or '
                 'revert it', migration['kind'].capitalize(),
                 migration['id'], uuid)

    def _step(self, migration, status, step, **values):
        return self._db.update_migration(migration['id'], status=status,
                                         progress={'step': step}, **values)

    def _shares_storage_with(self, ctxt, source, uuid):
        marker = self._driver.create_shared_storage_marker(uuid)
        try:
            with peers.calling(source, 'check for shared storage'):
                return self._peers.check_instance_shared_storage(
                    ctxt, source, instance_uuid=uuid, marker=marker)
        finally:
            self._driver.remove_shared_storage_marker(uuid, marker)

    @remotable
    def finish_resize(self, ctxt, migration, instance, has_disk, power_on):
        record = validation.peer_instance(instance)
        validation.boolean(has_disk, 'has_disk')
        validation.boolean(power_on, 'power_on')
        # The migration as this host recorded it in prep_resize (its
        # flavor included), in the step where the source hands over.
        migration = self._recorded_peer_migration(migration, 'dest_host',
                                                  'finished')
        uuid = record['uuid']
        checks.require_step(migration, 'finished', checks.COLD,
                            ('running',), uuid)
        checks.require_not_owned(self._db, self._host, uuid,
                                 'finish the arrival of')
        flavor = migration['details']['new_flavor']
        try:
            self._driver.finish_migration(
                uuid, record['name'], flavor['vcpus'], flavor['memory_mb'],
                record['image'], has_disk, power_on)
        except Exception:
            self._discard_migrated_guest(uuid, migration)
            raise
        self._db.update_migration(
            migration['id'], details=dict(migration['details'],
                                          power_on=power_on))
        return self._db.put_instance(
            uuid=uuid, name=record['name'], host=self._host,
            vm_state=RESIZED, task_state=None,
            power_state=self._safe_power_state(uuid),
            vcpus=flavor['vcpus'], memory_mb=flavor['memory_mb'],
            image=record['image'],
            last_power_off=record.get('last_power_off'), snapshot_id=None)

    def _discard_migrated_guest(self, uuid, migration):
        try:
            self._driver.revert_migration_at_destination(
                uuid, migration['details'].get('shared_storage', False))
        except exception.ComputeAgentError:
            LOG.exception('Could not remove what the failed migration %s '
                          'left of instance %s', migration['id'], uuid)

    # -- source ---------------------------------------------------------------

    @remotable
    def check_instance_shared_storage(self, ctxt, instance_uuid, marker):
        uuid = validation.instance_uuid(instance_uuid)
        validation.file_name(marker, 'marker')
        self._get(uuid)
        return self._driver.check_shared_storage_marker(uuid, marker)

    @remotable
    def resize_instance(self, ctxt, migration, destination_path,
                        shared_storage, clean_shutdown=True,
                        shutdown_timeout=None, migration_target=None):
        migration = self._peer_migration(migration, 'source_host')
        uuid, clean, timeout = validation.power_off_request(
            migration['instance_uuid'], clean_shutdown, shutdown_timeout)
        validation.absolute_path(destination_path, 'destination_path')
        shared = validation.boolean(shared_storage, 'shared_storage')
        target = validation.migration_target(migration_target)
        # This request begins the source's part: the migration is new
        # here, in the step the destination asks for, and the instance is
        # this host's and free to move (claimed before anything is
        # written, so a refused request leaves no trace).
        checks.require_new(self._db, self._host, migration)
        checks.require_step(migration, 'handed over', checks.COLD,
                            ('running',))
        record = self._claim(
            uuid, 'resize' if migration['kind'] == 'resize' else 'migrate',
            {base.ACTIVE, base.STOPPED}, 'resize_migrating', clean)
        try:
            self._record_new_migration(migration)
        except Exception:
            self._finish(uuid)
            raise
        try:
            return self._hand_over(ctxt, migration, record, clean, timeout,
                                   destination_path, shared, target)
        except Exception as error:
            self._db.update_migration(migration['id'], status='failed',
                                      message=str(error))
            raise

    def _hand_over(self, ctxt, migration, record, clean, timeout,
                   destination_path, shared, target):
        """The source's part: power off, copy, start it there."""
        uuid, dest = record['uuid'], migration['dest_host']
        with self._action(ctxt, uuid, migration['kind']) as report:
            was_running = record['power_state'] == virt_driver.RUNNING
            try:
                report.power_off = self._power_off(
                    ctxt, record, clean, timeout, migration['kind'])
                disk = self._copy_disk(migration['id'], uuid,
                                       destination_path, shared, target)
                with peers.calling(dest, 'start the migrated instance'):
                    self._peers.finish_resize(
                        ctxt, dest, migration=migration,
                        instance=dict(record, last_power_off=report.power_off),
                        has_disk=disk['disk'], power_on=was_running)
            except Exception as error:
                self._restart_original(uuid, was_running)
                raise self._fail(uuid, migration['kind'], error)
            self._db.update_migration(
                migration['id'], status='completed',
                details=dict(migration['details'], power_on=was_running,
                             shared_storage=shared, vm_state=record[
                                 'vm_state']))
            self._db.update_instance(uuid, host=dest, task_state=None,
                                     vm_state=RESIZED,
                                     power_state=virt_driver.SHUTDOWN,
                                     last_power_off=report.power_off)
            LOG.info('Instance %s handed over to %s by %s %s; the original '
                     'is kept here until the migration is confirmed', uuid,
                     dest, migration['kind'], migration['id'])
            return {'power_off': report.power_off, 'has_disk': disk['disk']}

    def _copy_disk(self, migration_id, uuid, destination_path, shared,
                   target):
        """migrate_disk(), stopped before the drain deadline so that the
        guest is restarted here rather than cut off mid-copy."""
        control = virt_migration.MigrationControl()
        with self._migrations_lock:
            self._disk_copies[migration_id] = control
            deadline = self._drain_deadline
        if deadline is not None:
            control.set_deadline(deadline - base.DRAIN_STOP_MARGIN,
                                 base.drain_stop_reason('disk copy'))
        try:
            return self._driver.migrate_disk(uuid, destination_path, shared,
                                             target, control)
        finally:
            with self._migrations_lock:
                self._disk_copies.pop(migration_id, None)

    def _restart_original(self, uuid, was_running):
        try:
            self._driver.finish_revert_migration(uuid, was_running)
        except exception.ComputeAgentError:
            LOG.exception('Could not restart instance %s after its '
                          'migration failed', uuid)

    @remotable
    def confirm_resize(self, ctxt, migration_id):
        migration = self._own_migration(migration_id, 'source_host',
                                        'confirmed')
        checks.require_step(migration, 'confirmed', checks.COLD,
                            ('completed',))
        # Confirming removes the original: only that of an instance this
        # host handed over and has not taken back.
        checks.require_handed_over(self._db, migration,
                                   'confirm the migration of', RESIZED)
        claimed = self._claim_migration(migration, 'completed',
                                        'confirming', 'confirmed')
        uuid, dest = migration['instance_uuid'], migration['dest_host']
        try:
            # The destination checks its side first: the original is
            # removed only once the instance there is confirmed.
            with peers.calling(dest, 'confirm the migrated instance'):
                self._peers.finish_confirm_resize(
                    ctxt, dest, migration_id=migration['id'])
            self._driver.confirm_migration(
                uuid, claimed['details'].get('shared_storage', False))
        except Exception as error:
            self._db.update_migration(migration['id'], status='error',
                                      message=f'confirm failed: {error}')
            raise
        LOG.info('Confirmed %s %s: removed the original of instance %s',
                 migration['kind'], migration['id'], uuid)
        return self._db.update_migration(migration['id'],
                                         status='confirmed')

    @remotable
    def finish_confirm_resize(self, ctxt, migration_id):
        migration = self._own_migration(migration_id, 'dest_host',
                                        'confirmed')
        checks.require_step(migration, 'confirmed', checks.COLD,
                            ('completed',))
        uuid = migration['instance_uuid']
        # The instance first, then the migration: a revert_resize racing
        # this request claims them in the same order, so one of the two
        # is refused before it changes anything.
        self._begin(uuid, 'confirm-resize', {RESIZED}, 'resize_confirming')
        try:
            confirmed = self._claim_migration(migration, 'completed',
                                              'confirmed', 'confirmed')
        except Exception:
            self._finish(uuid)
            raise
        power_state = self._safe_power_state(uuid)
        self._finish(uuid, power_state=power_state,
                     vm_state=base.ACTIVE
                     if power_state == virt_driver.RUNNING else base.STOPPED)
        return confirmed

    def _claim_migration(self, migration, expected, status, action):
        """Move the migration from status expected to status, or refuse
        (another request moved it first)."""
        claimed = self._db.update_migration(
            migration['id'], expected_status=expected, status=status)
        if claimed is None:
            current = self._known_migration(migration['id'])
            raise exception.InvalidInput(
                reason=f'migration {migration["id"]} is '
                       f'{current["status"]}; it can be {action} only while '
                       f'it is {expected}')
        return claimed

    @remotable
    def revert_resize(self, ctxt, migration_id):
        migration = self._own_migration(migration_id, 'dest_host',
                                        'reverted')
        checks.require_step(migration, 'reverted', checks.COLD,
                            ('completed',))
        uuid, source = migration['instance_uuid'], migration['source_host']
        # Claimed before the action record, so a refusal leaves no trace.
        self._begin(uuid, 'revert-resize', {RESIZED}, 'resize_reverting')
        try:
            self._claim_migration(migration, 'completed', 'reverting',
                                  'reverted')
        except Exception:
            self._finish(uuid)
            raise
        with self._action(ctxt, uuid, 'revert-resize'):
            try:
                # The copy here is thrown away: no clean shutdown needed.
                self._driver.revert_migration_at_destination(
                    uuid, migration['details'].get('shared_storage', False))
            except Exception as error:
                self._db.update_migration(migration['id'],
                                          status='completed')
                raise self._fail(uuid, 'revert-resize', error)
            self._db.update_instance(uuid, host=source, task_state=None)
            try:
                with peers.calling(source, 'restart the original'):
                    original = self._peers.finish_revert_resize(
                        ctxt, source, migration_id=migration['id'])
            except exception.MigrationError as error:
                self._db.update_migration(migration['id'], status='error',
                                          message=str(error))
                raise
        self._db.update_migration(migration['id'], status='reverted')
        LOG.info('Reverted %s %s: instance %s is back on %s',
                 migration['kind'], migration['id'], uuid, source)
        return original

    @remotable
    def finish_revert_resize(self, ctxt, migration_id):
        migration = self._own_migration(migration_id, 'source_host',
                                        'reverted')
        checks.require_step(migration, 'reverted', checks.COLD,
                            ('completed',))
        # Restarting the original redefines the instance's record here:
        # only that of an instance this host handed over.
        checks.require_handed_over(self._db, migration,
                                   'revert the migration of', RESIZED)
        self._claim_migration(migration, 'completed', 'reverting',
                              'reverted')
        uuid, details = migration['instance_uuid'], migration['details']
        power_on = details.get('power_on', True)
        try:
            self._driver.finish_revert_migration(uuid, power_on)
        except Exception as error:
            self._db.update_migration(migration['id'], status='error',
                                      message=f'revert failed: {error}')
            raise exception.MigrationError(
                reason=f'could not restart the original of instance {uuid} '
                       f'on {self._host}: {error}') from None
        old = details['old_flavor']
        self._db.update_migration(migration['id'], status='reverted')
        LOG.info('Instance %s is back from %s %s', uuid, migration['kind'],
                 migration['id'])
        return self._db.update_instance(
            uuid, host=self._host, task_state=None,
            vm_state=details.get('vm_state', base.ACTIVE),
            power_state=self._safe_power_state(uuid),
            vcpus=old['vcpus'], memory_mb=old['memory_mb'])
