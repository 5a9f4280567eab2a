"""Rescue and shelve: the operations that power a guest off (clean, then
forced) to boot it from something else or to take it off the host."""

import logging

from compute_agent import exception
from compute_agent import manager_base as base
from compute_agent import validation
from compute_agent.virt import driver as virt_driver

LOG = logging.getLogger(__name__)

remotable = base.remotable


def _is_shelved(record):
    return record['vm_state'] in (base.SHELVED, base.SHELVED_OFFLOADED)


def _is_offloaded(record):
    return record['vm_state'] == base.SHELVED_OFFLOADED


class ShelveRescueMixin:
    # -- rescue -----------------------------------------------------------

    @remotable
    def rescue_instance(self, ctxt, instance_uuid, rescue_image=None,
                        clean_shutdown=True, shutdown_timeout=None):
        uuid, clean, timeout = validation.power_off_request(
            instance_uuid, clean_shutdown, shutdown_timeout)
        record = self._get(uuid)
        image = self._rescue_image(rescue_image, record)
        with self._action(ctxt, uuid, 'rescue') as report:
            record = self._claim(uuid, 'rescue',
                                 {base.ACTIVE, base.STOPPED, base.ERROR},
                                 'rescuing', clean)
            try:
                report.power_off = self._power_off(ctxt, record, clean,
                                                   timeout, 'rescue')
                flavor = record['flavor']
                self._driver.rescue(uuid, record['name'], flavor['vcpus'],
                                    flavor['memory_mb'], record['image'],
                                    image)
            except Exception as error:
                raise self._fail(uuid, 'rescue', error)
            return self._finish(uuid, vm_state=base.RESCUED,
                                power_state=self._safe_power_state(uuid),
                                last_power_off=report.power_off)

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

    @remotable
    def unrescue_instance(self, ctxt, instance_uuid):
        uuid = validation.instance_uuid(instance_uuid)
        with self._action(ctxt, uuid, 'unrescue'):
            self._begin(uuid, 'unrescue', {base.RESCUED}, 'unrescuing')
            try:
                self._driver.unrescue(uuid)
            except Exception as error:
                raise self._fail(uuid, 'unrescue', error)
            return self._finish(uuid, vm_state=base.ACTIVE,
                                power_state=self._safe_power_state(uuid))

    # -- shelve -------------------------------------------------------------

    @remotable
    def shelve_instance(self, ctxt, instance_uuid, clean_shutdown=True,
                        shutdown_timeout=None):
        uuid, clean, timeout = validation.power_off_request(
            instance_uuid, clean_shutdown, shutdown_timeout)
        with self._action(ctxt, uuid, 'shelve') as report:
            record = self._claim(uuid, 'shelve',
                                 {base.ACTIVE, base.STOPPED}, 'shelving',
                                 clean, done=_is_shelved)
            if record is None:
                return self._get(uuid)
            try:
                report.power_off = self._power_off(ctxt, record, clean,
                                                   timeout, 'shelve')
                snapshot_id = self._snapshot(record)
            except Exception as error:
                raise self._fail(uuid, 'shelve', error)
            return self._finish(uuid, vm_state=base.SHELVED,
                                power_state=self._safe_power_state(uuid),
                                last_power_off=report.power_off,
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

    @remotable
    def shelve_offload_instance(self, ctxt, instance_uuid,
                                clean_shutdown=True, shutdown_timeout=None):
        uuid, clean, timeout = validation.power_off_request(
            instance_uuid, clean_shutdown, shutdown_timeout)
        with self._action(ctxt, uuid, 'shelve-offload') as report:
            record = self._claim(
                uuid, 'shelve-offload',
                {base.ACTIVE, base.STOPPED, base.SHELVED},
                'shelving_offloading', clean, done=_is_offloaded)
            if record is None:
                return self._get(uuid)
            snapshot_id = record['snapshot_id']
            try:
                if record['vm_state'] != base.SHELVED:
                    report.power_off = self._power_off(
                        ctxt, record, clean, timeout, 'shelve-offload')
                    snapshot_id = self._snapshot(record)
                self._driver.delete(uuid)
            except Exception as error:
                raise self._fail(uuid, 'shelve-offload', error)
            values = {'last_power_off': report.power_off} \
                if report.power_off else {}
            return self._finish(uuid, vm_state=base.SHELVED_OFFLOADED,
                                power_state=virt_driver.NOSTATE,
                                snapshot_id=snapshot_id, **values)

    @remotable
    def unshelve_instance(self, ctxt, instance_uuid):
        uuid = validation.instance_uuid(instance_uuid)
        with self._action(ctxt, uuid, 'unshelve'):
            record = self._begin(uuid, 'unshelve',
                                 {base.SHELVED, base.SHELVED_OFFLOADED},
                                 'unshelving')
            try:
                if record['vm_state'] == base.SHELVED:
                    self._driver.power_on(uuid)
                else:
                    self._respawn_from_snapshot(record)
            except Exception as error:
                raise self._fail(uuid, 'unshelve', error)
            if record['snapshot_id']:
                self._images.delete(record['snapshot_id'])
            return self._finish(uuid, vm_state=base.ACTIVE,
                                power_state=self._safe_power_state(uuid),
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
