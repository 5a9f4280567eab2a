"""The crash matrix's own logic (tools/crash_matrix), without a
deployment: which failpoints a --sample picks, the case registry, and
the command line."""

import io
import json
import os

import fixtures

from compute_agent import failpoints
from tests.unit import base
from tools.crash_matrix import cases
from tools.crash_matrix import cli

NAMES = [f'op.step{index}' for index in range(10)]


class SampleTest(base.TestCase):
    def test_consecutive_seeds_cover_every_failpoint(self):
        picked = set()
        # ceil(10 / 3) = 4 runs.
        for seed in range(100, 104):
            picked.update(cli.pick_sample(NAMES, 3, seed))
        self.assertEqual(set(NAMES), picked)

    def test_a_window_has_the_size_asked_without_repeats(self):
        for seed in range(20):
            sample = cli.pick_sample(NAMES, 4, seed)
            self.assertEqual(4, len(set(sample)))

    def test_a_seed_repeats_its_sample(self):
        self.assertEqual(cli.pick_sample(NAMES, 3, 7),
                         cli.pick_sample(list(reversed(NAMES)), 3, 7))

    def test_successive_seeds_pick_differently(self):
        self.assertNotEqual(set(cli.pick_sample(NAMES, 3, 7)),
                            set(cli.pick_sample(NAMES, 3, 8)))

    def test_a_sample_larger_than_the_selection_takes_it_all(self):
        self.assertEqual(sorted(NAMES), sorted(cli.pick_sample(NAMES, 50,
                                                               3)))

    def test_the_default_seed_is_the_day(self):
        self.assertGreater(cli.parse_args([]).seed, 700000)


class CasesTest(base.TestCase):
    def test_every_single_host_and_power_off_failpoint_has_a_case(self):
        prefixes = ('build', 'start', 'stop', 'reboot', 'rescue',
                    'unrescue', 'shelve', 'offload', 'unshelve',
                    'power_off')
        expected = {name for name in failpoints.ALL
                    if name.split('.')[0] in prefixes}
        self.assertEqual(expected, {case.failpoint for case in cases.CASES})

    def test_cases_are_in_failpoint_order_with_unique_names(self):
        names = [case.name() for case in cases.all_cases()]
        self.assertEqual(len(names), len(set(names)))
        self.assertEqual(['build.recorded', 'build.spawned',
                          'build.events_received'], names[:3])

    def test_single_host_cases_arm_the_host(self):
        for case in cases.CASES:
            self.assertEqual(('host', False, True),
                             (case.armed_role, case.needs_two_hosts,
                              bool(case.operation)), case.failpoint)

    def test_only_selects_by_regex(self):
        selected = cli.select(cases.CASES, r'^power_off\.')
        self.assertEqual(['power_off.requested', 'power_off.destroying'],
                         [case.name() for case in selected])


class CommandLineTest(base.TestCase):
    def test_rst_from_reports_runs_nothing(self):
        directory = self.useFixture(fixtures.TempDir()).path
        path = os.path.join(directory, 'report.json')
        with open(path, 'w') as report_file:
            json.dump({'rows': [{
                'failpoint': 'stop.claimed', 'operation': 'stop',
                'host': {'name': 'host-a', 'role': 'host'},
                'outcome': 'active/running; action interrupted',
                'safe': True, 'seconds': 20.0}]}, report_file)
        out = self.useFixture(fixtures.MonkeyPatch('sys.stdout',
                                                   io.StringIO())).new_value
        merged = os.path.join(directory, 'merged.json')
        self.assertEqual(0, cli.main(['--rst', '--from-report', path,
                                      '--report', merged]))
        self.assertIn('   * - ``stop.claimed``', out.getvalue())
        with open(merged) as merged_file:
            self.assertEqual(['stop.claimed'], [
                row['failpoint'] for row in json.load(merged_file)['rows']])

    def test_from_report_needs_rst(self):
        self.useFixture(fixtures.MonkeyPatch('sys.stderr', io.StringIO()))
        self.assertRaises(SystemExit, cli.parse_args,
                          ['--from-report', 'x.json'])
