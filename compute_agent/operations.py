"""The skeleton every operation on an existing instance shares.

An operation validates its arguments before touching anything (its
endpoint does), then claims the instance by moving it into a task state
with a compare-and-swap (a second request for a busy instance is refused,
not queued), runs the long part, and commits the outcome. Because the
task state is committed before the long part starts, a restart after a
crash finds the interrupted operations and settles them from what libvirt
says (recovery.RestartRecovery).

Each operation leaves an action record (request id, start, end, result,
power-off, error message). Operations.run is the whole skeleton: action
record, claim, failure, and the power-off a forced request can cut short.
"""

import contextlib
import logging
import threading
import time

from compute_agent import exception
from compute_agent import telemetry as telemetry_module
from compute_agent.virt import driver as virt_driver

LOG = logging.getLogger(__name__)

# How long a forced request waits for the operation whose clean power-off
# it cut short to finish its remaining steps (a shelve copies a disk).
FORCE_WAIT_TIMEOUT = 600
FORCE_WAIT_POLL = 0.1


def request_id(ctxt):
    return (ctxt or {}).get('request_id')


class ActionReport:
    """What an operation tells its action record beyond its result."""

    last_power_off = None


class Operation(ActionReport):
    """One operation in Operations.run: its claimed record (None when a
    forced request found its work already done, already_done), and its
    steps that the skeleton must know about."""

    def __init__(self, operations, ctxt, instance_uuid, action):
        self._operations = operations
        self._ctxt = ctxt
        self.uuid = instance_uuid
        self.action = action
        self.record = None
        self.already_done = False
        self.holds_instance = False
        self._power_off_control = None

    def power_off(self, clean_shutdown, shutdown_timeout, what=None):
        """The clean-then-forced power-off that the claim registered
        (powers_off=True); returns and reports its last_power_off."""
        self.last_power_off = self._operations.power_offs.power_off(
            self.record, self._power_off_control, clean_shutdown,
            shutdown_timeout, what or self.action)
        return self.last_power_off

    def no_power_off(self):
        """The operation turned out to need no power-off: a forced request
        no longer finds one to cut short."""
        self._operations.release_power_off(self)

    def finish(self, **values):
        """Commit the outcome and release the instance; the power-off, if
        any, becomes its last_power_off."""
        if self.last_power_off is not None:
            values.setdefault('last_power_off', self.last_power_off)
        self.holds_instance = False
        return self._operations.finish(self.uuid, **values)

    def power_state(self):
        return self._operations.power_state(self.uuid)


class Operations:
    """Claims, action records and outcomes of this host's operations.
    Holds no state of its own: the claims are task states in the
    database, the forcible power-offs are the PowerOffRegistry's."""

    def __init__(self, host, driver, database, power_off_registry,
                 power_offs, telemetry=telemetry_module.Telemetry()):
        """:param telemetry: told when each operation starts and ends."""
        self._host = host
        self._driver = driver
        self._db = database
        self._registry = power_off_registry
        self.power_offs = power_offs
        self._telemetry = telemetry

    def get(self, instance_uuid):
        record = self._db.get_instance(instance_uuid)
        if record is None or record['host'] != self._host:
            raise exception.InstanceNotFound(instance_uuid=instance_uuid,
                                             host=self._host)
        return record

    def power_state(self, instance_uuid):
        try:
            return self._driver.get_power_state(instance_uuid)
        except exception.HypervisorError:
            return virt_driver.NOSTATE

    @contextlib.contextmanager
    def run(self, ctxt, instance_uuid, action, allowed=None,
            task_state=None, clean=True, done=None, powers_off=False,
            fail_vm_state=None, recorded=True):
        """One operation, reported to telemetry from the request's
        arrival to its result (refusals too): action record (unless
        recorded is False), claim (unless allowed is None: the caller
        created the instance in its task state), then the body. A body
        that fails before it finished the operation releases the instance
        (fail_vm_state, if given, becomes its vm_state) and raises a
        contract error.

        :param clean: False for a forced request, which cuts a waiting
            clean power-off short (see claim).
        :param powers_off: the operation will call Operation.power_off.
        """
        operation = Operation(self, ctxt, instance_uuid, action)
        with contextlib.ExitStack() as stack:
            stack.enter_context(self._reported(ctxt, instance_uuid, action))
            if recorded:
                stack.enter_context(self.action_record(
                    ctxt, instance_uuid, action, operation))
            if allowed is None:
                operation.holds_instance = True
            else:
                self._claim(operation, allowed, task_state, clean, done,
                            powers_off)
            try:
                yield operation
            except Exception as error:
                if operation.holds_instance:
                    raise self.fail(instance_uuid, action, error,
                                    fail_vm_state)
                raise
            finally:
                self.release_power_off(operation)

    @contextlib.contextmanager
    def _reported(self, ctxt, instance_uuid, action):
        started = time.monotonic()
        self._telemetry.operation_started(action, instance_uuid,
                                          request_id(ctxt))
        error = None
        try:
            yield
        except BaseException as raised:
            error = raised
            raise
        finally:
            self._telemetry.operation_ended(
                action, instance_uuid, request_id(ctxt),
                time.monotonic() - started, error=error)

    def release_power_off(self, operation):
        if operation._power_off_control is not None:
            self._registry.release(operation.uuid,
                                   operation._power_off_control)

    @contextlib.contextmanager
    def action_record(self, ctxt, instance_uuid, action, report=None):
        """Record one operation on an existing instance; report (an
        ActionReport) carries its power-off."""
        self.get(instance_uuid)
        report = report or ActionReport()
        action_id = self._db.start_action(instance_uuid, request_id(ctxt),
                                          action)
        try:
            yield report
        except Exception as error:
            self._db.finish_action(action_id, 'error',
                                   report.last_power_off, str(error))
            raise
        self._db.finish_action(action_id, 'success', report.last_power_off)

    def _claim(self, operation, allowed, task_state, clean, done,
               powers_off):
        """Claim the instance; a forced request (clean False) on an
        instance whose power-off is claimed makes that power-off destroy
        now, waits for its operation to finish and then claims the
        instance itself, unless that operation already did what this one
        asked for (done(record) is true: already_done)."""
        uuid, action = operation.uuid, operation.action
        try:
            self._claim_now(operation, allowed, task_state, powers_off)
            return
        except exception.InstanceInvalidState:
            if clean or not self._registry.force(uuid):
                raise
        LOG.info('Forced %s of instance %s cuts its clean power-off short',
                 action, uuid)
        record = self._wait_until_idle(uuid, action)
        if done is not None and done(record):
            operation.already_done = True
            return
        self._claim_now(operation, allowed, task_state, powers_off)

    def _claim_now(self, operation, allowed, task_state, powers_off):
        def claim():
            return self.begin(operation.uuid, operation.action, allowed,
                              task_state)
        if powers_off:
            operation.record, operation._power_off_control = \
                self._registry.claim(operation.uuid,
                                     request_id(operation._ctxt), claim)
        else:
            operation.record = claim()
        operation.holds_instance = True

    def begin(self, instance_uuid, action, allowed_vm_states, task_state):
        """Claim the instance for one operation, or explain why not."""
        record = self.get(instance_uuid)
        if record['task_state'] is None and \
                record['vm_state'] in allowed_vm_states:
            claimed = self._db.update_instance(
                instance_uuid, expected_task_state=None,
                task_state=task_state)
            if claimed is not None:
                return claimed
            record = self.get(instance_uuid)
        state = record['vm_state']
        if record['task_state']:
            state += f' with task {record["task_state"]} in progress'
        raise exception.InstanceInvalidState(
            action=action, instance_uuid=instance_uuid, state=state,
            allowed='vm_state is ' + ' or '.join(sorted(allowed_vm_states))
            + ' and no task is in progress')

    def _wait_until_idle(self, instance_uuid, action):
        pause = threading.Event()
        deadline = time.monotonic() + FORCE_WAIT_TIMEOUT
        while time.monotonic() < deadline:
            record = self.get(instance_uuid)
            if record['task_state'] is None:
                return record
            pause.wait(FORCE_WAIT_POLL)
        raise exception.InstanceInvalidState(
            action=action, instance_uuid=instance_uuid,
            state=f'still busy with {record["task_state"]}',
            allowed='the operation it interrupted has finished')

    def finish(self, instance_uuid, **values):
        return self._db.update_instance(instance_uuid, task_state=None,
                                        **values)

    def fail(self, instance_uuid, action, error, vm_state=None):
        """Record a failed operation and return the error to raise."""
        values = {'power_state': self.power_state(instance_uuid)}
        if vm_state is not None:
            values['vm_state'] = vm_state
        self.finish(instance_uuid, **values)
        if isinstance(error, exception.ComputeAgentError):
            return error
        LOG.exception('Unexpected failure to %s instance %s', action,
                      instance_uuid)
        return exception.HypervisorError(action=action,
                                         instance_uuid=instance_uuid,
                                         reason=str(error))
