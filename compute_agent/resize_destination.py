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
migration is confirmed, so a revert needs no copy back
(resize_source.py).
"""

import logging
import uuid as uuidlib

from compute_agent import exception
from compute_agent import failpoints
from compute_agent import migration_checks as checks
from compute_agent import migration_recovery
from compute_agent import operations
from compute_agent import peers
from compute_agent import rpcapi
from compute_agent import validation
from compute_agent.virt import driver as virt_driver
from compute_agent.vm_states import ACTIVE, RESIZED, STOPPED

LOG = logging.getLogger(__name__)


class ResizeDestination:
    def __init__(self, host, driver, database, peers_api, migrations,
                 operations_, work, max_concurrent_resizes):
        """:param peers_api: a compute_agent.rpcapi.ComputeAPI to the
            other agents; migrations: the MigrationRegistry; operations_:
            the Operations; work: the BackgroundWork."""
        self._host = host
        self._driver = driver
        self._db = database
        self._peers = peers_api
        self._migrations = migrations
        self._ops = operations_
        self._work = work
        self._max_concurrent = max_concurrent_resizes

    # -- new work ------------------------------------------------------------

    def prep_resize(self, ctxt, uuid, flavor, source, clean, timeout):
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
            request_id=operations.request_id(ctxt),
            details={'old_flavor': record['flavor'],
                     'new_flavor': flavor or record['flavor'],
                     'clean_shutdown': clean,
                     'shutdown_timeout': timeout})
        LOG.info('%s %s of instance %s from %s queued', kind.capitalize(),
                 migration['id'], uuid, source)
        self._work.submit(
            'resize', self._max_concurrent, uuid, migration['request_id'],
            run=lambda: self._resize(ctxt, migration, record),
            cancel=lambda reason: self._db.update_migration(
                migration['id'], status='cancelled',
                message=f'cancelled before it started: {reason}'))
        return migration

    def _source_instance(self, ctxt, source, uuid):
        peers.require_running(self._peers, ctxt, source, 'source')
        with peers.calling(source, f'describe instance {uuid}'):
            record = self._peers.get_instance(
                ctxt, source, uuid, timeout=rpcapi.PEER_CHECK_TIMEOUT)
        if record['task_state'] is not None or \
                record['vm_state'] not in (ACTIVE, STOPPED):
            raise exception.InstanceInvalidState(
                action='migrate', instance_uuid=uuid,
                state=record['vm_state'] + (
                    f' with task {record["task_state"]} in progress'
                    if record['task_state'] else ''),
                allowed='vm_state is active or stopped and no task is in '
                        'progress')
        return validation.peer_instance(record)

    # -- the migration itself -----------------------------------------------

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
            failpoints.reach(failpoints.RESIZE_DEST_STARTED)
            with peers.calling(source, 'hand the instance over'):
                peers.call_watched(
                    self._peers, ctxt, source, 'resize_instance',
                    lambda: self._peers.resize_instance(
                        ctxt, source, migration=migration,
                        destination_path=self._driver.instance_path(uuid),
                        migration_target=self._driver.migration_target(),
                        shared_storage=shared,
                        clean_shutdown=details['clean_shutdown'],
                        shutdown_timeout=details['shutdown_timeout']))
            failpoints.reach(failpoints.RESIZE_DEST_HANDED_OVER)
        except Exception as error:
            if not isinstance(error, exception.ComputeAgentError):
                LOG.exception('%s %s failed unexpectedly', migration['kind'],
                              migration['id'])
            if self._arrived(uuid):
                # finish_resize ran here, but the source's answer was lost
                # (its agent restarted, and settled the hand-over).
                LOG.warning('%s %s: %s; but instance %s runs here',
                            migration['kind'].capitalize(), migration['id'],
                            error, uuid)
                self._db.update_migration(
                    migration['id'], status='completed', progress={
                        'step': 'awaiting confirm or revert'})
                return
            if migration['details'].get('shared_storage') is False:
                self._discard_migrated_guest(uuid, migration)
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

    def _arrived(self, uuid):
        record = self._db.get_instance(uuid)
        return record is not None and record['host'] == self._host

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

    def finish_resize(self, ctxt, migration, record, has_disk, power_on):
        """record: the instance as the source sends it (validated)."""
        # The migration as this host recorded it in prep_resize (its
        # flavor included), in the step where the source hands over.
        migration = self._migrations.recorded_from_peer(
            migration, 'dest_host', 'finished')
        uuid = record['uuid']
        checks.require_step(migration, 'finished', checks.COLD,
                            ('running',), uuid)
        checks.require_not_owned(self._db, self._host, uuid,
                                 'finish the arrival of')
        flavor = migration['details']['new_flavor']
        failpoints.reach(failpoints.RESIZE_DEST_DISK_COPIED)
        try:
            self._driver.finish_migration(
                uuid, record['name'], flavor['vcpus'], flavor['memory_mb'],
                record['image'], has_disk, power_on)
        except Exception:
            self._discard_migrated_guest(uuid, migration)
            raise
        failpoints.reach(failpoints.RESIZE_DEST_DEFINED)
        self._db.update_migration(
            migration['id'], details=dict(migration['details'],
                                          power_on=power_on))
        return self._db.put_instance(
            uuid=uuid, name=record['name'], host=self._host,
            vm_state=RESIZED, task_state=None,
            power_state=self._ops.power_state(uuid),
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

    def _revert_at_source(self, ctxt, migration):
        source = migration['source_host']
        try:
            with peers.calling(source, 'restart the original'):
                return peers.call_watched(
                    self._peers, ctxt, source, 'finish_revert_resize',
                    lambda: self._peers.finish_revert_resize(
                        ctxt, source, migration_id=migration['id']))
        except exception.MigrationError as error:
            # Its answer may be lost (its agent restarted, and finished
            # the revert at its restart): its record says.
            if not migration_recovery.peer_has_status(
                    self._peers, ctxt, source, migration, 'reverted'):
                raise error
        with peers.calling(source, 'describe the reverted instance'):
            return self._peers.get_instance(
                ctxt, source, migration['instance_uuid'],
                timeout=rpcapi.PEER_CHECK_TIMEOUT)

    # -- confirm or revert ----------------------------------------------------

    def finish_confirm_resize(self, ctxt, migration_id):
        migration = self._migrations.own_completed_cold(
            migration_id, 'dest_host', 'confirmed')
        uuid = migration['instance_uuid']
        # The instance first, then the migration: a revert_resize racing
        # this request claims them in the same order, so one of the two
        # is refused before it changes anything.
        with self._ops.run(ctxt, uuid, 'confirm-resize', {RESIZED},
                           'resize_confirming',
                           recorded=False) as operation:
            confirmed = self._migrations.claim_status(
                migration, 'completed', 'confirmed', 'confirmed')
            failpoints.reach(failpoints.CONFIRM_DEST_CLAIMED)
            power_state = operation.power_state()
            operation.finish(power_state=power_state,
                             vm_state=ACTIVE
                             if power_state == virt_driver.RUNNING
                             else STOPPED)
        return confirmed

    def revert_resize(self, ctxt, migration_id):
        migration = self._migrations.own_completed_cold(
            migration_id, 'dest_host', 'reverted')
        uuid, source = migration['instance_uuid'], migration['source_host']
        # Claimed before the action record, so a refusal leaves no trace.
        with self._ops.run(ctxt, uuid, 'revert-resize', {RESIZED},
                           'resize_reverting', recorded=False) as operation:
            self._migrations.claim_status(migration, 'completed',
                                          'reverting', 'reverted')
            with self._ops.action_record(ctxt, uuid, 'revert-resize'):
                failpoints.reach(failpoints.REVERT_DEST_STARTED)
                try:
                    # The copy here is thrown away: no clean shutdown.
                    self._driver.revert_migration_at_destination(
                        uuid,
                        migration['details'].get('shared_storage', False))
                except Exception:
                    self._db.update_migration(migration['id'],
                                              status='completed')
                    raise
                failpoints.reach(failpoints.REVERT_DEST_REMOVED)
                operation.finish(host=source)
                failpoints.reach(failpoints.REVERT_DEST_RECORD_MOVED)
                try:
                    original = self._revert_at_source(ctxt, migration)
                except exception.MigrationError as error:
                    self._db.update_migration(migration['id'],
                                              status='error',
                                              message=str(error))
                    raise
                failpoints.reach(failpoints.REVERT_DEST_SOURCE_RESTARTED)
        self._db.update_migration(migration['id'], status='reverted')
        LOG.info('Reverted %s %s: instance %s is back on %s',
                 migration['kind'], migration['id'], uuid, source)
        return original
