"""Live migration in the libvirt driver: the transfer libvirt runs (on a
fake QEMU connection), the destination's XML and files, and the emulation
on libvirt's test driver."""

import os
import shutil
import tempfile
import threading
import uuid
from unittest import mock
from xml.etree import ElementTree as ET

import libvirt

from compute_agent import exception
from compute_agent.virt import driver
from compute_agent.virt import migration as virt_migration
from compute_agent.virt.libvirt import config
from compute_agent.virt.libvirt import driver as libvirt_driver
from compute_agent.virt.libvirt import images
from compute_agent.virt.libvirt import live_transfer
from compute_agent.virt.libvirt import migration
from tests.unit import base
from tests.unit import fake_libvirt
from tests.unit.fake_libvirt import guest_xml

BASE_FLAGS = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER |
              libvirt.VIR_MIGRATE_PERSIST_DEST |
              libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)
UUID = fake_libvirt.UUID
IMAGE = fake_libvirt.IMAGE
TARGET = {'libvirt_uri': 'qemu+tcp://host-b/system', 'data_uri': None,
          'hypervisor': 'QEMU'}


def files(xml):
    domain = ET.fromstring(xml)
    return {'console': domain.find('devices/serial/source').get('path'),
            'disks': sorted(config.disk_files(xml)),
            'kernel': domain.findtext('os/kernel')}


class Migrating:
    """live_transfer.live_migrate on a thread; the test acts meanwhile."""

    def __init__(self, test, domain, destination_xml, block=False,
                 bandwidth=0, target=TARGET):
        self.control = virt_migration.MigrationControl()
        self.error = None
        self._thread = threading.Thread(target=self._run, args=(
            domain, target, destination_xml, block, bandwidth))
        self._thread.start()
        test.addCleanup(self.join)
        test.addCleanup(domain.finish_migration)
        test.assertTrue(domain.migrating.wait(5), 'migration never began')

    def _run(self, *args):
        try:
            live_transfer.live_migrate(*args[:4], self.control, args[4],
                                       poll_interval=0.01)
        except exception.MigrationError as error:
            self.error = error

    def join(self):
        self._thread.join(10)
        return self.error


class TransferTest(base.TestCase):
    def setUp(self):
        super().setUp()
        self.connection = fake_libvirt.FakeConnection()
        self.xml = guest_xml('/state/instances/' + UUID)
        self.domain = self.connection.add(UUID, self.xml)

    def test_flags_and_parameters_of_a_shared_nothing_kernel_guest(self):
        migrating = Migrating(self, self.domain, self.xml, bandwidth=50,
                              target=dict(TARGET, data_uri='tcp://10.0.0.2'))
        self.domain.finish_migration()
        self.assertIsNone(migrating.join())
        uri, params, flags = self.domain.migrations[0]
        self.assertEqual('qemu+tcp://host-b/system', uri)
        self.assertEqual(BASE_FLAGS, flags)
        self.assertEqual({libvirt.VIR_MIGRATE_PARAM_DEST_XML: self.xml,
                          libvirt.VIR_MIGRATE_PARAM_PERSIST_XML: self.xml,
                          libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: 50,
                          libvirt.VIR_MIGRATE_PARAM_URI: 'tcp://10.0.0.2'},
                         params)
        self.assertNotIn(UUID, self.connection.domains)

    def test_disk_flags(self):
        with_disk = guest_xml('/state/instances/' + UUID, disk=True)
        self.assertEqual(BASE_FLAGS | libvirt.VIR_MIGRATE_UNSAFE,
                         live_transfer.migration_flags(False, with_disk))
        self.assertEqual(BASE_FLAGS | libvirt.VIR_MIGRATE_NON_SHARED_INC,
                         live_transfer.migration_flags(True, with_disk))
        self.assertEqual(
            {libvirt.VIR_MIGRATE_PARAM_DEST_XML: with_disk,
             libvirt.VIR_MIGRATE_PARAM_PERSIST_XML: with_disk},
            live_transfer.migration_params(TARGET, with_disk, 0))

    def test_progress_is_reported_from_the_job_statistics(self):
        self.domain.job_stats = {
            'type': libvirt.VIR_DOMAIN_JOB_UNBOUNDED,
            'memory_total': 1000, 'memory_processed': 700,
            'memory_remaining': 250, 'disk_total': 1000,
            'disk_processed': 250, 'disk_remaining': 750}
        migrating = Migrating(self, self.domain, self.xml)
        expected = {'memory_total': 1000, 'memory_processed': 700,
                    'memory_remaining': 250, 'disk_total': 1000,
                    'disk_processed': 250, 'disk_remaining': 750,
                    'percent': 50.0}
        wait_until(lambda: migrating.control.progress() == expected)
        self.domain.finish_migration()
        self.assertIsNone(migrating.join())

    def test_a_cancelled_jobs_zeros_do_not_hide_the_progress(self):
        running = {'type': libvirt.VIR_DOMAIN_JOB_UNBOUNDED,
                   'memory_total': 1000, 'memory_processed': 400,
                   'memory_remaining': 600}
        self.domain.job_stats = running
        migrating = Migrating(self, self.domain, self.xml)
        wait_until(lambda: migrating.control.progress().get('percent'))
        self.domain.job_stats = {'type': libvirt.VIR_DOMAIN_JOB_CANCELLED,
                                 'memory_total': 0, 'memory_processed': 0,
                                 'memory_remaining': 0}
        migrating.control.request_abort('enough')
        self.assertIsNotNone(migrating.join())
        self.assertEqual(40.0, migrating.control.progress()['percent'])

    def test_percent_without_totals_is_zero(self):
        self.assertEqual(0.0, live_transfer.job_progress(
            {'type': libvirt.VIR_DOMAIN_JOB_UNBOUNDED})['percent'])

    def test_abort_leaves_the_guest_running_here(self):
        migrating = Migrating(self, self.domain, self.xml)
        migrating.control.request_abort('the operator changed her mind')
        error = migrating.join()
        self.assertIn('aborted: the operator changed her mind', str(error))
        self.assertIn('still runs on this host', str(error))
        self.assertIn('abortJob', self.domain.calls)
        self.assertEqual(libvirt.VIR_DOMAIN_RUNNING, self.domain.state()[0])

    def test_deadline_aborts(self):
        migrating = Migrating(self, self.domain, self.xml)
        migrating.control.set_deadline(0, 'the drain deadline is near')
        self.assertIn('aborted: the drain deadline is near',
                      str(migrating.join()))

    def test_abort_too_late_is_a_completed_migration(self):
        self.domain.abort_error = fake_libvirt.libvirt_error(
            libvirt.VIR_ERR_OPERATION_INVALID, 'no job is active')
        migrating = Migrating(self, self.domain, self.xml)
        migrating.control.request_abort('too late')
        wait_until(lambda: 'abortJob' in self.domain.calls)
        self.domain.finish_migration()
        self.assertIsNone(migrating.join())
        self.assertNotIn(UUID, self.connection.domains)

    def test_force_complete_pauses_the_guest_once(self):
        migrating = Migrating(self, self.domain, self.xml)
        migrating.control.request_force_complete()
        wait_until(lambda: 'suspend' in self.domain.calls)
        migrating.control.request_force_complete()
        self.domain.finish_migration()
        self.assertIsNone(migrating.join())
        self.assertEqual(1, self.domain.calls.count('suspend'))

    def test_libvirt_failure_leaves_the_guest_running_here(self):
        self.domain.migration_error = fake_libvirt.libvirt_error(
            libvirt.VIR_ERR_INTERNAL_ERROR,
            'qemu unexpectedly closed the monitor')
        migrating = Migrating(self, self.domain, self.xml)
        self.domain.finish_migration()
        error = migrating.join()
        self.assertIn('could not move the guest to qemu+tcp://host-b/system:'
                      ' qemu unexpectedly closed the monitor', str(error))
        self.assertIn('still runs on this host', str(error))
        self.assertEqual(libvirt.VIR_DOMAIN_RUNNING, self.domain.state()[0])

    def test_failure_after_force_complete_resumes_the_guest(self):
        self.domain.migration_error = fake_libvirt.libvirt_error(
            libvirt.VIR_ERR_OPERATION_FAILED, 'connection reset')
        migrating = Migrating(self, self.domain, self.xml)
        migrating.control.request_force_complete()
        wait_until(lambda: 'suspend' in self.domain.calls)
        self.domain.finish_migration()
        self.assertIn('still runs on this host', str(migrating.join()))
        self.assertEqual(libvirt.VIR_DOMAIN_RUNNING, self.domain.state()[0])
        self.assertIn('resume', self.domain.calls)

    def test_failure_that_took_the_guest_away_says_so(self):
        self.domain.migration_error = fake_libvirt.libvirt_error(
            libvirt.VIR_ERR_OPERATION_FAILED, 'lost the source')
        migrating = Migrating(self, self.domain, self.xml)
        self.domain.state_value = libvirt.VIR_DOMAIN_SHUTOFF
        self.domain.finish_migration()
        error = str(migrating.join())
        self.assertIn('lost the source', error)
        self.assertIn('not running on this host any more', error)

    def test_data_uri(self):
        self.assertIsNone(live_transfer.data_uri(None))
        self.assertEqual('tcp://192.0.2.7',
                         live_transfer.data_uri('192.0.2.7'))
        self.assertEqual('tcp://[2001:db8::7]',
                         live_transfer.data_uri('2001:db8::7'))


def wait_until(predicate, timeout=5):
    event = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        event.wait(0.01)
    raise AssertionError('condition not reached')


class DestinationTest(fake_libvirt.TwoQemuHostsTestCase):
    def pre(self, xml, block=False, image=IMAGE):
        return self.b.pre_live_migration(UUID, xml, image, block)

    def test_console_log_moves_to_this_hosts_directory(self):
        destination = self.pre(guest_xml(self.dir_a))
        self.assertEqual({'console': os.path.join(self.dir_b, 'console.log'),
                          'disks': [], 'kernel': '/img/vmlinuz'},
                         files(destination))
        self.assertTrue(os.path.exists(os.path.join(
            self.dir_b, migration.INCOMING_MARKER)))
        self.assertIn(f'xmlns:agent="{config.METADATA_NS}"', destination)

    def test_shared_disk_stays_where_it_is(self):
        self.make_disk(self.dir_a)
        destination = self.pre(guest_xml(self.dir_a, disk=True))
        self.assertEqual(
            {'console': os.path.join(self.dir_b, 'console.log'),
             'disks': [os.path.join(self.dir_a, 'disk.qcow2')],
             'kernel': '/img/vmlinuz'}, files(destination))

    def test_disk_this_host_does_not_see_needs_block_migration(self):
        error = self.assertRaises(exception.MigrationError, self.pre,
                                  guest_xml(self.dir_a, disk=True))
        self.assertIn('does not see the guest\'s disk', str(error))
        self.assertIn('use block migration', str(error))
        self.assertFalse(os.path.exists(self.dir_b))

    def test_block_migration_creates_an_overlay_of_the_same_base(self):
        with mock.patch.object(images, 'create_overlay') as create_overlay:
            destination = self.pre(guest_xml(self.dir_a, disk=True),
                                   block=True)
        own_disk = os.path.join(self.dir_b, 'disk.qcow2')
        create_overlay.assert_called_once_with('/img/base.qcow2', own_disk)
        self.assertEqual([own_disk], files(destination)['disks'])

    def test_block_migration_of_a_disk_without_base_is_refused(self):
        image = {'id': 'img', 'properties': {}}
        error = self.assertRaises(exception.MigrationError, self.pre,
                                  guest_xml(self.dir_a, disk=True), True,
                                  image)
        self.assertIn('names no base disk', str(error))

    def test_shared_instance_directory_keeps_the_xml(self):
        xml = guest_xml(self.dir_b, disk=True)
        self.make_disk(self.dir_b)
        self.assertEqual(files(xml), files(self.pre(xml)))
        self.assertFalse(os.path.exists(os.path.join(
            self.dir_b, migration.INCOMING_MARKER)))
        error = self.assertRaises(exception.MigrationError, self.pre, xml,
                                  True)
        self.assertIn('copy its disk onto itself', str(error))

    def test_foreign_files_in_the_directory_are_refused(self):
        self.make_disk(self.dir_b)
        error = self.assertRaises(exception.MigrationError, self.pre,
                                  guest_xml(self.dir_a))
        self.assertIn('no incoming migration left', str(error))

    def test_guest_defined_here_already_is_refused(self):
        self.conn_b.add(UUID, guest_xml(self.dir_b))
        error = self.assertRaises(exception.MigrationError, self.pre,
                                  guest_xml(self.dir_a))
        self.assertIn('already defined on this host', str(error))

    def test_post_persists_this_hosts_definition_and_resumes(self):
        destination = self.pre(guest_xml(self.dir_a))
        arrived = self.conn_b.add(UUID, destination,
                                  state=libvirt.VIR_DOMAIN_PAUSED,
                                  persistent=False)
        self.b.post_live_migration_at_destination(UUID, destination)
        self.assertEqual([destination], self.conn_b.defined)
        self.assertTrue(arrived.isPersistent())
        self.assertEqual(driver.RUNNING, self.b.get_power_state(UUID))
        self.assertEqual([], os.listdir(self.dir_b))

    def test_post_without_the_guest_is_an_error(self):
        destination = self.pre(guest_xml(self.dir_a))
        error = self.assertRaises(exception.MigrationError,
                                  self.b.post_live_migration_at_destination,
                                  UUID, destination)
        self.assertIn('the migration did not arrive', str(error))
        self.assertEqual([], self.conn_b.defined)

    def test_rollback_removes_the_incoming_guest_and_directory(self):
        destination = self.pre(guest_xml(self.dir_a))
        incoming = self.conn_b.add(UUID, destination,
                                   state=libvirt.VIR_DOMAIN_PAUSED,
                                   persistent=False)
        self.b.rollback_live_migration_at_destination(UUID)
        self.assertIn('destroy', incoming.calls)
        self.assertNotIn(UUID, self.conn_b.domains)
        self.assertFalse(os.path.exists(self.dir_b))
        self.b.rollback_live_migration_at_destination(UUID)   # harmless

    def test_rollback_keeps_a_directory_it_did_not_create(self):
        self.make_disk(self.dir_b)
        self.b.rollback_live_migration_at_destination(UUID)
        self.assertEqual(['disk.qcow2'], os.listdir(self.dir_b))

    def test_rollback_never_destroys_a_running_guest(self):
        self.conn_b.add(UUID, guest_xml(self.dir_b))
        error = self.assertRaises(
            exception.MigrationError,
            self.b.rollback_live_migration_at_destination, UUID)
        self.assertIn('runs on this host', str(error))
        self.assertEqual(driver.RUNNING, self.b.get_power_state(UUID))

    def test_rollback_keeps_a_guest_that_arrived_and_stopped(self):
        # libvirt persists the guest here only once the migration has
        # arrived (PERSIST_DEST): the source has let it go, and this
        # definition and directory are all that is left of it.
        for state in (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_PAUSED):
            destination = self.pre(guest_xml(self.dir_a))
            arrived = self.conn_b.add(UUID, destination, state=state,
                                      persistent=True)
            error = self.assertRaises(
                exception.MigrationError,
                self.b.rollback_live_migration_at_destination, UUID)
            self.assertIn('arrived', str(error))
            self.assertEqual([], arrived.calls)
            self.assertIs(arrived, self.conn_b.domains[UUID])
            self.assertTrue(os.path.isdir(self.dir_b))
            del self.conn_b.domains[UUID]

    def test_migration_target(self):
        self.assertEqual({'libvirt_uri': 'qemu+tcp://host-b/system',
                          'data_uri': None, 'hypervisor': 'QEMU'},
                         self.b.migration_target())
        configured, _ = fake_libvirt.qemu_driver(
            self.state_b, live_migration_uri='qemu+tls://%s.example/system',
            live_migration_inbound_addr='10.1.0.2')
        self.assertEqual({'libvirt_uri': 'qemu+tls://host-b.example/system',
                          'data_uri': 'tcp://10.1.0.2',
                          'hypervisor': 'QEMU'},
                         configured.migration_target())


class SourceTest(fake_libvirt.TwoQemuHostsTestCase):
    def migrate(self, destination_xml, target=TARGET):
        domain = self.conn_a.domains[UUID]
        domain.finish_migration()
        self.a.live_migration(UUID, target, destination_xml, False,
                              virt_migration.MigrationControl())

    def test_migratable_xml_of_a_running_guest(self):
        xml = guest_xml(self.dir_a)
        domain = self.conn_a.add(UUID, xml)
        self.assertEqual(xml, self.a.get_migratable_xml(UUID))
        self.assertIn(('XMLDesc', libvirt.VIR_DOMAIN_XML_MIGRATABLE),
                      domain.calls)
        domain.state_value = libvirt.VIR_DOMAIN_SHUTOFF
        error = self.assertRaises(exception.MigrationError,
                                  self.a.get_migratable_xml, UUID)
        self.assertIn('only a running guest can be live-migrated',
                      str(error))

    def test_cleanup_removes_the_files_the_destination_does_not_use(self):
        self.make_disk(self.dir_a)
        self.conn_a.add(UUID, guest_xml(self.dir_a, disk=True))
        with open(os.path.join(self.dir_a, 'console.log'), 'w'):
            pass
        destination = self.b.pre_live_migration(
            UUID, guest_xml(self.dir_a, disk=True), IMAGE, False)
        self.migrate(destination)
        self.a.cleanup_after_live_migration(UUID)
        self.assertEqual(['disk.qcow2'], os.listdir(self.dir_a))

    def test_cleanup_removes_the_directory_after_a_block_migration(self):
        self.make_disk(self.dir_a)
        self.conn_a.add(UUID, guest_xml(self.dir_a, disk=True))
        self.migrate(guest_xml(self.dir_b, disk=True))
        self.a.cleanup_after_live_migration(UUID)
        self.assertFalse(os.path.exists(self.dir_a))

    def test_cleanup_after_a_restart_goes_by_the_destination_xml(self):
        # Restarted since the migration (the source's record keeps the
        # destination's definition): a block migration left nothing in use
        # here, so the directory goes.
        self.make_disk(self.dir_a)
        self.a.cleanup_after_live_migration(
            UUID, destination_xml=guest_xml(self.dir_b, disk=True))
        self.assertFalse(os.path.exists(self.dir_a))

    def test_cleanup_after_a_restart_keeps_the_files_still_in_use(self):
        self.make_disk(self.dir_a)
        with open(os.path.join(self.dir_a, 'console.log'), 'w'):
            pass
        self.a.cleanup_after_live_migration(
            UUID, destination_xml=guest_xml(self.dir_a, disk=True))
        self.assertIn('disk.qcow2', os.listdir(self.dir_a))

    def test_cleanup_without_a_migration_to_go_by_keeps_the_files(self):
        self.make_disk(self.dir_a)
        self.a.cleanup_after_live_migration(UUID)
        self.assertEqual(['disk.qcow2'], os.listdir(self.dir_a))

    def test_unusable_targets_are_refused_before_libvirt_is_asked(self):
        domain = self.conn_a.add(UUID, guest_xml(self.dir_a))
        control = virt_migration.MigrationControl()
        for target, expected in (
                ({'hypervisor': 'QEMU'}, 'named no libvirt URI'),
                (dict(TARGET, hypervisor='TEST'),
                 "runs libvirt's TEST driver and this host its QEMU")):
            error = self.assertRaises(
                exception.MigrationError, self.a.live_migration, UUID,
                target, guest_xml(self.dir_b), False, control)
            self.assertIn(expected, str(error))
        self.assertEqual([], domain.migrations)


class FakeClockControl(virt_migration.MigrationControl):
    """Its wait() advances a fake clock instead of sleeping; act(now) may
    make requests as the emulated time passes."""

    def __init__(self, act=lambda control, now: None):
        self.now = 0.0
        super().__init__(clock=lambda: self.now)
        self._act = act
        self.reports = []

    def wait(self, seconds):
        self.now += seconds
        self._act(self, self.now)

    def report(self, **progress):
        super().report(**progress)
        self.reports.append((round(self.now, 3), progress['percent']))


class EmulationTest(base.TestCase):
    """libvirt's test driver, one private test host per driver."""

    def setUp(self):
        super().setUp()
        self.workdir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.workdir, True)
        self.node = os.path.join(self.workdir, 'node.xml')
        with open(self.node, 'w') as node_file:
            node_file.write('<node/>')
        self.uuid = str(uuid.uuid4())
        # 64 MiB at 640 MiB/s: a tenth of a second.
        self.a = self.driver('a', live_migration_bandwidth=640)
        self.b = self.driver('b')
        self.a.spawn(self.uuid, 'vm', 1, 64, {'id': 'img', 'properties': {}})

    def driver(self, name, **options):
        test_driver = libvirt_driver.LibvirtDriver(
            f'test://{self.node}', 'qemu', os.path.join(self.workdir, name),
            **options)
        test_driver.init_host(f'host-{name}')
        return test_driver

    def migrate(self, control):
        target = self.b.migration_target()
        xml = self.a.get_migratable_xml(self.uuid)
        destination = self.b.pre_live_migration(self.uuid, xml, {}, False)
        self.assertEqual(xml, destination)
        self.a.live_migration(self.uuid, target, destination, False,
                              control)
        return destination

    def test_the_guest_moves_by_its_definition(self):
        control = virt_migration.MigrationControl()
        destination = self.migrate(control)
        self.assertEqual(100.0, control.progress()['percent'])
        self.assertEqual(driver.NOSTATE, self.a.get_power_state(self.uuid))
        self.b.post_live_migration_at_destination(self.uuid, destination)
        self.assertEqual(driver.RUNNING, self.b.get_power_state(self.uuid))
        self.a.cleanup_after_live_migration(self.uuid)

    def test_abort_leaves_the_guest_running_on_the_source(self):
        control = virt_migration.MigrationControl()
        control.request_abort('stop it')
        error = self.assertRaises(exception.MigrationError, self.migrate,
                                  control)
        self.assertIn('aborted: stop it', str(error))
        self.assertEqual(driver.RUNNING, self.a.get_power_state(self.uuid))
        self.b.rollback_live_migration_at_destination(self.uuid)
        self.assertEqual(driver.NOSTATE, self.b.get_power_state(self.uuid))

    def test_the_test_driver_cannot_migrate_to_qemu(self):
        error = self.assertRaises(
            exception.MigrationError, self.a.live_migration, self.uuid,
            TARGET, self.a.get_migratable_xml(self.uuid), False,
            virt_migration.MigrationControl())
        self.assertIn("runs libvirt's QEMU driver and this host its TEST",
                      str(error))


class EmulatedTimingTest(base.TestCase):
    """emulate_live_migration on a fake clock that the control's wait()
    advances."""

    def setUp(self):
        super().setUp()
        self.connection = fake_libvirt.FakeConnection()
        self.domain = self.connection.add(UUID, '<domain/>')
        self.domain.memory_kib = 64 * 1024

    def emulate(self, control, bandwidth):
        live_transfer.emulate_live_migration(self.domain, control, bandwidth,
                                             clock=lambda: control.now)

    def test_transfer_takes_memory_over_bandwidth(self):
        control = FakeClockControl()
        self.emulate(control, bandwidth=8)
        # 64 MiB at 8 MiB/s, reported every EMULATED_STEP seconds.
        self.assertEqual((0.0, 0.0), control.reports[0])
        self.assertEqual((8.0, 100.0), control.reports[-1])
        percents = [percent for _, percent in control.reports]
        self.assertEqual(sorted(percents), percents)
        self.assertEqual({'memory_total': 64 << 20,
                          'memory_processed': 64 << 20,
                          'memory_remaining': 0, 'disk_total': 0,
                          'disk_processed': 0, 'disk_remaining': 0,
                          'percent': 100.0}, control.progress())
        self.assertIn('destroy', self.domain.calls)
        self.assertNotIn(UUID, self.connection.domains)

    def test_unlimited_bandwidth_takes_a_fixed_short_time(self):
        control = FakeClockControl()
        self.emulate(control, bandwidth=0)
        self.assertEqual((live_transfer.EMULATED_UNLIMITED_SECONDS, 100.0),
                         control.reports[-1])

    def test_abort_mid_transfer_keeps_the_guest(self):
        def abort_at_2s(control, now):
            if now >= 2.0:
                control.request_abort('stop it')
        control = FakeClockControl(abort_at_2s)
        error = self.assertRaises(exception.MigrationError, self.emulate,
                                  control, 8)
        self.assertIn('aborted: stop it', str(error))
        self.assertLess(control.reports[-1][1], 30.0)
        self.assertEqual(libvirt.VIR_DOMAIN_RUNNING, self.domain.state()[0])
        self.assertIn(UUID, self.connection.domains)

    def test_force_complete_ends_the_transfer_at_once(self):
        def force_at_3s(control, now):
            if 3.0 <= now < 3.05:
                control.request_force_complete()
        control = FakeClockControl(force_at_3s)
        self.emulate(control, bandwidth=8)
        self.assertEqual(100.0, control.reports[-1][1])
        self.assertLess(control.reports[-1][0], 3.1)
        self.assertNotIn(UUID, self.connection.domains)
