"""Fakes for unit tests: a hypervisor driver held in memory."""

import threading

from compute_agent import exception
from compute_agent.virt import driver
from compute_agent.virt.libvirt import power


class FakeDriver(driver.ComputeDriver):
    """Guests are dicts; power-off honours `ignores_acpi` per guest and
    can be made to fail or to block until released."""

    def __init__(self):
        self.guests = {}
        self.power_off_calls = []
        self.fail_next = {}
        self.power_off_gate = None
        self.initialised = False

    def _maybe_fail(self, action, instance_uuid):
        error = self.fail_next.pop(action, None)
        if error is not None:
            raise error

    def init_host(self, host):
        self.initialised = True

    def check_image(self, image):
        if image.get('properties', {}).get('fake_unbootable'):
            raise exception.InvalidInput(reason='image cannot boot here')

    def spawn(self, instance_uuid, name, vcpus, memory_mb, image):
        self._maybe_fail('spawn', instance_uuid)
        self.guests[instance_uuid] = {'state': driver.RUNNING,
                                      'ignores_acpi': False,
                                      'waits_for_force': False,
                                      'disk': 'disk' in image,
                                      'image': image, 'rescue': None}

    def power_on(self, instance_uuid):
        self._maybe_fail('power_on', instance_uuid)
        self.guests[instance_uuid]['state'] = driver.RUNNING

    def power_off(self, instance_uuid, clean, timeout, retry_interval,
                  control=None, use_guest_agent=False):
        """Guests obey at once, or ignore the request (forced at the end
        of the wait), or wait until the control is forced, which models a
        clean wait that a forced request cuts short."""
        self.power_off_calls.append((instance_uuid, clean, timeout,
                                     retry_interval, use_guest_agent))
        if self.power_off_gate is not None:
            self.power_off_gate.wait()
        self._maybe_fail('power_off', instance_uuid)
        guest = self.guests.get(instance_uuid)
        requested = 'clean' if clean else 'forced'
        method = power.GUEST_AGENT if use_guest_agent else power.ACPI
        if guest is None or guest['state'] == driver.SHUTDOWN:
            result, method = 'clean', 'already-off'
        elif clean and guest['waits_for_force'] and control is not None:
            control.waiting(timeout)
            control.requested(method)
            while not control.forced:
                control.wait(0.01)
            result, method = 'forced', 'destroy'
        elif clean and not guest['ignores_acpi']:
            result = 'clean'
        else:
            result, method = 'forced', 'destroy'
        if guest is not None:
            guest['state'] = driver.SHUTDOWN
        return driver.PowerOffResult(requested, result, method,
                                     seconds=0.5, timeout=timeout)

    def snapshot(self, instance_uuid, snapshot_path):
        guest = self.guests[instance_uuid]
        if guest['state'] != driver.SHUTDOWN:
            raise exception.HypervisorError(
                action='snapshot', instance_uuid=instance_uuid,
                reason='guest is running')
        if not guest['disk']:
            return None
        with open(snapshot_path, 'w') as snapshot:
            snapshot.write(f'disk of {instance_uuid}')
        return len(f'disk of {instance_uuid}')

    def rescue(self, instance_uuid, name, vcpus, memory_mb, image,
               rescue_image):
        self._maybe_fail('rescue', instance_uuid)
        guest = self.guests[instance_uuid]
        guest['rescue'] = rescue_image
        guest['state'] = driver.RUNNING

    def unrescue(self, instance_uuid):
        guest = self.guests[instance_uuid]
        guest['rescue'] = None
        guest['state'] = driver.RUNNING

    def get_console_output(self, instance_uuid, max_bytes):
        console = self.guests.get(instance_uuid, {}).get('console', '')
        return console[-max_bytes:]

    def delete(self, instance_uuid):
        self._maybe_fail('delete', instance_uuid)
        self.guests.pop(instance_uuid, None)

    def get_power_state(self, instance_uuid):
        guest = self.guests.get(instance_uuid)
        return guest['state'] if guest else driver.NOSTATE


class BlockingGate:
    """Holds a fake operation until the test releases it."""

    def __init__(self):
        self.entered = threading.Event()
        self._release = threading.Event()

    def wait(self):
        self.entered.set()
        self._release.wait(10)

    def release(self):
        self._release.set()
