"""LibvirtDriver's live and cold migration of real QEMU guests between two
private libvirtd, two simulated hosts on this machine: the drivers alone,
no agent and no broker, called in the order the manager calls them.

Each host's driver has a state path of its own, so the hosts keep guests'
files in different directories: only the non-block live migration of a
disk guest relies on both seeing one filesystem (its disk stays put).
Guests boot the test kernel and the ACPI-honouring initramfs; one that
powers off cleanly on the ACPI button after a migration shows that its
userspace (acpid) came through alive.
"""

import json
import os
import subprocess
import threading
import time
import uuid
from unittest import mock
from xml.etree import ElementTree as ET

import fixtures
import libvirt
from testtools import content

from compute_agent import exception
from compute_agent.virt import driver
from compute_agent.virt import migration as virt_migration
from compute_agent.virt.libvirt import disk_stream
from compute_agent.virt.libvirt import driver as libvirt_driver
from tests.fixtures.polling import wait_for
from tests.realguest import base
from tests.realguest import libvirtd

MIGRATION_TIMEOUT = 120
# MiB/s: the 128 MiB guest takes tens of seconds, time enough to act.
SLOW_BANDWIDTH = 1


class TwoHostsTestCase(base.TestCase):
    source_bandwidth = 0
    # How A copies a cold migration's disk ([libvirt]
    # cold_migration_disk_transfer).
    source_disk_transfer = 'auto'

    def setUp(self):
        super().setUp()
        state = self.useFixture(fixtures.TempDir()).path
        self.hypervisors, self.connections = {}, {}
        for name, bandwidth, transfer in (
                ('a', self.source_bandwidth, self.source_disk_transfer),
                ('b', 0, 'auto')):
            hypervisor = self.useFixture(libvirtd.PrivateLibvirtd(name))
            host_driver = libvirt_driver.LibvirtDriver(
                hypervisor.uri, 'qemu', os.path.join(state, name),
                live_migration_bandwidth=bandwidth,
                cold_migration_disk_transfer=transfer)
            host_driver.init_host(f'host-{name}')
            setattr(self, name, host_driver)
            connection = libvirt.open(hypervisor.uri)
            self.addCleanup(connection.close)
            self.hypervisors[name] = hypervisor
            self.connections[name] = connection
        self.uuid = str(uuid.uuid4())
        self.image = {'id': 'debian-busybox', 'properties': {},
                      'kernel': self.images['kernel'],
                      'ramdisk': self.images['initramfs_acpi'],
                      'cmdline': libvirtd.GUEST_CMDLINE}

    def spawn(self, with_disk=False):
        if with_disk:
            self.image['disk'] = self.images['disk']
        self.a.spawn(self.uuid, 'traveller', 1, 128, self.image)

    def domain(self, host):
        """That host's libvirt domain of the guest, or None."""
        try:
            return self.connections[host].lookupByUUIDString(self.uuid)
        except libvirt.libvirtError:
            return None

    def wait_until_ready(self, host_driver):
        libvirtd.wait_until_guest_ready(
            host_driver.console_log_path(self.uuid))

    def prepare(self, block_migration):
        """The manager's steps up to the transfer: (target, the
        destination's XML)."""
        target = self.b.migration_target()
        xml = self.a.get_migratable_xml(self.uuid)
        return target, self.b.pre_live_migration(self.uuid, xml, self.image,
                                                 block_migration)

    def live_migrate(self, block_migration=False):
        target, destination_xml = self.prepare(block_migration)
        control = virt_migration.MigrationControl()
        self.timed('live-migration', self.a.live_migration, self.uuid,
                   target, destination_xml, block_migration, control)
        self.addDetail('final-progress', content.json_content(
            control.progress()))
        self.b.post_live_migration_at_destination(self.uuid, destination_xml)
        self.a.cleanup_after_live_migration(self.uuid)

    def assertMovedToB(self):
        self.assertIsNone(self.domain('a'))
        arrived = self.domain('b')
        self.assertEqual(libvirt.VIR_DOMAIN_RUNNING, arrived.state()[0])
        self.assertTrue(arrived.isPersistent())
        # Both the running and the kept definition log to B's directory.
        for flags in (0, libvirt.VIR_DOMAIN_XML_INACTIVE):
            serial = ET.fromstring(arrived.XMLDesc(flags)).find(
                'devices/serial/source')
            self.assertEqual(self.b.console_log_path(self.uuid),
                             serial.get('path'))
        self.assertEqual({'type': 'file',
                          'path': self.b.console_log_path(self.uuid)},
                         self.b.get_serial_console(self.uuid))
        return arrived

    def assertAliveOnB(self):
        """acpid still answers: the ACPI power button powers it off."""
        result = self.b.power_off(self.uuid, True, 60, 30)
        self.assertEqual(('clean', 'acpi'), (result.result, result.method))

    def disks(self, domain, flags=0):
        return sorted(source.get('file') for source in ET.fromstring(
            domain.XMLDesc(flags)).iterfind('devices/disk/source'))

    def write_pattern(self, disk):
        """Data only this overlay holds: a copy that lost it differs."""
        subprocess.run(['qemu-io', '-f', 'qcow2', '-c',
                        'write -P 0x5a 1M 256k', disk],
                       check=True, capture_output=True)

    def assertSameContents(self, first, second):
        # --force-share: a running guest's QEMU holds a lock on its disk.
        subprocess.run(['qemu-img', 'compare', '--force-share', first,
                        second], check=True, capture_output=True)

    def backing_file(self, disk):
        return json.loads(subprocess.run(
            ['qemu-img', 'info', '--force-share', '--output=json', disk],
            check=True, capture_output=True, text=True).stdout).get(
                'backing-filename')


class LiveMigrationTest(TwoHostsTestCase):
    def test_a_kernel_guest_moves_and_keeps_running(self):
        self.spawn()
        self.wait_until_ready(self.a)
        self.live_migrate()
        self.assertMovedToB()
        self.assertFalse(os.path.exists(self.a.instance_path(self.uuid)))
        self.assertAliveOnB()

    def test_without_block_migration_a_disk_stays_where_it_is(self):
        self.spawn(with_disk=True)
        own_disk = self.a.own_disk_path(self.uuid)
        self.wait_until_ready(self.a)
        self.live_migrate()
        self.assertEqual([own_disk], self.disks(self.assertMovedToB()))
        # The source keeps the disk the guest goes on using.
        self.assertEqual(['disk.qcow2'],
                         os.listdir(self.a.instance_path(self.uuid)))
        self.assertAliveOnB()

    def test_block_migration_copies_the_overlay(self):
        self.spawn(with_disk=True)
        self.a.power_off(self.uuid, False, 0, 10)
        source_disk = self.a.own_disk_path(self.uuid)
        self.write_pattern(source_disk)
        self.a.power_on(self.uuid)
        self.wait_until_ready(self.a)
        target, destination_xml = self.prepare(block_migration=True)
        self.timed('block-migration', self.a.live_migration, self.uuid,
                   target, destination_xml, True,
                   virt_migration.MigrationControl())
        self.b.post_live_migration_at_destination(self.uuid, destination_xml)
        own_disk = self.b.own_disk_path(self.uuid)
        self.assertEqual([own_disk], self.disks(self.assertMovedToB()))
        self.assertEqual(self.images['disk'], self.backing_file(own_disk))
        self.assertSameContents(source_disk, own_disk)
        self.a.cleanup_after_live_migration(self.uuid)
        self.assertFalse(os.path.exists(self.a.instance_path(self.uuid)))
        self.assertAliveOnB()

    def test_a_rollback_after_the_guest_arrived_keeps_it(self):
        # The source died before telling B the migration completed; the
        # guest then stopped on B. libvirt left B the only definition and
        # the only disk (a block migration): a rollback must keep both.
        self.spawn(with_disk=True)
        self.wait_until_ready(self.a)
        target, destination_xml = self.prepare(block_migration=True)
        self.a.live_migration(self.uuid, target, destination_xml, True,
                              virt_migration.MigrationControl())
        self.assertIsNone(self.domain('a'))
        self.domain('b').destroy()
        error = self.assertRaises(
            exception.MigrationError,
            self.b.rollback_live_migration_at_destination, self.uuid)
        self.assertIn('the migration arrived', str(error))
        kept = self.domain('b')
        self.assertTrue(kept.isPersistent())
        self.assertEqual([self.b.own_disk_path(self.uuid)], self.disks(kept))
        self.assertTrue(os.path.isfile(self.b.own_disk_path(self.uuid)))


class Transfer(threading.Thread):
    """A's live_migration on a thread, while the test interferes."""

    def __init__(self, test, target, destination_xml):
        super().__init__(daemon=True)
        self.control = virt_migration.MigrationControl()
        self._call = (test.a.live_migration, test.uuid, target,
                      destination_xml, False, self.control)
        self.error = None
        self.ended = None

    def run(self):
        live_migration, *args = self._call
        try:
            live_migration(*args)
        except exception.MigrationError as error:
            self.error = error
        self.ended = time.monotonic()

    def wait_until_transferring(self):
        wait_for(lambda: self.control.progress().get('memory_processed'),
                 MIGRATION_TIMEOUT, 'memory on its way')


class InterruptedLiveMigrationTest(TwoHostsTestCase):
    source_bandwidth = SLOW_BANDWIDTH

    def start(self):
        # No wait for READY: the guest boots on while it is moved, and
        # reaching READY on A afterwards shows it was never interrupted.
        self.spawn()
        transfer = Transfer(self, *self.prepare(block_migration=False))
        transfer.start()
        self.addCleanup(transfer.join, MIGRATION_TIMEOUT)
        transfer.wait_until_transferring()
        return transfer

    def assertStillOnA(self, transfer):
        transfer.join(MIGRATION_TIMEOUT)
        self.assertFalse(transfer.is_alive())
        self.assertIsInstance(transfer.error, exception.MigrationError)
        self.assertIn('the guest still runs on this host',
                      str(transfer.error))
        self.assertEqual(driver.RUNNING, self.a.get_power_state(self.uuid))
        self.b.rollback_live_migration_at_destination(self.uuid)
        self.assertIsNone(self.domain('b'))
        self.assertFalse(os.path.exists(self.b.instance_path(self.uuid)))
        self.wait_until_ready(self.a)

    def test_abort_leaves_the_guest_running_on_the_source(self):
        transfer = self.start()
        requested = time.monotonic()
        transfer.control.request_abort('the test aborts it')
        self.assertStillOnA(transfer)
        self.addDetail('abort-seconds', content.text_content(
            f'{transfer.ended - requested:.3f}'))
        self.addDetail('progress-at-abort', content.json_content(
            transfer.control.progress()))
        self.assertIn('aborted: the test aborts it', str(transfer.error))

    def test_destination_guest_destroyed_mid_flight(self):
        transfer = self.start()
        wait_for(lambda: self.domain('b'), MIGRATION_TIMEOUT,
                 'the incoming guest on B')
        self.domain('b').destroy()
        self.assertStillOnA(transfer)
        self.addDetail('error', content.text_content(str(transfer.error)))
        self.assertIn('libvirt could not move the guest to '
                      f'{self.hypervisors["b"].uri}', str(transfer.error))


class ForcedCompletionTest(TwoHostsTestCase):
    # MiB/s: a few seconds for the 128 MiB guest, time enough to force it.
    source_bandwidth = 32

    def test_the_paused_guest_completes_and_runs_on(self):
        self.spawn()
        self.wait_until_ready(self.a)
        target, destination_xml = self.prepare(block_migration=False)
        transfer = Transfer(self, target, destination_xml)
        transfer.start()
        self.addCleanup(transfer.join, MIGRATION_TIMEOUT)
        transfer.wait_until_transferring()
        requested = time.monotonic()
        transfer.control.request_force_complete()
        transfer.join(MIGRATION_TIMEOUT)
        self.assertIsNone(transfer.error)
        self.addDetail('completed-after-force-seconds', content.text_content(
            f'{transfer.ended - requested:.3f}'))
        self.b.post_live_migration_at_destination(self.uuid, destination_xml)
        self.assertMovedToB()
        self.assertAliveOnB()


class ColdMigrationTest(TwoHostsTestCase):
    def migrate(self):
        """Power off on A, copy the disk to B, start there with 192 MiB."""
        self.a.power_off(self.uuid, False, 0, 10)
        marker = self.b.create_shared_storage_marker(self.uuid)
        shared = self.a.check_shared_storage_marker(self.uuid, marker)
        self.b.remove_shared_storage_marker(self.uuid, marker)
        self.assertFalse(shared)
        moved = self.timed('migrate-disk', self.a.migrate_disk, self.uuid,
                           self.b.instance_path(self.uuid), shared,
                           self.b.migration_target())
        self.assertEqual({'disk': True}, moved)
        self.assertSameContents(self.a.own_disk_path(self.uuid),
                                self.b.own_disk_path(self.uuid))
        self.b.finish_migration(self.uuid, 'traveller', 1, 192, self.image,
                                moved['disk'], True)
        arrived = self.domain('b')
        self.assertEqual(libvirt.VIR_DOMAIN_RUNNING, arrived.state()[0])
        self.assertEqual(192 * 1024, arrived.info()[1])
        self.assertEqual([self.b.own_disk_path(self.uuid)],
                         self.disks(arrived))

    def test_revert_then_migrate_again_and_confirm(self):
        self.spawn(with_disk=True)
        self.a.power_off(self.uuid, False, 0, 10)
        self.write_pattern(self.a.own_disk_path(self.uuid))
        self.migrate()

        self.b.revert_migration_at_destination(self.uuid, False)
        self.assertIsNone(self.domain('b'))
        self.assertFalse(os.path.exists(self.b.instance_path(self.uuid)))
        self.a.finish_revert_migration(self.uuid, True)
        self.assertEqual(driver.RUNNING, self.a.get_power_state(self.uuid))
        self.assertEqual(128 * 1024, self.domain('a').info()[1])

        self.migrate()
        self.a.confirm_migration(self.uuid, False)
        self.assertIsNone(self.domain('a'))
        self.assertFalse(os.path.exists(self.a.instance_path(self.uuid)))
        self.wait_until_ready(self.b)


class StreamedColdMigrationTest(ColdMigrationTest):
    """The disk goes through B's libvirtd (a storage pool and a stream),
    as between hosts that share no storage and mount nothing."""

    source_disk_transfer = 'stream'

    def test_revert_then_migrate_again_and_confirm(self):
        log = self.useFixture(fixtures.FakeLogger(level='INFO'))
        super().test_revert_then_migrate_again_and_confirm()
        streamed = [line for line in log.output.splitlines()
                    if line.startswith('Streamed the disk of instance')]
        self.assertEqual(2, len(streamed), log.output)
        self.assertIn(self.hypervisors['b'].uri, streamed[0])
        # The transient pool went with the stream.
        self.assertEqual([], [pool.name() for pool in
                              self.connections['b'].listAllStoragePools()])

    def test_a_stream_stopped_mid_copy_leaves_nothing_on_b(self):
        self.spawn(with_disk=True)
        self.a.power_off(self.uuid, False, 0, 10)
        # More than one chunk: the stop comes after B got some of it.
        self.write_pattern(self.a.own_disk_path(self.uuid))
        self.useFixture(fixtures.MockPatchObject(disk_stream, 'CHUNK',
                                                 64 * 1024))
        self.assertGreater(os.path.getsize(self.a.own_disk_path(self.uuid)),
                           disk_stream.CHUNK)
        answers = iter([None, 'the agent is shutting down'])
        control = mock.Mock(abort_reason=lambda: next(answers, 'again'))
        error = self.assertRaises(
            exception.MigrationError, self.a.migrate_disk, self.uuid,
            self.b.instance_path(self.uuid), False,
            self.b.migration_target(), control)
        self.assertIn('was stopped, the instance stays on this host: the '
                      'agent is shutting down', str(error))
        self.assertFalse(os.path.exists(self.b.own_disk_path(self.uuid)))
        self.assertEqual([], self.connections['b'].listAllStoragePools())
        # The original is untouched: it starts and boots again on A.
        self.a.finish_revert_migration(self.uuid, True)
        self.wait_until_ready(self.a)
