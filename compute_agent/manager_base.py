"""What every RPC operation of the manager shares.

An operation validates its arguments before touching anything, then
claims the instance by moving it into a task state with a compare-and-swap
(a second request for a busy instance is refused, not queued), runs the
long part, and commits the outcome. Because the task state is committed
before the long part starts, a restart after a crash finds the interrupted
operations and settles them from what libvirt says (init_host, through
recovery.RestartRecovery).

Each operation on an existing instance leaves an action record (request
id, start, end, result, power-off, error message).
"""

import contextlib
import dataclasses
import functools
import inspect
import logging
import threading
import time

import oslo_messaging

from compute_agent import background
from compute_agent import events as instance_events
from compute_agent import exception
from compute_agent import migration_checks
from compute_agent import peers
from compute_agent import power_policy
from compute_agent import recovery
from compute_agent import rpc
from compute_agent import rpcapi
from compute_agent import validation
from compute_agent.virt import driver as virt_driver
from compute_agent.virt import power as virt_power
# The manager's mixins name the vm_state values base.ACTIVE and so on.
from compute_agent.vm_states import (  # noqa: F401
    ACTIVE, BUILDING, DELETED, ERROR, RESCUED, SHELVED, SHELVED_OFFLOADED,
    STOPPED)

LOG = logging.getLogger(__name__)
# A live migration or disk copy still running this long before the drain
# deadline is stopped: room to put the guest back on the source (an
# abortJob and a rollback call, or a restart) and answer before the exit.
DRAIN_STOP_MARGIN = 10.0


def drain_stop_reason(what):
    return (f'the agent is shutting down and the {what} would not finish '
            f'within graceful_shutdown_timeout')


# How long a forced request waits for the operation whose clean power-off
# it cut short to finish its remaining steps (a shelve copies a disk).
FORCE_WAIT_TIMEOUT = 600
FORCE_WAIT_POLL = 0.1

_declare_expected = oslo_messaging.expected_exceptions(*exception.EXPECTED)


def remotable(method):
    """Mark an RPC method: only marked methods are reachable on the bus;
    arguments that do not fit its signature are refused with InvalidInput
    (not a TypeError traceback), and the contract's exceptions are
    declared so they are not logged as errors."""
    signature = inspect.signature(method)

    # No named parameters: a request may carry arguments named self or
    # ctxt, and those must reach signature.bind (which refuses them) rather
    # than clash with the wrapper's own parameters in a TypeError.
    @functools.wraps(method)
    def checked(*args, **kwargs):
        try:
            signature.bind(*args, **kwargs)
        except TypeError as error:
            raise exception.InvalidInput(
                reason=f'{method.__name__}: {error}') from None
        return method(*args, **kwargs)
    return rpc.mark_remotable(_declare_expected(checked))


class ActionReport:
    """Filled in by an operation for its action record."""

    power_off = None


@dataclasses.dataclass(frozen=True)
class MigrationSettings:
    """The [compute] options that shape migrations and event waits."""

    max_concurrent_live_migrations: int = 1
    max_concurrent_resizes: int = 2
    live_migration_completion_timeout: int = 900
    instance_event_timeout: int = 300
    instance_event_timeout_is_fatal: bool = True


_PEER_MIGRATION_KEYS = ('id', 'kind', 'instance_uuid', 'source_host',
                        'dest_host', 'status', 'request_id', 'details')


class ManagerBase:
    def __init__(self, host, driver, database, image_store,
                 default_shutdown_timeout, shutdown_retry_interval,
                 peers=None, settings=MigrationSettings()):
        """:param peers: a compute_agent.rpcapi.ComputeAPI through which
            this agent asks other agents to do their part of a migration.
        """
        self._host = host
        self._driver = driver
        self._db = database
        self._images = image_store
        self._default_shutdown_timeout = default_shutdown_timeout
        self._retry_interval = shutdown_retry_interval
        self._peers = peers
        self._settings = settings
        self._service_status = None
        self._power_offs = {}   # instance uuid -> (request id, control)
        self._power_offs_lock = threading.Lock()
        self._events = instance_events.InstanceEvents()
        self._work = background.BackgroundWork()
        self._migrations_lock = threading.Lock()
        self._live_controls = {}    # migration id -> MigrationControl
        self._disk_copies = {}      # migration id -> MigrationControl
        self._drain_deadline = None
        self._incoming_holds = {}   # migration id -> background.Hold

    # -- start-up and shutdown ----------------------------------------------

    def init_host(self, service):
        self._service_status = service.status
        self._work.attach(service.tracker)
        self._driver.init_host(self._host)
        recovery.RestartRecovery(self._host, self._driver,
                                 self._db).settle()

    def drain_started(self, deadline):
        """The service stopped taking new work: cancel what has not
        started, and make live migrations and cold migrations' disk
        copies end before deadline (a time.monotonic() value, or None for
        no deadline)."""
        self._work.begin_drain()
        if deadline is None:
            return
        with self._migrations_lock:
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

    # -- records ----------------------------------------------------------

    def _get(self, instance_uuid):
        record = self._db.get_instance(instance_uuid)
        if record is None or record['host'] != self._host:
            raise exception.InstanceNotFound(instance_uuid=instance_uuid,
                                             host=self._host)
        return record

    def _begin(self, instance_uuid, action, allowed_vm_states, task_state):
        """Claim the instance for one operation, or explain why not."""
        record = self._get(instance_uuid)
        if record['task_state'] is None and \
                record['vm_state'] in allowed_vm_states:
            claimed = self._db.update_instance(
                instance_uuid, expected_task_state=None,
                task_state=task_state)
            if claimed is not None:
                return claimed
            record = self._get(instance_uuid)
        state = record['vm_state']
        if record['task_state']:
            state += f' with task {record["task_state"]} in progress'
        raise exception.InstanceInvalidState(
            action=action, instance_uuid=instance_uuid, state=state,
            allowed='vm_state is ' + ' or '.join(sorted(allowed_vm_states))
            + ' and no task is in progress')

    def _claim(self, instance_uuid, action, allowed_vm_states, task_state,
               clean, done=None):
        """_begin(), except that a forced request on an instance whose
        clean power-off is waiting makes that power-off destroy now, waits
        for its operation to finish and then claims the instance itself.
        Returns None when that operation already did what this one asked
        for (done(record) is true)."""
        try:
            return self._begin(instance_uuid, action, allowed_vm_states,
                               task_state)
        except exception.InstanceInvalidState:
            if clean or not self._force_power_off(instance_uuid):
                raise
        LOG.info('Forced %s of instance %s cuts its clean power-off short',
                 action, instance_uuid)
        record = self._wait_until_idle(instance_uuid, action)
        if done is not None and done(record):
            return None
        return self._begin(instance_uuid, action, allowed_vm_states,
                           task_state)

    def _wait_until_idle(self, instance_uuid, action):
        pause = threading.Event()
        deadline = time.monotonic() + FORCE_WAIT_TIMEOUT
        while time.monotonic() < deadline:
            record = self._get(instance_uuid)
            if record['task_state'] is None:
                return record
            pause.wait(FORCE_WAIT_POLL)
        raise exception.InstanceInvalidState(
            action=action, instance_uuid=instance_uuid,
            state=f'still busy with {record["task_state"]}',
            allowed='the operation it interrupted has finished')

    # -- migration records ------------------------------------------------

    def _peer_migration(self, value, my_role):
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

    def _known_migration(self, migration_id):
        migration = self._db.get_migration(
            validation.migration_id(migration_id))
        if migration is None:
            raise exception.InvalidInput(
                reason=f'host {self._host} knows no migration '
                       f'{migration_id}')
        return migration

    def _own_migration(self, migration_id, my_role, action):
        """This host's record of a migration it plays my_role in."""
        migration = self._known_migration(migration_id)
        if migration[my_role] != self._host:
            role = my_role.split('_')[0]
            raise exception.InvalidInput(
                reason=f'migration {migration_id} can be {action} only on '
                       f'its {role}, {migration[my_role]}; this is '
                       f'{self._host}')
        return migration

    def _recorded_peer_migration(self, value, my_role, action):
        """This host's record of a migration another agent sends back to
        it (see _peer_migration), which must agree with what was sent."""
        sent = self._peer_migration(value, my_role)
        recorded = self._own_migration(sent['id'], my_role, action)
        migration_checks.require_matches_record(sent, recorded)
        return recorded

    def _record_new_migration(self, migration, **values):
        """Write the record of a migration this host begins to take part
        in; refused when its id is already taken, so a replayed or racing
        request cannot overwrite another migration's record."""
        with self._migrations_lock:
            migration_checks.require_new(self._db, self._host, migration)
            return self._db.put_migration(**dict(migration, **values))

    def _require_peer_running(self, ctxt, host, role):
        """A new migration starts only while the other end takes new work;
        its state is asked on compute-alt, which answers while it drains.
        """
        with peers.calling(host, 'report its state'):
            status = self._peers.get_service_status(
                ctxt, host, alt=True, timeout=rpcapi.PEER_CHECK_TIMEOUT)
        if status.get('state') != 'running':
            raise exception.MigrationError(
                reason=f'{role} {host} is shutting down and takes no new '
                       f'migrations')

    def _wait_for_events(self, waiter, action, instance_uuid):
        """Wait for the external events waiter listens for; raise when
        they do not all come in time and that is fatal."""
        missing = waiter.wait(self._settings.instance_event_timeout)
        if not missing:
            return
        seconds = self._settings.instance_event_timeout
        text = (f'no {", ".join(missing)} event for instance '
                f'{instance_uuid} within {seconds} s')
        if self._settings.instance_event_timeout_is_fatal:
            raise exception.HypervisorError(
                action=action, instance_uuid=instance_uuid,
                reason=text + ' (instance_event_timeout)')
        LOG.warning('Going on with %s: %s', action, text)

    def _finish(self, instance_uuid, **values):
        return self._db.update_instance(instance_uuid, task_state=None,
                                        **values)

    def _fail(self, instance_uuid, action, error, vm_state=None):
        """Record a failed operation and return the error to raise."""
        values = {'power_state': self._safe_power_state(instance_uuid)}
        if vm_state is not None:
            values['vm_state'] = vm_state
        self._finish(instance_uuid, **values)
        if isinstance(error, exception.ComputeAgentError):
            return error
        LOG.exception('Unexpected failure to %s instance %s', action,
                      instance_uuid)
        return exception.HypervisorError(action=action,
                                         instance_uuid=instance_uuid,
                                         reason=str(error))

    def _safe_power_state(self, instance_uuid):
        try:
            return self._driver.get_power_state(instance_uuid)
        except exception.HypervisorError:
            return virt_driver.NOSTATE

    @contextlib.contextmanager
    def _action(self, ctxt, instance_uuid, action):
        """Record one operation on an existing instance."""
        self._get(instance_uuid)
        action_id = self._db.start_action(
            instance_uuid, (ctxt or {}).get('request_id'), action)
        report = ActionReport()
        try:
            yield report
        except Exception as error:
            self._db.finish_action(action_id, 'error', report.power_off,
                                   str(error))
            raise
        self._db.finish_action(action_id, 'success', report.power_off)

    # -- power-off ----------------------------------------------------------

    def _power_off(self, ctxt, record, clean_shutdown, shutdown_timeout,
                   action):
        """Clean-then-forced power-off of one instance, forcible meanwhile
        by another request; returns the last_power_off record."""
        uuid = record['uuid']
        properties = record['image'].get('properties') or {}
        plan = power_policy.plan_power_off(
            clean_shutdown, shutdown_timeout, properties,
            self._default_shutdown_timeout, uuid)
        paused = plan.attempt_clean and \
            self._driver.get_power_state(uuid) == virt_driver.PAUSED
        control = virt_power.PowerOffControl()
        with self._power_offs_lock:
            self._power_offs[uuid] = ((ctxt or {}).get('request_id'),
                                      control)
        try:
            result = self._driver.power_off(
                uuid, plan.attempt_clean and not paused, plan.timeout,
                self._retry_interval, control=control,
                use_guest_agent=virt_driver.wants_guest_agent(properties))
        finally:
            with self._power_offs_lock:
                self._power_offs.pop(uuid, None)
        outcome = dict(result.to_record(), requested=plan.requested)
        if paused:
            outcome['note'] = ('the guest was paused, and a paused guest '
                               'cannot take a clean shutdown')
        LOG.info('Powered off instance %s for %s: %s (requested %s) in '
                 '%.2f s by %s, timeout %d s from %s%s', uuid, action,
                 outcome['result'], plan.requested, result.seconds,
                 result.method, plan.timeout, plan.source,
                 ' (guest was paused)' if paused else '')
        return outcome

    def _force_power_off(self, instance_uuid):
        """Make a waiting clean power-off destroy now; False when none is
        waiting for this instance."""
        with self._power_offs_lock:
            entry = self._power_offs.get(instance_uuid)
        if entry is None:
            return False
        entry[1].force()
        return True

    def _power_off_progress(self):
        """request id -> progress of each clean power-off that waits."""
        with self._power_offs_lock:
            entries = list(self._power_offs.values())
        progress = {}
        for request_id, control in entries:
            state = control.progress()
            if request_id and state is not None:
                progress[request_id] = state
        return progress
