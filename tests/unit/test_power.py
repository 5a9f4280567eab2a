"""The clean-then-forced power-off algorithm, on a simulated clock."""

import logging
import math

import fixtures

from compute_agent.virt import power
from tests.unit import base


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class FakeGuest(power.Guest):
    """A guest that powers off `acpi_delay` seconds after the first
    shutdown request (never, when None); or at `off_at` on its own."""

    name = 'guest-1'

    def __init__(self, clock, acpi_delay=None, off_at=None,
                 shutdown_error=None, agent=None, unreachable=None):
        """:param agent: None (no guest agent), 'obeys' or 'ignores'.
        :param unreachable: (start, end): the hypervisor cannot be reached
            from start until end (e.g. libvirtd restarts)."""
        self.clock = clock
        self.unreachable = unreachable
        self.acpi_delay = acpi_delay
        self.off_at = off_at
        self.shutdown_error = shutdown_error
        self.agent = agent
        self.requests = []
        self.methods = []
        self.destroyed_at = None

    def _reach(self):
        if self.unreachable is not None and \
                self.unreachable[0] <= self.clock.now < self.unreachable[1]:
            raise power.GuestUnreachable('libvirtd is restarting')

    def is_off(self):
        self._reach()
        return self.off_at is not None and self.clock.now >= self.off_at

    def request_shutdown(self, method):
        self._reach()
        if self.shutdown_error:
            raise self.shutdown_error
        if self.is_off():
            return False
        self.methods.append(method)
        if method == power.GUEST_AGENT:
            if self.agent is None:
                raise power.GuestAgentUnavailable('no agent channel')
            if self.agent == 'obeys':
                self.off_at = self.clock.now + 0.2
            return True
        self.requests.append(self.clock.now)
        if self.acpi_delay is not None and (
                self.off_at is None or self.off_at > self.clock.now):
            candidate = self.clock.now + self.acpi_delay
            self.off_at = min(self.off_at or candidate, candidate)
        return True

    def destroy(self):
        self._reach()
        if self.is_off():
            return False
        self.destroyed_at = self.off_at = self.clock.now
        return True


class FakeControl(power.PowerOffControl):
    """Waits on the simulated clock. Delivers the lifecycle event when the
    guest goes off, unless `delivered` is False (a lost event: only the
    poll can notice), and a forced request at `force_at`."""

    def __init__(self, clock, guest, delivered=True, force_at=None):
        super().__init__(clock=clock)
        self.clock, self.guest, self.delivered = clock, guest, delivered
        self.force_at = force_at
        self.waits = []

    def wait(self, timeout):
        self.waits.append(timeout)
        wake_times = [self.clock.now + timeout]
        event_at = None
        if self.delivered and self.guest.off_at is not None:
            event_at = max(self.clock.now, self.guest.off_at)
            wake_times.append(event_at)
        if self.force_at is not None:
            wake_times.append(max(self.clock.now, self.force_at))
        self.clock.now = min(wake_times)
        if event_at is not None and self.clock.now >= event_at:
            self.set()   # as the event dispatcher does
        if self.force_at is not None and self.clock.now >= self.force_at:
            self.force()
        return self.clock.now < wake_times[0]


class PowerOffTest(base.TestCase):
    def setUp(self):
        super().setUp()
        self.clock = FakeClock()

    def _power_off(self, guest, clean=True, timeout=60, retry=10,
                   delivered=True, force_at=None, use_guest_agent=False):
        self.control = FakeControl(self.clock, guest, delivered, force_at)
        return power.power_off(guest, self.control, clean, timeout, retry,
                               use_guest_agent=use_guest_agent,
                               clock=self.clock)

    def test_clean_returns_when_event_arrives_not_at_next_poll(self):
        guest = FakeGuest(self.clock, acpi_delay=1.3)
        result = self._power_off(guest)
        self.assertEqual(('clean', 'clean', 'acpi'),
                         (result.requested, result.result, result.method))
        self.assertAlmostEqual(1.3, result.seconds)
        self.assertIsNone(guest.destroyed_at)
        self.assertEqual(1, result.shutdown_requests)
        self.assertEqual('event', result.detected_by)

    def test_lost_event_is_caught_by_the_safety_net_poll(self):
        guest = FakeGuest(self.clock, acpi_delay=3.0)
        result = self._power_off(guest, delivered=False)
        self.assertEqual('clean', result.result)
        # Off at 3.0 s, noticed by the first poll after that, not at the
        # re-sent request (10 s).
        first_poll_after = math.ceil(3.0 / power.SAFETY_NET_POLL) * \
            power.SAFETY_NET_POLL
        self.assertAlmostEqual(first_poll_after, result.seconds)
        self.assertEqual(1, result.shutdown_requests)
        self.assertEqual('poll', result.detected_by)

    def test_the_result_says_when_the_event_arrived_off_the_wire(self):
        guest = FakeGuest(self.clock, acpi_delay=1.3)
        result = self._power_off(guest)
        # FakeControl delivers the event at the moment the guest is off.
        self.assertAlmostEqual(self.clock.now, result.off_event_at)
        self.assertNotIn('off_event_at', result.to_record())

    def test_no_event_time_when_the_poll_saw_the_guest_off(self):
        guest = FakeGuest(self.clock, acpi_delay=3.0)
        self.assertIsNone(
            self._power_off(guest, delivered=False).off_event_at)

    def test_hypervisor_outage_during_the_wait_is_ridden_out(self):
        # libvirtd restarts 1 s into the wait and is back 4 s later; the
        # guest goes off after that, and its event ends the wait.
        guest = FakeGuest(self.clock, acpi_delay=8, unreachable=(101, 105))
        result = self._power_off(guest)
        self.assertEqual(('clean', 'acpi', 'event', 1),
                         (result.result, result.method, result.detected_by,
                          result.shutdown_requests))
        self.assertAlmostEqual(8.0, result.seconds)
        self.assertIsNone(guest.destroyed_at)

    def test_request_missed_in_an_outage_is_resent_at_the_next_poll(self):
        guest = FakeGuest(self.clock, unreachable=(110, 111))
        guest.request_shutdown = _obey_on_call(guest, call=3, delay=0.5)
        result = self._power_off(guest, timeout=60, retry=10)
        # Asked at 100, missed at 110, asked again at the next poll.
        self.assertEqual([100.0, 100.0 + 10 + power.SAFETY_NET_POLL],
                         guest.requests)
        self.assertEqual(('clean', 2), (result.result,
                                        result.shutdown_requests))

    def test_hypervisor_still_away_at_the_deadline_is_an_error(self):
        guest = FakeGuest(self.clock, unreachable=(105, 1000))
        self.assertRaises(power.GuestUnreachable, self._power_off, guest,
                          timeout=20)

    def test_request_is_resent_every_retry_interval(self):
        guest = FakeGuest(self.clock)   # ignores ACPI
        result = self._power_off(guest, timeout=35, retry=10)
        self.assertEqual([100.0, 110.0, 120.0, 130.0], guest.requests)
        self.assertEqual(4, result.shutdown_requests)
        self.assertEqual(('forced', 'destroy'), (result.result,
                                                 result.method))

    def test_ignoring_guest_is_destroyed_when_timeout_runs_out(self):
        guest = FakeGuest(self.clock)
        result = self._power_off(guest, timeout=7, retry=10)
        self.assertEqual(107.0, guest.destroyed_at)
        self.assertEqual('forced', result.result)
        self.assertEqual('clean', result.requested)
        self.assertEqual(7, result.timeout)
        self.assertAlmostEqual(7.0, result.seconds)

    def test_guest_that_obeys_a_later_request_is_clean(self):
        guest = FakeGuest(self.clock)
        guest.acpi_delay = None
        guest.request_shutdown = _obey_on_call(guest, call=2, delay=0.5)
        result = self._power_off(guest, timeout=60, retry=10)
        self.assertEqual('clean', result.result)
        self.assertAlmostEqual(10.5, result.seconds)

    def test_forced_request_destroys_without_asking(self):
        guest = FakeGuest(self.clock, acpi_delay=1)
        result = self._power_off(guest, clean=False, timeout=0)
        self.assertEqual([], guest.requests)
        self.assertEqual(('forced', 'forced', 'destroy'),
                         (result.requested, result.result, result.method))

    def test_timeout_zero_destroys_at_once(self):
        guest = FakeGuest(self.clock, acpi_delay=1)
        result = self._power_off(guest, clean=True, timeout=0)
        self.assertEqual([], guest.requests)
        self.assertEqual(('clean', 'forced'),
                         (result.requested, result.result))
        self.assertEqual(100.0, guest.destroyed_at)

    def test_guest_already_off(self):
        guest = FakeGuest(self.clock, off_at=50.0)
        for clean in (True, False):
            result = self._power_off(guest, clean=clean)
            self.assertEqual(('clean', 'already-off'),
                             (result.result, result.method))
        self.assertIsNone(guest.destroyed_at)

    def test_guest_going_off_as_deadline_passes_is_not_forced(self):
        guest = FakeGuest(self.clock, off_at=110.0)
        result = self._power_off(guest, timeout=10, retry=10,
                                 delivered=False)
        self.assertEqual('clean', result.result)
        self.assertIsNone(guest.destroyed_at)

    def test_libvirt_error_propagates(self):
        guest = FakeGuest(self.clock, shutdown_error=RuntimeError('boom'))
        self.assertRaises(RuntimeError, self._power_off, guest)

    def test_waits_never_exceed_the_poll_interval(self):
        guest = FakeGuest(self.clock)
        self._power_off(guest, timeout=30, retry=10, delivered=False)
        self.assertTrue(self.control.waits)
        self.assertLessEqual(max(self.control.waits), power.SAFETY_NET_POLL)

    def test_forced_request_cuts_a_clean_wait_short(self):
        guest = FakeGuest(self.clock)   # ignores ACPI
        result = self._power_off(guest, timeout=60, force_at=112.5)
        self.assertEqual(('clean', 'forced', 'destroy'),
                         (result.requested, result.result, result.method))
        self.assertEqual(112.5, guest.destroyed_at)

    def test_force_before_the_wait_destroys_at_once(self):
        guest = FakeGuest(self.clock, acpi_delay=1)
        self.control = FakeControl(self.clock, guest)
        self.control.force()
        result = power.power_off(guest, self.control, True, 60, 10,
                                 clock=self.clock)
        self.assertEqual([], guest.requests)
        self.assertEqual('forced', result.result)

    def test_guest_agent_is_asked_first(self):
        guest = FakeGuest(self.clock, agent='obeys')
        result = self._power_off(guest, use_guest_agent=True)
        self.assertEqual(('clean', 'guest-agent'),
                         (result.result, result.method))
        self.assertEqual([power.GUEST_AGENT], guest.methods)

    def test_acpi_follows_when_the_guest_agent_cannot_answer(self):
        guest = FakeGuest(self.clock, acpi_delay=1.0, agent=None)
        result = self._power_off(guest, use_guest_agent=True)
        self.assertEqual(('clean', 'acpi'), (result.result, result.method))
        self.assertEqual([power.GUEST_AGENT, power.ACPI], guest.methods)

    def test_fallback_from_the_guest_agent_is_logged_with_its_reason(self):
        log = self.useFixture(fixtures.FakeLogger(
            name=power.__name__, format='%(levelname)s %(message)s'))
        guest = FakeGuest(self.clock, agent=None)
        self._power_off(guest, timeout=15, retry=10, use_guest_agent=True)
        # One line for each request that fell back (the first one and the
        # re-sent one), then ACPI was ignored until the destroy.
        self.assertEqual(
            ['WARNING Instance guest-1: the guest agent did not take the '
             'shutdown request (no agent channel); asking through the ACPI '
             'power button instead'] * 2,
            log.output.splitlines())

    def test_guest_agent_that_takes_the_request_logs_nothing(self):
        log = self.useFixture(fixtures.FakeLogger(
            name=power.__name__, level=logging.DEBUG))
        self._power_off(FakeGuest(self.clock, agent='obeys'),
                        use_guest_agent=True)
        self.assertEqual('', log.output)

    def test_guest_agent_request_ignored_falls_back_to_destroy(self):
        guest = FakeGuest(self.clock, agent='ignores')
        result = self._power_off(guest, timeout=25, retry=10,
                                 use_guest_agent=True)
        self.assertEqual(('forced', 'destroy'),
                         (result.result, result.method))
        self.assertEqual([power.GUEST_AGENT] * 3, guest.methods)

    def test_progress_while_waiting(self):
        control = power.PowerOffControl(clock=self.clock)
        self.assertIsNone(control.progress())
        control.waiting(60)
        control.requested(power.ACPI)
        self.clock.now += 12.5
        self.assertEqual({'elapsed': 12.5, 'timeout': 60, 'method': 'acpi',
                          'requests': 1}, control.progress())


def _obey_on_call(guest, call, delay):
    calls = []
    original = FakeGuest.request_shutdown

    def request_shutdown(method):
        calls.append(1)
        if len(calls) == call:
            guest.acpi_delay = delay
        return original(guest, method)
    return request_shutdown
