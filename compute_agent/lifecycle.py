"""The basic lifecycle of an instance: build, start, stop, reboot, delete.

Each method takes arguments its endpoint has validated, and runs as one
operation (operations.Operations.run).
"""

import logging
import time

from compute_agent import events as instance_events
from compute_agent import exception
from compute_agent import failpoints
from compute_agent.virt import driver as virt_driver
from compute_agent.vm_states import (ACTIVE, BUILDING, DELETED, ERROR,
                                     RESCUED, SHELVED, SHELVED_OFFLOADED,
                                     STOPPED)

LOG = logging.getLogger(__name__)


def _is_off(record):
    return record['power_state'] != virt_driver.RUNNING


def _is_deleted(record):
    return record['vm_state'] == DELETED


class Lifecycle:
    def __init__(self, host, driver, database, image_store, events,
                 operations):
        self._host = host
        self._driver = driver
        self._db = database
        self._images = image_store
        self._events = events
        self._ops = operations

    def build(self, ctxt, spec):
        """spec: a validation.build_request()."""
        uuid = spec['uuid']
        self._driver.check_image(spec['image'])
        record = self._db.create_instance(
            uuid=uuid, name=spec['name'], host=self._host,
            vm_state=BUILDING, task_state='spawning',
            power_state=virt_driver.NOSTATE, vcpus=spec['vcpus'],
            memory_mb=spec['memory_mb'], image=spec['image'],
            last_power_off=None)
        if record is None:
            raise exception.InvalidInput(
                reason=f'an instance with uuid {uuid} already exists; '
                       f'uuids cannot be reused')
        with self._ops.run(ctxt, uuid, 'build',
                           fail_vm_state=ERROR) as operation:
            failpoints.reach(failpoints.BUILD_RECORDED)
            started = time.monotonic()
            waiter = self._events.prepare(uuid, [
                instance_events.event_key(name, tag)
                for name, tag in spec['wait_for_events']])
            try:
                self._driver.spawn(uuid, spec['name'], spec['vcpus'],
                                   spec['memory_mb'], spec['image'])
            except Exception:
                self._events.forget(waiter)
                raise
            failpoints.reach(failpoints.BUILD_SPAWNED)
            try:
                self._events.wait_for(waiter, 'build', uuid)
            except exception.HypervisorError:
                # Not left running: the guest lacks what it waited for.
                self._delete_quietly(uuid)
                raise
            failpoints.reach(failpoints.BUILD_EVENTS_RECEIVED)
            LOG.info('Built instance %s (%s) in %.2f s', uuid, spec['name'],
                     time.monotonic() - started)
            return operation.finish(vm_state=ACTIVE,
                                    power_state=operation.power_state())

    def _delete_quietly(self, instance_uuid):
        try:
            self._driver.delete(instance_uuid)
        except exception.HypervisorError:
            LOG.exception('Could not remove instance %s after its build '
                          'failed', instance_uuid)

    def start(self, ctxt, uuid):
        with self._ops.run(ctxt, uuid, 'start', {STOPPED},
                           'powering_on') as operation:
            failpoints.reach(failpoints.START_CLAIMED)
            self._driver.power_on(uuid)
            failpoints.reach(failpoints.START_POWERED_ON)
            return operation.finish(vm_state=ACTIVE,
                                    power_state=operation.power_state())

    def stop(self, ctxt, uuid, clean, timeout):
        with self._ops.run(ctxt, uuid, 'stop', {ACTIVE}, 'powering_off',
                           clean, done=_is_off,
                           powers_off=True) as operation:
            if operation.already_done:
                return self._ops.get(uuid)
            failpoints.reach(failpoints.STOP_CLAIMED)
            operation.power_off(clean, timeout)
            failpoints.reach(failpoints.STOP_POWERED_OFF)
            return operation.finish(vm_state=STOPPED,
                                    power_state=operation.power_state())

    def reboot(self, ctxt, uuid, kind):
        """kind SOFT: a clean power-off that falls back to a forced one
        when the guest does not go off in time, then power on. HARD: a
        forced request, which cuts a waiting clean power-off short, as a
        forced stop does, and then reboots whatever that operation left.
        """
        soft = kind == 'SOFT'
        action = kind.lower() + '-reboot'
        allowed = {ACTIVE} if soft else {ACTIVE, STOPPED, ERROR}
        with self._ops.run(ctxt, uuid, action, allowed,
                           'rebooting' if soft else 'rebooting_hard',
                           clean=soft, powers_off=True) as operation:
            failpoints.reach(failpoints.REBOOT_CLAIMED)
            operation.power_off(soft, None)
            failpoints.reach(failpoints.REBOOT_POWERED_OFF)
            self._driver.power_on(uuid)
            failpoints.reach(failpoints.REBOOT_POWERED_ON)
            return operation.finish(vm_state=ACTIVE,
                                    power_state=operation.power_state())

    def delete(self, ctxt, uuid, clean, timeout):
        with self._ops.run(ctxt, uuid, 'delete',
                           {ACTIVE, STOPPED, ERROR, RESCUED, SHELVED,
                            SHELVED_OFFLOADED}, 'deleting', clean,
                           done=_is_deleted, powers_off=True) as operation:
            if operation.already_done:
                return self._ops.get(uuid)
            operation.power_off(clean, timeout)
            self._driver.delete(uuid)
            self._images.delete_all_of(uuid)
            return operation.finish(vm_state=DELETED,
                                    power_state=virt_driver.NOSTATE,
                                    snapshot_id=None)
