"""Rescue, shelve and a forced request overriding a clean one, with real
QEMU guests that honour or ignore the ACPI power button."""

import json
import subprocess
import sys
import threading

from tests.fixtures import rpc
from tests.fixtures.polling import wait_for
from tests.realguest import test_power_off

RealGuestTestCase = test_power_off.RealGuestTestCase


class ShelveTest(RealGuestTestCase):
    def test_shelve_offload_unshelve_a_guest_with_a_disk(self):
        guest = self.boot(honours_acpi=True, with_disk=True)
        self.wait_until_guest_ready(guest)

        shelved = self.rpc.call('shelve_instance', instance_uuid=guest)
        self.assertEqual(('shelved', 'clean', 'acpi'),
                         (shelved['vm_state'],
                          shelved['last_power_off']['result'],
                          shelved['last_power_off']['method']))
        # The wait ended on seeing the guest off (see test_power_off).
        self.assertIn(shelved['last_power_off']['detected_by'],
                      ('event', 'poll'))

        offloaded = self.rpc.call('shelve_offload_instance',
                                  instance_uuid=guest)
        self.assertEqual(('shelved_offloaded', shelved['snapshot_id']),
                         (offloaded['vm_state'], offloaded['snapshot_id']))
        snapshot = f'{self.agent.state_path}/images/' \
                   f'{offloaded["snapshot_id"]}.qcow2'
        info = json.loads(subprocess.run(
            ['qemu-img', 'info', '--output=json', snapshot], check=True,
            capture_output=True, text=True).stdout)
        self.assertEqual('qcow2', info['format'])
        self.assertNotIn('backing-filename', info)

        unshelved = self.rpc.call('unshelve_instance', instance_uuid=guest)
        self.assertEqual(('active', 'running', None),
                         (unshelved['vm_state'], unshelved['power_state'],
                          unshelved['snapshot_id']))
        self.wait_until_guest_ready(guest)
        actions = [a['action'] for a in self.rpc.call(
            'get_instance_actions', instance_uuid=guest)]
        self.assertEqual(['build', 'shelve', 'shelve-offload', 'unshelve'],
                         actions)

    def test_shelve_of_a_guest_ignoring_acpi_is_forced_after_timeout(self):
        guest = self.boot(honours_acpi=False)
        self.wait_until_guest_ready(guest)
        shelved = self.rpc.call('shelve_instance', instance_uuid=guest,
                                shutdown_timeout=4)
        self.assertEqual(('shelved', 'forced', 4),
                         (shelved['vm_state'],
                          shelved['last_power_off']['result'],
                          shelved['last_power_off']['timeout']))


class RescueTest(RealGuestTestCase):
    def test_rescue_and_unrescue_a_guest_ignoring_acpi(self):
        guest = self.boot(honours_acpi=False, with_disk=True)
        self.wait_until_guest_ready(guest)
        rescue_image = {'id': 'rescue', 'properties': {},
                        'kernel': self.images['kernel'],
                        'ramdisk': self.images['initramfs_acpi'],
                        'cmdline': test_power_off.libvirtd.GUEST_CMDLINE}
        rescued = self.rpc.call('rescue_instance', instance_uuid=guest,
                                rescue_image=rescue_image,
                                shutdown_timeout=3)
        self.assertEqual(('rescued', 'running', 'forced'),
                         (rescued['vm_state'], rescued['power_state'],
                          rescued['last_power_off']['result']))
        self.wait_until_guest_ready(guest)

        back = self.rpc.call('unrescue_instance', instance_uuid=guest)
        self.assertEqual(('active', 'running'),
                         (back['vm_state'], back['power_state']))


class ForceOverrideTest(RealGuestTestCase):
    def test_forced_stop_overrides_a_clean_stop_in_progress(self):
        guest = self.boot(honours_acpi=False)
        self.wait_until_guest_ready(guest)
        first = {}

        def clean_stop():
            first['record'] = self.stop(guest, shutdown_timeout=120)
        stopper = threading.Thread(target=clean_stop)
        stopper.start()

        def waiting():
            status = self.rpc.call('get_service_status',
                                   topic=rpc.ALT_TOPIC)
            return any(op.get('power_off') for op in status['in_flight'])
        wait_for(waiting, 30, 'the clean power-off waiting')

        second = self.stop(guest, clean_shutdown=False)
        self.assertEqual(('stopped', 'shutdown'),
                         (second['vm_state'], second['power_state']))
        # The forced stop answers once the clean one it cut short has
        # finished, long before that one's 120 s would have run out: the
        # join is only a hang guard.
        stopper.join(60)
        self.assertFalse(stopper.is_alive(), 'the clean stop still waits')
        self.assertIn(f'Forced stop of instance {guest} cuts its clean '
                      f'power-off short', self.agent.log_text())
        last = first['record']['last_power_off']
        self.assertEqual(('clean', 'forced', 'destroy', 120),
                         (last['requested'], last['result'],
                          last['method'], last['timeout']))


class CliProgressTest(RealGuestTestCase):
    def test_cli_shows_the_wait_and_how_it_ended(self):
        guest = self.boot(honours_acpi=False)
        self.wait_until_guest_ready(guest)
        done = subprocess.run(
            [sys.executable, '-m', 'compute_agent.cmd.client',
             '--config-file', self.agent.config_file, '--progress',
             'stop', '--timeout', '4', guest],
            capture_output=True, text=True, timeout=120)
        self.assertEqual(0, done.returncode, done.stderr)
        self.assertIn('waiting for stubborn to power off', done.stderr)
        self.assertIn('of 4 s', done.stderr)
        self.assertIn('forced', done.stdout.splitlines()[0])
