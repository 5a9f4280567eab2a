"""Live migration of the agent's libvirt guests, and what of migration is
real and what is emulated.

LibvirtDriver hands every live-migration step to ``LiveMigrations``, or
on libvirt's test driver to ``EmulatedLiveMigrations``; live_transfer.py
moves the running guest; cold_migration.py holds the steps of a cold
migration or resize.

Live migration on QEMU (real). libvirt's own peer-to-peer migration
(migrateToURI3): the source's libvirtd connects to the destination's at the
URI that migration_target() returned there, and QEMU streams the guest to
the destination's QEMU. The call runs on a thread of its own; the calling
thread watches it. Every live_transfer.POLL_INTERVAL the job statistics of
libvirt go to MigrationControl.report(). An abort request, or the control's
deadline, calls abortJob(), after which libvirt leaves the guest running on
the source. A forced completion suspends the source guest: it dirties no
more memory, so the transfer converges (at the configured bandwidth,
which it does not lift); post_live_migration_at_destination resumes a
guest that arrives paused.

Flags are LIVE | PEER2PEER | PERSIST_DEST | UNDEFINE_SOURCE, plus
NON_SHARED_INC for a block migration. The destination's XML (its own
console log and disk paths) is passed as both the live and the persistent
definition: with DEST_XML alone, libvirt 9.0 persisted the source's
definition at the destination, console path and all.

Disks. A guest's disk is a qcow2 overlay in its instance directory; the
overlay's base image sits at the same absolute path on every host. A block
migration copies the overlay alone (NON_SHARED_INC, through QEMU's NBD
server; it works with libvirt 9.0 and QEMU 7.2 under TCG). libvirt does not
create the target file, so pre_live_migration creates an empty overlay of
the same base at the destination. Without block migration the disk stays
where it is: the destination checks that it sees the file at the same path
(storage both hosts share), and the source adds VIR_MIGRATE_UNSAFE.
libvirt refuses a disk on any local filesystem ("Migration without shared
storage is unsafe") whatever its cache mode (cache='none' too, measured),
so it would also refuse two hosts that share one filesystem, as in the
real-guest tests; cache='none' would moreover need O_DIRECT, which tmpfs
lacks. The destination's check stands in for libvirt's guess.

Live migration on libvirt's test driver (emulated). The test driver
(test:///default, used by the functional tests and the quick start)
cannot migrate. There live_migration emulates the transfer: it reports
progress in steps over guest memory / live_migration_bandwidth seconds
(live_transfer.EMULATED_UNLIMITED_SECONDS when the bandwidth is
unlimited). An abort or the deadline leaves the guest running; a forced
completion ends the transfer at once. At the end the source's domain is
destroyed and undefined, and the destination's
post_live_migration_at_destination defines and starts it from
destination_xml, which pre_live_migration returned unchanged. Only the
definition moves; test domains have no files.

Cold migration and resize (real on both drivers; see cold_migration.py).
The powered-off guest's own disk is copied into the destination's instance
directory, which this host must see as a path of its own: copying to
another host over the network (ssh) is not implemented. Test domains have
no disks, so nothing needs emulating.

Shared storage. Files that the guest goes on using where it runs now are
never removed for the host it left: after a live migration the source
removes only the files the destination's definition does not name (a
disk left in place stays in the source's directory, so hosts that share
storage should share the instances directory under one path), and the
destination's rollback removes only a directory that pre_live_migration
created.
"""

import contextlib
import logging
import os
import shutil
import threading

import libvirt

from compute_agent import exception
from compute_agent.virt.libvirt import config
from compute_agent.virt.libvirt import domain_guest
from compute_agent.virt.libvirt import images
from compute_agent.virt.libvirt import live_transfer

LOG = logging.getLogger(__name__)

# Written by pre_live_migration into an instance directory it created.
# A rollback removes only such a directory: any other one may hold the
# files of a guest that still runs on the source.
INCOMING_MARKER = '.incoming-live-migration'


@contextlib.contextmanager
def _step(step, instance_uuid):
    """Turn what libvirt and the filesystem raise into MigrationError."""
    try:
        yield
    except (libvirt.libvirtError, OSError, images.ImageError) as error:
        raise live_transfer.failed(step, instance_uuid, error) from error


class LiveMigrations:
    """The live-migration steps of one LibvirtDriver on QEMU/KVM.

    :param host: the libvirt Host (host.py) the guests run on.
    :param paths: this host's InstancePaths.
    :param host_name: this host's name, for '%s' in migration_uri.
    """

    def __init__(self, host, paths, host_name, migration_uri=None,
                 inbound_addr=None, bandwidth=0):
        self._host = host
        self._paths = paths
        self._host_name = host_name
        self._migration_uri = migration_uri
        self._inbound_addr = inbound_addr
        self._bandwidth = bandwidth
        # instance uuid -> the files in this host's instance directory that
        # the destination's definition goes on using (shared storage), from
        # live_migration() for cleanup_after_live_migration().
        self._in_use_by_destination = {}
        self._lock = threading.Lock()

    # -- live migration: destination ------------------------------------------

    def migration_target(self):
        uri = (self._migration_uri or self._host.uri).replace(
            '%s', self._host_name or '')
        return {'libvirt_uri': uri,
                'data_uri': live_transfer.data_uri(self._inbound_addr),
                'hypervisor': self._host.connection.getType()}

    def pre_live_migration(self, instance_uuid, migratable_xml, image,
                           block_migration):
        if self._host.lookup(instance_uuid) is not None:
            raise exception.MigrationError(
                reason=f'instance {instance_uuid} is already defined on this '
                       f'host; it cannot arrive here a second time')
        own_dir = self._paths.instance_path(instance_uuid)
        # The agent keeps a guest's files in a directory named by its uuid.
        source_files = {path for path in config.guest_files(migratable_xml)
                        if os.path.basename(os.path.dirname(path)) ==
                        instance_uuid}
        shared_dir = any(os.path.dirname(path) == own_dir
                         for path in source_files)
        disks = config.disk_files(migratable_xml)
        if shared_dir:
            if block_migration:
                raise exception.MigrationError(
                    reason=f'the source keeps the guest\'s files in {own_dir} '
                           f'too (shared storage): a block migration would '
                           f'copy its disk onto itself; migrate without block '
                           f'migration')
            moves = {}
        else:
            moves = {path: os.path.join(own_dir, os.path.basename(path))
                     for path in source_files
                     if block_migration or path not in disks}
        destination_xml = config.relocated(migratable_xml, moves)
        if block_migration:
            self._check_block_migratable(disks, moves, image)
        else:
            self._check_disks_visible(config.disk_files(destination_xml))
        if not shared_dir:
            with _step('prepare the instance directory of', instance_uuid):
                self._claim_directory(own_dir)
            if block_migration:
                self._create_overlays(instance_uuid, own_dir, image,
                                      [moves[disk] for disk in disks])
        return destination_xml

    def _check_block_migratable(self, disks, moves, image):
        outside = sorted(disk for disk in disks if disk not in moves)
        if outside:
            raise exception.MigrationError(
                reason=f'disks outside the instance directory cannot be '
                       f'block-migrated: {", ".join(outside)}')
        if disks and 'disk' not in image:
            raise exception.MigrationError(
                reason='the guest has a disk but its image names no base '
                       'disk to create the overlay from at the destination')

    def _check_disks_visible(self, disks):
        missing = sorted(disk for disk in disks if not os.path.isfile(disk))
        if missing:
            raise exception.MigrationError(
                reason=f'this host does not see the guest\'s disk at '
                       f'{", ".join(missing)}: a live migration without '
                       f'block migration needs its disk on storage both '
                       f'hosts share, at the same path; use block migration')

    def _claim_directory(self, own_dir):
        marker = os.path.join(own_dir, INCOMING_MARKER)
        if os.path.isdir(own_dir) and os.listdir(own_dir) and \
                not os.path.exists(marker):
            raise exception.MigrationError(
                reason=f'{own_dir} already holds files of this instance that '
                       f'no incoming migration left; remove them if the '
                       f'instance does not live on this host, then retry')
        os.makedirs(own_dir, exist_ok=True)
        with open(marker, 'w'):
            pass

    def _create_overlays(self, instance_uuid, own_dir, image, overlays):
        try:
            for overlay in overlays:
                images.create_overlay(image['disk'], overlay)
        except (OSError, images.ImageError) as error:
            shutil.rmtree(own_dir, ignore_errors=True)
            raise live_transfer.failed(
                'create the disk for the incoming', instance_uuid,
                error) from error

    def post_live_migration_at_destination(self, instance_uuid,
                                           destination_xml):
        with _step('take over the migrated', instance_uuid):
            domain = self._host.lookup(instance_uuid)
            if domain is None or not domain.isActive():
                raise exception.MigrationError(
                    reason=f'instance {instance_uuid} is not running on '
                           f'this host: the migration did not arrive')
            # Whatever the source asked libvirt to persist, the definition
            # kept here names this host's files.
            domain = self._host.connection.defineXML(destination_xml)
            if domain.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
                domain.resume()
            self._remove_incoming_marker(instance_uuid)

    def _remove_incoming_marker(self, instance_uuid):
        try:
            os.unlink(os.path.join(self._paths.instance_path(instance_uuid),
                                   INCOMING_MARKER))
        except FileNotFoundError:
            pass

    def rollback_live_migration_at_destination(self, instance_uuid):
        own_dir = self._paths.instance_path(instance_uuid)
        with _step('roll back the incoming migration of', instance_uuid):
            domain = self._host.lookup(instance_uuid)
            if domain is not None:
                if domain.state()[0] in (libvirt.VIR_DOMAIN_RUNNING,
                                         libvirt.VIR_DOMAIN_BLOCKED):
                    raise exception.MigrationError(
                        reason=f'instance {instance_uuid} runs on this host; '
                               f'it may have arrived after all, so it is not '
                               f'rolled back: check where it runs')
                # libvirt persists the incoming guest only once it has
                # arrived (PERSIST_DEST), and the source then lets go of
                # it: a persistent definition here, even of a guest that
                # has stopped since, may be all that is left of it.
                if domain.isPersistent():
                    raise exception.MigrationError(
                        reason=f'instance {instance_uuid} is defined on this '
                               f'host: the migration arrived, so it is not '
                               f'rolled back; check where it runs')
                domain_guest.unless_already_off(domain.destroy)
        if os.path.exists(os.path.join(own_dir, INCOMING_MARKER)):
            shutil.rmtree(own_dir, ignore_errors=True)

    # -- live migration: source -----------------------------------------------

    def _running_domain(self, instance_uuid):
        domain = self._host.lookup(instance_uuid)
        if domain is None:
            raise exception.MigrationError(
                reason=f'instance {instance_uuid} is not defined on this '
                       f'host')
        if not domain.isActive():
            raise exception.MigrationError(
                reason=f'instance {instance_uuid} is not running; only a '
                       f'running guest can be live-migrated')
        return domain

    def get_migratable_xml(self, instance_uuid):
        with _step('describe', instance_uuid):
            return self._running_domain(instance_uuid).XMLDesc(
                libvirt.VIR_DOMAIN_XML_MIGRATABLE)

    def live_migration(self, instance_uuid, target, destination_xml,
                       block_migration, control):
        with _step('start the live migration of', instance_uuid):
            domain = self._running_domain(instance_uuid)
            self._check_target(target)
        self._transfer(domain, target, destination_xml, block_migration,
                       control)
        own_dir = self._paths.instance_path(instance_uuid)
        with self._lock:
            self._in_use_by_destination[instance_uuid] = self._used_by(
                own_dir, destination_xml)

    @staticmethod
    def _used_by(own_dir, destination_xml):
        """The files in own_dir that destination_xml names."""
        return {path for path in config.guest_files(destination_xml)
                if os.path.dirname(path) == own_dir}

    def _transfer(self, domain, target, destination_xml, block_migration,
                  control):
        live_transfer.live_migrate(domain, target, destination_xml,
                                   block_migration, control, self._bandwidth)

    def _check_target(self, target):
        if not isinstance(target, dict) or \
                not isinstance(target.get('libvirt_uri'), str):
            raise exception.MigrationError(
                reason=f'the destination named no libvirt URI to migrate to '
                       f'(target {target!r})')
        ours = self._host.connection.getType()
        theirs = target.get('hypervisor')
        if str(theirs).lower() != ours.lower():
            raise exception.MigrationError(
                reason=f'the destination runs libvirt\'s {theirs} driver and '
                       f'this host its {ours} driver; guests move only '
                       f'between hosts of one kind')

    def cleanup_after_live_migration(self, instance_uuid,
                                     destination_xml=None):
        own_dir = self._paths.instance_path(instance_uuid)
        with self._lock:
            in_use = self._in_use_by_destination.pop(instance_uuid, None)
        if in_use is None and destination_xml is not None:
            in_use = self._used_by(own_dir, destination_xml)
        if not os.path.isdir(own_dir):
            return
        if in_use is None:
            # Restarted since the migration: the destination may use
            # files here, and only the migration knew which.
            LOG.warning('Not removing %s after the live migration of %s: '
                        'this agent does not know which of its files the '
                        'destination uses; remove what it does not by hand',
                        own_dir, instance_uuid)
            return
        if not in_use:
            shutil.rmtree(own_dir, ignore_errors=True)
            return
        with _step('remove the files left by', instance_uuid):
            for name in os.listdir(own_dir):
                path = os.path.join(own_dir, name)
                if path in in_use:
                    continue
                if os.path.isdir(path):
                    shutil.rmtree(path)
                else:
                    os.unlink(path)


class EmulatedLiveMigrations(LiveMigrations):
    """The live-migration steps on libvirt's test driver, which cannot
    migrate: only the definition moves (see the module docstring)."""

    def pre_live_migration(self, instance_uuid, migratable_xml, image,
                           block_migration):
        # Test domains have no files to place here.
        return migratable_xml

    def _transfer(self, domain, target, destination_xml, block_migration,
                  control):
        live_transfer.emulate_live_migration(domain, control,
                                             self._bandwidth)

    def post_live_migration_at_destination(self, instance_uuid,
                                           destination_xml):
        # Nothing arrived: the guest is defined and started from the
        # definition the source sent.
        with _step('take over the migrated', instance_uuid):
            domain = self._host.connection.defineXML(destination_xml)
            if not domain.isActive():
                domain.create()
            if domain.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
                domain.resume()
