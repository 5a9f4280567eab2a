"""The kind of libvirt host, picked at connect (hypervisor.py)."""

import os
import shutil
import tempfile
from unittest import mock
from xml.etree import ElementTree as ET

import libvirt

from compute_agent.virt.libvirt import hypervisor
from compute_agent.virt.libvirt import images
from compute_agent.virt.libvirt import paths
from tests.unit import base
from tests.unit import fake_libvirt

UUID = fake_libvirt.UUID


class KindTest(base.TestCase):
    def setUp(self):
        super().setUp()
        state_path = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, state_path, True)
        self.paths = paths.InstancePaths(state_path)

    def test_the_connection_says_the_kind(self):
        qemu = hypervisor.for_connection(fake_libvirt.FakeConnection(),
                                         'qemu', self.paths)
        self.assertIsInstance(qemu, hypervisor.Qemu)
        connection = libvirt.open('test:///default')
        self.addCleanup(connection.close)
        test = hypervisor.for_connection(connection, 'qemu', self.paths)
        self.assertIsInstance(test, hypervisor.TestDriver)
        self.assertEqual((True, True, True), (
            qemu.guest_files, qemu.shutdown_methods, qemu.live_migration))
        self.assertEqual((False, False, False), (
            test.guest_files, test.shutdown_methods, test.live_migration))

    def test_a_new_qemu_guest_gets_an_overlay_of_the_image_disk(self):
        qemu = hypervisor.Qemu('qemu', self.paths)
        with mock.patch.object(images, 'create_overlay') as create_overlay:
            domain = ET.fromstring(qemu.new_definition(
                UUID, 'vm', 1, 128, {'id': 'img', 'disk': '/img/base.qcow2'}))
        own_disk = self.paths.own_disk_path(UUID)
        create_overlay.assert_called_once_with('/img/base.qcow2', own_disk)
        self.assertEqual(own_disk,
                         domain.find('devices/disk/source').get('file'))
        self.assertTrue(os.path.isdir(self.paths.instance_path(UUID)))

    def test_a_test_domain_has_no_devices_and_no_files(self):
        test = hypervisor.TestDriver()
        with mock.patch.object(images, 'create_overlay') as create_overlay:
            domain = ET.fromstring(test.new_definition(
                UUID, 'vm', 1, 128, {'id': 'img', 'disk': '/img/base.qcow2'}))
        create_overlay.assert_not_called()
        self.assertEqual('test', domain.get('type'))
        self.assertEqual([], list(domain.iterfind('devices')))
        self.assertFalse(os.path.exists(self.paths.instances))
