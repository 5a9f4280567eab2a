"""LibvirtDriver on libvirt's embedded test driver (no daemon), and the
domain XML it writes for QEMU guests."""

import os
import shutil
import tempfile
import threading
import uuid
from xml.etree import ElementTree as ET

import fixtures
import libvirt

from compute_agent import exception
from compute_agent.virt import driver
from compute_agent.virt import power
from compute_agent.virt.libvirt import config
from compute_agent.virt.libvirt import driver as libvirt_driver
from tests.fixtures.polling import wait_for
from tests.unit import base
from tests.unit import fake_libvirt

IMAGE = {'id': 'img', 'properties': {}}


class TestDriverTest(base.TestCase):
    def setUp(self):
        super().setUp()
        self.state_path = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.state_path, True)
        self.driver = libvirt_driver.LibvirtDriver(
            'test:///default', 'qemu', self.state_path)
        self.driver.init_host('host-a')
        self.uuid = str(uuid.uuid4())

    def spawn(self):
        self.driver.spawn(self.uuid, 'vm', 1, 64, IMAGE)
        self.addCleanup(self.driver.delete, self.uuid)

    def test_spawn_defines_a_running_domain_named_after_the_uuid(self):
        self.spawn()
        self.assertEqual(driver.RUNNING,
                         self.driver.get_power_state(self.uuid))
        domain = libvirt.open('test:///default').lookupByUUIDString(
            self.uuid)
        self.assertEqual(f'instance-{self.uuid}', domain.name())

    def test_clean_power_off_is_woken_by_the_lifecycle_event(self):
        self.spawn()
        result = self.driver.power_off(self.uuid, True, 30, 10)
        # Noticed by the event, not by the safety-net poll (detected_by
        # would say 'poll'), after the one ACPI request.
        self.assertEqual(('clean', 'acpi', 1, 'event'),
                         (result.result, result.method,
                          result.shutdown_requests, result.detected_by))
        self.assertEqual(driver.SHUTDOWN,
                         self.driver.get_power_state(self.uuid))

    def test_forced_power_off_and_power_on(self):
        self.spawn()
        result = self.driver.power_off(self.uuid, False, 0, 10)
        self.assertEqual(('forced', 'destroy'),
                         (result.result, result.method))
        self.driver.power_on(self.uuid)
        self.assertEqual(driver.RUNNING,
                         self.driver.get_power_state(self.uuid))

    def test_power_off_of_an_off_or_missing_guest_is_success(self):
        self.spawn()
        self.driver.power_off(self.uuid, False, 0, 10)
        again = self.driver.power_off(self.uuid, True, 30, 10)
        self.assertEqual('already-off', again.method)
        missing = self.driver.power_off(str(uuid.uuid4()), False, 0, 10)
        self.assertEqual('already-off', missing.method)

    def test_delete_removes_domain_and_files(self):
        self.spawn()
        instance_dir = os.path.join(self.state_path, 'instances', self.uuid)
        os.makedirs(instance_dir, exist_ok=True)
        self.driver.delete(self.uuid)
        self.assertEqual(driver.NOSTATE,
                         self.driver.get_power_state(self.uuid))
        self.assertFalse(os.path.exists(instance_dir))
        self.driver.delete(self.uuid)   # deleting twice is harmless

    def test_power_on_of_missing_guest_is_a_clear_error(self):
        error = self.assertRaises(exception.HypervisorError,
                                  self.driver.power_on, self.uuid)
        self.assertIn('no such domain', str(error))

    def test_console_output_is_the_tail_of_the_log(self):
        self.spawn()
        self.assertEqual('', self.driver.get_console_output(self.uuid, 10))
        log = self.driver.console_log_path(self.uuid)
        os.makedirs(os.path.dirname(log), exist_ok=True)
        with open(log, 'wb') as console:
            console.write(b'early\nCOMPUTE-AGENT-GUEST READY\n\xff')
        self.assertEqual('GUEST READY\n\ufffd',
                         self.driver.get_console_output(self.uuid, 13))

    def test_test_driver_boots_any_image(self):
        self.driver.check_image(IMAGE)


class LibvirtdRestartTest(base.TestCase):
    """A clean power-off on a fake QEMU connection that is lost while the
    power-off waits, as when libvirtd restarts."""

    def setUp(self):
        super().setUp()
        state_path = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, state_path, True)
        self.driver, self.old = fake_libvirt.qemu_driver(state_path)
        self.old.add(fake_libvirt.UUID, '<domain/>')
        # libvirtd after its restart: it has reattached to the guest.
        self.new = fake_libvirt.FakeConnection()
        self.guest = self.new.add(fake_libvirt.UUID, '<domain/>')
        self.useFixture(fixtures.MockPatchObject(libvirt, 'open',
                                                 return_value=self.new))

    def test_power_off_is_woken_by_an_event_after_the_reconnect(self):
        control = power.PowerOffControl()
        results = []
        waiter = threading.Thread(target=lambda: results.append(
            self.driver.power_off(fake_libvirt.UUID, True, 60, 60,
                                  control=control)))
        waiter.start()
        self.addCleanup(waiter.join, 10)
        wait_for(lambda: (control.progress() or {}).get('requests'), 10,
                 'the shutdown request')

        self.old.lose()
        wait_for(lambda: self.new.lifecycle_callbacks, 10,
                 'the event callback on the new connection')
        self.assertTrue(self.driver.health()['connected'])
        self.guest.state_value = libvirt.VIR_DOMAIN_SHUTOFF
        self.new.emit(self.guest, libvirt.VIR_DOMAIN_EVENT_STOPPED)
        waiter.join(10)

        self.assertEqual([('clean', 'clean', 'acpi', 1, 'event')],
                         [(r.requested, r.result, r.method,
                           r.shutdown_requests, r.detected_by)
                          for r in results])
        self.assertTrue(self.old.closed)

    def test_power_off_fails_clearly_when_libvirtd_stays_away(self):
        error = fake_libvirt.libvirt_error(libvirt.VIR_ERR_SYSTEM_ERROR,
                                           'Failed to connect socket')
        self.useFixture(fixtures.MockPatchObject(libvirt, 'open',
                                                 side_effect=error))
        self.old.lose()
        failure = self.assertRaises(
            exception.HypervisorError, self.driver.power_off,
            fake_libvirt.UUID, True, 1, 60)
        self.assertIn('Failed to connect socket', str(failure))
        # libvirtd comes back: the driver's reconnect thread, which
        # outlives the test, must not go on calling libvirt.open() as
        # other tests patch it.
        self.useFixture(fixtures.MockPatchObject(libvirt, 'open',
                                                 return_value=self.new))
        wait_for(lambda: self.driver.health()['connected'], 10,
                 'the reconnect once libvirtd is back')


class QemuXmlTest(base.TestCase):
    def test_direct_kernel_boot_guest(self):
        xml = config.qemu_domain_xml(
            'c0ffee00-0000-4000-8000-000000000001', 'web <1>', 2, 256,
            'qemu', console_log='/srv/state/console.log',
            kernel='/img/vmlinuz', ramdisk='/img/initrd', cmdline='quiet')
        domain = ET.fromstring(xml)
        self.assertEqual('qemu', domain.get('type'))
        self.assertEqual('/img/vmlinuz', domain.findtext('os/kernel'))
        self.assertEqual('/img/initrd', domain.findtext('os/initrd'))
        self.assertIsNotNone(domain.find('features/acpi'))
        self.assertEqual('qemu64', domain.findtext('cpu/model'))
        self.assertEqual('/srv/state/console.log',
                         domain.find('devices/serial/source').get('path'))
        instance = domain.find(f'metadata/{{{config.METADATA_NS}}}instance')
        self.assertEqual('web <1>', instance.get('name'))

    def test_disk_guest_on_kvm(self):
        domain = ET.fromstring(config.qemu_domain_xml(
            'c0ffee00-0000-4000-8000-000000000002', 'db', 1, 128, 'kvm',
            console_log='/c.log', disk='/srv/disk.qcow2'))
        self.assertEqual('kvm', domain.get('type'))
        self.assertEqual('/srv/disk.qcow2',
                         domain.find('devices/disk/source').get('file'))
        self.assertEqual('host-model', domain.find('cpu').get('mode'))
        self.assertIsNone(domain.find('os/kernel'))
