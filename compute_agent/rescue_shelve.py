"""Rescue and shelve: the operations that power a guest off (clean, then
forced) to boot it from something else or to take it off the host.

Each method takes arguments its endpoint has validated, and runs as one
operation (operations.Operations.run).
"""

import logging

from compute_agent import exception
from compute_agent import failpoints
from compute_agent import validation
from compute_agent.virt import driver as virt_driver
from compute_agent.vm_states import (ACTIVE, ERROR, RESCUED, SHELVED,
                                     SHELVED_OFFLOADED, STOPPED)

LOG = logging.getLogger(__name__)


def _is_shelved(record):
    return record['vm_state'] in (SHELVED, SHELVED_OFFLOADED)


def _is_offloaded(record):
    return record['vm_state'] == SHELVED_OFFLOADED


class RescueShelve:
    def __init__(self, host, driver, image_store, operations):
        self._host = host
        self._driver = driver
        self._images = image_store
        self._ops = operations

    # -- rescue -----------------------------------------------------------

    def rescue(self, ctxt, uuid, rescue_image, clean, timeout):
        image = self._rescue_image(rescue_image, self._ops.get(uuid))
        with self._ops.run(ctxt, uuid, 'rescue', {ACTIVE, STOPPED, ERROR},
                           'rescuing', clean, powers_off=True) as operation:
            record = operation.record
            failpoints.reach(failpoints.RESCUE_CLAIMED)
            operation.power_off(clean, timeout)
            failpoints.reach(failpoints.RESCUE_POWERED_OFF)
            flavor = record['flavor']
            self._driver.rescue(uuid, record['name'], flavor['vcpus'],
                                flavor['memory_mb'], record['image'], image)
            failpoints.reach(failpoints.RESCUE_BOOTED)
            return operation.finish(vm_state=RESCUED,
                                    power_state=operation.power_state())

    def _rescue_image(self, rescue_image, record):
        """The image spec to boot the rescue from: the instance's own
        image, a snapshot of the local image store named by id, or a spec
        given in full. Checked before anything changes."""
        if rescue_image is None:
            image = record['image']
        elif isinstance(rescue_image, str):
            snapshot = self._images.get(rescue_image)
            if snapshot is None or not snapshot['path']:
                raise exception.InvalidInput(
                    reason=f'unknown rescue image {rescue_image!r}: no '
                           f'snapshot with a disk has that id on host '
                           f'{self._host}')
            image = {'id': snapshot['id'], 'properties': {},
                     'disk': snapshot['path']}
        else:
            image = validation.image_spec(rescue_image, 'rescue_image')
        self._driver.check_image(image)
        return image

    def unrescue(self, ctxt, uuid):
        with self._ops.run(ctxt, uuid, 'unrescue', {RESCUED},
                           'unrescuing') as operation:
            failpoints.reach(failpoints.UNRESCUE_CLAIMED)
            self._driver.unrescue(uuid)
            failpoints.reach(failpoints.UNRESCUE_RESTORED)
            return operation.finish(vm_state=ACTIVE,
                                    power_state=operation.power_state())

    # -- shelve -------------------------------------------------------------

    def shelve(self, ctxt, uuid, clean, timeout):
        with self._ops.run(ctxt, uuid, 'shelve', {ACTIVE, STOPPED},
                           'shelving', clean, done=_is_shelved,
                           powers_off=True) as operation:
            if operation.already_done:
                return self._ops.get(uuid)
            failpoints.reach(failpoints.SHELVE_CLAIMED)
            operation.power_off(clean, timeout)
            failpoints.reach(failpoints.SHELVE_POWERED_OFF)
            snapshot_id = self._snapshot(operation.record)
            failpoints.reach(failpoints.SHELVE_SNAPSHOTTED)
            return operation.finish(vm_state=SHELVED,
                                    power_state=operation.power_state(),
                                    snapshot_id=snapshot_id)

    def _snapshot(self, record):
        """Keep the powered-off guest's disk in the image store. A guest
        without a disk (booted from kernel and initramfs, or on the test
        driver) gets a record that says so, and comes back from its own
        image."""
        snapshot_id, path = self._images.new_snapshot()
        size = self._driver.snapshot(record['uuid'], path)
        self._images.record(snapshot_id, record['uuid'],
                            path if size is not None else None, size,
                            record['image'])
        LOG.info('Snapshot %s of instance %s: %s', snapshot_id,
                 record['uuid'], f'{size} bytes' if size is not None
                 else 'the guest has no disk')
        return snapshot_id

    def shelve_offload(self, ctxt, uuid, clean, timeout):
        with self._ops.run(ctxt, uuid, 'shelve-offload',
                           {ACTIVE, STOPPED, SHELVED},
                           'shelving_offloading', clean, done=_is_offloaded,
                           powers_off=True) as operation:
            if operation.already_done:
                return self._ops.get(uuid)
            record = operation.record
            failpoints.reach(failpoints.OFFLOAD_CLAIMED)
            snapshot_id = record['snapshot_id']
            if record['vm_state'] == SHELVED:
                operation.no_power_off()
            else:
                operation.power_off(clean, timeout)
                snapshot_id = self._snapshot(record)
                failpoints.reach(failpoints.OFFLOAD_SNAPSHOTTED)
            self._driver.delete(uuid)
            failpoints.reach(failpoints.OFFLOAD_DELETED)
            return operation.finish(vm_state=SHELVED_OFFLOADED,
                                    power_state=virt_driver.NOSTATE,
                                    snapshot_id=snapshot_id)

    def unshelve(self, ctxt, uuid):
        with self._ops.run(ctxt, uuid, 'unshelve',
                           {SHELVED, SHELVED_OFFLOADED},
                           'unshelving') as operation:
            record = operation.record
            failpoints.reach(failpoints.UNSHELVE_CLAIMED)
            if record['vm_state'] == SHELVED:
                self._driver.power_on(uuid)
            else:
                self._respawn_from_snapshot(record)
            failpoints.reach(failpoints.UNSHELVE_BOOTED)
            if record['snapshot_id']:
                self._images.delete(record['snapshot_id'])
            failpoints.reach(failpoints.UNSHELVE_SNAPSHOT_DELETED)
            return operation.finish(vm_state=ACTIVE,
                                    power_state=operation.power_state(),
                                    snapshot_id=None)

    def _respawn_from_snapshot(self, record):
        image = dict(record['image'])
        snapshot = self._images.get(record['snapshot_id']) \
            if record['snapshot_id'] else None
        if snapshot and snapshot['path']:
            image['disk'] = snapshot['path']
        flavor = record['flavor']
        self._driver.spawn(record['uuid'], record['name'], flavor['vcpus'],
                           flavor['memory_mb'], image)
