"""What a migration step checks before it changes anything.

Another agent, or anyone on the bus, names a migration and an instance.
Before a step calls the driver, writes a record or takes or releases a
drain hold, it checks that this host knows the migration (or, for the
request that begins this host's part, that the migration is new here and
makes sense), that this host plays the role the step implies, that the
migration moves the instance named, that the migration's kind and status
allow the step, and that the instance's record here allows it. A request
that fails a check gets a contract error and changes nothing.
doc/source/rpc-audit.rst lists what every RPC method checks.
"""

from compute_agent import exception

LIVE = ('live-migration',)
COLD = ('migration', 'resize')
# Statuses of a migration that is still on its way to its destination.
ARRIVING = ('queued', 'preparing', 'running')
_MATCHING_KEYS = ('kind', 'instance_uuid', 'source_host', 'dest_host')


def _either(words):
    words = list(words)
    return ' or '.join(words) if len(words) < 3 else \
        ', '.join(words[:-1]) + ' or ' + words[-1]


def require_step(migration, action, kinds, statuses, instance_uuid=None):
    """The migration is of one of kinds, moves instance_uuid (when
    given) and has one of statuses; action says what the step would do
    ('rolled back', 'confirmed', ...)."""
    migration_id = migration['id']
    if migration['kind'] not in kinds:
        raise exception.InvalidInput(
            reason=f'migration {migration_id} is a {migration["kind"]}; '
                   f'only a {_either(kinds)} can be {action}')
    if instance_uuid is not None and \
            migration['instance_uuid'] != instance_uuid:
        raise exception.InvalidInput(
            reason=f'migration {migration_id} moves instance '
                   f'{migration["instance_uuid"]}, not {instance_uuid}')
    if migration['status'] not in statuses:
        raise exception.InvalidInput(
            reason=f'migration {migration_id} is {migration["status"]}; '
                   f'it can be {action} only while it is '
                   f'{_either(statuses)}')
    return migration


def require_new(database, host, migration):
    """A migration another agent tells this host about for the first
    time: its two ends differ and its id names nothing here yet."""
    if migration['source_host'] == migration['dest_host']:
        raise exception.InvalidInput(
            reason=f'migration {migration["id"]} names '
                   f'{migration["source_host"]} as both its source and its '
                   f'destination')
    if database.get_migration(migration['id']) is not None:
        raise exception.InvalidInput(
            reason=f'host {host} already has a migration '
                   f'{migration["id"]}; a migration id names one migration '
                   f'only')


def require_matches_record(sent, recorded):
    """A migration another agent sends agrees with this host's record of
    it on what it moves and between which hosts."""
    for key in _MATCHING_KEYS:
        if sent[key] != recorded[key]:
            raise exception.InvalidInput(
                reason=f'migration {sent["id"]} as sent has {key} '
                       f'{sent[key]}, but this host recorded {recorded[key]}')


def require_not_owned(database, host, instance_uuid, action):
    """A migration step that brings an instance here, or undoes that,
    must not touch an instance that is already this host's own."""
    record = database.get_instance(instance_uuid)
    if record is not None and record['host'] == host:
        state = record['vm_state'] + (
            f' with task {record["task_state"]} in progress'
            if record['task_state'] else '')
        raise exception.InstanceInvalidState(
            action=action, instance_uuid=instance_uuid,
            state=f'an instance of this host ({state})',
            allowed='it is on its way here, not yet this host\'s instance')


def require_no_other_arrival(database, host, instance_uuid, action,
                             besides=None):
    """No migration other than besides is bringing the instance here."""
    for migration in database.list_migrations(instance_uuid,
                                              statuses=ARRIVING):
        if migration['dest_host'] == host and migration['id'] != besides:
            raise exception.InstanceInvalidState(
                action=action, instance_uuid=instance_uuid,
                state=f'arriving here by migration {migration["id"]} '
                      f'({migration["status"]})',
                allowed='no other migration brings it here')


def require_handed_over(database, migration, action, handed_over_state):
    """The source's copy of an instance a cold migration moved: its
    record here says it was handed over to the migration's destination
    (vm_state handed_over_state), so the source may act on the original
    it keeps. An instance this host took back, or never handed over, is
    this host's own and is left alone."""
    uuid = migration['instance_uuid']
    record = database.get_instance(uuid)
    if record is None:
        raise exception.InstanceNotFound(instance_uuid=uuid,
                                         host=migration['source_host'])
    if record['host'] != migration['dest_host'] or \
            record['vm_state'] != handed_over_state:
        raise exception.InstanceInvalidState(
            action=action, instance_uuid=uuid,
            state=f'{record["vm_state"]} on {record["host"]}',
            allowed=f'it was handed over to {migration["dest_host"]} and '
                    f'is {handed_over_state} there')
