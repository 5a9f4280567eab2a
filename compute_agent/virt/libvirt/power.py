"""Clean-then-forced power-off, independent of libvirt's API.

The guest is asked to shut down; the request is re-sent every retry
interval, because a guest can miss an ACPI event while it boots or is
busy. The wait ends the moment the guest is reported off: the lifecycle
event wakes it at once, and a state poll every few seconds is only the
safety net for a lost event. When the timeout runs out the guest is
destroyed.
"""

import time

from compute_agent.virt import driver

# How often the guest's state is polled while waiting for its lifecycle
# event, in case the event is lost (e.g. the event connection dropped).
SAFETY_NET_POLL = 2.0


class Guest:
    """What the algorithm needs from a guest; the libvirt driver adapts a
    domain to it."""

    def is_off(self):
        raise NotImplementedError

    def request_shutdown(self):
        """Ask the guest to power off. Returns False when the guest turned
        out to be off already."""
        raise NotImplementedError

    def destroy(self):
        """Pull the plug. Returns False when it was off already."""
        raise NotImplementedError


def power_off(guest, off_event, clean, timeout, retry_interval,
              clock=time.monotonic, safety_net_poll=SAFETY_NET_POLL):
    """Power guest off; return a driver.PowerOffResult.

    :param off_event: a threading.Event-like object set when the guest's
        lifecycle event says it stopped. Subscribe it before calling, so an
        event that arrives between the request and the wait is not missed.
    """
    requested = 'clean' if clean else 'forced'
    started = clock()

    def result(how, method, requests=0):
        return driver.PowerOffResult(
            requested=requested, result=how, method=method,
            seconds=clock() - started, timeout=timeout,
            shutdown_requests=requests)

    if guest.is_off():
        return result('clean', 'already-off')
    if not clean or timeout <= 0:
        return result('forced', 'destroy' if guest.destroy()
                      else 'already-off')

    deadline = started + timeout
    requests = 0
    while clock() < deadline:
        requests += 1
        if not guest.request_shutdown():
            return result('clean', 'already-off', requests)
        next_request = min(clock() + retry_interval, deadline)
        while clock() < next_request:
            wait = min(next_request - clock(), safety_net_poll)
            if off_event.wait(max(wait, 0)) or guest.is_off():
                return result('clean', 'acpi', requests)
    if guest.is_off() or not guest.destroy():
        # It went off by itself just as the time ran out.
        return result('clean', 'acpi', requests)
    return result('forced', 'destroy', requests)
