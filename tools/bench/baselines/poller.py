"""The 1 s polling baseline: what a power-off looks like without events.

It reads the guest's state and, when it is not off yet, sleeps the whole
interval before the next read. Missed ticks are never caught up: libvirt
answers a state query late while it reaps QEMU, and a poller that
shortened its next sleep by that delay would hide part of its own lag.
"""

import threading
import time

import libvirt

INTERVAL = 1.0


def poll_until_off(is_off, sleep, clock, deadline, interval=INTERVAL):
    """Read (is_off()), then sleep interval, until a read says off.

    Returns (clock() just after the read that saw it off, reads made).
    TimeoutError once a read that is not off ends past deadline.
    """
    reads = 0
    while True:
        off = is_off()
        noticed = clock()
        reads += 1
        if off:
            return noticed, reads
        if noticed > deadline:
            raise TimeoutError(f'not off after {reads} reads')
        sleep(interval)


class PollerThread:
    """poll_until_off on a guest of uri, by uuid, in a thread of its own
    and on a libvirt connection of its own (started by start())."""

    def __init__(self, uri, instance_uuid, timeout):
        self._uri = uri
        self._uuid = instance_uuid
        self._timeout = timeout
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f'poller-{instance_uuid[:8]}')
        self.noticed = None   # time.monotonic() it saw the guest off
        self.reads = None
        self.error = None

    def start(self):
        self._thread.start()

    def _run(self):
        try:
            conn = libvirt.open(self._uri)
            try:
                domain = conn.lookupByUUIDString(self._uuid)
                self.noticed, self.reads = poll_until_off(
                    lambda: domain.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF,
                    time.sleep, time.monotonic,
                    time.monotonic() + self._timeout)
            finally:
                conn.close()
        except Exception as exc:   # reported by join(), in the main thread
            self.error = exc

    def join(self):
        """The time it noticed the guest off; raises what the poll hit."""
        self._thread.join(self._timeout + 5)
        if self._thread.is_alive():
            raise TimeoutError(f'poller of {self._uuid} still running')
        if self.error is not None:
            raise self.error
        return self.noticed
