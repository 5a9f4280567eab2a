"""Settling, at start, what an earlier agent process left half done.

An operation commits its task state before its long part, so a crash
(SIGKILL, SIGINT, power loss) leaves instance records with a task state,
migration records in progress and action records still open. Before any
request is served, each is settled from what libvirt says now, and each
open action is closed with result ``interrupted`` and a message saying
what the recovery did.
"""

import logging

from compute_agent import exception
from compute_agent import migration_recovery
from compute_agent.virt import driver as virt_driver
from compute_agent.vm_states import (ACTIVE, BUILDING, DELETED, ERROR,
                                     RESCUED, SHELVED, SHELVED_OFFLOADED,
                                     STOPPED)

LOG = logging.getLogger(__name__)

INTERRUPTED = 'interrupted'
MIGRATION_IN_PROGRESS = ('queued', 'preparing', 'running', 'confirming',
                         'reverting')


# A shelve or an offload snapshots the guest's disk before it removes
# anything; these tasks settle to what that snapshot allows.
SHELVE_TASKS = ('shelving', 'shelving_offloading')
# An unshelve settles to where it started until the guest runs again.
UNSHELVE_TASK = 'unshelving'
# The action of a task state whose record may be written before its
# action: a build's (lifecycle.Lifecycle.build).
ACTION_OF_UNRECORDED_TASK = {'spawning': 'build'}


class RestartRecovery:
    def __init__(self, host, driver, database, image_store, peers_api=None):
        """:param peers_api: a compute_agent.rpcapi.ComputeAPI, through
            which a migration this host was the source of is settled with
            its destination (migration_recovery.py)."""
        self._host = host
        self._driver = driver
        self._db = database
        self._images = image_store
        self._sources = migration_recovery.MigrationRecovery(
            host, driver, database, peers_api)

    def settle(self):
        """Settle migrations, instances and actions, in that order."""
        recovered = {}  # instance uuid -> what the restart did about it
        tasks = {}  # instance uuid -> the task state it was interrupted in
        self._settle_migrations(recovered)
        for record in self._db.list_interrupted(self._host):
            uuid = record['uuid']
            tasks[uuid] = record['task_state']
            try:
                recovered[uuid] = self._reconcile(record)
            except Exception as error:
                # One guest libvirt cannot settle, or a bug met on the way,
                # must not keep the agent, and every other guest, out of
                # service (a restart loop). A bug's traceback is logged.
                LOG.error('Could not settle interrupted instance %s: %s; '
                          'marking it error', uuid, error, exc_info=not
                          isinstance(error, exception.HypervisorError))
                self._db.update_instance(uuid, task_state=None,
                                         vm_state=ERROR)
                recovered[uuid] = (f'at restart libvirt could not settle '
                                   f'it ({error}), so the instance is now '
                                   f'{ERROR}')
        self._close_actions(recovered)
        self._record_unrecorded(recovered, tasks)

    def _settle_migrations(self, recovered):
        for migration in self._db.list_migrations(
                statuses=MIGRATION_IN_PROGRESS):
            interrupted = (f'interrupted while {migration["status"]} by a '
                           f'stop of the agent on {self._host}')
            settled = self._sources.settle(migration, interrupted)
            if settled is not None:
                self._apply(migration, settled, recovered)
                continue
            LOG.warning('Migration %s (%s of instance %s, %s -> %s) was %s '
                        'when the agent last stopped; marking it error. '
                        'Check the instance on both hosts.',
                        migration['id'], migration['kind'],
                        migration['instance_uuid'], migration['source_host'],
                        migration['dest_host'], migration['status'])
            self._db.update_migration(migration['id'], status='error',
                                      message=interrupted)

    def _apply(self, migration, settled, recovered):
        LOG.warning('Migration %s (%s of instance %s, %s -> %s): %s',
                    migration['id'], migration['kind'],
                    migration['instance_uuid'], migration['source_host'],
                    migration['dest_host'], settled.message)
        self._db.update_migration(migration['id'], status=settled.status,
                                  message=settled.message)
        if settled.instance is not None:
            uuid = migration['instance_uuid']
            self._db.update_instance(uuid, task_state=None,
                                     **settled.instance)
            recovered[uuid] = (f'at restart migration {migration["id"]} '
                               f'was settled {settled.status}: '
                               f'{settled.message}')

    def _reconcile(self, record):
        """Settle one instance record; return what was done, for its
        interrupted action."""
        uuid, task = record['uuid'], record['task_state']
        power_state = self._driver.get_power_state(uuid)
        half_done = ''
        shelved = (self._shelve_outcome(record, power_state)
                   if task in SHELVE_TASKS else None)
        unshelved = (self._unshelve_outcome(record, power_state)
                     if task == UNSHELVE_TASK else None)
        if task == 'deleting':
            self._driver.delete(uuid)
            self._images.delete_all_of(uuid)
            values = {'vm_state': DELETED, 'power_state': 'nostate',
                      'snapshot_id': None}
        elif shelved is not None:
            values = shelved
            half_done = (f'; {task} had kept the disk as snapshot '
                         f'{shelved["snapshot_id"]}')
        elif unshelved is not None:
            values, half_done = unshelved
        elif record['vm_state'] in (BUILDING, RESCUED, SHELVED,
                                    SHELVED_OFFLOADED) or \
                task in ('rescuing', 'unrescuing'):
            # Half-built, or half-way between two definitions: only an
            # operator can tell what the guest should be now.
            values = {'vm_state': ERROR, 'power_state': power_state}
            half_done = f'; {task} was half done'
        elif power_state == virt_driver.RUNNING:
            values = {'vm_state': ACTIVE, 'power_state': power_state}
        elif power_state == virt_driver.SHUTDOWN:
            values = {'vm_state': STOPPED, 'power_state': power_state}
        else:
            values = {'vm_state': ERROR, 'power_state': power_state}
        LOG.warning('Instance %s was interrupted during %s by an earlier '
                    'stop of the agent; libvirt reports it %s, so it is now '
                    '%s', uuid, task, power_state, values['vm_state'])
        self._db.update_instance(uuid, task_state=None, **values)
        if task == 'deleting':
            return (f'at restart the agent deleted the guest, so the '
                    f'instance is now {DELETED}')
        return (f'at restart libvirt reported the guest {power_state}'
                f'{half_done}, so the instance is now {values["vm_state"]}')

    def _shelve_outcome(self, record, power_state):
        """The state an interrupted shelve or offload settles to when the
        guest's disk is safe in a snapshot: shelved while the guest is
        still defined and off, shelved_offloaded once it is gone (so it
        can be unshelved). None when there is no snapshot to stand on
        (the shelve can then simply be run again) or the guest runs."""
        snapshot_id = record['snapshot_id']
        if snapshot_id is None:
            # Taken, but killed before the record named it. More than
            # one is not a shelve's doing: leave it to an operator.
            taken = self._db.list_snapshot_ids(record['uuid'])
            snapshot_id = taken[0] if len(taken) == 1 else None
        if snapshot_id is None:
            return None
        if power_state == virt_driver.NOSTATE:
            return {'vm_state': SHELVED_OFFLOADED,
                    'power_state': power_state, 'snapshot_id': snapshot_id}
        if power_state == virt_driver.SHUTDOWN:
            return {'vm_state': SHELVED, 'power_state': power_state,
                    'snapshot_id': snapshot_id}
        return None

    def _unshelve_outcome(self, record, power_state):
        """(values, what it says) for an interrupted unshelve, or None
        when there is nothing to stand on (no snapshot left, and the
        guest not back). A guest back up is active, its snapshot dropped
        as the unshelve would have; one not yet back is shelved again
        (defined and off) or shelved_offloaded (gone), still naming its
        snapshot, so that unshelve can be run again."""
        snapshot_id = record['snapshot_id']
        if power_state == virt_driver.RUNNING:
            if snapshot_id:
                self._images.delete(snapshot_id)
            return ({'vm_state': ACTIVE, 'power_state': power_state,
                     'snapshot_id': None},
                    '; unshelve had booted it, so its snapshot is dropped')
        if not snapshot_id or self._images.get(snapshot_id) is None:
            return None
        vm_state = {virt_driver.NOSTATE: SHELVED_OFFLOADED,
                    virt_driver.SHUTDOWN: SHELVED}.get(power_state)
        if vm_state is None:
            return None
        return ({'vm_state': vm_state, 'power_state': power_state},
                f'; unshelve had not booted it, snapshot {snapshot_id} is '
                f'kept and it can be unshelved again')

    def _close_actions(self, recovered):
        """Close every open action record. All are stale: the database is
        this agent's own, and no request is served before this returns."""
        for action in self._db.list_open_actions():
            uuid = action['instance_uuid']
            done = recovered.get(uuid) or self._nothing_to_settle(uuid)
            message = f'interrupted by a stop of the agent; {done}'
            LOG.warning('Action %s of instance %s (request %s) was %s',
                        action['action'], uuid, action['request_id'],
                        message)
            self._db.finish_action(action['id'], INTERRUPTED,
                                   message=message)

    def _record_unrecorded(self, recovered, tasks):
        """A build writes its instance record before its action (the
        insert is the uuid check): a kill in between leaves an interrupted
        record no action explains. Record one, closed."""
        for uuid, task in tasks.items():
            action = ACTION_OF_UNRECORDED_TASK.get(task)
            if action is None or self._db.list_actions(uuid):
                continue
            message = (f'interrupted by a stop of the agent before its '
                       f'action was recorded; {recovered[uuid]}')
            LOG.warning('Action %s of instance %s was %s', action, uuid,
                        message)
            action_id = self._db.start_action(uuid, None, action)
            self._db.finish_action(action_id, INTERRUPTED, message=message)

    def _nothing_to_settle(self, instance_uuid):
        """For an action whose operation had committed its outcome (or not
        yet claimed the instance) when the agent stopped."""
        record = self._db.get_instance(instance_uuid)
        if record is None:
            return 'at restart the agent had no record of the instance'
        where = ('' if record['host'] == self._host
                 else f' on host {record["host"]}')
        return (f'at restart nothing was left to settle: the instance was '
                f'{record["vm_state"]}{where}')
