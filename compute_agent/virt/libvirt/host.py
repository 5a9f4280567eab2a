"""The libvirt connection, its lifecycle-event thread and its reconnects.

libvirt delivers domain events on whichever thread runs its event loop,
which blocks in C and so is a native thread in every concurrency mode
(compute_agent/concurrency.py). The callback there only hands the event
over (a concurrency.Handoff, which in eventlet mode wakes the hub); a
dispatcher thread takes it and wakes whoever waits for that guest to
stop, so no libvirt call, lock or log write ever happens on the
event-loop thread. Both threads are supervised (supervisor.py): an
unexpected error is logged and the loop goes on.

Every call on the connection, and on the domains and connections it
returns, may block on libvirtd: the connection is a
concurrency.blocking_proxy, so in eventlet mode those calls run on
native threads and never stall the green threads.

When libvirtd goes away (restarted, upgraded, crashed) the connection
dies and its events stop. libvirt then runs the connection's close
callback, again on the event-loop thread, which only hands the loss over
too; the dispatcher flags it, and a reconnect thread opens a new
connection and registers the event callback on it at once, retrying with
a growing pause while libvirtd is down, so that a power-off waiting for
its guest is woken by events again as soon as libvirtd is back, not only
by the state poll.
"""

import collections
import logging
import threading
import time

import libvirt

from compute_agent import concurrency
from compute_agent.virt.libvirt import supervisor

LOG = logging.getLogger(__name__)

_event_loop_lock = threading.Lock()
_event_loop = None

# Lifecycle events after which the guest is no longer running.
_OFF_EVENTS = frozenset([libvirt.VIR_DOMAIN_EVENT_STOPPED,
                         libvirt.VIR_DOMAIN_EVENT_UNDEFINED,
                         libvirt.VIR_DOMAIN_EVENT_CRASHED])

# Pauses between attempts to reconnect while libvirtd is down. The
# longest is also the longest a power-off waits for its events after
# libvirtd is back, so it matches the power-off's state poll.
RECONNECT_FIRST_PAUSE = 0.1
RECONNECT_MAX_PAUSE = 2.0

# What the event-loop thread hands the dispatcher when libvirt closes the
# connection (a lifecycle event is a tuple).
_CONNECTION_CLOSED = 'connection-closed'
# Objects whose methods may block on libvirtd, proxied with the connection.
_BLOCKING_TYPES = (libvirt.virConnect, libvirt.virDomain, libvirt.virStream,
                   libvirt.virStoragePool, libvirt.virStorageVol)


def _start_event_loop():
    """Run libvirt's default event loop on a supervised native daemon
    thread, once per process, and return that loop (a SupervisedLoop). It
    must be registered before the first connection opens."""
    global _event_loop
    with _event_loop_lock:
        if _event_loop is None:
            libvirt.virEventRegisterDefaultImpl()
            # libvirt prints every error to stderr unless a handler is
            # set; the driver turns the errors it cares about into
            # exceptions.
            libvirt.registerErrorHandler(lambda _ctx, _error: None, None)
            _event_loop = supervisor.SupervisedLoop(
                'libvirt-event-loop', libvirt.virEventRunDefaultImpl,
                native=True)
            _event_loop.start()
        return _event_loop


class Host:
    """One libvirt connection, its events and its reconnects.

    Locks and what they guard: ``_connect_lock``, the connection and its
    callback ids (replaced on a reconnect); ``_status_lock``, the reconnect
    counters health() reports; ``_waiters_lock``, the power-off waiters
    per guest uuid. The event handoff is thread-safe by itself.
    """

    def __init__(self, uri, clock=time.monotonic):
        """:param clock: read on the event-loop thread when an event
            arrives (a waiter's seen_at)."""
        self._uri = uri
        self._clock = clock
        # The connection and its lifecycle callback id, replaced under
        # _connect_lock.
        self._connection = None
        self._lifecycle_callback = None
        self._connect_lock = threading.Lock()
        self._connection_lost = threading.Event()
        self._ever_connected = False
        self._reconnect_backoff = supervisor.Backoff(
            RECONNECT_FIRST_PAUSE, RECONNECT_MAX_PAUSE)
        # How reconnects went, for health().
        self._status_lock = threading.Lock()
        self._reconnects = 0
        self._reconnect_failing = False
        self._reconnect_error = None
        self._reconnect_error_at = None
        self._events = concurrency.Handoff()
        self._off_waiters = collections.defaultdict(set)
        self._waiters_lock = threading.Lock()
        self._event_loop = None
        self._dispatcher = None
        self._reconnector = None

    @property
    def uri(self):
        return self._uri

    def connect(self):
        self._event_loop = _start_event_loop()
        if self._dispatcher is None:
            self._dispatcher = supervisor.SupervisedLoop(
                'libvirt-events', self._dispatch_next_event)
            self._dispatcher.start()
            self._reconnector = supervisor.SupervisedLoop(
                'libvirt-reconnect', self._reconnect_when_lost)
            self._reconnector.start()
        return self.connection

    @property
    def connection(self):
        with self._connect_lock:
            old = self._connection
            if old is not None and old.isAlive():
                return old
            if old is not None:
                LOG.warning('libvirt connection to %s was lost; '
                            'reconnecting', self._uri)
                self._close(old)
                self._connection = None
            connection = concurrency.blocking_proxy(
                concurrency.run_blocking(libvirt.open, self._uri),
                autowrap=_BLOCKING_TYPES)
            self._lifecycle_callback = None
            try:
                self._lifecycle_callback = (
                    connection.domainEventRegisterAny(
                        None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                        self._queue_lifecycle_event, None))
                connection.registerCloseCallback(self._on_connection_closed,
                                                 None)
            except libvirt.libvirtError:
                self._close(connection)
                raise
            self._connection = connection
            if self._ever_connected:
                with self._status_lock:
                    self._reconnects += 1
                LOG.info('Reconnected to libvirt at %s; lifecycle events '
                         'are delivered again', self._uri)
            else:
                self._ever_connected = True
                LOG.info('Connected to libvirt at %s (%s driver)',
                         self._uri, connection.getType())
            return connection

    def lookup(self, instance_uuid):
        """The guest's domain on the current connection; None when it is
        not defined."""
        try:
            return self.connection.lookupByUUIDString(instance_uuid)
        except libvirt.libvirtError as error:
            if error.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise

    def _close(self, connection):
        """Let go of a dead connection. Its daemon is gone, so each step
        may fail; libvirt still drops the callbacks on this side."""
        releases = [connection.unregisterCloseCallback, connection.close]
        if self._lifecycle_callback is not None:
            callback = self._lifecycle_callback
            releases.insert(0, lambda: connection.domainEventDeregisterAny(
                callback))
        for release in releases:
            try:
                release()
            except libvirt.libvirtError as error:
                LOG.debug('Closing the lost libvirt connection: %s', error)

    def _on_connection_closed(self, _conn, _reason, _opaque):
        # On the event-loop thread: only hand it over (see the module doc).
        self._events.put(_CONNECTION_CLOSED)

    def _reconnect_when_lost(self):
        """One step of the reconnect thread: wait for a lost connection,
        then replace it (connection does), retrying while libvirtd is
        down."""
        self._connection_lost.wait()
        self._connection_lost.clear()
        try:
            self.connection  # replaces a dead connection
        except libvirt.libvirtError as error:
            pause = self._reconnect_backoff.next_pause()
            with self._status_lock:
                first_failure = not self._reconnect_failing
                self._reconnect_failing = True
                self._reconnect_error = supervisor.describe(error)
                self._reconnect_error_at = time.monotonic()
            # Once at WARNING: libvirtd may stay down for a while.
            LOG.log(logging.WARNING if first_failure else logging.DEBUG,
                    'Could not reconnect to libvirt at %s (%s); retrying '
                    'every %.1f s at most', self._uri,
                    error.get_error_message(), RECONNECT_MAX_PAUSE)
            self._connection_lost.set()
            time.sleep(pause)
            return
        self._reconnect_backoff.reset()
        with self._status_lock:
            self._reconnect_failing = False

    def _queue_lifecycle_event(self, _conn, domain, event, detail, _opaque):
        # When the event reached the agent, the start of its detection
        # lag (compute_agent/metrics.py): read here, on the event-loop
        # thread, before the handoff's own delay.
        self._events.put((domain, event, detail, self._clock()))

    def _dispatch_next_event(self):
        handed_over = self._events.get()
        if handed_over == _CONNECTION_CLOSED:
            self._connection_lost.set()
            return
        domain, event, detail, seen_at = handed_over
        try:
            uuid = domain.UUIDString()
        except libvirt.libvirtError:
            return
        LOG.debug('Lifecycle event %d (detail %d) for %s', event, detail,
                  uuid)
        if event in _OFF_EVENTS:
            with self._waiters_lock:
                waiters = list(self._off_waiters.get(uuid, ()))
            for waiter in waiters:
                waiter.set(seen_at)

    def watch_power_off(self, uuid, waiter):
        """Call waiter.set(seen_at) when the guest stops, until
        unwatch_power_off(); seen_at is the time.monotonic() at which the
        event reached the agent (by the Host's clock)."""
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

    def health(self):
        """Whether events can reach power-offs: the connection, the
        threads, and the last error any of them met."""
        # Read without _connect_lock: a reconnect in progress may hold it
        # for as long as libvirt.open() takes, and a status report must
        # not wait for that.
        connection = self._connection
        loops = {name: (loop.health() if loop is not None else
                        {'state': supervisor.STOPPED, 'restarts': 0,
                         'last_error': None, 'last_error_at': None})
                 for name, loop in (('event_loop', self._event_loop),
                                    ('dispatcher', self._dispatcher),
                                    ('reconnect', self._reconnector))}
        with self._status_lock:
            reconnects = self._reconnects
            errors = [(self._reconnect_error_at, self._reconnect_error)]
        errors += [(loop['last_error_at'], loop['last_error'])
                   for loop in loops.values()]
        errors = [error for error in errors if error[0] is not None]
        return {
            'uri': self._uri,
            'connected': connection is not None and bool(
                connection.isAlive()),
            'reconnects': reconnects,
            'event_loop': loops['event_loop']['state'],
            'event_loop_restarts': loops['event_loop']['restarts'],
            'dispatcher': loops['dispatcher']['state'],
            'dispatcher_restarts': loops['dispatcher']['restarts'],
            'last_error': max(errors)[1] if errors else None,
        }
