"""What this host knows about the migrations running through it now, and
how its records of migrations are read and begun.

The SIGTERM drain gives a live migration or a cold migration's disk copy
until DRAIN_STOP_MARGIN seconds before its deadline; the registry hands
that deadline to every control running at the drain's start and to every
one that starts later.
"""

import contextlib
import logging
import threading

from compute_agent import exception
from compute_agent import migration_checks
from compute_agent import validation
from compute_agent.virt import migration as virt_migration

LOG = logging.getLogger(__name__)
# A live migration or disk copy still running this long before the drain
# deadline is stopped: room to put the guest back on the source (an
# abortJob and a rollback call, or a restart) and answer before the exit.
DRAIN_STOP_MARGIN = 10.0

_PEER_MIGRATION_KEYS = ('id', 'kind', 'instance_uuid', 'source_host',
                        'dest_host', 'status', 'request_id', 'details')


def drain_stop_reason(what):
    return (f'the agent is shutting down and the {what} would not finish '
            f'within graceful_shutdown_timeout')


class MigrationRegistry:
    """Owns, under its lock: the MigrationControl of each live migration
    this host runs as the source (migration id -> control), that of each
    cold migration's disk copy it runs, the drain hold of each incoming
    live migration (migration id -> background.Hold) and the drain
    deadline once the drain has begun. The lock also makes the check and
    the write of a new migration record (record_new) one step."""

    def __init__(self, host, database):
        self._host = host
        self._db = database
        self._lock = threading.Lock()
        self._live_controls = {}
        self._disk_copies = {}
        self._incoming_holds = {}
        self._drain_deadline = None

    def drain_started(self, deadline):
        """Make live migrations and disk copies, running or to come, end
        before deadline (a time.monotonic() value)."""
        with self._lock:
            self._drain_deadline = deadline
            running = [(migration_id, control, 'live migration')
                       for migration_id, control
                       in self._live_controls.items()] + [
                (migration_id, control, 'disk copy')
                for migration_id, control in self._disk_copies.items()]
        for migration_id, control, what in running:
            LOG.info('The %s of migration %s will be stopped if it has not '
                     'finished %.0f s before the drain deadline', what,
                     migration_id, DRAIN_STOP_MARGIN)
            control.set_deadline(deadline - DRAIN_STOP_MARGIN,
                                 drain_stop_reason(what))

    # -- live migrations run from here --------------------------------------

    def add_live(self, migration_id, control):
        with self._lock:
            self._live_controls[migration_id] = control

    def live(self, migration_id):
        with self._lock:
            return self._live_controls.get(migration_id)

    def forget_live(self, migration_id):
        with self._lock:
            self._live_controls.pop(migration_id, None)

    def with_live_progress(self, migration):
        """Progress of a live migration running here is read from the
        driver's reports, not written to the database at every step."""
        control = self.live(migration['id'])
        if control is not None and migration['status'] == 'running':
            migration = dict(migration, progress=control.progress() or None)
        return migration

    # -- cold migrations' disk copies ----------------------------------------

    @contextlib.contextmanager
    def disk_copy(self, migration_id):
        """A control for one disk copy, stopped before the drain deadline
        so that the guest is restarted here rather than cut off mid-copy.
        """
        control = virt_migration.MigrationControl()
        with self._lock:
            self._disk_copies[migration_id] = control
            deadline = self._drain_deadline
        if deadline is not None:
            control.set_deadline(deadline - DRAIN_STOP_MARGIN,
                                 drain_stop_reason('disk copy'))
        try:
            yield control
        finally:
            with self._lock:
                self._disk_copies.pop(migration_id, None)

    # -- incoming live migrations ---------------------------------------------

    def hold_incoming(self, migration_id, hold):
        with self._lock:
            self._incoming_holds[migration_id] = hold

    def release_incoming(self, migration_id):
        with self._lock:
            hold = self._incoming_holds.pop(migration_id, None)
        if hold is not None:
            hold.release()

    # -- records --------------------------------------------------------------

    def record_new(self, migration, **values):
        """Write the record of a migration this host begins to take part
        in; refused when its id is already taken, so a replayed or racing
        request cannot overwrite another migration's record."""
        with self._lock:
            migration_checks.require_new(self._db, self._host, migration)
            return self._db.put_migration(**dict(migration, **values))

    def known(self, migration_id):
        """This host's record of a migration; migration_id was validated
        by the endpoint, or comes from a record."""
        migration = self._db.get_migration(migration_id)
        if migration is None:
            raise exception.InvalidInput(
                reason=f'host {self._host} knows no migration '
                       f'{migration_id}')
        return migration

    def own_completed_cold(self, migration_id, my_role, action):
        """own(), for confirming or reverting: the migration must be a
        completed cold migration or resize."""
        migration = self.own(migration_id, my_role, action)
        migration_checks.require_step(migration, action,
                                      migration_checks.COLD, ('completed',))
        return migration

    def own(self, migration_id, my_role, action):
        """This host's record of a migration it plays my_role in."""
        migration = self.known(migration_id)
        if migration[my_role] != self._host:
            role = my_role.split('_')[0]
            raise exception.InvalidInput(
                reason=f'migration {migration_id} can be {action} only on '
                       f'its {role}, {migration[my_role]}; this is '
                       f'{self._host}')
        return migration

    def from_peer(self, value, my_role):
        """A migration record another agent sends, in which this host
        plays my_role ('source_host' or 'dest_host')."""
        if not isinstance(value, dict) or \
                not set(_PEER_MIGRATION_KEYS) <= set(value):
            raise exception.InvalidInput(
                reason='migration must be a migration record with '
                       + ', '.join(_PEER_MIGRATION_KEYS))
        migration = {key: value[key] for key in _PEER_MIGRATION_KEYS}
        migration['id'] = validation.migration_id(migration['id'])
        migration['instance_uuid'] = validation.instance_uuid(
            migration['instance_uuid'], 'migration.instance_uuid')
        for role in ('source_host', 'dest_host'):
            validation.host_name(migration[role], f'migration.{role}')
        if not isinstance(migration['details'], dict):
            raise exception.InvalidInput(
                reason='migration.details must be an object')
        if migration[my_role] != self._host:
            raise exception.InvalidInput(
                reason=f'migration {migration["id"]} names '
                       f'{migration[my_role]} as its {my_role}, not this '
                       f'host ({self._host})')
        return migration

    def recorded_from_peer(self, value, my_role, action):
        """This host's record of a migration another agent sends back to
        it (see from_peer), which must agree with what was sent."""
        sent = self.from_peer(value, my_role)
        recorded = self.own(sent['id'], my_role, action)
        migration_checks.require_matches_record(sent, recorded)
        return recorded

    def claim_status(self, migration, expected, status, action):
        """Move the migration from status expected to status, or refuse
        (another request moved it first)."""
        claimed = self._db.update_migration(
            migration['id'], expected_status=expected, status=status)
        if claimed is None:
            current = self.known(migration['id'])
            raise exception.InvalidInput(
                reason=f'migration {migration["id"]} is '
                       f'{current["status"]}; it can be {action} only while '
                       f'it is {expected}')
        return claimed
