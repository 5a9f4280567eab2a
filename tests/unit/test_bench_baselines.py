"""The side-by-side bench's pure parts: medians, ratios, the table and
its header, the rows built from raw figures, and the 1 s poller's
read-then-sleep loop on a simulated clock."""

import os

import fixtures
import testtools

from tools.bench.baselines import figures
from tools.bench.baselines import poller
from tools.bench import side_by_side


class FakeClock:
    """A clock that moves only when a read takes time or a sleep is
    slept; sleeps are recorded."""

    def __init__(self):
        self.now = 100.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def guest(clock, reads):
    """is_off() for a guest whose successive reads take the given
    (seconds, off) each."""
    pending = list(reads)

    def is_off():
        seconds, off = pending.pop(0)
        clock.now += seconds
        return off
    return is_off


class PollerTest(testtools.TestCase):
    def test_reads_then_sleeps_the_whole_interval_every_time(self):
        clock = FakeClock()
        # The second read is answered 0.7 s late (libvirt reaping QEMU):
        # the next sleep is still the whole second, not 0.3 s.
        is_off = guest(clock, [(0.01, False), (0.7, False), (0.01, True)])
        noticed, reads = poller.poll_until_off(
            is_off, clock.sleep, clock, deadline=200)
        self.assertEqual([1.0, 1.0], clock.sleeps)
        self.assertEqual(3, reads)
        self.assertAlmostEqual(100 + 0.01 + 1 + 0.7 + 1 + 0.01, noticed)

    def test_off_at_the_first_read_sleeps_not_at_all(self):
        clock = FakeClock()
        noticed, reads = poller.poll_until_off(
            guest(clock, [(0.2, True)]), clock.sleep, clock, deadline=200)
        self.assertEqual(([], 1), (clock.sleeps, reads))
        self.assertAlmostEqual(100.2, noticed)

    def test_gives_up_after_the_deadline(self):
        clock = FakeClock()
        is_off = guest(clock, [(0, False)] * 4)
        self.assertRaises(TimeoutError, poller.poll_until_off, is_off,
                          clock.sleep, clock, deadline=102.5)
        self.assertEqual([1.0] * 3, clock.sleeps)

    def test_interval_is_a_parameter(self):
        clock = FakeClock()
        poller.poll_until_off(guest(clock, [(0, False), (0, True)]),
                              clock.sleep, clock, deadline=200,
                              interval=0.25)
        self.assertEqual([0.25], clock.sleeps)


class FiguresTest(testtools.TestCase):
    def test_median_leaves_out_missing_samples(self):
        self.assertEqual(2, figures.median([3, None, 1, 2]))
        self.assertEqual(2.5, figures.median([1, 2, 3, 4]))
        self.assertIsNone(figures.median([None]))
        self.assertIsNone(figures.median([]))

    def test_ratio(self):
        self.assertEqual(0.25, figures.ratio(1, 4))
        self.assertIsNone(figures.ratio(None, 4))
        self.assertIsNone(figures.ratio(1, None))
        self.assertIsNone(figures.ratio(1, 0))

    def test_row_carries_its_ratio(self):
        row = figures.Row('lag', 'ms', 15, 750, 'poller', 'lower', '5')
        self.assertEqual(0.02, row.ratio)
        self.assertEqual({'label': 'lag', 'unit': 'ms', 'agent': 15,
                          'baseline': 750, 'baseline_is': 'poller',
                          'better': 'lower', 'samples': '5',
                          'ratio': 0.02}, row.as_dict())

    def test_table_is_aligned_with_every_column(self):
        lines = figures.format_table([
            figures.Row('lag', 'ms', 15.12, 725.4, '1 s poller', 'lower',
                        '5'),
            figures.Row('RPC', 'calls/s', 250.4, 300.0, 'bare', 'higher',
                        '5'),
            figures.Row('RSS', 'MiB', 81.94, None, 'bare', 'lower', '3')])
        self.assertEqual(5, len(lines))
        self.assertEqual(list(figures.HEADER),
                         [cell.strip() for cell in lines[0].split('  ')
                          if cell])
        # Every column starts at the same offset on every line.
        start = lines[0].index('baseline is')
        self.assertEqual(['1 s poller', 'bare', 'bare'],
                         [line[start:] for line in lines[2:]])
        self.assertIn('lag, ms  ', lines[2])
        self.assertEqual(['15.1', '725', '0.021'], lines[2].split()[2:5])
        self.assertEqual(['250', '300', '0.83'], lines[3].split()[2:5])
        self.assertEqual(['81.9', '-', '-'], lines[4].split()[2:5])

    def test_cpu_model_from_cpuinfo(self):
        path = os.path.join(self.useFixture(fixtures.TempDir()).path,
                            'cpuinfo')
        with open(path, 'w') as cpuinfo:
            cpuinfo.write('processor\t: 0\nmodel name\t: Some CPU 9\n')
        self.assertEqual('Some CPU 9', figures.cpu_model(path))

    def test_header_names_the_machine_and_commit(self):
        text = figures.header({'cores': 2, 'cpu': 'Some CPU',
                               'kernel': '6.1.0', 'guests': 'TCG',
                               'python': '3.11.2', 'commit': 'abc1234'})
        self.assertEqual('2 cores, Some CPU, Linux 6.1.0, guests under '
                         'TCG, Python 3.11.2, commit abc1234', text)


def raw_figures():
    """measure()'s figures, shaped as a run of two rounds each makes."""
    return {
        'detection': [
            {'agent_lag': 0.010, 'poller_lag': 0.700, 'stop': 0.30,
             'off': 0.29},
            {'agent_lag': 0.020, 'poller_lag': 0.500, 'stop': 0.50,
             'off': 0.48}],
        'mass_guests': 8,
        'mass': [{'all': 0.8, 'all_off': 0.7, 'worst_lag': 0.05},
                 {'all': 1.0, 'all_off': 0.9, 'worst_lag': 0.07}],
        'rpc': {'agent': {'sequential': [200, 300], 'threads': [400, 600]},
                'bare': {'sequential': [250, 250], 'threads': [500, 500]}},
        'drain': {'agent': [{'lag': 0.08}, {'lag': 0.1}],
                  'bare': [{'lag': 1.2}, {'lag': 1.0}]},
        'idle': {'agent': [{'exit': 0.1, 'rss_mib': 80},
                           {'exit': 0.2, 'rss_mib': 82}],
                 'bare': [{'exit': 5.0, 'rss_mib': 47},
                          {'exit': 5.2, 'rss_mib': 47}]},
        'ready': {'agent': [1.0, 1.2, 1.4], 'bare': [0.5, 0.5, 0.5]},
        'graceful_shutdown_timeout': 60,
    }


class RowsTest(testtools.TestCase):
    def test_every_row_has_a_baseline_and_a_ratio(self):
        rows = side_by_side.rows(raw_figures())
        self.assertEqual(11, len(rows))
        for row in rows:
            self.assertIsNotNone(row.ratio, row.label)
            self.assertIn(row.better, ('lower', 'higher'))
            self.assertTrue(row.baseline_is, row.label)

    def test_figures_are_the_medians_of_their_samples(self):
        by_label = {row.label: row for row in side_by_side.rows(
            raw_figures())}
        detection = by_label['power-off: STOPPED event -> noticed']
        self.assertAlmostEqual(15, detection.agent)
        self.assertAlmostEqual(600, detection.baseline)
        mass = by_label['mass power-off, 8 at once: requests -> last '
                        'reply']
        # Against one guest alone: the single stops' median.
        self.assertAlmostEqual((0.9, 0.4), (mass.agent, mass.baseline))
        rpc = by_label['RPC get_service_status, 8 threads']
        self.assertEqual((500, 500, 1), (rpc.agent, rpc.baseline, rpc.ratio))
        self.assertEqual(60, by_label['drain: reply -> exit'].baseline)
        self.assertEqual((81, 47), (by_label['RSS, idle'].agent,
                                    by_label['RSS, idle'].baseline))
