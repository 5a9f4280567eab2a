"""External instance events: a build or a migration waits for news from
outside the host (e.g. the network plugged the guest's port), which
arrives as external_instance_event on topic compute-alt, so it is
delivered while the host drains.

An event may arrive before anyone waits for it (the network can be
quicker than the hypervisor), so events nobody waits for are kept for a
while and satisfy a waiter that registers later.
"""

import logging
import threading
import time

from compute_agent import exception

LOG = logging.getLogger(__name__)

# How long an event nobody waits for is kept for a later waiter.
UNCLAIMED_EVENT_TTL = 600


def event_key(name, tag):
    return f'{name}-{tag}' if tag else name


class EventWaiter:
    def __init__(self, instance_uuid, keys, registry):
        self.instance_uuid = instance_uuid
        self._missing = set(keys)
        self._registry = registry
        self._lock = threading.Lock()
        self._all_arrived = threading.Event()
        if not self._missing:
            self._all_arrived.set()

    def _arrived(self, key):
        with self._lock:
            self._missing.discard(key)
            if not self._missing:
                self._all_arrived.set()

    def wait(self, timeout):
        """Wait up to timeout seconds; return the keys still missing
        (empty when all arrived). Stops listening either way."""
        try:
            self._all_arrived.wait(timeout)
        finally:
            self._registry.forget(self)
        with self._lock:
            return sorted(self._missing)

    def missing(self):
        with self._lock:
            return sorted(self._missing)


class InstanceEvents:
    """Owns, under its lock, the waiters of each instance and the events
    that came before anyone waited for them."""

    def __init__(self, timeout=300, timeout_is_fatal=True,
                 clock=time.monotonic):
        """:param timeout: how long wait_for waits (instance_event_timeout)
        :param timeout_is_fatal: whether an event missing then fails the
            operation (instance_event_timeout_is_fatal).
        """
        self._timeout = timeout
        self._timeout_is_fatal = timeout_is_fatal
        self._clock = clock
        self._lock = threading.Lock()
        self._waiters = {}      # instance uuid -> set of EventWaiter
        self._unclaimed = {}    # (instance uuid, key) -> arrival time

    def prepare(self, instance_uuid, keys):
        """Start listening for keys (see event_key) before the step that
        triggers them, so that none can slip by."""
        with self._lock:
            self._expire_unclaimed()
            early = {key for key in keys
                     if self._unclaimed.pop((instance_uuid, key), None)}
            waiter = EventWaiter(instance_uuid, set(keys) - early, self)
            self._waiters.setdefault(instance_uuid, set()).add(waiter)
            return waiter

    def wait_for(self, waiter, action, instance_uuid):
        """Wait for the events waiter listens for; raise when they do not
        all come in time and that is fatal."""
        missing = waiter.wait(self._timeout)
        if not missing:
            return
        text = (f'no {", ".join(missing)} event for instance '
                f'{instance_uuid} within {self._timeout} s')
        if self._timeout_is_fatal:
            raise exception.HypervisorError(
                action=action, instance_uuid=instance_uuid,
                reason=text + ' (instance_event_timeout)')
        LOG.warning('Going on with %s: %s', action, text)

    def deliver(self, instance_uuid, name, tag=None):
        """Hand an event to whoever waits for it; True when someone did,
        False when it is kept for a later waiter."""
        key = event_key(name, tag)
        with self._lock:
            waiters = [w for w in self._waiters.get(instance_uuid, ())
                       if key in w.missing()]
            if not waiters:
                self._expire_unclaimed()
                self._unclaimed[(instance_uuid, key)] = self._clock()
                return False
        for waiter in waiters:
            waiter._arrived(key)
        return True

    def forget(self, waiter):
        with self._lock:
            waiters = self._waiters.get(waiter.instance_uuid)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[waiter.instance_uuid]

    def waiting_for(self, instance_uuid):
        with self._lock:
            return sorted({key for waiter in
                           self._waiters.get(instance_uuid, ())
                           for key in waiter.missing()})

    def _expire_unclaimed(self):
        horizon = self._clock() - UNCLAIMED_EVENT_TTL
        for entry, arrived in list(self._unclaimed.items()):
            if arrived < horizon:
                del self._unclaimed[entry]
