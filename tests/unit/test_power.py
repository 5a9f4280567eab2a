"""The clean-then-forced power-off algorithm, on a simulated clock."""

import testtools

from compute_agent.virt.libvirt import power


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class FakeGuest(power.Guest):
    """A guest that powers off `acpi_delay` seconds after the first
    shutdown request (never, when None); or at `off_at` on its own."""

    def __init__(self, clock, acpi_delay=None, off_at=None,
                 shutdown_error=None):
        self.clock = clock
        self.acpi_delay = acpi_delay
        self.off_at = off_at
        self.shutdown_error = shutdown_error
        self.requests = []
        self.destroyed_at = None

    def is_off(self):
        return self.off_at is not None and self.clock.now >= self.off_at

    def request_shutdown(self):
        if self.shutdown_error:
            raise self.shutdown_error
        if self.is_off():
            return False
        self.requests.append(self.clock.now)
        if self.acpi_delay is not None and (
                self.off_at is None or self.off_at > self.clock.now):
            candidate = self.clock.now + self.acpi_delay
            self.off_at = min(self.off_at or candidate, candidate)
        return True

    def destroy(self):
        if self.is_off():
            return False
        self.destroyed_at = self.off_at = self.clock.now
        return True


class FakeOffEvent:
    """Delivers the lifecycle event when the guest goes off, unless
    `delivered` is False (a lost event: only polling can notice)."""

    def __init__(self, clock, guest, delivered=True):
        self.clock, self.guest, self.delivered = clock, guest, delivered
        self.waits = []

    def wait(self, timeout):
        self.waits.append(timeout)
        off_at = self.guest.off_at
        if self.delivered and off_at is not None and \
                off_at <= self.clock.now + timeout:
            self.clock.now = max(self.clock.now, off_at)
            return True
        self.clock.now += timeout
        return False


class PowerOffTest(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.clock = FakeClock()

    def _power_off(self, guest, clean=True, timeout=60, retry=10,
                   delivered=True):
        self.event = FakeOffEvent(self.clock, guest, delivered)
        return power.power_off(guest, self.event, clean, timeout, retry,
                               clock=self.clock)

    def test_clean_returns_when_event_arrives_not_at_next_poll(self):
        guest = FakeGuest(self.clock, acpi_delay=1.3)
        result = self._power_off(guest)
        self.assertEqual(('clean', 'clean', 'acpi'),
                         (result.requested, result.result, result.method))
        self.assertAlmostEqual(1.3, result.seconds)
        self.assertIsNone(guest.destroyed_at)
        self.assertEqual(1, result.shutdown_requests)

    def test_lost_event_is_caught_by_the_safety_net_poll(self):
        guest = FakeGuest(self.clock, acpi_delay=3.0)
        result = self._power_off(guest, delivered=False)
        self.assertEqual('clean', result.result)
        # Noticed at the first poll after 3.0 s, not at the retry interval.
        self.assertLessEqual(result.seconds,
                             3.0 + power.SAFETY_NET_POLL)
        self.assertLess(result.seconds, 10)

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
        self.assertTrue(self.event.waits)
        self.assertLessEqual(max(self.event.waits), power.SAFETY_NET_POLL)


def _obey_on_call(guest, call, delay):
    calls = []
    original = FakeGuest.request_shutdown

    def request_shutdown():
        calls.append(1)
        if len(calls) == call:
            guest.acpi_delay = delay
        return original(guest)
    return request_shutdown
