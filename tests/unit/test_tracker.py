"""The in-flight operation tracker and its drain wait."""

import threading
import time


from compute_agent import tracker
from tests.unit import base

UUID_A = '6f1a5a3e-58f5-4c5e-9b89-0c6f1d2b7a10'
UUID_B = '0d7c3c84-3f7e-4f33-a8a3-8f4e47d9c0b1'
# Upper bound for a thread to do trivial work; generous so that a loaded
# test host never fails a test, and never reached when the code is right.
JOIN_TIMEOUT = 30


class FakeClock:
    def __init__(self, now=100.0):
        self.now = now

    def __call__(self):
        return self.now


class ScriptedClock:
    """Returns the given readings in turn, then repeats the last one."""

    def __init__(self, *readings):
        self._readings = list(readings)

    def __call__(self):
        if len(self._readings) > 1:
            return self._readings.pop(0)
        return self._readings[0]


class WatchedClock:
    """Stands still (at 0) and lets a test wait for its readings."""

    def __init__(self):
        self._readings = 0
        self._read = threading.Condition()

    def __call__(self):
        with self._read:
            self._readings += 1
            self._read.notify_all()
        return 0.0

    def readings(self):
        with self._read:
            return self._readings

    def wait_for_readings(self, count):
        with self._read:
            return self._read.wait_for(lambda: self._readings >= count,
                                       JOIN_TIMEOUT)


class TestTracking(base.TestCase):
    def setUp(self):
        super().setUp()
        self.clock = FakeClock()
        self.tracker = tracker.InFlightTracker(clock=self.clock)

    def test_empty(self):
        self.assertEqual(0, len(self.tracker))
        self.assertEqual([], self.tracker.snapshot())

    def test_start_registers_and_end_unregisters(self):
        first = self.tracker.start('compute', 'stop_instance', UUID_A)
        second = self.tracker.start('compute-alt', 'live_migration', UUID_B)
        self.assertNotEqual(first, second)
        self.assertEqual(2, len(self.tracker))
        self.tracker.end(first)
        self.assertEqual(1, len(self.tracker))
        self.assertEqual(['live_migration'],
                         [op['method'] for op in self.tracker.snapshot()])
        self.tracker.end(second)
        self.assertEqual(0, len(self.tracker))

    def test_snapshot_fields(self):
        self.tracker.start('compute', 'stop_instance', instance_uuid=UUID_A,
                           request_id='req-1')
        self.clock.now += 2.5
        self.assertEqual(
            [{'method': 'stop_instance', 'instance_uuid': UUID_A,
              'request_id': 'req-1', 'topic': 'compute', 'elapsed': 2.5}],
            self.tracker.snapshot())

    def test_snapshot_defaults_to_no_uuid_or_request_id(self):
        self.tracker.start('compute', 'list_instances')
        [op] = self.tracker.snapshot()
        self.assertIsNone(op['instance_uuid'])
        self.assertIsNone(op['request_id'])

    def test_snapshot_is_oldest_first_with_elapsed_times(self):
        self.tracker.start('compute', 'stop_instance', UUID_A)
        self.clock.now += 1
        self.tracker.start('compute-alt', 'finish_resize', UUID_B)
        self.clock.now += 2
        snapshot = self.tracker.snapshot()
        self.assertEqual(['stop_instance', 'finish_resize'],
                         [op['method'] for op in snapshot])
        self.assertEqual([3.0, 2.0], [op['elapsed'] for op in snapshot])

    def test_snapshot_orders_by_start_time_not_registration(self):
        self.tracker.start('compute', 'late', UUID_A)
        self.clock.now -= 10
        self.tracker.start('compute', 'early', UUID_B)
        self.assertEqual(['early', 'late'],
                         [op['method'] for op in self.tracker.snapshot()])

    def test_snapshot_is_a_copy(self):
        self.tracker.start('compute', 'stop_instance', UUID_A)
        self.tracker.snapshot()[0]['method'] = 'changed'
        self.assertEqual('stop_instance',
                         self.tracker.snapshot()[0]['method'])

    def test_end_of_unknown_token_is_harmless(self):
        token = self.tracker.start('compute', 'stop_instance', UUID_A)
        self.tracker.end(token + 1000)
        self.assertEqual(1, len(self.tracker))
        self.tracker.end(token)
        self.tracker.end(token)
        self.assertEqual(0, len(self.tracker))


class TestWaitUntilDrained(base.TestCase):
    def _run_in_thread(self, func, *args, **kwargs):
        result = []
        thread = threading.Thread(
            target=lambda: result.append(func(*args, **kwargs)),
            daemon=True)
        thread.start()
        self.addCleanup(thread.join, JOIN_TIMEOUT)
        return thread, result

    def test_returns_true_at_once_when_empty(self):
        # A deadline in the past: only an empty tracker can say True.
        clock = FakeClock()
        drained = tracker.InFlightTracker(clock=clock).wait_until_drained(
            deadline=clock.now - 1)
        self.assertTrue(drained)

    def test_returns_true_at_once_when_empty_without_deadline(self):
        self.assertTrue(tracker.InFlightTracker().wait_until_drained(None))

    def test_returns_false_when_deadline_already_passed(self):
        clock = FakeClock()
        ops = tracker.InFlightTracker(clock=clock)
        ops.start('compute', 'stop_instance', UUID_A)
        self.assertFalse(ops.wait_until_drained(deadline=clock.now))
        self.assertEqual(1, len(ops))

    def test_returns_false_when_deadline_passes_while_waiting(self):
        # The clock reads 0 (report schedule), 0 (first check: wait
        # 0.01 s), then 1: past the deadline.
        ops = tracker.InFlightTracker(clock=ScriptedClock(0, 0, 1))
        ops.start('compute', 'stop_instance', UUID_A)
        self.assertFalse(ops.wait_until_drained(deadline=0.01))

    def test_returns_true_when_another_thread_ends_the_last_op(self):
        clock = WatchedClock()
        ops = tracker.InFlightTracker(clock=clock)
        first = ops.start('compute', 'stop_instance', UUID_A)
        second = ops.start('compute-alt', 'finish_resize', UUID_B)
        # A deadline far beyond JOIN_TIMEOUT: only a wake-up by end() can
        # make the wait return in time.
        read = clock.readings()
        thread, result = self._run_in_thread(
            self._drained_and_left, ops, 3600)
        self._until_waiting(clock, read)

        ender = threading.Thread(target=ops.end, args=(first,))
        ender.start()
        ender.join(JOIN_TIMEOUT)
        ender = threading.Thread(target=ops.end, args=(second,))
        ender.start()
        ender.join(JOIN_TIMEOUT)
        thread.join(JOIN_TIMEOUT)
        self.assertFalse(thread.is_alive())
        # Drained, and nothing was left in flight when it returned.
        self.assertEqual([(True, 0)], result)

    def test_no_deadline_waits_until_drained(self):
        clock = WatchedClock()
        ops = tracker.InFlightTracker(clock=clock)
        token = ops.start('compute', 'stop_instance', UUID_A)
        read = clock.readings()
        thread, result = self._run_in_thread(self._drained_and_left, ops,
                                             None)
        self._until_waiting(clock, read)
        ops.end(token)
        thread.join(JOIN_TIMEOUT)
        self.assertFalse(thread.is_alive())
        self.assertEqual([(True, 0)], result)

    def _until_waiting(self, clock, read_before):
        """Until the waiter in wait_until_drained has read the clock
        twice since read_before readings: the second reading is taken
        holding the tracker's lock, which only its wait lets go, so an
        end() from now on finds it waiting."""
        self.assertTrue(clock.wait_for_readings(read_before + 2),
                        'the waiter never started waiting')

    @staticmethod
    def _drained_and_left(ops, deadline):
        """wait_until_drained's answer, and how much was still in flight
        the moment it returned."""
        return ops.wait_until_drained(deadline), len(ops)

    def test_reports_snapshot_while_waiting(self):
        ops = tracker.InFlightTracker()
        token = ops.start('compute', 'stop_instance', UUID_A,
                          request_id='req-1')
        reports = []
        reported = threading.Event()

        def report(snapshot):
            reports.append(snapshot)
            reported.set()

        def end_after_first_report():
            reported.wait(JOIN_TIMEOUT)
            ops.end(token)

        ender = threading.Thread(target=end_after_first_report, daemon=True)
        ender.start()
        self.addCleanup(ender.join, JOIN_TIMEOUT)

        drained = ops.wait_until_drained(
            deadline=time.monotonic() + JOIN_TIMEOUT, report=report,
            report_every=0.01)

        self.assertTrue(drained)
        self.assertTrue(reported.is_set())
        first = reports[0]
        self.assertEqual(1, len(first))
        self.assertEqual(
            ('stop_instance', UUID_A, 'req-1', 'compute'),
            (first[0]['method'], first[0]['instance_uuid'],
             first[0]['request_id'], first[0]['topic']))

    def test_report_is_called_from_the_schedule_of_the_clock(self):
        # With report_every=0 the first report is due at once; the report
        # ends the operation, so no real waiting happens.
        clock = FakeClock()
        ops = tracker.InFlightTracker(clock=clock)
        token = ops.start('compute', 'stop_instance', UUID_A)
        clock.now += 4
        reports = []

        def report(snapshot):
            reports.append(snapshot)
            ops.end(token)

        self.assertTrue(ops.wait_until_drained(
            deadline=clock.now + 10, report=report, report_every=0))
        self.assertEqual(1, len(reports))
        self.assertEqual(4.0, reports[0][0]['elapsed'])

    def test_no_report_when_nothing_is_in_flight(self):
        reports = []
        self.assertTrue(tracker.InFlightTracker().wait_until_drained(
            None, report=reports.append, report_every=0))
        self.assertEqual([], reports)
