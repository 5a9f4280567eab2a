"""The libvirt connection and its lifecycle-event thread.

libvirt delivers domain events on whichever thread runs its event loop.
The callback there only queues the event; a dispatcher thread reads the
queue and wakes whoever waits for that guest to stop, so no libvirt call
or log write ever happens on the event-loop thread.
"""

import collections
import logging
import queue
import threading

import libvirt

LOG = logging.getLogger(__name__)

_event_loop_lock = threading.Lock()
_event_loop_started = False

# Lifecycle events after which the guest is no longer running.
_OFF_EVENTS = frozenset([libvirt.VIR_DOMAIN_EVENT_STOPPED,
                         libvirt.VIR_DOMAIN_EVENT_UNDEFINED,
                         libvirt.VIR_DOMAIN_EVENT_CRASHED])


def _start_event_loop():
    """Run libvirt's default event loop on a daemon thread, once per
    process. It must be registered before the first connection opens."""
    global _event_loop_started
    with _event_loop_lock:
        if _event_loop_started:
            return
        libvirt.virEventRegisterDefaultImpl()
        # libvirt prints every error to stderr unless a handler is set;
        # the driver turns the errors it cares about into exceptions.
        libvirt.registerErrorHandler(lambda _ctx, _error: None, None)

        def run():
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=run, name='libvirt-event-loop',
                         daemon=True).start()
        _event_loop_started = True


class Host:
    def __init__(self, uri):
        self._uri = uri
        self._connection = None
        self._connect_lock = threading.Lock()
        self._events = queue.SimpleQueue()
        self._off_waiters = collections.defaultdict(set)
        self._waiters_lock = threading.Lock()
        self._dispatcher = None

    @property
    def uri(self):
        return self._uri

    def connect(self):
        _start_event_loop()
        if self._dispatcher is None:
            self._dispatcher = threading.Thread(
                target=self._dispatch_events, name='libvirt-events',
                daemon=True)
            self._dispatcher.start()
        return self.connection

    @property
    def connection(self):
        with self._connect_lock:
            if self._connection is not None and self._connection.isAlive():
                return self._connection
            if self._connection is not None:
                LOG.warning('libvirt connection to %s was lost; '
                            'reconnecting', self._uri)
            connection = libvirt.open(self._uri)
            connection.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                self._queue_lifecycle_event, None)
            self._connection = connection
            LOG.info('Connected to libvirt at %s (%s driver)', self._uri,
                     connection.getType())
            return connection

    def _queue_lifecycle_event(self, _conn, domain, event, detail, _opaque):
        self._events.put((domain, event, detail))

    def _dispatch_events(self):
        while True:
            domain, event, detail = self._events.get()
            try:
                uuid = domain.UUIDString()
            except libvirt.libvirtError:
                continue
            LOG.debug('Lifecycle event %d (detail %d) for %s', event, detail,
                      uuid)
            if event in _OFF_EVENTS:
                with self._waiters_lock:
                    waiters = list(self._off_waiters.get(uuid, ()))
                for waiter in waiters:
                    waiter.set()

    def watch_power_off(self, uuid, waiter):
        """Call waiter.set() when the guest stops, until
        unwatch_power_off()."""
        with self._waiters_lock:
            self._off_waiters[uuid].add(waiter)
        return waiter

    def unwatch_power_off(self, uuid, waiter):
        with self._waiters_lock:
            waiters = self._off_waiters.get(uuid)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._off_waiters[uuid]
