"""LibvirtDriver's rescue, unrescue and snapshot with a real QEMU guest.

The driver alone (no agent, no broker) against a private libvirtd. The
guest boots the test kernel and initramfs with an overlay of the test
disk image attached, as build makes it; the rescue boots the other
initramfs, so the definitions tell the two apart.
"""

import json
import os
import subprocess
import uuid
from xml.etree import ElementTree as ET

import fixtures
import libvirt

from compute_agent import exception
from compute_agent.virt import driver
from compute_agent.virt.libvirt import driver as libvirt_driver
from compute_agent.virt.libvirt import rescue
from tests.realguest import base
from tests.realguest import libvirtd


class DriverRescueSnapshotTest(base.TestCase):
    def setUp(self):
        super().setUp()
        hypervisor = self.useFixture(libvirtd.PrivateLibvirtd('host-a'))
        state_path = self.useFixture(fixtures.TempDir()).path
        self.driver = libvirt_driver.LibvirtDriver(hypervisor.uri, 'qemu',
                                                   state_path)
        self.driver.init_host('host-a')
        self.connection = libvirt.open(hypervisor.uri)
        self.addCleanup(self.connection.close)
        self.uuid = str(uuid.uuid4())
        self.instance_dir = os.path.join(state_path, 'instances', self.uuid)
        self.own_disk = os.path.join(self.instance_dir, 'disk.qcow2')
        self.snapshot_path = os.path.join(state_path, 'images', 'snap.qcow2')
        self.image = {'id': 'debian-busybox', 'properties': {},
                      'kernel': self.images['kernel'],
                      'ramdisk': self.images['initramfs_acpi'],
                      'cmdline': libvirtd.GUEST_CMDLINE,
                      'disk': self.images['disk']}
        self.rescue_image = {'id': 'rescue', 'properties': {},
                             'kernel': self.images['kernel'],
                             'ramdisk': self.images['initramfs_noacpi'],
                             'cmdline': libvirtd.GUEST_CMDLINE}

    def spawn(self):
        self.driver.check_image(self.image)
        self.driver.spawn(self.uuid, 'guest', 1, 128, self.image)
        self.addCleanup(self.driver.delete, self.uuid)

    def power_off(self):
        self.driver.power_off(self.uuid, False, 0, 10)
        self.assertEqual(driver.SHUTDOWN,
                         self.driver.get_power_state(self.uuid))

    def rescue(self, rescue_image):
        self.driver.check_image(rescue_image)
        self.driver.rescue(self.uuid, 'guest', 1, 128, self.image,
                           rescue_image)

    def definition(self, flags=0):
        return self.connection.lookupByUUIDString(self.uuid).XMLDesc(flags)

    def disks(self, xml):
        return {disk.find('target').get('dev'):
                disk.find('source').get('file')
                for disk in ET.fromstring(xml).iterfind('devices/disk')}

    def wait_until_ready(self):
        """The guest printed READY since its console log was removed."""
        libvirtd.wait_until_guest_ready(
            self.driver.console_log_path(self.uuid))

    def forget_console(self):
        os.unlink(self.driver.console_log_path(self.uuid))

    def qemu_img_info(self, path):
        # --force-share: QEMU holds a lock on the disks of a running guest.
        return json.loads(subprocess.run(
            ['qemu-img', 'info', '--force-share', '--output=json', path],
            check=True, capture_output=True, text=True).stdout)

    def test_rescue_boots_the_rescue_kernel_and_unrescue_restores(self):
        self.spawn()
        self.wait_until_ready()
        self.power_off()
        original = self.definition(libvirt.VIR_DOMAIN_XML_INACTIVE)
        self.forget_console()

        self.timed('rescue', self.rescue, self.rescue_image)
        self.assertEqual(driver.RUNNING,
                         self.driver.get_power_state(self.uuid))
        running = ET.fromstring(self.definition())
        self.assertEqual(self.images['kernel'],
                         running.findtext('os/kernel'))
        self.assertEqual(self.images['initramfs_noacpi'],
                         running.findtext('os/initrd'))
        self.assertEqual({'vdb': self.own_disk},
                         self.disks(self.definition()))
        self.wait_until_ready()

        self.forget_console()
        self.timed('unrescue', self.driver.unrescue, self.uuid)
        self.assertEqual(driver.RUNNING,
                         self.driver.get_power_state(self.uuid))
        self.assertEqual(original,
                         self.definition(libvirt.VIR_DOMAIN_XML_INACTIVE))
        for leftover in (rescue.ORIGINAL_XML, rescue.RESCUE_DISK):
            self.assertFalse(os.path.exists(
                os.path.join(self.instance_dir, leftover)))
        self.wait_until_ready()

    def test_snapshot_is_a_standalone_copy_of_the_powered_off_disk(self):
        self.spawn()
        error = self.assertRaises(exception.HypervisorError,
                                  self.driver.snapshot, self.uuid,
                                  self.snapshot_path)
        self.assertIn('running; power it off first', str(error))
        self.power_off()
        # Data only the overlay holds, so a copy that kept the base as
        # its backing file, or lost the overlay, would differ.
        subprocess.run(['qemu-io', '-f', 'qcow2', '-c',
                        'write -P 0x5a 1M 256k', self.own_disk],
                       check=True, capture_output=True)

        size = self.timed('snapshot', self.driver.snapshot, self.uuid,
                          self.snapshot_path)
        info = self.qemu_img_info(self.snapshot_path)
        self.assertEqual('qcow2', info['format'])
        self.assertNotIn('backing-filename', info)
        self.assertEqual(os.path.getsize(self.snapshot_path), size)
        subprocess.run(['qemu-img', 'compare', self.own_disk,
                        self.snapshot_path], check=True, capture_output=True)
        self.assertEqual(['snap.qcow2'],
                         os.listdir(os.path.dirname(self.snapshot_path)))

    def test_rescue_from_a_disk_image_then_delete_while_rescued(self):
        self.spawn()
        self.power_off()
        self.rescue({'id': 'rescue-disk', 'properties': {},
                     'disk': self.images['disk']})
        self.assertEqual(driver.RUNNING,
                         self.driver.get_power_state(self.uuid))
        rescue_disk = os.path.join(self.instance_dir, rescue.RESCUE_DISK)
        self.assertEqual({'vda': rescue_disk, 'vdb': self.own_disk},
                         self.disks(self.definition()))
        self.assertEqual(self.images['disk'],
                         self.qemu_img_info(rescue_disk)['backing-filename'])

        self.driver.delete(self.uuid)
        self.assertEqual(driver.NOSTATE,
                         self.driver.get_power_state(self.uuid))
        self.assertFalse(os.path.exists(self.instance_dir))

    def test_rescue_that_cannot_boot_leaves_the_guest_as_it_was(self):
        self.spawn()
        self.power_off()
        original = self.definition(libvirt.VIR_DOMAIN_XML_INACTIVE)
        # Past check_image, as if the kernel vanished after the check.
        broken = dict(self.rescue_image,
                      kernel=os.path.join(self.instance_dir, 'gone'))
        self.assertRaises(exception.HypervisorError, self.driver.rescue,
                          self.uuid, 'guest', 1, 128, self.image, broken)
        self.assertEqual(driver.SHUTDOWN,
                         self.driver.get_power_state(self.uuid))
        self.assertEqual(original,
                         self.definition(libvirt.VIR_DOMAIN_XML_INACTIVE))
        self.assertFalse(os.path.exists(
            os.path.join(self.instance_dir, rescue.ORIGINAL_XML)))
