"""Clean-then-forced power-off, independent of any hypervisor's API.

A driver adapts its guest to ``Guest`` and calls ``power_off``; the
manager hands it a ``PowerOffControl`` through which a forced request or
the guest's lifecycle event reaches the wait.

The guest is asked to shut down (through its guest agent first when it has
one, else the ACPI power button); the request is re-sent every retry
interval, because a guest can miss it while it boots or is busy. The wait
ends the moment the guest is reported off: the lifecycle event wakes it at
once, and a state poll every few seconds is only the safety net for a lost
event. When the timeout runs out, or a forced request arrives meanwhile,
the guest is destroyed.

The hypervisor may go away meanwhile (e.g. libvirtd restarts): the wait
goes on, a request that could not be sent is sent again at the next poll,
and the events come back with the reconnect. The result says whether the
wait was ended by the lifecycle event or by the poll.
"""

import logging
import threading
import time

from compute_agent import failpoints
from compute_agent.virt import driver

LOG = logging.getLogger(__name__)

# How often the guest's state is polled while waiting for its lifecycle
# event, in case the event is lost (e.g. the event connection dropped).
SAFETY_NET_POLL = 2.0

GUEST_AGENT = 'guest-agent'
ACPI = 'acpi'

# What noticed that the guest had gone off (PowerOffResult.detected_by).
BY_EVENT = 'event'
BY_POLL = 'poll'


class GuestAgentUnavailable(Exception):
    """The guest agent did not take the shutdown request."""


class GuestUnreachable(Exception):
    """The hypervisor cannot be reached for now (e.g. libvirtd is
    restarting): the guest's state is unknown, a request was not sent."""


class Guest:
    """What the algorithm needs from a guest; a driver adapts its own
    guest to it (virt/libvirt/domain_guest.py)."""

    # What log lines call the guest (its instance's uuid).
    name = None

    def is_off(self):
        """Raises GuestUnreachable (as the others do) when the hypervisor
        cannot be asked."""
        raise NotImplementedError

    def request_shutdown(self, method):
        """Ask the guest to power off by method (ACPI or GUEST_AGENT).
        Returns False when the guest turned out to be off already; raises
        GuestAgentUnavailable, saying why, when the agent cannot take the
        request."""
        raise NotImplementedError

    def destroy(self):
        """Pull the plug. Returns False when it was off already."""
        raise NotImplementedError


class PowerOffControl:
    """The line between a waiting power-off and the rest of the agent.

    The driver's event dispatcher calls set() when the guest stops, with
    the time the event reached the agent; a forced request for the same
    guest calls force(); both wake the wait at once.
    progress() tells the status report how the wait is going.
    """

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._forced = False
        self._off_event_at = None
        self._started = None
        self._timeout = None
        self._method = None
        self._requests = 0

    def set(self, seen_at=None):
        """The guest went off; seen_at (the clock's time) is when its
        event reached the agent, now if not given."""
        with self._lock:
            if self._off_event_at is None:
                self._off_event_at = self._clock() if seen_at is None \
                    else seen_at
        self._wake.set()

    def force(self):
        with self._lock:
            self._forced = True
        self._wake.set()

    @property
    def forced(self):
        with self._lock:
            return self._forced

    @property
    def off_event_at(self):
        """When the guest's off event reached the agent, or None."""
        with self._lock:
            return self._off_event_at

    def wait(self, timeout):
        woken = self._wake.wait(timeout)
        self._wake.clear()
        return woken

    def waiting(self, timeout):
        with self._lock:
            self._started, self._timeout = self._clock(), timeout

    def requested(self, method):
        with self._lock:
            self._method = method
            self._requests += 1

    def progress(self):
        """None until a clean power-off waits, then where it stands."""
        with self._lock:
            if self._started is None:
                return None
            return {'elapsed': round(self._clock() - self._started, 3),
                    'timeout': self._timeout, 'method': self._method,
                    'requests': self._requests}


def power_off(guest, control, clean, timeout, retry_interval,
              use_guest_agent=False, clock=time.monotonic,
              safety_net_poll=SAFETY_NET_POLL):
    """Power guest off; return a driver.PowerOffResult.

    :param control: a PowerOffControl registered for the guest's lifecycle
        events before this is called, so an event that arrives between the
        request and the wait is not missed.
    """
    requested = 'clean' if clean else 'forced'
    started = clock()
    requests = 0

    def result(how, method, detected_by=None, off_event_at=None):
        return driver.PowerOffResult(
            requested=requested, result=how, method=method,
            seconds=clock() - started, timeout=timeout,
            shutdown_requests=requests, detected_by=detected_by,
            off_event_at=off_event_at)

    def noticed_off():
        off_event_at = control.off_event_at
        return result('clean', method or 'already-off',
                      BY_POLL if off_event_at is None else BY_EVENT,
                      off_event_at)

    def forced_off():
        failpoints.reach(failpoints.POWER_OFF_DESTROYING)
        if guest.destroy():
            return result('forced', 'destroy')
        return result('clean', method or 'already-off')

    method = None
    if guest.is_off():
        return result('clean', 'already-off')
    if not clean or timeout <= 0 or control.forced:
        return forced_off()

    control.waiting(timeout)
    deadline = started + timeout
    next_request = started
    while clock() < deadline:
        if clock() >= next_request:
            try:
                sent = _request_shutdown(guest, use_guest_agent)
            except GuestUnreachable:
                # The hypervisor is away: ask again at the next poll.
                next_request = min(clock() + safety_net_poll, deadline)
            else:
                if sent is None:
                    return result('clean', 'already-off')
                method = sent
                requests += 1
                control.requested(method)
                if requests == 1:
                    failpoints.reach(failpoints.POWER_OFF_REQUESTED)
                next_request = min(clock() + retry_interval, deadline)
        control.wait(max(min(next_request - clock(), safety_net_poll), 0))
        if _is_off_if_reachable(guest):
            return noticed_off()
        if control.forced:
            return forced_off()
    if guest.is_off():
        # It went off by itself just as the time ran out.
        return noticed_off()
    return forced_off()


def _is_off_if_reachable(guest):
    """Whether the guest is off; False while the hypervisor is away."""
    try:
        return guest.is_off()
    except GuestUnreachable:
        return False


def _request_shutdown(guest, use_guest_agent):
    """Send one shutdown request; return the method that took it, or None
    when the guest is off already. The guest agent goes first when the
    guest has one; ACPI is the fallback when the agent does not answer."""
    if use_guest_agent:
        try:
            return GUEST_AGENT if guest.request_shutdown(GUEST_AGENT) \
                else None
        except GuestAgentUnavailable as error:
            reason = str(error)
        # The status's method shows the ACPI request too, but only this
        # line says why the agent was passed over (e.g. not connected yet:
        # the guest is still booting). Logged outside the except block,
        # where oslo.log would append the exception again.
        LOG.warning('Instance %s: the guest agent did not take the '
                    'shutdown request (%s); asking through the ACPI power '
                    'button instead', guest.name, reason)
    return ACPI if guest.request_shutdown(ACPI) else None
