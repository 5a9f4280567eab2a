"""The libvirt implementation of the compute driver.

The driver holds this host's collaborators (the libvirt Host, the
InstancePaths, the hypervisor kind picked at connect) and hands them to
the flows through their constructors: migration.py and cold_migration.py
carry the migration steps, hypervisor.py what differs on libvirt's test
driver.
"""

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
from compute_agent.virt.libvirt import domains
from compute_agent.virt.libvirt import host as libvirt_host
from compute_agent.virt.libvirt import hypervisor
from compute_agent.virt.libvirt import images
from compute_agent.virt.libvirt import migration
from compute_agent.virt.libvirt import paths
from compute_agent.virt.libvirt import rescue

LOG = logging.getLogger(__name__)


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
        self._paths = paths.InstancePaths(state_path)
        self._live_options = dict(migration_uri=live_migration_uri,
                                  inbound_addr=live_migration_inbound_addr,
                                  bandwidth=live_migration_bandwidth)
        self._cold_disk_transfer = cold_migration_disk_transfer
        # Set by init_host(), once connected: the kind of hypervisor
        # (hypervisor.py) and the migration flows that depend on it.
        self._hypervisor = None
        self._live = None
        self._cold = None

    def health(self):
        return dict(self._host.health(), driver='libvirt')

    def init_host(self, host):
        connection = self._host.connect()
        self._hypervisor = hypervisor.for_connection(
            connection, self._virt_type, self._paths)
        live_flow = (migration.LiveMigrations
                     if self._hypervisor.live_migration
                     else migration.EmulatedLiveMigrations)
        self._live = live_flow(self._host, self._paths, host,
                               **self._live_options)
        self._cold = cold_migration.ColdMigrations(
            self._host, self._paths, self._hypervisor,
            self._cold_disk_transfer)
        os.makedirs(self._paths.instances, exist_ok=True)

    @property
    def connection(self):
        """The current libvirt connection (tests inspect the hypervisor
        through it)."""
        return self._host.connection

    def instance_path(self, instance_uuid):
        return self._paths.instance_path(instance_uuid)

    def console_log_path(self, instance_uuid):
        return self._paths.console_log_path(instance_uuid)

    def own_disk_path(self, instance_uuid):
        return self._paths.own_disk_path(instance_uuid)

    def spawn(self, instance_uuid, name, vcpus, memory_mb, image):
        try:
            xml = self._hypervisor.new_definition(
                instance_uuid, name, vcpus, memory_mb, image)
            domain = self._host.connection.defineXML(xml)
            domain.create()
        except (libvirt.libvirtError, OSError, images.ImageError) as error:
            self._cleanup_after_failed_spawn(instance_uuid)
            raise domains.hypervisor_error('spawn', instance_uuid, error)

    def check_image(self, image):
        self._hypervisor.check_image(image)

    def _cleanup_after_failed_spawn(self, instance_uuid):
        try:
            self.delete(instance_uuid)
        except exception.HypervisorError:
            LOG.exception('Could not clean up instance %s after its build '
                          'failed', instance_uuid)

    def power_on(self, instance_uuid):
        domain = domains.lookup_or_fail(self._host, 'power on', instance_uuid)
        try:
            domain.create()
        except libvirt.libvirtError as error:
            raise domains.hypervisor_error('power on', instance_uuid, error)

    def power_off(self, instance_uuid, clean, timeout, retry_interval,
                  control=None, use_guest_agent=False):
        control = control or power.PowerOffControl()
        try:
            domain = self._host.lookup(instance_uuid)
        except libvirt.libvirtError as error:
            raise domains.hypervisor_error('power off', instance_uuid, error)
        if domain is None:
            return driver.PowerOffResult(
                requested='clean' if clean else 'forced', result='clean',
                method='already-off', seconds=0.0, timeout=timeout)
        guest = domain_guest.DomainGuest(
            instance_uuid, domain, self._hypervisor.shutdown_methods,
            find_domain=lambda: (
                self._host.connection.lookupByUUIDString(instance_uuid)))
        self._host.watch_power_off(instance_uuid, control)
        try:
            return power.power_off(guest, control, clean, timeout,
                                   retry_interval,
                                   use_guest_agent=use_guest_agent)
        except (libvirt.libvirtError, power.GuestUnreachable) as error:
            raise domains.hypervisor_error('power off', instance_uuid, error)
        finally:
            self._host.unwatch_power_off(instance_uuid, control)

    def snapshot(self, instance_uuid, snapshot_path):
        domain = domains.lookup_or_fail(self._host, 'snapshot', instance_uuid)
        try:
            domains.require_off(domain, 'snapshot', instance_uuid)
            disk = self._paths.own_disk(instance_uuid, domain.XMLDesc(
                libvirt.VIR_DOMAIN_XML_INACTIVE))
            if disk is None:
                return None
            return images.flatten(disk, snapshot_path)
        except (libvirt.libvirtError, OSError, images.ImageError) as error:
            raise domains.hypervisor_error('snapshot', instance_uuid, error)

    def rescue(self, instance_uuid, name, vcpus, memory_mb, image,
               rescue_image):
        # The guest's own image is not needed: libvirt has the guest's own
        # definition, which is what unrescue restores.
        domain = domains.lookup_or_fail(self._host, 'rescue', instance_uuid)
        files = rescue.RescueFiles(self._paths.instance_path(instance_uuid))
        try:
            domains.require_off(domain, 'rescue', instance_uuid)
            original = files.save_original(domain.XMLDesc(
                libvirt.VIR_DOMAIN_XML_INACTIVE))
        except (libvirt.libvirtError, OSError, rescue.RescueError) as error:
            raise domains.hypervisor_error('rescue', instance_uuid, error)
        try:
            xml = self._hypervisor.rescue_definition(
                instance_uuid, name, vcpus, memory_mb, rescue_image,
                original, files)
            self._host.connection.defineXML(xml).create()
        except (libvirt.libvirtError, OSError, images.ImageError) as error:
            self._restore_after_failed_rescue(instance_uuid, domain,
                                              original, files)
            raise domains.hypervisor_error('rescue', instance_uuid, error)

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
        domain = domains.lookup_or_fail(self._host, 'unrescue', instance_uuid)
        files = rescue.RescueFiles(self._paths.instance_path(instance_uuid))
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
            raise domains.hypervisor_error('unrescue', instance_uuid, error)

    def delete(self, instance_uuid):
        try:
            domain = self._host.lookup(instance_uuid)
            if domain is not None:
                domain_guest.unless_already_off(domain.destroy)
                domain_guest.unless_already_off(lambda: domain.undefineFlags(
                    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
                    libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA))
        except libvirt.libvirtError as error:
            raise domains.hypervisor_error('delete', instance_uuid, error)
        shutil.rmtree(self._paths.instance_path(instance_uuid),
                      ignore_errors=True)

    def get_console_output(self, instance_uuid, max_bytes):
        try:
            log_path = self._paths.console_log_path(instance_uuid)
            with open(log_path, 'rb') as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(log.tell() - max_bytes, 0))
                return log.read().decode('utf-8', errors='replace')
        except FileNotFoundError:
            return ''

    def get_power_state(self, instance_uuid):
        try:
            domain = self._host.lookup(instance_uuid)
            if domain is None:
                return driver.NOSTATE
            return domains.power_state(domain.info()[0])
        except libvirt.libvirtError as error:
            raise domains.hypervisor_error('read the power state of',
                                           instance_uuid, error)

    def get_serial_console(self, instance_uuid):
        action = 'reach the serial console of'
        domain = domains.lookup_or_fail(self._host, action, instance_uuid)
        try:
            if not domain.isActive():
                raise exception.HypervisorError(
                    action=action, instance_uuid=instance_uuid,
                    reason='the guest is not running')
            console = config.serial_console(domain.XMLDesc(0))
        except libvirt.libvirtError as error:
            raise domains.hypervisor_error(action, instance_uuid, error)
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

    def cleanup_after_live_migration(self, instance_uuid,
                                     destination_xml=None):
        self._live.cleanup_after_live_migration(instance_uuid,
                                                destination_xml)

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
