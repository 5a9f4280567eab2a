"""A libvirtd restart in the middle of a clean power-off of a real QEMU
guest.

The libvirt driver (no agent, no broker) against a private libvirtd. The
guest honours ACPI. A guest powers off ~1.5 s after the button press,
faster than libvirtd restarts, so its QEMU is frozen (SIGSTOP) right after
QEMU has taken the press and thawed once the driver has reconnected: the
guest then goes off while only the new connection can report it. The
state poll is stretched beyond the test (see POLL), so only the event can
end the wait in time. Skipped where real guests cannot run.
"""

import functools
import os
import signal
import threading
import time
import uuid

import fixtures

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


class FreezeAfterRequest(power.PowerOffControl):
    """Freezes the guest's QEMU as soon as the first shutdown request has
    been taken, so that the guest cannot act on it yet."""

    def __init__(self, qemu_pid):
        super().__init__()
        self._qemu_pid = qemu_pid
        self.frozen = threading.Event()

    def requested(self, method):
        if not self.frozen.is_set():
            os.kill(self._qemu_pid, signal.SIGSTOP)
            self.frozen.set()
        super().requested(method)


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
            'cmdline': libvirtd.GUEST_CMDLINE})
        self.addCleanup(self.driver.delete, self.uuid)
        libvirtd.wait_until_guest_ready(
            self.driver.console_log_path(self.uuid))

    def qemu_pid(self):
        path = os.path.join(self.hypervisor.base_dir, 'run', 'qemu',
                            f'{config.domain_name(self.uuid)}.pid')
        with open(path) as pid_file:
            return int(pid_file.read())

    def test_clean_power_off_across_a_libvirtd_restart(self):
        """Restarted libvirtd while a clean power-off of an ACPI guest
        waited; checked the result and what noticed the guest go off."""
        qemu = self.qemu_pid()
        control = FreezeAfterRequest(qemu)
        self.useFixture(fixtures.MockPatchObject(
            libvirt_driver.power, 'power_off', functools.partial(
                power.power_off, safety_net_poll=POLL)))
        results = []
        stopper = threading.Thread(target=lambda: results.append(
            self.driver.power_off(self.uuid, True, LONG_WAIT, LONG_WAIT,
                                  control=control)))
        stopper.start()
        # Should the test fail, these run first to last: the guest must not
        # stay frozen, and the power-off ends (forced) without waiting.
        self.addCleanup(stopper.join, LONG_WAIT)
        self.addCleanup(control.force)
        self.addCleanup(_thaw, qemu)
        self.assertTrue(control.frozen.wait(60), 'no shutdown request')

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
        _thaw(qemu)
        stopper.join(LONG_WAIT)

        self.assertEqual(1, len(results), 'the power-off did not return')
        result = results[0]
        self.add_finding(
            f'libvirtd {old_pid} -> {self.hypervisor.pid} restarted in '
            f'{restarted - restart_started:.2f} s, the guest kept running '
            f'(QEMU {qemu}), the driver reconnected '
            f'{reconnected - restarted:.2f} s after libvirtd was back; '
            f'power-off: {result.result} by {result.method} in '
            f'{result.seconds:.2f} s after {result.shutdown_requests} '
            f'request(s), detected by {result.detected_by}; '
            f'health: {health}')
        self.assertEqual(('clean', 'clean', 'acpi', 1, 'event'),
                         (result.requested, result.result, result.method,
                          result.shutdown_requests, result.detected_by))
        self.assertEqual(driver.SHUTDOWN,
                         self.driver.get_power_state(self.uuid))
        self.assertEqual((True, 1, 'running', 'running'),
                         (health['connected'], health['reconnects'],
                          health['event_loop'], health['dispatcher']))


def _thaw(pid):
    try:
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:
        pass   # powered off and gone
