"""Fakes for unit tests: a hypervisor driver held in memory."""

import threading

from compute_agent import exception
from compute_agent.virt import driver


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
                                      'ignores_acpi': False}

    def power_on(self, instance_uuid):
        self._maybe_fail('power_on', instance_uuid)
        self.guests[instance_uuid]['state'] = driver.RUNNING

    def power_off(self, instance_uuid, clean, timeout, retry_interval,
                  control=None, use_guest_agent=False):
        self.power_off_calls.append((instance_uuid, clean, timeout,
                                     retry_interval))
        if self.power_off_gate is not None:
            self.power_off_gate.wait()
        self._maybe_fail('power_off', instance_uuid)
        guest = self.guests.get(instance_uuid)
        requested = 'clean' if clean else 'forced'
        if guest is None or guest['state'] == driver.SHUTDOWN:
            result, method = 'clean', 'already-off'
        elif clean and not guest['ignores_acpi']:
            result, method = 'clean', 'acpi'
        else:
            result, method = 'forced', 'destroy'
        if guest is not None:
            guest['state'] = driver.SHUTDOWN
        return driver.PowerOffResult(requested, result, method,
                                     seconds=0.5, timeout=timeout)

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
