"""The guest-agent power-off path on a real QEMU guest running qemu-ga.

The guest (tools/guest/build-guest-image.sh, initramfs-agent.img) ignores
the ACPI power button, so only its agent can power it off cleanly, and it
says so on its console: qemu-ga's /sbin/shutdown prints
GUEST_AGENT_POWER_OFF_LINE. Its image has hw_qemu_guest_agent=yes, which
gives the domain the agent's channel and makes a clean stop ask the agent
first. qemu-ga holds its channel ~7 s after the guest is created (TCG),
and the guest prints its READY line at that moment.
"""

import threading
import uuid

import testtools

from tests.fixtures.polling import wait_for
from tests.fixtures import rpc
from tests.realguest import libvirtd
from tests.realguest import test_power_off

# The agent's line for a request the guest agent did not take, with
# libvirt's error for an agent that has not connected yet (code 86,
# VIR_ERR_AGENT_UNRESPONSIVE); the reason once, with nothing after it.
FALLBACK_LINE = (
    r'(?m)Instance {uuid}: the guest agent did not take the shutdown '
    r'request \(libvirt error 86: [^)]*QEMU guest agent is not '
    r'connected\); asking through the ACPI power button instead$')


class GuestAgentTest(test_power_off.RealGuestTestCase):
    def boot_agent_guest(self):
        instance = {
            'uuid': str(uuid.uuid4()), 'name': 'with-agent',
            'vcpus': 1, 'memory_mb': 128,
            'image': {'id': 'debian-busybox-qemu-ga',
                      'properties': {'hw_qemu_guest_agent': 'yes'},
                      'kernel': self.images['kernel'],
                      'ramdisk': self.images['initramfs_guest_agent'],
                      'cmdline': libvirtd.GUEST_CMDLINE}}
        record = self.rpc.call('build_and_run_instance', instance=instance)
        self.assertEqual(('active', 'running'),
                         (record['vm_state'], record['power_state']))
        return record['uuid']

    def console(self, instance_uuid):
        return self.rpc.call('get_console_output', topic=rpc.ALT_TOPIC,
                             instance_uuid=instance_uuid)

    def assertFallbackLogged(self, instance_uuid):
        self.assertRegex(self.agent.log_text(),
                         FALLBACK_LINE.format(uuid=instance_uuid))

    def test_clean_stop_goes_through_the_guest_agent(self):
        guest = self.boot_agent_guest()
        # READY: qemu-ga holds its channel, libvirt sees the agent connect.
        self.timed('build-to-agent-ready', self.wait_until_guest_ready,
                   guest)

        stop = self.timed('stop-via-agent', self.stop, guest)
        power_off = stop['last_power_off']
        self.addDetail('power-off', testtools.content.json_content(
            power_off))
        self.assertEqual(('clean', 'clean', 'guest-agent'),
                         (power_off['requested'], power_off['result'],
                          power_off['method']))
        self.assertEqual(('stopped', 'shutdown'),
                         (stop['vm_state'], stop['power_state']))
        # The guest itself says the agent powered it off (ACPI could not:
        # this guest ignores the button).
        self.assertIn(libvirtd.GUEST_AGENT_POWER_OFF_LINE,
                      self.console(guest))

    def test_stop_before_the_agent_connects_falls_back(self):
        # Both stops are sent right after their builds return, ~7 s before
        # qemu-ga holds its channel: the agent is not connected, so each
        # request falls back to ACPI, which this guest ignores. No request
        # is re-sent before the agent connects (RETRY_INTERVAL is 30 s).
        waiting = self.boot_agent_guest()
        results = {}
        stopper = threading.Thread(target=lambda: results.update(
            waiting=self.stop(waiting, topic=rpc.ALT_TOPIC,
                              shutdown_timeout=120)))
        stopper.start()
        self.addCleanup(stopper.join, 180)
        wait_for(lambda: self._power_off_method(waiting) == 'acpi', 30,
                 'the clean stop waiting on its ACPI request')

        # Left to its timeout, the stop destroys the guest.
        timed_out = self.boot_agent_guest()
        forced = self.stop(timed_out, shutdown_timeout=5)['last_power_off']
        self.addDetail('timed-out-power-off',
                       testtools.content.json_content(forced))
        self.assertEqual(('clean', 'forced', 'destroy', 5),
                         (forced['requested'], forced['result'],
                          forced['method'], forced['timeout']))
        self.assertFallbackLogged(timed_out)

        # A forced request cuts the other one's wait short.
        second = self.stop(waiting, clean_shutdown=False)
        stopper.join(60)
        self.assertFalse(stopper.is_alive())
        cut_short = results['waiting']['last_power_off']
        self.addDetail('cut-short-power-off',
                       testtools.content.json_content(cut_short))
        self.assertEqual(('clean', 'forced', 'destroy', 120),
                         (cut_short['requested'], cut_short['result'],
                          cut_short['method'], cut_short['timeout']))
        self.assertEqual(('stopped', None),
                         (second['vm_state'], second['task_state']))
        self.assertFallbackLogged(waiting)
        for instance_uuid in (waiting, timed_out):
            self.assertNotIn(libvirtd.GUEST_AGENT_POWER_OFF_LINE,
                             self.console(instance_uuid))

    def _power_off_method(self, instance_uuid):
        for operation in self.rpc.call('get_service_status')['in_flight']:
            if operation['instance_uuid'] == instance_uuid and \
                    operation.get('power_off'):
                return operation['power_off']['method']
        return None
