"""Cold migration and resize in the libvirt driver (on a fake QEMU
connection and on libvirt's test driver), and the serial console."""

import os
import shutil
import tempfile
import uuid
from unittest import mock
from xml.etree import ElementTree as ET

import libvirt

from compute_agent import exception
from compute_agent.virt import driver
from compute_agent.virt.libvirt import config
from compute_agent.virt.libvirt import driver as libvirt_driver
from compute_agent.virt.libvirt import images
from tests.unit import base
from tests.unit import fake_libvirt
from tests.unit.fake_libvirt import guest_xml

UUID = fake_libvirt.UUID
IMAGE = fake_libvirt.IMAGE


class SharedStorageMarkerTest(fake_libvirt.TwoQemuHostsTestCase):
    def test_a_marker_is_seen_only_through_a_shared_directory(self):
        marker = self.b.create_shared_storage_marker(UUID)
        self.assertFalse(self.a.check_shared_storage_marker(UUID, marker))
        shared, _ = fake_libvirt.qemu_driver(self.state_b, host='host-c')
        self.assertTrue(shared.check_shared_storage_marker(UUID, marker))
        self.b.remove_shared_storage_marker(UUID, marker)
        self.assertFalse(shared.check_shared_storage_marker(UUID, marker))
        # The directory existed for the marker alone.
        self.assertFalse(os.path.exists(self.dir_b))

    def test_removing_the_marker_keeps_a_directory_in_use(self):
        self.make_disk(self.dir_b)
        marker = self.b.create_shared_storage_marker(UUID)
        self.b.remove_shared_storage_marker(UUID, marker)
        self.assertEqual(['disk.qcow2'], os.listdir(self.dir_b))

    def test_only_marker_names_are_taken(self):
        for name in ('../../etc/passwd', 'disk.qcow2'):
            self.assertRaises(exception.MigrationError,
                              self.a.check_shared_storage_marker, UUID, name)


class SourceTest(fake_libvirt.TwoQemuHostsTestCase):
    def setUp(self):
        super().setUp()
        self.make_disk(self.dir_a)
        self.original = self.conn_a.add(
            UUID, guest_xml(self.dir_a, disk=True),
            state=libvirt.VIR_DOMAIN_SHUTOFF)

    def test_the_disk_is_copied_into_the_destination_directory(self):
        self.assertEqual({'disk': True},
                         self.a.migrate_disk(UUID, self.dir_b, False))
        with open(os.path.join(self.dir_b, 'disk.qcow2'), 'rb') as copy:
            self.assertEqual(b'overlay', copy.read())
        self.assertEqual(['disk.qcow2'], os.listdir(self.dir_b))
        # Kept for a revert.
        self.assertIn(UUID, self.conn_a.domains)
        self.assertTrue(os.path.exists(os.path.join(self.dir_a,
                                                    'disk.qcow2')))

    def test_nothing_is_copied_with_shared_storage(self):
        self.assertEqual({'disk': True},
                         self.a.migrate_disk(UUID, self.dir_b, True))
        self.assertFalse(os.path.exists(self.dir_b))

    def test_a_guest_without_disk_has_nothing_to_copy(self):
        self.original.xml = guest_xml(self.dir_a)
        self.assertEqual({'disk': False},
                         self.a.migrate_disk(UUID, '/nowhere/' + UUID, False))

    def test_a_running_guest_is_refused(self):
        self.original.state_value = libvirt.VIR_DOMAIN_RUNNING
        error = self.assertRaises(exception.HypervisorError,
                                  self.a.migrate_disk, UUID, self.dir_b,
                                  False)
        self.assertIn('power it off first', str(error))

    def test_an_unseen_directory_without_a_uri_is_refused(self):
        # A destination older than 1.5 does not send its libvirt URI.
        for path, seen in (('/nowhere/instances/' + UUID, 'does not see'),
                           (self.dir_a, 'own directory')):
            for target in (None, {'libvirt_uri': None}):
                error = self.assertRaises(exception.MigrationError,
                                          self.a.migrate_disk, UUID, path,
                                          False, target)
                self.assertIn(seen, str(error))
                self.assertIn('older than RPC 1.5', str(error))
        self.assertIn(UUID, self.conn_a.domains)

    def test_confirm_removes_the_original_and_its_files(self):
        self.a.confirm_migration(UUID, False)
        self.assertNotIn(UUID, self.conn_a.domains)
        self.assertFalse(os.path.exists(self.dir_a))

    def test_confirm_with_shared_storage_keeps_the_files(self):
        self.a.confirm_migration(UUID, True)
        self.assertNotIn(UUID, self.conn_a.domains)
        self.assertEqual(['disk.qcow2'], os.listdir(self.dir_a))

    def test_confirm_refuses_an_original_that_runs_again(self):
        self.original.state_value = libvirt.VIR_DOMAIN_RUNNING
        self.assertRaises(exception.HypervisorError,
                          self.a.confirm_migration, UUID, False)
        self.assertIn(UUID, self.conn_a.domains)

    def test_finish_revert_starts_the_original_when_asked(self):
        self.a.finish_revert_migration(UUID, False)
        self.assertEqual(driver.SHUTDOWN, self.a.get_power_state(UUID))
        self.a.finish_revert_migration(UUID, True)
        self.assertEqual(driver.RUNNING, self.a.get_power_state(UUID))


class DestinationTest(fake_libvirt.TwoQemuHostsTestCase):
    def finish(self, has_disk=True, power_on=True):
        with mock.patch.object(images, 'create_overlay') as create_overlay:
            self.b.finish_migration(UUID, 'vm', 2, 256, IMAGE, has_disk,
                                    power_on)
        create_overlay.assert_not_called()

    def test_the_guest_is_defined_with_the_copied_disk_and_new_flavor(self):
        self.make_disk(self.dir_b)
        self.finish()
        domain = ET.fromstring(self.conn_b.defined[-1])
        self.assertEqual('2', domain.findtext('vcpu'))
        self.assertEqual('256', domain.findtext('memory'))
        self.assertEqual({os.path.join(self.dir_b, 'disk.qcow2')},
                         config.disk_files(self.conn_b.defined[-1]))
        self.assertEqual(os.path.join(self.dir_b, 'console.log'),
                         domain.find('devices/serial/source').get('path'))
        self.assertEqual(driver.RUNNING, self.b.get_power_state(UUID))

    def test_powered_off_guest_stays_off(self):
        self.finish(has_disk=False, power_on=False)
        self.assertEqual(set(), config.disk_files(self.conn_b.defined[-1]))
        self.assertEqual(driver.SHUTDOWN, self.b.get_power_state(UUID))

    def test_a_missing_disk_is_a_clear_error(self):
        error = self.assertRaises(exception.MigrationError, self.finish)
        self.assertIn('was not copied here', str(error))
        self.assertEqual([], self.conn_b.defined)

    def test_revert_removes_the_guest_and_its_files(self):
        self.make_disk(self.dir_b)
        self.finish()
        self.b.revert_migration_at_destination(UUID, False)
        self.assertEqual(driver.NOSTATE, self.b.get_power_state(UUID))
        self.assertFalse(os.path.exists(self.dir_b))

    def test_revert_with_shared_storage_keeps_the_files(self):
        self.make_disk(self.dir_b)
        self.finish()
        self.b.revert_migration_at_destination(UUID, True)
        self.assertEqual(driver.NOSTATE, self.b.get_power_state(UUID))
        self.assertEqual(['disk.qcow2'], os.listdir(self.dir_b))


class TestDriverColdMigrationTest(base.TestCase):
    """Test domains have no disk: the whole round trip works as is."""

    def setUp(self):
        super().setUp()
        workdir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, workdir, True)
        node = os.path.join(workdir, 'node.xml')
        with open(node, 'w') as node_file:
            node_file.write('<node/>')
        self.a, self.b = (
            libvirt_driver.LibvirtDriver(f'test://{node}', 'qemu',
                                         os.path.join(workdir, name))
            for name in ('a', 'b'))
        self.a.init_host('host-a')
        self.b.init_host('host-b')
        self.uuid = str(uuid.uuid4())
        self.image = {'id': 'img', 'properties': {}}
        self.a.spawn(self.uuid, 'vm', 1, 64, self.image)
        self.a.power_off(self.uuid, False, 0, 10)

    def migrate(self):
        marker = self.b.create_shared_storage_marker(self.uuid)
        shared = self.a.check_shared_storage_marker(self.uuid, marker)
        self.b.remove_shared_storage_marker(self.uuid, marker)
        self.assertFalse(shared)
        moved = self.a.migrate_disk(self.uuid, self.b.instance_path(
            self.uuid), shared)
        self.assertEqual({'disk': False}, moved)
        self.b.finish_migration(self.uuid, 'vm', 2, 128, self.image,
                                moved['disk'], True)
        self.assertEqual(driver.RUNNING, self.b.get_power_state(self.uuid))

    def test_confirm(self):
        self.migrate()
        self.a.confirm_migration(self.uuid, False)
        self.assertEqual(driver.NOSTATE, self.a.get_power_state(self.uuid))

    def test_revert(self):
        self.migrate()
        self.b.revert_migration_at_destination(self.uuid, False)
        self.a.finish_revert_migration(self.uuid, True)
        self.assertEqual(driver.NOSTATE, self.b.get_power_state(self.uuid))
        self.assertEqual(driver.RUNNING, self.a.get_power_state(self.uuid))


class SerialConsoleTest(base.TestCase):
    def serial(self, kind, source):
        return config.serial_console(
            f"<domain><devices><serial type='{kind}'>{source}"
            f"<target port='0'/></serial></devices></domain>")

    def test_kinds(self):
        self.assertEqual({'type': 'file', 'path': '/s/console.log'},
                         self.serial('file', "<source path='/s/console.log'"
                                             "/>"))
        self.assertEqual({'type': 'pty', 'path': '/dev/pts/4'},
                         self.serial('pty', "<source path='/dev/pts/4'/>"))
        self.assertEqual(
            {'type': 'unix', 'path': '/run/c.sock'},
            self.serial('unix', "<source mode='bind' path='/run/c.sock'/>"))
        self.assertEqual(
            {'type': 'tcp', 'host': '0.0.0.0', 'port': 4555},
            self.serial('tcp', "<source mode='bind' host='0.0.0.0' "
                               "service='4555'/>"))
        self.assertIsNone(config.serial_console('<domain><devices/></domain>'))

    def test_driver_reads_the_live_definition(self):
        state = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, state, True)
        qemu, connection = fake_libvirt.qemu_driver(state)
        domain = connection.add(UUID, guest_xml('/s'))
        self.assertEqual({'type': 'file', 'path': '/s/console.log'},
                         qemu.get_serial_console(UUID))
        self.assertIn(('XMLDesc', 0), domain.calls)
        domain.state_value = libvirt.VIR_DOMAIN_SHUTOFF
        error = self.assertRaises(exception.HypervisorError,
                                  qemu.get_serial_console, UUID)
        self.assertIn('not running', str(error))
        domain.state_value = libvirt.VIR_DOMAIN_RUNNING
        domain.xml = '<domain><devices/></domain>'
        error = self.assertRaises(exception.HypervisorError,
                                  qemu.get_serial_console, UUID)
        self.assertIn('no serial device', str(error))
