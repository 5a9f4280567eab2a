"""The graceful-shutdown gate's own logic (tools/gate), without a
deployment: the report, the command line, the per-run bookkeeping and
the scenario registry."""

import io
import json
import os
import random
import traceback

import fixtures

from tools.gate import cli
from tools.gate import registry
from tools.gate import report
from tools.gate import scenarios
from tools.gate import signal_scenarios
from tools.gate import unitfile
from tools.gate.failure import GateFailure
from tests.unit import base

REQUIRED_SCENARIOS = (
    'build-sigterm', 'stop-acpi-sigterm', 'stop-ignoring-acpi-sigterm',
    'live-migration-sigterm-source', 'live-migration-sigterm-dest',
    'cold-migration-sigterm-source', 'cold-migration-sigterm-dest',
    'revert-resize-sigterm', 'reload-stop-ignoring-acpi',
    'reload-live-migration-source', 'kill-stop-ignoring-acpi',
    'reload-build', 'reload-live-migration-dest',
    'reload-cold-migration-source', 'reload-revert-resize',
    'stop-guest-agent-sigterm', 'host-shutdown-live-migration-source')


def _run(scenario, passed=True, lags=(), failure=None):
    return report.RunResult(scenario, passed, list(lags), 1.0, failure)


class TestReport(base.TestCase):
    def test_lags_of_failed_runs_count(self):
        # A failed run's long lag is exactly what the maximum must show.
        results = [_run('a', lags=[1.0, 3.0]),
                   _run('a', False, [10.0], 'too slow\ndetails')]
        [entry] = report.summarize(results, ['a'])
        self.assertEqual({'name': 'a', 'runs': 2, 'passed': 1,
                          'drain_lag_median': 3.0, 'drain_lag_max': 10.0,
                          'failures': ['too slow']}, entry)

    def test_even_count_median_rounding_and_none_without_lags(self):
        summary = report.summarize(
            [_run('a', lags=[0.1234]), _run('a', lags=[0.2]),
             _run('b', False, [], 'boom')], ['a', 'b'])
        self.assertEqual([(0.162, 0.2, []), (None, None, ['boom'])],
                         [(e['drain_lag_median'], e['drain_lag_max'],
                           e['failures']) for e in summary])

    def test_order_follows_names_and_empty_scenarios_are_listed(self):
        results = [_run('a', lags=[1.0]), _run('b', lags=[2.0]),
                   _run('not-asked-for', lags=[99.0])]
        summary = report.summarize(results, ['c', 'b', 'a'])
        self.assertEqual(['c', 'b', 'a'], [e['name'] for e in summary])
        self.assertEqual({'name': 'c', 'runs': 0, 'passed': 0,
                          'drain_lag_median': None, 'drain_lag_max': None,
                          'failures': []}, summary[0])
        self.assertEqual(2.0, summary[1]['drain_lag_max'])

    def test_table_names_left_figures_right_and_dash_for_none(self):
        summary = [
            {'name': 'build-sigterm', 'runs': 3, 'passed': 2,
             'drain_lag_median': 0.25, 'drain_lag_max': 1.5},
            {'name': 'x', 'runs': 10, 'passed': 0,
             'drain_lag_median': None, 'drain_lag_max': None}]
        self.assertEqual([
            'scenario       runs  passed  median drain lag  max drain lag',
            '-------------  ----  ------  ----------------  -------------',
            'build-sigterm     3       2           0.250 s        1.500 s',
            'x                10       0                 -              -',
        ], report.format_table(summary).splitlines())

    def test_json_interface_keys_and_missing_directories(self):
        directory = self.useFixture(fixtures.TempDir()).path
        path = os.path.join(directory, 'not', 'there', 'gate.json')
        summary = report.summarize(
            [_run('a', False, [0.5], 'slow\ntraceback')], ['a'])
        report.write_json(path, summary, 3, 1234, 61.26, 'systemd 252',
                          'eventlet')
        with open(path) as written:
            text = written.read()
        self.assertTrue(text.endswith('\n'))
        data = json.loads(text)
        self.assertEqual({'scenarios', 'repeat', 'seed', 'seconds',
                          'supervisor', 'concurrency'}, set(data))
        self.assertEqual((3, 1234, 61.3, 'systemd 252', 'eventlet'),
                         (data['repeat'], data['seed'], data['seconds'],
                          data['supervisor'], data['concurrency']))
        self.assertEqual([{'name': 'a', 'runs': 1, 'passed': 0,
                           'drain_lag_median': 0.5, 'drain_lag_max': 0.5,
                           'failures': ['slow']}], data['scenarios'])


class _FakeDeployment:
    def __init__(self, recover_error=None):
        self.events = []
        self.recover_error = recover_error

    def recover(self):
        self.events.append('recover')
        if self.recover_error:
            raise self.recover_error


def _scenario(name='fake', run_error=None, cleanup_error=None,
              lags=(0.25,), sigtermed=('host-a',), extra_draws=0):
    class Fake:
        def __init__(self, rng):
            self.rng = rng
            self.drain_lags = []
            self.sigtermed = []

        def run(self, deployment):
            deployment.events.append(('run', self.rng.random()))
            for _ in range(extra_draws):
                self.rng.random()
            # Lags measured before a failure must survive it.
            self.drain_lags.extend(lags)
            self.sigtermed.extend(sigtermed)
            if run_error:
                raise run_error

        def cleanup(self, deployment):
            deployment.events.append('cleanup')
            if cleanup_error:
                raise cleanup_error
    Fake.name = name
    return Fake


class TestHeadline(base.TestCase):
    def test_a_checks_message_is_its_first_line(self):
        self.assertEqual('too slow', report.headline('too slow\ndetails'))

    def test_a_traceback_is_named_by_its_exception_line(self):
        try:
            {}['in_flight']
        except KeyError:
            text = traceback.format_exc()
        self.assertEqual("KeyError: 'in_flight'", report.headline(text))
        self.assertEqual(
            "cleanup after the run failed: KeyError: 'in_flight'",
            report.headline('cleanup after the run failed:\n' + text))

    def test_an_empty_failure_is_still_a_line(self):
        for text in ('', '\n  \n', None):
            self.assertEqual('failed without a message',
                             report.headline(text))
        [entry] = report.summarize([_run('a', False, [], '')], ['a'])
        self.assertEqual(['failed without a message'], entry['failures'])


class TestRunOnce(base.TestCase):
    def test_passed_run(self):
        self.useFixture(fixtures.MockPatch(
            'tools.gate.cli.time.monotonic', side_effect=[10.0, 12.5]))
        deployment = _FakeDeployment()
        result, sigtermed = cli.run_once(deployment, _scenario(),
                                         random.Random(1))
        self.assertEqual(report.RunResult('fake', True, [0.25], 2.5, None),
                         result)
        self.assertEqual(['host-a'], sigtermed)
        self.assertEqual([('run', random.Random(1).random()), 'recover',
                          'cleanup'], deployment.events)

    def test_gate_failure_is_the_failure_text(self):
        deployment = _FakeDeployment()
        result, _ = cli.run_once(
            deployment, _scenario(run_error=GateFailure('lag 2.1 s\nmore')),
            random.Random(1))
        self.assertFalse(result.passed)
        self.assertEqual('lag 2.1 s\nmore', result.failure)
        self.assertEqual([0.25], result.drain_lags)
        # The deployment is put back even after a failed run.
        self.assertEqual(['recover', 'cleanup'], deployment.events[1:])

    def test_gate_failure_without_a_message_still_says_it_failed(self):
        result, _ = cli.run_once(
            _FakeDeployment(), _scenario(run_error=GateFailure()),
            random.Random(1))
        self.assertEqual((False, 'GateFailure without a message'),
                         (result.passed, result.failure))

    def test_unexpected_exception_is_a_traceback(self):
        result, _ = cli.run_once(
            _FakeDeployment(), _scenario(run_error=KeyError('in_flight')),
            random.Random(1))
        self.assertFalse(result.passed)
        self.assertTrue(result.failure.startswith('Traceback'))
        self.assertIn("KeyError: 'in_flight'", result.failure)

    def test_recover_or_cleanup_failure_fails_a_passed_run(self):
        for deployment, scenario, message in [
                (_FakeDeployment(),
                 _scenario(cleanup_error=RuntimeError('guest stuck')),
                 'RuntimeError: guest stuck'),
                (_FakeDeployment(RuntimeError('no READY=1')), _scenario(),
                 'RuntimeError: no READY=1')]:
            result, _ = cli.run_once(deployment, scenario, random.Random(1))
            self.assertFalse(result.passed)
            self.assertTrue(result.failure.startswith(
                'cleanup after the run failed:\nTraceback'))
            self.assertIn(message, result.failure)

    def test_cleanup_runs_when_recover_failed(self):
        # An agent that would not restart must not leave this run's
        # guests behind for the next run.
        deployment = _FakeDeployment(RuntimeError('no READY=1'))
        result, _ = cli.run_once(deployment, _scenario(), random.Random(1))
        self.assertEqual(['recover', 'cleanup'], deployment.events[1:])
        self.assertIn('no READY=1', result.failure)

    def test_run_failure_wins_over_cleanup_failure(self):
        # The first thing that went wrong is what the report must name.
        result, _ = cli.run_once(
            _FakeDeployment(),
            _scenario(run_error=GateFailure('drain too long'),
                      cleanup_error=RuntimeError('guest stuck')),
            random.Random(1))
        self.assertEqual('drain too long', result.failure)


class TestRunPlan(base.TestCase):
    def setUp(self):
        super().setUp()
        self.out = self.useFixture(fixtures.MonkeyPatch(
            'sys.stdout', io.StringIO())).new_value

    def test_results_in_plan_order_and_progress_lines(self):
        plan = [_scenario('good', lags=(0.25, 0.5)),
                _scenario('bad', run_error=GateFailure('lost\nrequest'),
                          lags=(), sigtermed=())]
        results = cli.run_plan(_FakeDeployment(), plan, random.Random(3))
        self.assertEqual(['good', 'bad'], [r.scenario for r in results])
        self.assertEqual([True, False], [r.passed for r in results])
        lines = self.out.getvalue().splitlines()
        self.assertRegex(lines[0], r'^gate: \[1/2\] good \(SIGTERM host-a\)'
                                   r': passed in \d+\.\d s; drain lag '
                                   r'0\.250 s, 0\.500 s$')
        self.assertRegex(lines[1], r'^gate: \[2/2\] bad \(SIGTERM none\): '
                                   r'FAILED in \d+\.\d s; drain lag -$')
        self.assertEqual(['lost', 'request'], lines[2:])

    def test_a_runs_choices_depend_only_on_seed_and_position(self):
        # So that --seed repeats a run's host choices even when an earlier
        # run made a different number of random choices.
        seen = []
        for draws in (0, 5, 0):
            deployment = _FakeDeployment()
            cli.run_plan(deployment, [_scenario(extra_draws=draws),
                                      _scenario()], random.Random(42))
            seen.append([e[1] for e in deployment.events if e[0] == 'run'])
        self.assertEqual(seen[0], seen[1])
        self.assertEqual(seen[0], seen[2])
        self.assertNotEqual(seen[0][0], seen[0][1])


class TestParseArgs(base.TestCase):
    def setUp(self):
        super().setUp()
        self.stderr = self.useFixture(fixtures.MonkeyPatch(
            'sys.stderr', io.StringIO())).new_value

    def test_defaults(self):
        args = cli.parse_args([])
        self.assertEqual((1, None, None, None),
                         (args.repeat, args.report, args.scenario,
                          args.workdir))
        self.assertIsInstance(args.seed, int)
        self.assertTrue(0 <= args.seed < 2 ** 32)
        self.assertEqual(unitfile.EXECUTABLE_NAME,
                         os.path.basename(args.executable))

    def test_concurrency_defaults_to_the_gates_own_mode(self):
        for environment, expected in (('eventlet', 'eventlet'),
                                      (None, 'threading')):
            self.useFixture(fixtures.EnvironmentVariable(
                'COMPUTE_AGENT_CONCURRENCY', environment))
            self.assertEqual(expected, cli.parse_args([]).concurrency)
        self.assertEqual('eventlet', cli.parse_args(
            ['--concurrency', 'eventlet']).concurrency)

    def test_usage_errors(self):
        for argv, message in [
                (['--concurrency', 'gevent'],
                 "invalid choice: 'gevent'"),
                (['--repeat', '0'], '--repeat must be at least 1'),
                (['--repeat', '-2'], '--repeat must be at least 1'),
                (['--scenario', 'reboot-sigterm'],
                 "invalid choice: 'reboot-sigterm'")]:
            error = self.assertRaises(SystemExit, cli.parse_args, argv)
            self.assertEqual(2, error.code)
            self.assertIn(message, self.stderr.getvalue())

    def test_scenario_repeatable_and_seed_kept(self):
        args = cli.parse_args(['--scenario', 'revert-resize-sigterm',
                               '--scenario', 'build-sigterm',
                               '--seed', '7', '--repeat', '3'])
        self.assertEqual(['revert-resize-sigterm', 'build-sigterm'],
                         args.scenario)
        self.assertEqual((7, 3), (args.seed, args.repeat))

    def test_a_scenario_named_twice_runs_once_per_repeat(self):
        args = cli.parse_args(['--scenario', 'build-sigterm',
                               '--scenario', 'revert-resize-sigterm',
                               '--scenario', 'build-sigterm'])
        self.assertEqual(['build-sigterm', 'revert-resize-sigterm'],
                         args.scenario)


class TestRegistry(base.TestCase):
    def test_names_unique_and_indexed(self):
        names = [scenario.name for scenario in registry.SCENARIOS]
        self.assertEqual(len(names), len(set(names)))
        self.assertNotIn(None, names)
        self.assertEqual(names, [scenario.name for scenario
                                 in registry.by_name().values()])

    def test_required_scenarios_exist_and_run_something(self):
        by_name = registry.by_name()
        for name in REQUIRED_SCENARIOS:
            self.assertIn(name, by_name)
            self.assertTrue(issubclass(by_name[name], scenarios.Scenario))
            # The base class's run only raises NotImplementedError.
            self.assertIsNot(scenarios.Scenario.run, by_name[name].run)

    def test_a_reload_scenario_is_its_sigterm_twin_reloaded(self):
        for scenario in signal_scenarios.RELOADED:
            twin = scenario.__mro__[2]
            self.assertTrue(twin.name.endswith('sigterm') or
                            '-sigterm-' in twin.name, twin.name)
            self.assertIs(twin.run, scenario.run)
            self.assertIsNot(twin.interrupt, scenario.interrupt)
            self.assertIn(twin.__doc__.strip(), scenario.__doc__)
