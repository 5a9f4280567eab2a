"""The libvirt implementation of the compute driver."""

import logging
import os
import shutil

import libvirt

from compute_agent import exception
from compute_agent.virt import driver
from compute_agent.virt import power
from compute_agent.virt.libvirt import cold_migration
from compute_agent.virt.libvirt import config
from compute_agent.virt.libvirt import domain_guest
from compute_agent.virt.libvirt import host as libvirt_host
from compute_agent.virt.libvirt import images
from compute_agent.virt.libvirt import migration
from compute_agent.virt.libvirt import rescue

LOG = logging.getLogger(__name__)

_POWER_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: driver.NOSTATE,
    libvirt.VIR_DOMAIN_RUNNING: driver.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: driver.RUNNING,
    libvirt.VIR_DOMAIN_PAUSED: driver.PAUSED,
    # Shutting down: still running until the guest finishes.
    libvirt.VIR_DOMAIN_SHUTDOWN: driver.RUNNING,
    libvirt.VIR_DOMAIN_SHUTOFF: driver.SHUTDOWN,
    libvirt.VIR_DOMAIN_CRASHED: driver.CRASHED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: driver.PAUSED,
}


class LibvirtDriver(driver.ComputeDriver):
    """Guests of one libvirt connection.

    :param live_migration_uri: the libvirt URI a source's libvirtd
        migrates to, '%s' standing for this host's name; None: the
        connection URI.
    :param live_migration_inbound_addr: the address incoming migration
        data is sent to; None: libvirt's choice.
    :param live_migration_bandwidth: MiB/s for outgoing live migrations,
        0 for unlimited.
    :param cold_migration_disk_transfer: how an outgoing cold migration
        copies the disk without shared storage: 'auto', 'filesystem' or
        'stream' (cold_migration.py).
    """

    def __init__(self, connection_uri, virt_type, state_path,
                 live_migration_uri=None, live_migration_inbound_addr=None,
                 live_migration_bandwidth=0,
                 cold_migration_disk_transfer=cold_migration.AUTO):
        self._host = libvirt_host.Host(connection_uri)
        self._virt_type = virt_type
        self._instances_path = os.path.join(state_path, 'instances')
        self.is_test_driver = False
        self.host_name = None
        self._live = migration.LiveMigrations(
            self, migration_uri=live_migration_uri,
            inbound_addr=live_migration_inbound_addr,
            bandwidth=live_migration_bandwidth)
        self._cold = cold_migration.ColdMigrations(
            self, cold_migration_disk_transfer)

    def health(self):
        return dict(self._host.health(), driver='libvirt')

    def init_host(self, host):
        connection = self._host.connect()
        self.is_test_driver = connection.getType().lower() == 'test'
        self.host_name = host
        os.makedirs(self._instances_path, exist_ok=True)

    # Helpers that migration.py and cold_migration.py borrow.

    @property
    def connection(self):
        return self._host.connection

    @property
    def connection_uri(self):
        return self._host.uri

    def instance_path(self, instance_uuid):
        return os.path.join(self._instances_path, instance_uuid)

    def console_log_path(self, instance_uuid):
        return os.path.join(self.instance_path(instance_uuid), 'console.log')

    def own_disk_path(self, instance_uuid):
        """The guest's overlay of its image's disk, when it has one."""
        return os.path.join(self.instance_path(instance_uuid), 'disk.qcow2')

    def lookup(self, instance_uuid):
        try:
            return self._host.connection.lookupByUUIDString(instance_uuid)
        except libvirt.libvirtError as error:
            if error.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise

    def _fail(self, action, instance_uuid, error):
        return exception.HypervisorError(
            action=action, instance_uuid=instance_uuid,
            reason=error.get_error_message() if isinstance(
                error, libvirt.libvirtError) else str(error))

    def spawn(self, instance_uuid, name, vcpus, memory_mb, image):
        try:
            xml = self._domain_xml(instance_uuid, name, vcpus, memory_mb,
                                   image)
            domain = self._host.connection.defineXML(xml)
            domain.create()
        except (libvirt.libvirtError, OSError, images.ImageError) as error:
            self._cleanup_after_failed_spawn(instance_uuid)
            raise self._fail('spawn', instance_uuid, error)

    def check_image(self, image):
        # Build and rescue images alike: everything that can be known
        # about booting one is checked here, before a guest is changed.
        if self.is_test_driver:
            return
        label = f'image {image.get("id")!r}'
        if 'kernel' not in image and 'disk' not in image:
            raise exception.InvalidInput(
                reason=f'{label}: a QEMU guest needs kernel and ramdisk, '
                       f'or disk')
        for key in ('kernel', 'ramdisk', 'disk'):
            if key not in image:
                continue
            # libvirtd opens the kernel and initramfs itself, from a
            # working directory other than the agent's.
            if not os.path.isabs(image[key]):
                raise exception.InvalidInput(
                    reason=f'{label}: {key} {image[key]!r} must be an '
                           f'absolute path')
            if not os.path.isfile(image[key]):
                raise exception.InvalidInput(
                    reason=f'{label}: {key} {image[key]!r} is not a file '
                           f'on this host')

    def _domain_xml(self, instance_uuid, name, vcpus, memory_mb, image):
        """A new guest's definition, with a new overlay of the image's
        disk when it has one."""
        disk = None
        if 'disk' in image and not self.is_test_driver:
            disk = self.own_disk_path(instance_uuid)
            os.makedirs(self.instance_path(instance_uuid), exist_ok=True)
            images.create_overlay(image['disk'], disk)
        return self.guest_xml(instance_uuid, name, vcpus, memory_mb, image,
                              disk)

    def guest_xml(self, instance_uuid, name, vcpus, memory_mb, image, disk):
        """The guest's definition with disk (a path, or None) as its
        own disk."""
        if self.is_test_driver:
            return config.test_domain_xml(instance_uuid, name, vcpus,
                                          memory_mb)
        os.makedirs(self.instance_path(instance_uuid), exist_ok=True)
        return config.qemu_domain_xml(
            instance_uuid, name, vcpus, memory_mb, self._virt_type,
            console_log=self.console_log_path(instance_uuid),
            kernel=image.get('kernel'), ramdisk=image.get('ramdisk'),
            cmdline=image.get('cmdline'), disk=disk,
            guest_agent=driver.wants_guest_agent(image.get('properties')))

    def _cleanup_after_failed_spawn(self, instance_uuid):
        try:
            self.delete(instance_uuid)
        except exception.HypervisorError:
            LOG.exception('Could not clean up instance %s after its build '
                          'failed', instance_uuid)

    def power_on(self, instance_uuid):
        domain = self.lookup_or_fail('power on', instance_uuid)
        try:
            domain.create()
        except libvirt.libvirtError as error:
            raise self._fail('power on', instance_uuid, error)

    def lookup_or_fail(self, action, instance_uuid):
        try:
            domain = self.lookup(instance_uuid)
        except libvirt.libvirtError as error:
            raise self._fail(action, instance_uuid, error)
        if domain is None:
            raise exception.HypervisorError(
                action=action, instance_uuid=instance_uuid,
                reason='no such domain on this host')
        return domain

    def power_off(self, instance_uuid, clean, timeout, retry_interval,
                  control=None, use_guest_agent=False):
        control = control or power.PowerOffControl()
        try:
            domain = self.lookup(instance_uuid)
        except libvirt.libvirtError as error:
            raise self._fail('power off', instance_uuid, error)
        if domain is None:
            return driver.PowerOffResult(
                requested='clean' if clean else 'forced', result='clean',
                method='already-off', seconds=0.0, timeout=timeout)
        guest = domain_guest.DomainGuest(
            domain, self.is_test_driver, find_domain=lambda: (
                self._host.connection.lookupByUUIDString(instance_uuid)))
        self._host.watch_power_off(instance_uuid, control)
        try:
            return power.power_off(guest, control, clean, timeout,
                                   retry_interval,
                                   use_guest_agent=use_guest_agent)
        except (libvirt.libvirtError, power.GuestUnreachable) as error:
            raise self._fail('power off', instance_uuid, error)
        finally:
            self._host.unwatch_power_off(instance_uuid, control)

    def require_off(self, domain, action, instance_uuid):
        # Not even a crashed guest whose QEMU is kept: it holds the disks.
        state = domain.info()[0]
        if state != libvirt.VIR_DOMAIN_SHUTOFF:
            raise exception.HypervisorError(
                action=action, instance_uuid=instance_uuid,
                reason=f'the guest is {_POWER_STATES.get(state, state)}; '
                       f'power it off first')

    def own_disk(self, instance_uuid, domain_xml):
        """The guest's own disk, when the definition uses one (a guest
        booted from a kernel alone, or on the test driver, has none)."""
        disk = self.own_disk_path(instance_uuid)
        return disk if disk in config.disk_files(domain_xml) else None

    def snapshot(self, instance_uuid, snapshot_path):
        domain = self.lookup_or_fail('snapshot', instance_uuid)
        try:
            self.require_off(domain, 'snapshot', instance_uuid)
            disk = self.own_disk(instance_uuid, domain.XMLDesc(
                libvirt.VIR_DOMAIN_XML_INACTIVE))
            if disk is None:
                return None
            return images.flatten(disk, snapshot_path)
        except (libvirt.libvirtError, OSError, images.ImageError) as error:
            raise self._fail('snapshot', instance_uuid, error)

    def rescue(self, instance_uuid, name, vcpus, memory_mb, image,
               rescue_image):
        # The guest's own image is not needed: libvirt has the guest's own
        # definition, which is what unrescue restores.
        domain = self.lookup_or_fail('rescue', instance_uuid)
        files = rescue.RescueFiles(self.instance_path(instance_uuid))
        try:
            self.require_off(domain, 'rescue', instance_uuid)
            original = files.save_original(domain.XMLDesc(
                libvirt.VIR_DOMAIN_XML_INACTIVE))
        except (libvirt.libvirtError, OSError, rescue.RescueError) as error:
            raise self._fail('rescue', instance_uuid, error)
        try:
            xml = self._rescue_xml(instance_uuid, name, vcpus, memory_mb,
                                   rescue_image, original, files)
            self._host.connection.defineXML(xml).create()
        except (libvirt.libvirtError, OSError, images.ImageError) as error:
            self._restore_after_failed_rescue(instance_uuid, domain,
                                              original, files)
            raise self._fail('rescue', instance_uuid, error)

    def _rescue_xml(self, instance_uuid, name, vcpus, memory_mb,
                    rescue_image, original_xml, files):
        image_id = str(rescue_image.get('id', ''))
        if self.is_test_driver:
            return config.test_domain_xml(instance_uuid, name, vcpus,
                                          memory_mb, rescue_image_id=image_id)
        boot_disk = None
        if 'disk' in rescue_image:
            boot_disk = files.rescue_disk
            images.create_overlay(rescue_image['disk'], boot_disk)
        own_disk = self.own_disk(instance_uuid, original_xml)
        return config.qemu_domain_xml(
            instance_uuid, name, vcpus, memory_mb, self._virt_type,
            console_log=self.console_log_path(instance_uuid),
            kernel=rescue_image.get('kernel'),
            ramdisk=rescue_image.get('ramdisk'),
            cmdline=rescue_image.get('cmdline'), disk=boot_disk,
            extra_disks=[('vdb', own_disk)] if own_disk else (),
            guest_agent=driver.wants_guest_agent(
                rescue_image.get('properties')),
            rescue_image_id=image_id)

    def _restore_after_failed_rescue(self, instance_uuid, domain,
                                     original_xml, files):
        """Leave the guest off with its own definition, as before."""
        try:
            domain_guest.unless_already_off(domain.destroy)
            self._host.connection.defineXML(original_xml)
            files.remove()
        except (libvirt.libvirtError, OSError):
            LOG.exception('Could not restore the definition of instance %s '
                          'after its rescue failed; unrescue restores it '
                          'from %s', instance_uuid, files.original_xml)

    def unrescue(self, instance_uuid):
        domain = self.lookup_or_fail('unrescue', instance_uuid)
        files = rescue.RescueFiles(self.instance_path(instance_uuid))
        try:
            original = files.saved_original()
            if original is None:
                raise exception.HypervisorError(
                    action='unrescue', instance_uuid=instance_uuid,
                    reason=f'there is no saved definition to restore '
                           f'({files.original_xml} is missing); the guest '
                           f'was not rescued on this host, or its files '
                           f'were lost')
            domain_guest.unless_already_off(domain.destroy)
            self._host.connection.defineXML(original)
            files.remove()
            domain.create()
        except (libvirt.libvirtError, OSError) as error:
            raise self._fail('unrescue', instance_uuid, error)

    def delete(self, instance_uuid):
        try:
            domain = self.lookup(instance_uuid)
            if domain is not None:
                domain_guest.unless_already_off(domain.destroy)
                domain_guest.unless_already_off(lambda: domain.undefineFlags(
                    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
                    libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA))
        except libvirt.libvirtError as error:
            raise self._fail('delete', instance_uuid, error)
        shutil.rmtree(self.instance_path(instance_uuid), ignore_errors=True)

    def get_console_output(self, instance_uuid, max_bytes):
        try:
            with open(self.console_log_path(instance_uuid), 'rb') as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(log.tell() - max_bytes, 0))
                return log.read().decode('utf-8', errors='replace')
        except FileNotFoundError:
            return ''

    def get_power_state(self, instance_uuid):
        try:
            domain = self.lookup(instance_uuid)
            if domain is None:
                return driver.NOSTATE
            return _POWER_STATES.get(domain.info()[0], driver.NOSTATE)
        except libvirt.libvirtError as error:
            raise self._fail('read the power state of', instance_uuid,
                             error)

    def get_serial_console(self, instance_uuid):
        action = 'reach the serial console of'
        domain = self.lookup_or_fail(action, instance_uuid)
        try:
            if not domain.isActive():
                raise exception.HypervisorError(
                    action=action, instance_uuid=instance_uuid,
                    reason='the guest is not running')
            console = config.serial_console(domain.XMLDesc(0))
        except libvirt.libvirtError as error:
            raise self._fail(action, instance_uuid, error)
        if console is None:
            raise exception.HypervisorError(
                action=action, instance_uuid=instance_uuid,
                reason='the guest has no serial device')
        return console

    # -- migration: the steps live in migration.py and cold_migration.py --

    def migration_target(self):
        return self._live.migration_target()

    def get_migratable_xml(self, instance_uuid):
        return self._live.get_migratable_xml(instance_uuid)

    def pre_live_migration(self, instance_uuid, migratable_xml, image,
                           block_migration):
        return self._live.pre_live_migration(instance_uuid, migratable_xml,
                                             image, block_migration)

    def live_migration(self, instance_uuid, target, destination_xml,
                       block_migration, control):
        self._live.live_migration(instance_uuid, target, destination_xml,
                                  block_migration, control)

    def post_live_migration_at_destination(self, instance_uuid,
                                           destination_xml):
        self._live.post_live_migration_at_destination(instance_uuid,
                                                      destination_xml)

    def rollback_live_migration_at_destination(self, instance_uuid):
        self._live.rollback_live_migration_at_destination(instance_uuid)

    def cleanup_after_live_migration(self, instance_uuid):
        self._live.cleanup_after_live_migration(instance_uuid)

    def create_shared_storage_marker(self, instance_uuid):
        return self._cold.create_shared_storage_marker(instance_uuid)

    def check_shared_storage_marker(self, instance_uuid, marker):
        return self._cold.check_shared_storage_marker(instance_uuid, marker)

    def remove_shared_storage_marker(self, instance_uuid, marker):
        self._cold.remove_shared_storage_marker(instance_uuid, marker)

    def migrate_disk(self, instance_uuid, destination_path, shared_storage,
                     target=None, control=None):
        return self._cold.migrate_disk(instance_uuid, destination_path,
                                       shared_storage, target, control)

    def finish_migration(self, instance_uuid, name, vcpus, memory_mb, image,
                         has_disk, power_on):
        self._cold.finish_migration(instance_uuid, name, vcpus, memory_mb,
                                    image, has_disk, power_on)

    def confirm_migration(self, instance_uuid, shared_storage):
        self._cold.confirm_migration(instance_uuid, shared_storage)

    def revert_migration_at_destination(self, instance_uuid, shared_storage):
        self._cold.revert_migration_at_destination(instance_uuid,
                                                   shared_storage)

    def finish_revert_migration(self, instance_uuid, power_on):
        self._cold.finish_revert_migration(instance_uuid, power_on)
