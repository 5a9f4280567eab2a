"""ComputeManager: the RPC endpoint both servers dispatch to.

The shared machinery (claiming an instance, action records, the
forcible clean-then-forced power-off) is in manager_base; rescue and
shelve are in manager_shelve, live migration in manager_migrate, cold
migration and resize in manager_resize. This module holds reads,
external events and the basic lifecycle: build, start, stop, reboot,
delete.
"""

import logging
import time

import oslo_messaging

from compute_agent import events as instance_events
from compute_agent import exception
from compute_agent import manager_base as base
from compute_agent import manager_migrate
from compute_agent import manager_resize
from compute_agent import manager_shelve
from compute_agent import validation
from compute_agent.virt import driver as virt_driver

LOG = logging.getLogger(__name__)

# Keep in step with compute_agent.rpcapi (a unit test checks it).
RPC_API_VERSION = '1.5'
SERVICE_VERSION = 6

remotable = base.remotable


def _is_off(record):
    return record['power_state'] != virt_driver.RUNNING


def _is_deleted(record):
    return record['vm_state'] == base.DELETED


class ComputeManager(manager_migrate.LiveMigrationMixin,
                     manager_resize.ResizeMixin,
                     manager_shelve.ShelveRescueMixin, base.ManagerBase):
    target = oslo_messaging.Target(version=RPC_API_VERSION)

    # -- reads ----------------------------------------------------------

    @remotable
    def get_service_status(self, ctxt):
        status = {'host': self._host, 'service_version': SERVICE_VERSION,
                  'rpc_api_version': RPC_API_VERSION}
        status.update(self._service_status())
        status['hypervisor'] = self._driver.health()
        progress = self._power_off_progress()
        for operation in status['in_flight']:
            if operation['request_id'] in progress:
                operation['power_off'] = progress[operation['request_id']]
        return status

    @remotable
    def list_instances(self, ctxt):
        return self._db.list_instances(self._host)

    @remotable
    def get_instance(self, ctxt, instance_uuid):
        return self._get(validation.instance_uuid(instance_uuid))

    @remotable
    def get_instance_actions(self, ctxt, instance_uuid):
        uuid = validation.instance_uuid(instance_uuid)
        self._get(uuid)
        return self._db.list_actions(uuid)

    @remotable
    def get_console_output(self, ctxt, instance_uuid, max_bytes=None):
        uuid = validation.instance_uuid(instance_uuid)
        limit = validation.console_bytes(max_bytes)
        self._get(uuid)
        return self._driver.get_console_output(uuid, limit)

    @remotable
    def get_serial_console(self, ctxt, instance_uuid):
        uuid = validation.instance_uuid(instance_uuid)
        self._get(uuid)
        return self._driver.get_serial_console(uuid)

    @remotable
    def get_migration(self, ctxt, migration_id):
        return self._with_live_progress(self._known_migration(migration_id))

    @remotable
    def list_migrations(self, ctxt, instance_uuid=None):
        if instance_uuid is not None:
            instance_uuid = validation.instance_uuid(instance_uuid)
        return [self._with_live_progress(migration) for migration in
                self._db.list_migrations(instance_uuid)]

    def _with_live_progress(self, migration):
        """Progress of a live migration running here is read from the
        driver's reports, not written to the database at every step."""
        with self._migrations_lock:
            control = self._live_controls.get(migration['id'])
        if control is not None and migration['status'] == 'running':
            migration = dict(migration, progress=control.progress() or None)
        return migration

    # -- external events ----------------------------------------------------

    @remotable
    def external_instance_event(self, ctxt, instance_uuid, name, tag=None):
        uuid = validation.instance_uuid(instance_uuid)
        name = validation.event_name(name)
        tag = validation.event_tag(tag)
        delivered = self._events.deliver(uuid, name, tag)
        LOG.info('Event %s for instance %s %s', instance_events.event_key(
            name, tag), uuid, 'woke an operation waiting for it'
            if delivered else 'kept: nothing waits for it yet')
        return {'instance_uuid': uuid, 'name': name, 'tag': tag,
                'delivered': delivered}

    # -- lifecycle ------------------------------------------------------

    @remotable
    def build_and_run_instance(self, ctxt, instance):
        spec = validation.build_request(instance)
        self._driver.check_image(spec['image'])
        record = self._db.create_instance(
            uuid=spec['uuid'], name=spec['name'], host=self._host,
            vm_state=base.BUILDING, task_state='spawning',
            power_state=virt_driver.NOSTATE, vcpus=spec['vcpus'],
            memory_mb=spec['memory_mb'], image=spec['image'],
            last_power_off=None)
        if record is None:
            raise exception.InvalidInput(
                reason=f'an instance with uuid {spec["uuid"]} already '
                       f'exists; uuids cannot be reused')
        with self._action(ctxt, spec['uuid'], 'build'):
            started = time.monotonic()
            waiter = self._events.prepare(spec['uuid'], [
                instance_events.event_key(name, tag)
                for name, tag in spec['wait_for_events']])
            try:
                self._driver.spawn(spec['uuid'], spec['name'],
                                   spec['vcpus'], spec['memory_mb'],
                                   spec['image'])
            except Exception as error:
                self._events.forget(waiter)
                raise self._fail(spec['uuid'], 'build', error,
                                 vm_state=base.ERROR)
            try:
                self._wait_for_events(waiter, 'build', spec['uuid'])
            except exception.HypervisorError as error:
                # Not left running: the guest lacks what it waited for.
                self._delete_quietly(spec['uuid'])
                raise self._fail(spec['uuid'], 'build', error,
                                 vm_state=base.ERROR)
            LOG.info('Built instance %s (%s) in %.2f s', spec['uuid'],
                     spec['name'], time.monotonic() - started)
            return self._finish(
                spec['uuid'], vm_state=base.ACTIVE,
                power_state=self._safe_power_state(spec['uuid']))

    def _delete_quietly(self, instance_uuid):
        try:
            self._driver.delete(instance_uuid)
        except exception.HypervisorError:
            LOG.exception('Could not remove instance %s after its build '
                          'failed', instance_uuid)

    @remotable
    def start_instance(self, ctxt, instance_uuid):
        uuid = validation.instance_uuid(instance_uuid)
        with self._action(ctxt, uuid, 'start'):
            self._begin(uuid, 'start', {base.STOPPED}, 'powering_on')
            try:
                self._driver.power_on(uuid)
            except Exception as error:
                raise self._fail(uuid, 'start', error)
            return self._finish(uuid, vm_state=base.ACTIVE,
                                power_state=self._safe_power_state(uuid))

    @remotable
    def stop_instance(self, ctxt, instance_uuid, clean_shutdown=True,
                      shutdown_timeout=None):
        uuid, clean, timeout = validation.power_off_request(
            instance_uuid, clean_shutdown, shutdown_timeout)
        with self._action(ctxt, uuid, 'stop') as report:
            record = self._claim(uuid, 'stop', {base.ACTIVE},
                                 'powering_off', clean, done=_is_off)
            if record is None:
                return self._get(uuid)
            try:
                report.power_off = self._power_off(ctxt, record, clean,
                                                   timeout, 'stop')
            except Exception as error:
                raise self._fail(uuid, 'stop', error)
            return self._finish(uuid, vm_state=base.STOPPED,
                                power_state=self._safe_power_state(uuid),
                                last_power_off=report.power_off)

    @remotable
    def reboot_instance(self, ctxt, instance_uuid, reboot_type='SOFT'):
        uuid = validation.instance_uuid(instance_uuid)
        kind = validation.reboot_type(reboot_type)
        with self._action(ctxt, uuid, kind.lower() + '-reboot') as report:
            if kind == 'SOFT':
                record = self._begin(uuid, 'soft-reboot', {base.ACTIVE},
                                     'rebooting')
            else:
                # A hard reboot is a forced request: it cuts a waiting
                # clean power-off short, as a forced stop does, and then
                # reboots whatever that operation left.
                record = self._claim(
                    uuid, 'hard-reboot',
                    {base.ACTIVE, base.STOPPED, base.ERROR},
                    'rebooting_hard', clean=False)
            try:
                # A soft reboot is a clean power-off that falls back to a
                # forced one when the guest does not go off in time.
                report.power_off = self._power_off(
                    ctxt, record, kind == 'SOFT', None,
                    kind.lower() + '-reboot')
                self._driver.power_on(uuid)
            except Exception as error:
                raise self._fail(uuid, 'reboot', error)
            return self._finish(uuid, vm_state=base.ACTIVE,
                                power_state=self._safe_power_state(uuid),
                                last_power_off=report.power_off)

    @remotable
    def terminate_instance(self, ctxt, instance_uuid, clean_shutdown=True,
                           shutdown_timeout=None):
        uuid, clean, timeout = validation.power_off_request(
            instance_uuid, clean_shutdown, shutdown_timeout)
        with self._action(ctxt, uuid, 'delete') as report:
            record = self._claim(
                uuid, 'delete',
                {base.ACTIVE, base.STOPPED, base.ERROR, base.RESCUED,
                 base.SHELVED, base.SHELVED_OFFLOADED},
                'deleting', clean, done=_is_deleted)
            if record is None:
                return self._get(uuid)
            try:
                report.power_off = self._power_off(ctxt, record, clean,
                                                   timeout, 'delete')
                self._driver.delete(uuid)
            except Exception as error:
                raise self._fail(uuid, 'delete', error)
            if record['snapshot_id']:
                self._images.delete(record['snapshot_id'])
            return self._finish(uuid, vm_state=base.DELETED,
                                power_state=virt_driver.NOSTATE,
                                last_power_off=report.power_off,
                                snapshot_id=None)
