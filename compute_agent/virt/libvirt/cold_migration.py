"""Cold migration and resize of the agent's libvirt guests.

The guest is powered off on the source. Its own disk, a qcow2 overlay whose
base image sits at the same absolute path on every host, is copied whole
into the destination's instance directory (the overlay keeps naming its
base). With shared storage nothing is copied: the destination uses the
very file. Otherwise ``[libvirt] cold_migration_disk_transfer`` says how:
through the filesystem when this host sees the destination's directory
under the path the destination gave (mounted here), or streamed through
the destination's libvirtd (disk_stream.py). The source keeps the guest
defined, and its files, until the migration is confirmed, so that a revert
only has to start it again. Nothing here is emulated: on libvirt's test
driver the guests have no disk to copy.
"""

import logging
import os
import shutil
import time
import uuid as uuidlib

import libvirt

from compute_agent import concurrency
from compute_agent import exception
from compute_agent.virt.libvirt import disk_stream
from compute_agent.virt.libvirt import domain_guest
from compute_agent.virt.libvirt import domains
from compute_agent.virt.libvirt import images
from compute_agent.virt.libvirt import live_transfer

LOG = logging.getLogger(__name__)

SHARED_STORAGE_MARKER_PREFIX = '.shared-storage-check-'
# [libvirt] cold_migration_disk_transfer
AUTO, FILESYSTEM, STREAM = 'auto', 'filesystem', 'stream'


class ColdMigrations:
    """The cold-migration steps of one LibvirtDriver.

    :param host: the libvirt Host (host.py) the guests run on.
    :param paths: this host's InstancePaths.
    :param hypervisor: the kind of host (hypervisor.py), which defines
        the guest at the destination.
    """

    def __init__(self, host, paths, hypervisor, disk_transfer=AUTO):
        self._host = host
        self._paths = paths
        self._hypervisor = hypervisor
        self._disk_transfer = disk_transfer

    # -- is the instance directory shared? ------------------------------------

    def create_shared_storage_marker(self, instance_uuid):
        own_dir = self._paths.instance_path(instance_uuid)
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
        return os.path.join(self._paths.instance_path(instance_uuid),
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
            os.rmdir(self._paths.instance_path(instance_uuid))
        except OSError:
            pass

    # -- source ---------------------------------------------------------------

    def migrate_disk(self, instance_uuid, destination_path, shared_storage,
                     target=None, control=None):
        domain = domains.lookup_or_fail(self._host, 'migrate the disk of',
                                        instance_uuid)
        try:
            domains.require_off(domain, 'migrate the disk of', instance_uuid)
            disk = self._paths.own_disk(instance_uuid, domain.XMLDesc(
                libvirt.VIR_DOMAIN_XML_INACTIVE))
        except libvirt.libvirtError as error:
            raise live_transfer.failed(
                'read the definition of', instance_uuid, error) from error
        if disk is None:
            return {'disk': False}
        if shared_storage:
            return {'disk': True}
        unseen = self._unseen(instance_uuid, destination_path)
        uri = (target or {}).get('libvirt_uri')
        should_stop = control.abort_reason if control else (lambda: None)
        try:
            if self._disk_transfer == STREAM or (
                    self._disk_transfer == AUTO and unseen and uri):
                self._stream(instance_uuid, disk, destination_path, uri,
                             should_stop)
            elif unseen:
                raise self._no_way_to_copy(destination_path, unseen, uri)
            else:
                self._copy(instance_uuid, disk, destination_path,
                           should_stop)
        except disk_stream.CopyStopped as stopped:
            raise exception.MigrationError(
                reason=f'the disk copy of instance {instance_uuid} was '
                       f'stopped, the instance stays on this host: '
                       f'{stopped}') from stopped
        return {'disk': True}

    def _copy(self, instance_uuid, disk, destination_path, should_stop):
        copy = os.path.join(destination_path, os.path.basename(disk))
        started = time.monotonic()
        try:
            with images.replaced_atomically(copy) as partial:
                # File I/O that blocks: off the hub in eventlet mode.
                concurrency.run_blocking(disk_stream.copy_file, disk,
                                         partial, should_stop)
        except OSError as error:
            raise live_transfer.failed(
                f'copy the disk to {copy} for', instance_uuid,
                error) from error
        LOG.info('Copied the disk of instance %s to %s: %d bytes in %.1f s',
                 instance_uuid, copy, os.path.getsize(copy),
                 time.monotonic() - started)

    def _stream(self, instance_uuid, disk, destination_path, uri,
                should_stop):
        if not uri:
            raise exception.MigrationError(
                reason='[libvirt] cold_migration_disk_transfer is "stream" '
                       'but the destination did not say its libvirt URI: '
                       'it runs a compute-agent older than RPC 1.5')
        if not os.path.isabs(destination_path):
            raise exception.MigrationError(
                reason=f'the destination\'s instance directory '
                       f'{destination_path!r} is not an absolute path')
        try:
            # A connection and a stream of its own, blocking throughout:
            # off the hub in eventlet mode.
            size, seconds = concurrency.run_blocking(
                disk_stream.upload, uri, destination_path, disk,
                disk_stream.POOL_PREFIX + instance_uuid, should_stop)
        except disk_stream.StreamError as error:
            raise live_transfer.failed(
                f'stream the disk to {uri} for', instance_uuid,
                error) from error
        LOG.info('Streamed the disk of instance %s to %s on %s: %d bytes '
                 'in %.1f s', instance_uuid, destination_path, uri, size,
                 seconds)

    def _unseen(self, instance_uuid, destination_path):
        """Why this host cannot copy into destination_path through its own
        filesystem, or None when it can."""
        own_dir = self._paths.instance_path(instance_uuid)
        if not os.path.isabs(destination_path):
            return 'which is not an absolute path'
        if not os.path.isdir(os.path.dirname(
                os.path.normpath(destination_path))):
            return 'which this host does not see'
        if os.path.realpath(destination_path) == os.path.realpath(own_dir):
            return 'which is this host\'s own directory for the instance'
        return None

    def _no_way_to_copy(self, destination_path, unseen, uri):
        if self._disk_transfer == FILESYSTEM:
            how = ('mount the destination\'s instances directory here under '
                   'that path, keep instances on storage both hosts share, '
                   'or set [libvirt] cold_migration_disk_transfer to auto '
                   'to stream the disk through the destination\'s libvirtd')
        else:
            how = ('the destination did not say its libvirt URI to stream '
                   'the disk to (it runs a compute-agent older than RPC '
                   '1.5): upgrade it, mount its instances directory here '
                   'under that path, or keep instances on storage both '
                   'hosts share')
        return exception.MigrationError(
            reason=f'without shared storage a cold migration copies the '
                   f'disk into the destination\'s instance directory '
                   f'{destination_path}, {unseen}: {how}')

    def confirm_migration(self, instance_uuid, shared_storage):
        try:
            domain = self._host.lookup(instance_uuid)
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
            shutil.rmtree(self._paths.instance_path(instance_uuid),
                          ignore_errors=True)

    def finish_revert_migration(self, instance_uuid, power_on):
        domain = domains.lookup_or_fail(self._host, 'revert the migration of',
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
        disk = None
        if has_disk and self._hypervisor.guest_files:
            disk = self._paths.own_disk_path(instance_uuid)
            if not os.path.isfile(disk):
                raise exception.MigrationError(
                    reason=f'the disk of instance {instance_uuid} is not at '
                           f'{disk}: it was not copied here, and this host '
                           f'does not share the source\'s storage')
        try:
            xml = self._hypervisor.definition(instance_uuid, name, vcpus,
                                              memory_mb, image, disk)
            domain = self._host.connection.defineXML(xml)
            if power_on:
                domain.create()
        except (libvirt.libvirtError, OSError) as error:
            raise live_transfer.failed(
                'define the migrated', instance_uuid, error) from error

    def revert_migration_at_destination(self, instance_uuid, shared_storage):
        try:
            domain = self._host.lookup(instance_uuid)
            if domain is not None:
                domain_guest.unless_already_off(domain.destroy)
                domain.undefineFlags(live_transfer.UNDEFINE_FLAGS)
        except libvirt.libvirtError as error:
            raise live_transfer.failed(
                'remove the migrated', instance_uuid, error) from error
        if not shared_storage:
            shutil.rmtree(self._paths.instance_path(instance_uuid),
                          ignore_errors=True)
