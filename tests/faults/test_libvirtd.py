"""A libvirtd restart in the middle of a clean power-off of a real QEMU
guest.

The libvirt driver (no agent, no broker) against a private libvirtd. The
guest honours ACPI, but is booted to power off only at the second press
of its power button (acpi_presses=2, see tools/guest/build-guest-image.sh):
the driver's press is taken, libvirtd restarts, and the test presses again
once the driver has reconnected and the new libvirtd has re-attached to
the guest's QEMU. The guest then goes off while only the new connection
can report it. (A guest that went off while the new libvirtd was still
re-attaching would be reported by no event at all: libvirtd's behaviour,
which the test must not race.) The state poll is stretched beyond the
test (see POLL), so only the event can end the wait in time. Skipped
where real guests cannot run.
"""

import functools
import os
import re
import threading
import time
import uuid

import fixtures
import libvirt

from compute_agent.virt import driver
from compute_agent.virt import power
from compute_agent.virt.libvirt import config
from compute_agent.virt.libvirt import driver as libvirt_driver
from tests.faults import base
from tests.fixtures.polling import wait_for
from tests.realguest import libvirtd

# Far longer than the test: neither a re-sent request nor the deadline
# may end the wait.
LONG_WAIT = 300
# The power-off's state poll, every 2 s by default, may find the guest
# off in the same instant as its event arrives (libvirtd answers the poll
# once it has processed the guest's exit). Stretched, it cannot: the wait
# ends by the event, or after POLL seconds by the poll, which fails.
POLL = 60
# How long the driver may take to reconnect after libvirtd is back
# (retries every 2 s at most): well before the first poll, which would
# reconnect too.
RECONNECT_DEADLINE = 20
# How long the guest may take to log a press (a loaded machine is slow).
PRESS_DEADLINE = 60
# The guest powers off at this press; the driver makes the first one.
PRESSES = 2


class LibvirtdRestartTest(base.TestCase):
    def setUp(self):
        super().setUp()
        available, reason = libvirtd.realguest_available()
        if not available:
            self.skipTest(reason)
        images = libvirtd.guest_images()
        self.hypervisor = self.useFixture(libvirtd.PrivateLibvirtd('host-a'))
        state_path = self.useFixture(fixtures.TempDir()).path
        self.driver = libvirt_driver.LibvirtDriver(self.hypervisor.uri,
                                                   'qemu', state_path)
        self.driver.init_host('host-a')
        self.uuid = str(uuid.uuid4())
        self.driver.spawn(self.uuid, 'acpi', 1, 128, {
            'id': 'debian-busybox', 'properties': {},
            'kernel': images['kernel'], 'ramdisk': images['initramfs_acpi'],
            'cmdline': f'{libvirtd.GUEST_CMDLINE} acpi_presses={PRESSES}'})
        self.addCleanup(self.driver.delete, self.uuid)
        libvirtd.wait_until_guest_ready(
            self.driver.console_log_path(self.uuid))

    def qemu_pid(self):
        path = os.path.join(self.hypervisor.base_dir, 'run', 'qemu',
                            f'{config.domain_name(self.uuid)}.pid')
        with open(path) as pid_file:
            return int(pid_file.read())

    def presses_logged(self):
        """The presses the guest logged on its console, as 'n OF m'."""
        with open(self.driver.console_log_path(self.uuid),
                  errors='replace') as log:
            return re.findall(
                re.escape(libvirtd.GUEST_ACPI_PRESS_LINE) + r' (\d+ OF \d+)',
                log.read())

    def press_power_button(self):
        """Press the guest's power button through a connection of the
        test's own. The new libvirtd runs the call only once it has
        re-attached to the guest's QEMU (its reattach holds the domain's
        job, and the press is sent over QMP)."""
        connection = libvirt.open(self.hypervisor.uri)
        try:
            domain = connection.lookupByName(config.domain_name(self.uuid))
            self.assertTrue(domain.isActive(),
                            'the guest is not running after the restart')
            domain.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
        finally:
            connection.close()

    def test_clean_power_off_across_a_libvirtd_restart(self):
        """Restarted libvirtd while a clean power-off of an ACPI guest
        waited; checked the result and what noticed the guest go off."""
        qemu = self.qemu_pid()
        control = power.PowerOffControl()
        self.useFixture(fixtures.MockPatchObject(
            libvirt_driver.power, 'power_off', functools.partial(
                power.power_off, safety_net_poll=POLL)))
        results = []
        stopper = threading.Thread(target=lambda: results.append(
            self.driver.power_off(self.uuid, True, LONG_WAIT, LONG_WAIT,
                                  control=control)))
        stopper.start()
        # Should the test fail, the power-off ends (forced) without
        # waiting.
        self.addCleanup(stopper.join, LONG_WAIT)
        self.addCleanup(control.force)
        wait_for(self.presses_logged, PRESS_DEADLINE,
                 "the guest's log of the driver's press")

        old_pid = self.hypervisor.pid
        restart_started = time.monotonic()
        self.hypervisor.restart()
        restarted = time.monotonic()
        health = wait_for(
            lambda: (h := self.driver.health())['reconnects'] and h,
            RECONNECT_DEADLINE, 'the driver reconnected')
        reconnected = time.monotonic()
        self.assertTrue(os.path.exists(f'/proc/{qemu}'),
                        'QEMU did not survive the libvirtd restart')
        self.press_power_button()
        pressed = time.monotonic()
        stopper.join(LONG_WAIT)

        self.assertEqual(1, len(results), 'the power-off did not return')
        result = results[0]
        presses = self.presses_logged()
        self.add_finding(
            f'libvirtd {old_pid} -> {self.hypervisor.pid} restarted in '
            f'{restarted - restart_started:.2f} s, the guest kept running '
            f'(QEMU {qemu}), the driver reconnected '
            f'{reconnected - restarted:.2f} s after libvirtd was back, the '
            f'new libvirtd had re-attached and took the test\'s press '
            f'{pressed - restarted:.2f} s after it was back; the guest '
            f'logged presses {presses}; power-off: {result.result} by '
            f'{result.method} in {result.seconds:.2f} s after '
            f'{result.shutdown_requests} request(s), detected by '
            f'{result.detected_by}; health: {health}')
        self.assertEqual(('clean', 'clean', 'acpi', 1, 'event'),
                         (result.requested, result.result, result.method,
                          result.shutdown_requests, result.detected_by))
        self.assertEqual([f'{n} OF {PRESSES}' for n in range(1, PRESSES + 1)],
                         presses)
        self.assertEqual(driver.SHUTDOWN,
                         self.driver.get_power_state(self.uuid))
        self.assertEqual((True, 1, 'running', 'running'),
                         (health['connected'], health['reconnects'],
                          health['event_loop'], health['dispatcher']))
