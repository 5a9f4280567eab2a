"""Cold migration and resize of the agent's libvirt guests.

The guest is powered off on the source. Its own disk, a qcow2 overlay whose
base image sits at the same absolute path on every host, is copied whole
into the destination's instance directory (the overlay keeps naming its
base). This host must see that directory under the path the destination
gave: on storage both hosts share, or mounted here. Copying to another host
over the network (ssh) is not implemented. With shared storage nothing is
copied: the destination uses the very file. The source keeps the guest
defined, and its files, until the migration is confirmed, so that a revert
only has to start it again. Nothing here is emulated: on libvirt's test
driver the guests have no disk to copy.
"""

import os
import shutil
import uuid as uuidlib

import libvirt

from compute_agent import exception
from compute_agent.virt.libvirt import domain_guest
from compute_agent.virt.libvirt import images
from compute_agent.virt.libvirt import live_transfer

SHARED_STORAGE_MARKER_PREFIX = '.shared-storage-check-'


class ColdMigrations:
    """The cold-migration steps of one LibvirtDriver.

    The driver lends its helpers: connection, is_test_driver, lookup(),
    lookup_or_fail(), instance_path(), own_disk_path(), own_disk(),
    require_off() and guest_xml().
    """

    def __init__(self, driver):
        self._driver = driver

    # -- is the instance directory shared? ------------------------------------

    def create_shared_storage_marker(self, instance_uuid):
        own_dir = self._driver.instance_path(instance_uuid)
        marker = f'{SHARED_STORAGE_MARKER_PREFIX}{uuidlib.uuid4().hex}'
        try:
            os.makedirs(own_dir, exist_ok=True)
            with open(os.path.join(own_dir, marker), 'x'):
                pass
        except OSError as error:
            raise live_transfer.failed(
                'check for shared storage for', instance_uuid,
                error) from error
        return marker

    def _marker_path(self, instance_uuid, marker):
        if os.path.basename(marker) != marker or \
                not marker.startswith(SHARED_STORAGE_MARKER_PREFIX):
            raise exception.MigrationError(
                reason=f'{marker!r} is not the name of a shared-storage '
                       f'marker')
        return os.path.join(self._driver.instance_path(instance_uuid),
                            marker)

    def check_shared_storage_marker(self, instance_uuid, marker):
        return os.path.exists(self._marker_path(instance_uuid, marker))

    def remove_shared_storage_marker(self, instance_uuid, marker):
        try:
            os.unlink(self._marker_path(instance_uuid, marker))
        except FileNotFoundError:
            pass
        try:
            # Created for the check alone when nothing else is in it.
            os.rmdir(self._driver.instance_path(instance_uuid))
        except OSError:
            pass

    # -- source ---------------------------------------------------------------

    def migrate_disk(self, instance_uuid, destination_path, shared_storage):
        driver = self._driver
        domain = driver.lookup_or_fail('migrate the disk of', instance_uuid)
        try:
            driver.require_off(domain, 'migrate the disk of', instance_uuid)
            disk = driver.own_disk(instance_uuid, domain.XMLDesc(
                libvirt.VIR_DOMAIN_XML_INACTIVE))
        except libvirt.libvirtError as error:
            raise live_transfer.failed(
                'read the definition of', instance_uuid, error) from error
        if disk is None:
            return {'disk': False}
        if not shared_storage:
            self._check_reachable(instance_uuid, destination_path)
            copy = os.path.join(destination_path, os.path.basename(disk))
            try:
                with images.replaced_atomically(copy) as partial:
                    shutil.copyfile(disk, partial)
            except OSError as error:
                raise live_transfer.failed(
                    f'copy the disk to {copy} for', instance_uuid,
                    error) from error
        return {'disk': True}

    def _check_reachable(self, instance_uuid, destination_path):
        own_dir = self._driver.instance_path(instance_uuid)
        if not os.path.isabs(destination_path):
            seen = 'which is not an absolute path'
        elif not os.path.isdir(os.path.dirname(
                os.path.normpath(destination_path))):
            seen = 'which this host does not see'
        elif os.path.realpath(destination_path) == os.path.realpath(own_dir):
            seen = 'which is this host\'s own directory for the instance'
        else:
            return
        raise exception.MigrationError(
            reason=f'without shared storage a cold migration copies the '
                   f'disk into the destination\'s instance directory '
                   f'{destination_path}, {seen}: mount the destination\'s '
                   f'instances directory here under that path, or keep '
                   f'instances on storage both hosts share. Copying to '
                   f'another host over the network (ssh) is not implemented')

    def confirm_migration(self, instance_uuid, shared_storage):
        try:
            domain = self._driver.lookup(instance_uuid)
            if domain is not None:
                if domain.isActive():
                    raise exception.HypervisorError(
                        action='confirm the migration of',
                        instance_uuid=instance_uuid,
                        reason='the original guest runs on this host again; '
                               'power it off, then confirm')
                domain.undefineFlags(live_transfer.UNDEFINE_FLAGS)
        except libvirt.libvirtError as error:
            raise live_transfer.failed(
                'remove the original of', instance_uuid, error) from error
        if not shared_storage:
            shutil.rmtree(self._driver.instance_path(instance_uuid),
                          ignore_errors=True)

    def finish_revert_migration(self, instance_uuid, power_on):
        domain = self._driver.lookup_or_fail('revert the migration of',
                                             instance_uuid)
        if power_on:
            try:
                if not domain.isActive():
                    domain.create()
            except libvirt.libvirtError as error:
                raise live_transfer.failed(
                    'start the original of', instance_uuid, error) from error

    # -- destination ----------------------------------------------------------

    def finish_migration(self, instance_uuid, name, vcpus, memory_mb, image,
                         has_disk, power_on):
        driver = self._driver
        disk = None
        if has_disk and not driver.is_test_driver:
            disk = driver.own_disk_path(instance_uuid)
            if not os.path.isfile(disk):
                raise exception.MigrationError(
                    reason=f'the disk of instance {instance_uuid} is not at '
                           f'{disk}: it was not copied here, and this host '
                           f'does not share the source\'s storage')
        try:
            xml = driver.guest_xml(instance_uuid, name, vcpus, memory_mb,
                                   image, disk)
            domain = driver.connection.defineXML(xml)
            if power_on:
                domain.create()
        except (libvirt.libvirtError, OSError) as error:
            raise live_transfer.failed(
                'define the migrated', instance_uuid, error) from error

    def revert_migration_at_destination(self, instance_uuid, shared_storage):
        try:
            domain = self._driver.lookup(instance_uuid)
            if domain is not None:
                domain_guest.unless_already_off(domain.destroy)
                domain.undefineFlags(live_transfer.UNDEFINE_FLAGS)
        except libvirt.libvirtError as error:
            raise live_transfer.failed(
                'remove the migrated', instance_uuid, error) from error
        if not shared_storage:
            shutil.rmtree(self._driver.instance_path(instance_uuid),
                          ignore_errors=True)
