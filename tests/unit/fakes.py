"""Fakes for unit tests: a hypervisor driver held in memory."""

import threading
import uuid as uuid_lib

from compute_agent import exception
from compute_agent.virt import driver
from compute_agent.virt import power


class FakeDriver(driver.ComputeDriver):
    """Guests are dicts; power-off honours `ignores_acpi` per guest and
    can be made to fail or to block until released."""

    def __init__(self, hosts=None, name='fake-host'):
        """:param hosts: a dict shared by the FakeDrivers of one test, name
            -> driver, through which a live migration moves a guest."""
        self.name = name
        self.hosts = hosts if hosts is not None else {}
        self.hosts[name] = self
        self.guests = {}
        self.files = {}   # instance uuid -> set of file names
        self.migration_gate = None
        self.live_migrations = []
        self.disk_targets = {}   # instance uuid -> migrate_disk()'s target
        self.disk_copy_gate = None
        self.power_off_calls = []
        self.fail_next = {}
        self.power_off_gate = None
        self.initialised = False

    def _maybe_fail(self, action, instance_uuid):
        error = self.fail_next.pop(action, None)
        if error is not None:
            raise error

    def init_host(self, host):
        self.initialised = True

    def check_image(self, image):
        properties = image.get('properties', {})
        if properties.get('fake_unbootable') or \
                properties.get('fake_unbootable_on') == self.name:
            raise exception.InvalidInput(reason='image cannot boot here')

    def spawn(self, instance_uuid, name, vcpus, memory_mb, image):
        self._maybe_fail('spawn', instance_uuid)
        self.guests[instance_uuid] = {'state': driver.RUNNING,
                                      'ignores_acpi': False,
                                      'waits_for_force': False,
                                      'disk': 'disk' in image,
                                      'image': image, 'rescue': None}

    def power_on(self, instance_uuid):
        self._maybe_fail('power_on', instance_uuid)
        self.guests[instance_uuid]['state'] = driver.RUNNING

    def power_off(self, instance_uuid, clean, timeout, retry_interval,
                  control=None, use_guest_agent=False):
        """Guests obey at once, or ignore the request (forced at the end
        of the wait), or wait until the control is forced, which models a
        clean wait that a forced request cuts short."""
        self.power_off_calls.append((instance_uuid, clean, timeout,
                                     retry_interval, use_guest_agent))
        if self.power_off_gate is not None:
            self.power_off_gate.wait()
        self._maybe_fail('power_off', instance_uuid)
        guest = self.guests.get(instance_uuid)
        requested = 'clean' if clean else 'forced'
        method = power.GUEST_AGENT if use_guest_agent else power.ACPI
        if guest is None or guest['state'] == driver.SHUTDOWN:
            result, method = 'clean', 'already-off'
        elif clean and guest['waits_for_force'] and control is not None:
            control.waiting(timeout)
            control.requested(method)
            while not control.forced:
                control.wait(0.01)
            result, method = 'forced', 'destroy'
        elif clean and not guest['ignores_acpi']:
            result = 'clean'
        else:
            result, method = 'forced', 'destroy'
        if guest is not None:
            guest['state'] = driver.SHUTDOWN
        return driver.PowerOffResult(requested, result, method,
                                     seconds=0.5, timeout=timeout)

    def snapshot(self, instance_uuid, snapshot_path):
        guest = self.guests[instance_uuid]
        if guest['state'] != driver.SHUTDOWN:
            raise exception.HypervisorError(
                action='snapshot', instance_uuid=instance_uuid,
                reason='guest is running')
        if not guest['disk']:
            return None
        with open(snapshot_path, 'w') as snapshot:
            snapshot.write(f'disk of {instance_uuid}')
        return len(f'disk of {instance_uuid}')

    def rescue(self, instance_uuid, name, vcpus, memory_mb, image,
               rescue_image):
        self._maybe_fail('rescue', instance_uuid)
        guest = self.guests[instance_uuid]
        guest['rescue'] = rescue_image
        guest['state'] = driver.RUNNING

    def unrescue(self, instance_uuid):
        guest = self.guests[instance_uuid]
        guest['rescue'] = None
        guest['state'] = driver.RUNNING

    def get_console_output(self, instance_uuid, max_bytes):
        console = self.guests.get(instance_uuid, {}).get('console', '')
        return console[-max_bytes:]

    def delete(self, instance_uuid):
        self._maybe_fail('delete', instance_uuid)
        self.guests.pop(instance_uuid, None)

    def get_power_state(self, instance_uuid):
        guest = self.guests.get(instance_uuid)
        return guest['state'] if guest else driver.NOSTATE

    def get_serial_console(self, instance_uuid):
        if instance_uuid not in self.guests:
            raise exception.HypervisorError(
                action='get the serial console of',
                instance_uuid=instance_uuid, reason='no such domain')
        return {'type': 'file', 'path': f'/fake/{instance_uuid}/console'}

    # -- live migration: the guest dict moves between drivers --------------

    def migration_target(self):
        self._maybe_fail('migration_target', None)
        return {'fake_host': self.name}

    def get_migratable_xml(self, instance_uuid):
        return f'<domain uuid="{instance_uuid}" host="{self.name}"/>'

    def pre_live_migration(self, instance_uuid, migratable_xml, image,
                           block_migration):
        self._maybe_fail('pre_live_migration', instance_uuid)
        self.files[instance_uuid] = {'incoming'}
        return migratable_xml.replace('/>', f' dest="{self.name}"/>')

    def live_migration(self, instance_uuid, target, destination_xml,
                       block_migration, control):
        """Moves the guest dict; migration_gate holds it half-way, where
        control's abort and force-complete requests are honoured."""
        self.live_migrations.append((instance_uuid, target,
                                     block_migration))
        control.report(percent=50)
        if self.migration_gate is not None:
            self.migration_gate.entered.set()
            while not self.migration_gate.released():
                reason = control.abort_reason()
                if reason is not None:
                    raise exception.MigrationError(
                        reason=f'aborted: {reason}')
                if control.take_force_complete():
                    break
                control.wait(0.01)
        self._maybe_fail('live_migration', instance_uuid)
        destination = self.hosts[target['fake_host']]
        destination.guests[instance_uuid] = self.guests.pop(instance_uuid)
        destination.guests[instance_uuid]['xml'] = destination_xml
        control.report(percent=100)

    def post_live_migration_at_destination(self, instance_uuid,
                                           destination_xml):
        self._maybe_fail('post_live_migration_at_destination',
                         instance_uuid)
        self.files[instance_uuid] = {'disk', 'console'}

    def rollback_live_migration_at_destination(self, instance_uuid):
        self._maybe_fail('rollback_live_migration_at_destination',
                         instance_uuid)
        self.files.pop(instance_uuid, None)

    def cleanup_after_live_migration(self, instance_uuid,
                                     destination_xml=None):
        self.files.pop(instance_uuid, None)

    # -- cold migration ----------------------------------------------------

    def instance_path(self, instance_uuid):
        return f'/fake/{self.name}/{instance_uuid}'

    def create_shared_storage_marker(self, instance_uuid):
        marker = f'.marker-{uuid_lib.uuid4().hex}'
        self.files.setdefault(instance_uuid, set()).add(marker)
        return marker

    def check_shared_storage_marker(self, instance_uuid, marker):
        return marker in self.files.get(instance_uuid, ())

    def remove_shared_storage_marker(self, instance_uuid, marker):
        self.files.get(instance_uuid, set()).discard(marker)

    def migrate_disk(self, instance_uuid, destination_path, shared_storage,
                     target=None, control=None):
        self._maybe_fail('migrate_disk', instance_uuid)
        self.disk_targets[instance_uuid] = target
        if self.disk_copy_gate:
            # A copy that takes until released, or until told to stop.
            while not self.disk_copy_gate.released():
                self.disk_copy_gate.entered.set()
                reason = control.abort_reason() if control else None
                if reason:
                    raise exception.MigrationError(
                        reason=f'the disk copy was stopped: {reason}')
                self.disk_copy_gate.wait_released(0.01)
        guest = self.guests[instance_uuid]
        if guest['state'] != driver.SHUTDOWN:
            raise exception.HypervisorError(
                action='migrate the disk of', instance_uuid=instance_uuid,
                reason='guest is running')
        return {'disk': guest['disk']}

    def finish_migration(self, instance_uuid, name, vcpus, memory_mb, image,
                         has_disk, power_on):
        self._maybe_fail('finish_migration', instance_uuid)
        self.guests[instance_uuid] = {
            'state': driver.RUNNING if power_on else driver.SHUTDOWN,
            'ignores_acpi': False, 'waits_for_force': False,
            'disk': has_disk, 'image': image, 'rescue': None,
            'flavor': (vcpus, memory_mb)}

    def confirm_migration(self, instance_uuid, shared_storage):
        self.guests.pop(instance_uuid, None)
        self.files.pop(instance_uuid, None)

    def revert_migration_at_destination(self, instance_uuid,
                                        shared_storage):
        self._maybe_fail('revert_migration_at_destination', instance_uuid)
        self.guests.pop(instance_uuid, None)

    def finish_revert_migration(self, instance_uuid, power_on):
        self._maybe_fail('finish_revert_migration', instance_uuid)
        if power_on:
            self.guests[instance_uuid]['state'] = driver.RUNNING


class BlockingGate:
    """Holds a fake operation until the test releases it."""

    def __init__(self):
        self.entered = threading.Event()
        self._release = threading.Event()

    def wait(self):
        self.entered.set()
        self._release.wait(10)

    def release(self):
        self._release.set()

    def released(self):
        return self._release.is_set()

    def wait_released(self, timeout):
        """Wait up to timeout seconds for release(); True if it came."""
        return self._release.wait(timeout)
