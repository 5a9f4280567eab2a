"""When libvirt reported each guest STOPPED, as an independent observer.

The bench's own connection to the libvirtd the agent uses, with libvirt's
default event loop in a thread of this process, so the time of the
STOPPED event is the bench's and not the agent's account of it.
"""

import threading
import time
from xml.etree import ElementTree

import libvirt

_loop_started = False
_loop_lock = threading.Lock()


def _start_event_loop():
    """libvirt's default event loop, once per process, before any
    connection that registers callbacks is opened."""
    global _loop_started
    with _loop_lock:
        if _loop_started:
            return
        libvirt.virEventRegisterDefaultImpl()

        def run():
            while True:
                libvirt.virEventRunDefaultImpl()
        threading.Thread(target=run, daemon=True,
                         name='libvirt-events').start()
        _loop_started = True


class StoppedEvents:
    """The STOPPED lifecycle events of the libvirtd at uri: open() to
    start seeing them, close() to stop."""

    def __init__(self, uri):
        self._uri = uri
        self._conn = None
        self._callback = None
        self._seen = threading.Condition()
        self._stopped = []   # (uuid, time.monotonic()), in arrival order

    def open(self):
        _start_event_loop()
        self._conn = libvirt.open(self._uri)
        self._callback = self._conn.domainEventRegisterAny(
            None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_event,
            None)

    def close(self):
        self._conn.domainEventDeregisterAny(self._callback)
        self._conn.close()

    def accelerator(self, instance_uuid):
        """'KVM' or 'TCG', as the guest's domain type says it runs."""
        domain = self._conn.lookupByUUIDString(instance_uuid)
        kind = ElementTree.fromstring(domain.XMLDesc()).get('type')
        return 'KVM' if kind == 'kvm' else 'TCG'

    def _on_event(self, _conn, domain, event, _detail, _opaque):
        if event != libvirt.VIR_DOMAIN_EVENT_STOPPED:
            return
        seen = time.monotonic()
        with self._seen:
            self._stopped.append((domain.UUIDString(), seen))
            self._seen.notify_all()

    def wait(self, instance_uuid, after, timeout):
        """The time of the guest's first STOPPED event later than after."""
        deadline = time.monotonic() + timeout
        with self._seen:
            while True:
                for stopped_uuid, seen in self._stopped:
                    if stopped_uuid == instance_uuid and seen > after:
                        return seen
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f'no STOPPED event for '
                                       f'{instance_uuid} in {timeout} s')
                self._seen.wait(remaining)
