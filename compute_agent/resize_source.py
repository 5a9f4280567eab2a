"""Cold migration and resize: the source host's part (see
resize_destination.py for the whole flow).

The source powers the instance off (clean, then forced), copies its disk
and has the destination start it; it keeps the original guest defined,
powered off, until the migration is confirmed (confirm_resize) or
reverted (finish_revert_resize restarts it).
"""

import logging

from compute_agent import exception
from compute_agent import failpoints
from compute_agent import migration_checks as checks
from compute_agent import migration_recovery
from compute_agent import peers
from compute_agent.virt import driver as virt_driver
from compute_agent.vm_states import ACTIVE, RESIZED, STOPPED

LOG = logging.getLogger(__name__)


class ResizeSource:
    def __init__(self, host, driver, database, peers_api, migrations,
                 operations_):
        """:param peers_api: a compute_agent.rpcapi.ComputeAPI to the
            other agents; migrations: the MigrationRegistry; operations_:
            the Operations."""
        self._host = host
        self._driver = driver
        self._db = database
        self._peers = peers_api
        self._migrations = migrations
        self._ops = operations_

    def check_shared_storage(self, uuid, marker):
        self._ops.get(uuid)
        return self._driver.check_shared_storage_marker(uuid, marker)

    def resize_instance(self, ctxt, migration, clean, timeout,
                        destination_path, shared, target):
        """migration: as the destination sent it (migrations.from_peer)."""
        uuid = migration['instance_uuid']
        # This request begins the source's part: the migration is new
        # here, in the step the destination asks for, and the instance is
        # this host's and free to move (claimed before anything is
        # written, so a refused request leaves no trace).
        checks.require_new(self._db, self._host, migration)
        checks.require_step(migration, 'handed over', checks.COLD,
                            ('running',))
        action = 'resize' if migration['kind'] == 'resize' else 'migrate'
        with self._ops.run(ctxt, uuid, action, {ACTIVE, STOPPED},
                           'resize_migrating', clean, powers_off=True,
                           recorded=False) as operation:
            self._migrations.record_new(migration)
            try:
                with self._ops.action_record(ctxt, uuid, migration['kind'],
                                             operation):
                    return self._hand_over(ctxt, migration, operation,
                                           clean, timeout,
                                           destination_path, shared, target)
            except Exception as error:
                self._db.update_migration(migration['id'], status='failed',
                                          message=str(error))
                raise

    def _hand_over(self, ctxt, migration, operation, clean, timeout,
                   destination_path, shared, target):
        """The source's part: power off, copy, start it there."""
        record, dest = operation.record, migration['dest_host']
        uuid = record['uuid']
        was_running = record['power_state'] == virt_driver.RUNNING
        try:
            failpoints.reach(failpoints.RESIZE_SOURCE_CLAIMED)
            power_off = operation.power_off(clean, timeout,
                                            migration['kind'])
            failpoints.reach(failpoints.RESIZE_SOURCE_POWERED_OFF)
            with self._migrations.disk_copy(migration['id']) as control:
                disk = self._driver.migrate_disk(
                    uuid, destination_path, shared, target, control)
            failpoints.reach(failpoints.RESIZE_SOURCE_DISK_COPIED)
            with peers.calling(dest, 'start the migrated instance'):
                peers.call_watched(
                    self._peers, ctxt, dest, 'finish_resize',
                    lambda: self._peers.finish_resize(
                        ctxt, dest, migration=migration,
                        instance=dict(record, last_power_off=power_off),
                        has_disk=disk['disk'], power_on=was_running))
        except Exception:
            self._restart_original(uuid, was_running)
            raise
        failpoints.reach(failpoints.RESIZE_SOURCE_DEST_FINISHED)
        self._db.update_migration(
            migration['id'], status='completed',
            details=dict(migration['details'], power_on=was_running,
                         shared_storage=shared,
                         vm_state=record['vm_state']))
        operation.finish(host=dest, vm_state=RESIZED,
                         power_state=virt_driver.SHUTDOWN)
        LOG.info('Instance %s handed over to %s by %s %s; the original '
                 'is kept here until the migration is confirmed', uuid,
                 dest, migration['kind'], migration['id'])
        return {'power_off': power_off, 'has_disk': disk['disk']}

    def _restart_original(self, uuid, was_running):
        try:
            self._driver.finish_revert_migration(uuid, was_running)
        except exception.ComputeAgentError:
            LOG.exception('Could not restart instance %s after its '
                          'migration failed', uuid)

    def confirm_resize(self, ctxt, migration_id):
        migration = self._migrations.own_completed_cold(
            migration_id, 'source_host', 'confirmed')
        # Confirming removes the original: only that of an instance this
        # host handed over and has not taken back.
        checks.require_handed_over(self._db, migration,
                                   'confirm the migration of', RESIZED)
        claimed = self._migrations.claim_status(migration, 'completed',
                                                'confirming', 'confirmed')
        failpoints.reach(failpoints.CONFIRM_SOURCE_STARTED)
        uuid = migration['instance_uuid']
        try:
            # The destination checks its side first: the original is
            # removed only once the instance there is confirmed.
            self._confirm_at_destination(ctxt, migration)
            failpoints.reach(failpoints.CONFIRM_SOURCE_DEST_CONFIRMED)
            self._driver.confirm_migration(
                uuid, claimed['details'].get('shared_storage', False))
            failpoints.reach(failpoints.CONFIRM_SOURCE_REMOVED)
        except Exception as error:
            self._db.update_migration(migration['id'], status='error',
                                      message=f'confirm failed: {error}')
            raise
        LOG.info('Confirmed %s %s: removed the original of instance %s',
                 migration['kind'], migration['id'], uuid)
        return self._db.update_migration(migration['id'],
                                         status='confirmed')

    def _confirm_at_destination(self, ctxt, migration):
        dest = migration['dest_host']
        try:
            with peers.calling(dest, 'confirm the migrated instance'):
                peers.call_watched(
                    self._peers, ctxt, dest, 'finish_confirm_resize',
                    lambda: self._peers.finish_confirm_resize(
                        ctxt, dest, migration_id=migration['id']))
        except exception.MigrationError as error:
            # Its answer may be lost (its agent restarted after it
            # confirmed): its record says.
            if not migration_recovery.peer_has_status(
                    self._peers, ctxt, dest, migration, 'confirmed'):
                raise error

    def finish_revert_resize(self, ctxt, migration_id):
        migration = self._migrations.own_completed_cold(
            migration_id, 'source_host', 'reverted')
        # Restarting the original redefines the instance's record here:
        # only that of an instance this host handed over.
        checks.require_handed_over(self._db, migration,
                                   'revert the migration of', RESIZED)
        self._migrations.claim_status(migration, 'completed', 'reverting',
                                      'reverted')
        failpoints.reach(failpoints.REVERT_SOURCE_STARTED)
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
        failpoints.reach(failpoints.REVERT_SOURCE_RESTARTED)
        old = details['old_flavor']
        self._db.update_migration(migration['id'], status='reverted')
        LOG.info('Instance %s is back from %s %s', uuid, migration['kind'],
                 migration['id'])
        return self._db.update_instance(
            uuid, host=self._host, task_state=None,
            vm_state=details.get('vm_state', ACTIVE),
            power_state=self._ops.power_state(uuid),
            vcpus=old['vcpus'], memory_mb=old['memory_mb'])
