"""ComputeManager: the RPC endpoint both servers dispatch to.

Each operation validates its arguments before touching anything, then
moves the record into its task state with a compare-and-swap (a second
request for a busy instance is refused, not queued), runs the long part,
and commits the outcome. Because the task state is committed before the
long part starts, a restart after a crash finds the interrupted
operations and reconciles them with what libvirt says (init_host).
"""

import functools
import inspect
import logging
import time

import oslo_messaging

from compute_agent import exception
from compute_agent import power_policy
from compute_agent import validation
from compute_agent.virt import driver as virt_driver

LOG = logging.getLogger(__name__)

# Keep in step with compute_agent.rpcapi (a unit test checks it).
RPC_API_VERSION = '1.1'
SERVICE_VERSION = 2

ACTIVE, STOPPED, BUILDING, ERROR, DELETED = (
    'active', 'stopped', 'building', 'error', 'deleted')

_declare_expected = oslo_messaging.expected_exceptions(*exception.EXPECTED)


def remotable(method):
    """Mark an RPC method: arguments that do not fit its signature are
    refused with InvalidInput (not a TypeError traceback), and the
    contract's exceptions are declared so they are not logged as errors."""
    signature = inspect.signature(method)

    @functools.wraps(method)
    def checked(self, ctxt, *args, **kwargs):
        try:
            signature.bind(self, ctxt, *args, **kwargs)
        except TypeError as error:
            raise exception.InvalidInput(
                reason=f'{method.__name__}: {error}') from None
        return method(self, ctxt, *args, **kwargs)
    return _declare_expected(checked)


class ComputeManager:
    target = oslo_messaging.Target(version=RPC_API_VERSION)

    def __init__(self, host, driver, database, default_shutdown_timeout,
                 shutdown_retry_interval):
        self._host = host
        self._driver = driver
        self._db = database
        self._default_shutdown_timeout = default_shutdown_timeout
        self._retry_interval = shutdown_retry_interval
        self._service_status = None

    # -- start-up -------------------------------------------------------

    def init_host(self, service):
        self._service_status = service.status
        self._driver.init_host(self._host)
        for record in self._db.list_interrupted(self._host):
            try:
                self._reconcile(record)
            except exception.HypervisorError as error:
                # One guest libvirt cannot settle must not keep the agent,
                # and every other guest, out of service.
                LOG.error('Could not settle interrupted instance %s: %s; '
                          'marking it error', record['uuid'], error)
                self._db.update_instance(record['uuid'], task_state=None,
                                         vm_state=ERROR)

    def _reconcile(self, record):
        uuid, task = record['uuid'], record['task_state']
        power_state = self._driver.get_power_state(uuid)
        if task == 'deleting':
            self._driver.delete(uuid)
            values = {'vm_state': DELETED, 'power_state': 'nostate'}
        elif record['vm_state'] == BUILDING:
            values = {'vm_state': ERROR, 'power_state': power_state}
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

    # -- record helpers -------------------------------------------------

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

    def _power_off(self, record, clean_shutdown, shutdown_timeout, action):
        plan = power_policy.plan_power_off(
            clean_shutdown, shutdown_timeout,
            record['image'].get('properties'),
            self._default_shutdown_timeout, record['uuid'])
        result = self._driver.power_off(record['uuid'], plan.attempt_clean,
                                        plan.timeout, self._retry_interval)
        outcome = dict(result.to_record(), requested=plan.requested)
        LOG.info('Powered off instance %s for %s: %s (requested %s) in '
                 '%.2f s by %s, timeout %d s from %s', record['uuid'],
                 action, outcome['result'], plan.requested, result.seconds,
                 result.method, plan.timeout, plan.source)
        return outcome

    # -- RPC methods: reads ---------------------------------------------

    @remotable
    def get_service_status(self, ctxt):
        status = {'host': self._host, 'service_version': SERVICE_VERSION,
                  'rpc_api_version': RPC_API_VERSION}
        status.update(self._service_status())
        return status

    @remotable
    def list_instances(self, ctxt):
        return self._db.list_instances(self._host)

    @remotable
    def get_instance(self, ctxt, instance_uuid):
        return self._get(validation.instance_uuid(instance_uuid))

    # -- RPC methods: operations ----------------------------------------

    @remotable
    def build_and_run_instance(self, ctxt, instance):
        spec = validation.build_request(instance)
        self._driver.check_image(spec['image'])
        record = self._db.create_instance(
            uuid=spec['uuid'], name=spec['name'], host=self._host,
            vm_state=BUILDING, task_state='spawning',
            power_state=virt_driver.NOSTATE, vcpus=spec['vcpus'],
            memory_mb=spec['memory_mb'], image=spec['image'],
            last_power_off=None)
        if record is None:
            raise exception.InvalidInput(
                reason=f'an instance with uuid {spec["uuid"]} already '
                       f'exists; uuids cannot be reused')
        started = time.monotonic()
        try:
            self._driver.spawn(spec['uuid'], spec['name'], spec['vcpus'],
                               spec['memory_mb'], spec['image'])
        except Exception as error:
            raise self._fail(spec['uuid'], 'build', error, vm_state=ERROR)
        LOG.info('Built instance %s (%s) in %.2f s', spec['uuid'],
                 spec['name'], time.monotonic() - started)
        return self._finish(spec['uuid'], vm_state=ACTIVE,
                            power_state=self._safe_power_state(spec['uuid']))

    @remotable
    def start_instance(self, ctxt, instance_uuid):
        uuid = validation.instance_uuid(instance_uuid)
        self._begin(uuid, 'start', {STOPPED}, 'powering_on')
        try:
            self._driver.power_on(uuid)
        except Exception as error:
            raise self._fail(uuid, 'start', error)
        return self._finish(uuid, vm_state=ACTIVE,
                            power_state=self._safe_power_state(uuid))

    @remotable
    def stop_instance(self, ctxt, instance_uuid, clean_shutdown=True,
                      shutdown_timeout=None):
        uuid = validation.instance_uuid(instance_uuid)
        clean = validation.boolean(clean_shutdown, 'clean_shutdown')
        timeout = validation.optional_timeout(shutdown_timeout)
        record = self._begin(uuid, 'stop', {ACTIVE}, 'powering_off')
        try:
            outcome = self._power_off(record, clean, timeout, 'stop')
        except Exception as error:
            raise self._fail(uuid, 'stop', error)
        return self._finish(uuid, vm_state=STOPPED,
                            power_state=self._safe_power_state(uuid),
                            last_power_off=outcome)

    @remotable
    def reboot_instance(self, ctxt, instance_uuid, reboot_type='SOFT'):
        uuid = validation.instance_uuid(instance_uuid)
        kind = validation.reboot_type(reboot_type)
        if kind == 'SOFT':
            record = self._begin(uuid, 'soft-reboot', {ACTIVE}, 'rebooting')
        else:
            record = self._begin(uuid, 'hard-reboot',
                                 {ACTIVE, STOPPED, ERROR}, 'rebooting_hard')
        try:
            # A soft reboot is a clean power-off that falls back to a
            # forced one when the guest does not go off in time.
            outcome = self._power_off(record, kind == 'SOFT', None,
                                      kind.lower() + '-reboot')
            self._driver.power_on(uuid)
        except Exception as error:
            raise self._fail(uuid, 'reboot', error)
        return self._finish(uuid, vm_state=ACTIVE,
                            power_state=self._safe_power_state(uuid),
                            last_power_off=outcome)

    @remotable
    def terminate_instance(self, ctxt, instance_uuid, clean_shutdown=True,
                           shutdown_timeout=None):
        uuid = validation.instance_uuid(instance_uuid)
        clean = validation.boolean(clean_shutdown, 'clean_shutdown')
        timeout = validation.optional_timeout(shutdown_timeout)
        record = self._begin(uuid, 'delete', {ACTIVE, STOPPED, ERROR},
                             'deleting')
        try:
            outcome = self._power_off(record, clean, timeout, 'delete')
            self._driver.delete(uuid)
        except Exception as error:
            raise self._fail(uuid, 'delete', error)
        return self._finish(uuid, vm_state=DELETED,
                            power_state=virt_driver.NOSTATE,
                            last_power_off=outcome)
