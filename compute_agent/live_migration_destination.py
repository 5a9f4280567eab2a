"""Live migration: the destination host's part (see
live_migration_source.py for the whole flow).

From pre_live_migration until the source reports how the migration ended
(post_live_migration_at_destination or
rollback_live_migration_at_destination), the destination holds its own
SIGTERM drain, so that it does not exit under an arriving guest.
"""

import logging

from compute_agent import exception
from compute_agent import failpoints
from compute_agent import migration_checks as checks
from compute_agent import operations
from compute_agent.vm_states import ACTIVE

LOG = logging.getLogger(__name__)

# How much longer than the completion timeout a destination waits for
# the source to say how an incoming migration ended (without a completion
# timeout: a day; the drain's own deadline still applies).
INCOMING_HOLD_MARGIN = 300
UNLIMITED_HOLD = 86400
# The destination's record of an incoming live migration: running once
# pre_live_migration prepared it; error when this agent restarted while
# it was on its way (the guest may have arrived all the same); failed
# when the preparation failed (the rollback still cleans up after it).
TAKE_OVER_FROM = ('running', 'error')
ROLL_BACK_FROM = ('preparing', 'running', 'failed', 'error')


class LiveMigrationDestination:
    def __init__(self, host, driver, database, migrations, operations_,
                 work, completion_timeout):
        """:param migrations: the MigrationRegistry; operations_: the
            Operations; work: the BackgroundWork; completion_timeout:
            live_migration_completion_timeout (0: none)."""
        self._host = host
        self._driver = driver
        self._db = database
        self._migrations = migrations
        self._ops = operations_
        self._work = work
        self._completion_timeout = completion_timeout

    def check_can_take(self, record):
        """record: the instance as the source sends it (validated)."""
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

    def prepare(self, ctxt, record, migration, migratable_xml, block):
        migration = self._migrations.from_peer(migration, 'dest_host')
        uuid = record['uuid']
        # This request begins this host's part: the migration must be new
        # here, and the instance neither this host's own nor arriving.
        checks.require_new(self._db, self._host, migration)
        checks.require_step(migration, 'prepared for', checks.LIVE,
                            ('queued', 'preparing'), uuid)
        checks.require_not_owned(self._db, self._host, uuid, 'receive')
        checks.require_no_other_arrival(self._db, self._host, uuid,
                                        'receive')
        self._migrations.record_new(migration, status='preparing')
        # The hold comes after the record, and is released on every
        # failure after it: nothing else would release it.
        hold = self._work.hold(
            'incoming_live_migration', uuid, operations.request_id(ctxt),
            (self._completion_timeout or UNLIMITED_HOLD)
            + INCOMING_HOLD_MARGIN)
        try:
            destination_xml = self._driver.pre_live_migration(
                uuid, migratable_xml, record['image'], block)
            self._migrations.hold_incoming(migration['id'], hold)
            self._db.update_migration(migration['id'], status='running')
            failpoints.reach(failpoints.LIVE_DEST_PREPARED)
        except Exception as error:
            self._migrations.release_incoming(migration['id'])
            hold.release()
            self._db.update_migration(migration['id'], status='failed',
                                      message=str(error))
            raise
        return destination_xml

    def take_over(self, record, migration, destination_xml):
        uuid = record['uuid']
        migration = self._migrations.recorded_from_peer(
            migration, 'dest_host', 'taken over')
        checks.require_step(migration, 'taken over', checks.LIVE,
                            TAKE_OVER_FROM, uuid)
        # The record written below must not replace this host's own.
        checks.require_not_owned(self._db, self._host, uuid, 'take over')
        try:
            self._driver.post_live_migration_at_destination(
                uuid, destination_xml)
            failpoints.reach(failpoints.LIVE_DEST_DEFINED)
            arrived = self._db.put_instance(
                uuid=uuid, name=record['name'], host=self._host,
                vm_state=ACTIVE, task_state=None,
                power_state=self._ops.power_state(uuid),
                vcpus=record['flavor']['vcpus'],
                memory_mb=record['flavor']['memory_mb'],
                image=record['image'],
                last_power_off=record.get('last_power_off'),
                snapshot_id=None)
            self._db.update_migration(migration['id'], status='completed')
            failpoints.reach(failpoints.LIVE_DEST_FINISHED)
            LOG.info('Instance %s arrived by live migration %s from %s',
                     uuid, migration['id'], migration['source_host'])
            return arrived
        finally:
            self._migrations.release_incoming(migration['id'])

    def roll_back(self, uuid, migration_id, reason):
        migration = self._migrations.own(migration_id, 'dest_host',
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
        # A driver that refuses (the guest runs or is defined here: it may
        # have arrived) or fails leaves the migration as it was, open to a
        # take-over or to another rollback.
        self._driver.rollback_live_migration_at_destination(uuid)
        failpoints.reach(failpoints.LIVE_DEST_ROLLED_BACK)
        self._migrations.release_incoming(migration_id)
        self._db.update_migration(migration_id, status='failed',
                                  message=reason)
        LOG.info('Rolled back incoming live migration %s of instance %s: '
                 '%s', migration_id, uuid, reason)
