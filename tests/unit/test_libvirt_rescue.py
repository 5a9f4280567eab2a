"""Rescue, unrescue and snapshot in LibvirtDriver: on libvirt's embedded
test driver (no daemon, no files), and the rescue definition it writes for
QEMU guests."""

import json
import os
import shutil
import subprocess
import tempfile
import uuid
from unittest import mock
from xml.etree import ElementTree as ET

import libvirt

from compute_agent import exception
from compute_agent.virt import driver
from compute_agent.virt.libvirt import config
from compute_agent.virt.libvirt import driver as libvirt_driver
from compute_agent.virt.libvirt import hypervisor
from compute_agent.virt.libvirt import images
from compute_agent.virt.libvirt import paths
from compute_agent.virt.libvirt import rescue
from tests.unit import base

IMAGE = {'id': 'img', 'properties': {}}
RESCUE_IMAGE = {'id': 'rescue-img', 'properties': {}}


class DriverTestCase(base.TestCase):
    def setUp(self):
        super().setUp()
        self.state_path = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.state_path, True)
        self.instance_dir = os.path.join(self.state_path, 'instances')


class TestDriverRescueTest(DriverTestCase):
    def setUp(self):
        super().setUp()
        self.driver = libvirt_driver.LibvirtDriver(
            'test:///default', 'qemu', self.state_path)
        self.driver.init_host('host-a')
        self.uuid = str(uuid.uuid4())
        self.instance_dir = os.path.join(self.instance_dir, self.uuid)
        self.original_xml_path = os.path.join(self.instance_dir,
                                              rescue.ORIGINAL_XML)
        self.driver.spawn(self.uuid, 'vm', 1, 64, IMAGE)
        self.addCleanup(self.driver.delete, self.uuid)

    def domain(self):
        return libvirt.open('test:///default').lookupByUUIDString(self.uuid)

    def definition(self):
        return self.domain().XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)

    def power_off(self):
        self.driver.power_off(self.uuid, False, 0, 10)

    def rescue(self, rescue_image=RESCUE_IMAGE):
        self.driver.rescue(self.uuid, 'vm', 2, 128, IMAGE, rescue_image)

    def test_rescue_then_unrescue_restores_the_original_definition(self):
        self.power_off()
        original = self.definition()

        self.rescue()
        self.assertEqual(driver.RUNNING,
                         self.driver.get_power_state(self.uuid))
        rescued = self.definition()
        self.assertTrue(config.is_rescue_definition(rescued))
        self.assertEqual(f'instance-{self.uuid}', self.domain().name())
        self.assertEqual(2, self.domain().info()[3])
        with open(self.original_xml_path) as saved:
            self.assertEqual(original, saved.read())

        self.driver.unrescue(self.uuid)
        self.assertEqual(driver.RUNNING,
                         self.driver.get_power_state(self.uuid))
        self.assertEqual(original, self.definition())
        self.assertFalse(os.path.exists(self.original_xml_path))

    def test_rescue_of_a_running_guest_is_refused(self):
        original = self.definition()
        error = self.assertRaises(exception.HypervisorError, self.rescue)
        self.assertIn('running; power it off first', str(error))
        self.assertEqual(original, self.definition())
        self.assertFalse(os.path.exists(self.original_xml_path))

    def test_failed_rescue_leaves_the_guest_off_as_it_was(self):
        self.power_off()
        original = self.definition()
        with mock.patch.object(libvirt.virDomain, 'create',
                               side_effect=libvirt.libvirtError('no boot')):
            error = self.assertRaises(exception.HypervisorError,
                                      self.rescue)
        self.assertIn('failed to rescue', str(error))
        self.assertEqual(driver.SHUTDOWN,
                         self.driver.get_power_state(self.uuid))
        self.assertEqual(original, self.definition())
        self.assertFalse(os.path.exists(self.original_xml_path))

    def test_second_rescue_keeps_the_saved_definition(self):
        self.power_off()
        original = self.definition()
        self.rescue()
        self.power_off()
        self.rescue(dict(RESCUE_IMAGE, id='other-rescue-img'))
        self.assertIn('other-rescue-img', self.definition())

        self.driver.unrescue(self.uuid)
        self.assertEqual(original, self.definition())

    def test_rescue_definition_without_saved_original_is_refused(self):
        self.power_off()
        self.rescue()
        self.power_off()
        os.unlink(self.original_xml_path)
        rescued = self.definition()
        error = self.assertRaises(exception.HypervisorError, self.rescue)
        self.assertIn('its own definition is not saved', str(error))
        self.assertEqual(rescued, self.definition())

    def test_unrescue_without_saved_definition_is_a_clear_error(self):
        original = self.definition()
        error = self.assertRaises(exception.HypervisorError,
                                  self.driver.unrescue, self.uuid)
        self.assertIn('no saved definition to restore', str(error))
        self.assertIn(self.original_xml_path, str(error))
        self.assertEqual(driver.RUNNING,
                         self.driver.get_power_state(self.uuid))
        self.assertEqual(original, self.definition())

    def test_delete_of_a_rescued_guest_removes_it_all(self):
        self.power_off()
        self.rescue()
        self.driver.delete(self.uuid)
        self.assertEqual(driver.NOSTATE,
                         self.driver.get_power_state(self.uuid))
        self.assertFalse(os.path.exists(self.instance_dir))

    def test_snapshot_of_a_guest_without_disk_is_none(self):
        self.power_off()
        path = os.path.join(self.state_path, 'images', 'snap.qcow2')
        self.assertIsNone(self.driver.snapshot(self.uuid, path))
        self.assertFalse(os.path.exists(os.path.dirname(path)))

    def test_snapshot_of_a_running_guest_is_refused(self):
        path = os.path.join(self.state_path, 'snap.qcow2')
        error = self.assertRaises(exception.HypervisorError,
                                  self.driver.snapshot, self.uuid, path)
        self.assertIn('running; power it off first', str(error))

    def test_unknown_guest_is_a_clear_error(self):
        unknown = str(uuid.uuid4())
        for call in (lambda: self.driver.snapshot(unknown, '/nowhere'),
                     lambda: self.driver.rescue(unknown, 'vm', 1, 64, IMAGE,
                                                RESCUE_IMAGE),
                     lambda: self.driver.unrescue(unknown)):
            error = self.assertRaises(exception.HypervisorError, call)
            self.assertIn('no such domain', str(error))


class QemuRescueXmlTest(DriverTestCase):
    """The rescue definition a QEMU host gets, without a hypervisor."""

    UUID = 'c0ffee00-0000-4000-8000-0000000000aa'

    def setUp(self):
        super().setUp()
        # Only the XML is built: no connection.
        self.qemu = hypervisor.Qemu(
            'qemu', paths.InstancePaths(self.state_path))
        self.files = rescue.RescueFiles(
            os.path.join(self.instance_dir, self.UUID))
        self.own_disk = os.path.join(self.instance_dir, self.UUID,
                                     'disk.qcow2')

    def original_xml(self, disk):
        return config.qemu_domain_xml(
            self.UUID, 'vm', 1, 128, 'qemu', console_log='/c.log',
            kernel='/img/vmlinuz', ramdisk='/img/initrd', disk=disk)

    def rescue_xml(self, rescue_image, original_disk):
        return ET.fromstring(self.qemu.rescue_definition(
            self.UUID, 'vm', 1, 128, rescue_image,
            self.original_xml(original_disk), self.files))

    def disks(self, domain):
        return {disk.find('target').get('dev'):
                disk.find('source').get('file')
                for disk in domain.iterfind('devices/disk')}

    def test_boots_the_rescue_kernel_with_the_own_disk_as_vdb(self):
        domain = self.rescue_xml(
            {'id': 'rescue-img', 'properties': {},
             'kernel': '/rescue/vmlinuz', 'ramdisk': '/rescue/initrd',
             'cmdline': 'console=ttyS0'}, self.own_disk)
        self.assertEqual('/rescue/vmlinuz', domain.findtext('os/kernel'))
        self.assertEqual('/rescue/initrd', domain.findtext('os/initrd'))
        self.assertEqual('console=ttyS0', domain.findtext('os/cmdline'))
        self.assertEqual({'vdb': self.own_disk}, self.disks(domain))
        self.assertEqual(self.UUID, domain.findtext('uuid'))
        self.assertEqual(f'instance-{self.UUID}', domain.findtext('name'))
        self.assertTrue(config.is_rescue_definition(
            ET.tostring(domain, encoding='unicode')))

    def test_rescue_disk_is_an_overlay_booted_as_vda(self):
        with mock.patch.object(images, 'create_overlay') as create_overlay:
            domain = self.rescue_xml(
                {'id': 'rescue-img', 'properties': {},
                 'disk': '/rescue/disk.qcow2'}, self.own_disk)
        create_overlay.assert_called_once_with('/rescue/disk.qcow2',
                                               self.files.rescue_disk)
        self.assertEqual({'vda': self.files.rescue_disk,
                          'vdb': self.own_disk}, self.disks(domain))
        self.assertEqual('hd', domain.find('os/boot').get('dev'))

    def test_guest_without_disk_gets_no_second_disk(self):
        domain = self.rescue_xml(
            {'id': 'rescue-img', 'properties': {},
             'kernel': '/rescue/vmlinuz', 'ramdisk': '/rescue/initrd'},
            None)
        self.assertEqual({}, self.disks(domain))

    def test_guest_own_definition_is_not_a_rescue_definition(self):
        self.assertFalse(config.is_rescue_definition(
            self.original_xml(self.own_disk)))
        self.assertEqual({self.own_disk},
                         config.disk_files(self.original_xml(self.own_disk)))

    def test_check_image_refuses_relative_and_missing_files(self):
        relative = {'id': 'rescue-img', 'kernel': 'vmlinuz',
                    'ramdisk': 'initrd'}
        error = self.assertRaises(exception.InvalidInput,
                                  self.qemu.check_image, relative)
        self.assertIn("image 'rescue-img': kernel 'vmlinuz' must be an "
                      "absolute path", str(error))
        missing = {'id': 'rescue-img', 'disk': '/no/such/disk.qcow2'}
        error = self.assertRaises(exception.InvalidInput,
                                  self.qemu.check_image, missing)
        self.assertIn('is not a file on this host', str(error))


class AtomicFileTest(base.TestCase):
    def setUp(self):
        super().setUp()
        self.directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.directory, True)
        self.path = os.path.join(self.directory, 'new', 'file')

    def test_the_file_appears_whole_once_written(self):
        with images.replaced_atomically(self.path) as partial:
            with open(partial, 'w') as new:
                new.write('whole')
            self.assertFalse(os.path.exists(self.path))
        with open(self.path) as written:
            self.assertEqual('whole', written.read())
        self.assertEqual(['file'], os.listdir(os.path.dirname(self.path)))

    def test_a_failed_write_leaves_nothing(self):
        def write_and_fail():
            with images.replaced_atomically(self.path) as partial:
                with open(partial, 'w') as new:
                    new.write('half')
                raise OSError('disk full')
        self.assertRaises(OSError, write_and_fail)
        self.assertEqual([], os.listdir(os.path.dirname(self.path)))


class FlattenTest(base.TestCase):
    def setUp(self):
        super().setUp()
        if shutil.which('qemu-img') is None:
            self.skipTest('qemu-img is not installed')
        self.directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.directory, True)

    def info(self, path):
        return json.loads(subprocess.run(
            ['qemu-img', 'info', '--output=json', path], check=True,
            capture_output=True, text=True).stdout)

    def test_overlay_is_copied_without_its_backing_file(self):
        base = os.path.join(self.directory, 'base.raw')
        overlay = os.path.join(self.directory, 'overlay.qcow2')
        snapshot = os.path.join(self.directory, 'images', 'snap.qcow2')
        subprocess.run(['qemu-img', 'create', '-q', '-f', 'raw', base, '1M'],
                       check=True)
        images.create_overlay(base, overlay)
        self.assertEqual(base, self.info(overlay)['backing-filename'])

        size = images.flatten(overlay, snapshot)
        info = self.info(snapshot)
        self.assertEqual('qcow2', info['format'])
        self.assertNotIn('backing-filename', info)
        self.assertEqual(os.path.getsize(snapshot), size)

    def test_qemu_img_errors_say_what_went_wrong(self):
        error = self.assertRaises(
            images.ImageError, images.flatten,
            os.path.join(self.directory, 'missing.qcow2'),
            os.path.join(self.directory, 'snap.qcow2'))
        self.assertIn('qemu-img convert failed', str(error))
        self.assertIn('missing.qcow2', str(error))
        self.assertEqual([], os.listdir(self.directory))
