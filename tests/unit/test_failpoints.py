"""compute_agent/failpoints.py: the names, the test-only switch, reach."""

import os
import re
import signal
from unittest import mock

from compute_agent import failpoints
from tests.unit import base

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), '..', '..'))
_REACH = re.compile(r'failpoints\.reach\(failpoints\.([A-Z_]+)\)')
_ANY_REACH = re.compile(r'\breach\(')


def _constants():
    """constant name -> failpoint name, as failpoints.py declares them."""
    return {name: value for name, value in vars(failpoints).items()
            if name.isupper() and isinstance(value, str)
            and value in failpoints.ALL}


def _reach_calls():
    """[(constant, file)] for every reach() in compute_agent/ but the
    module itself; AssertionError for a call not naming a constant."""
    calls = []
    for directory, _dirs, files in os.walk(os.path.join(ROOT,
                                                        'compute_agent')):
        for file_name in files:
            if not file_name.endswith('.py') or \
                    file_name == 'failpoints.py':
                continue
            path = os.path.join(directory, file_name)
            with open(path, encoding='utf-8') as source:
                text = source.read()
            named = _REACH.findall(text)
            assert len(named) == len(_ANY_REACH.findall(text)), (
                f'{path}: a reach() call that names no failpoints constant')
            calls.extend((constant, os.path.relpath(path, ROOT))
                         for constant in named)
    return calls


class DeclarationTest(base.TestCase):
    def test_each_failpoint_is_reached_in_exactly_one_place(self):
        declared = _constants()
        calls = _reach_calls()
        counts = {name: 0 for name in declared}
        for constant, path in calls:
            self.assertIn(constant, declared,
                          f'{path} reaches an undeclared {constant}')
            counts[constant] += 1
        self.assertEqual({}, {name: count for name, count in counts.items()
                              if count != 1})

    def test_names_are_unique_and_cover_every_operation(self):
        self.assertEqual(len(_constants()), len(failpoints.ALL))
        operations = {name.split('.')[0] for name in failpoints.ALL}
        self.assertEqual(
            {'build', 'start', 'stop', 'reboot', 'rescue', 'unrescue',
             'shelve', 'offload', 'unshelve', 'live_migration', 'resize',
             'confirm', 'revert', 'power_off'}, operations)


class SwitchTest(base.TestCase):
    def setUp(self):
        super().setUp()
        self.addCleanup(failpoints.arm_from_environment, {})

    def test_unset_arms_nothing(self):
        self.assertEqual(frozenset(), failpoints.arm_from_environment({}))

    def test_refused_without_the_acknowledgement(self):
        for acknowledgement in (None, '', 'no', 'YES', '1', 'true'):
            environ = {failpoints.ENV_ARMED: failpoints.BUILD_SPAWNED}
            if acknowledgement is not None:
                environ[failpoints.ENV_ACKNOWLEDGED] = acknowledgement
            self.assertRaises(failpoints.FailpointError,
                              failpoints.arm_from_environment, environ)

    def test_unknown_names_are_refused(self):
        error = self.assertRaises(
            failpoints.FailpointError, failpoints.arm_from_environment,
            {failpoints.ENV_ARMED: 'build.spawned,build.spwaned',
             failpoints.ENV_ACKNOWLEDGED: 'yes'})
        self.assertIn('build.spwaned', str(error))

    def test_acknowledged_arms_and_warns_naming_them(self):
        with self.assertLogs('compute_agent.failpoints', 'WARNING') as logs:
            armed = failpoints.arm_from_environment({
                failpoints.ENV_ARMED: ' stop.claimed , build.spawned',
                failpoints.ENV_ACKNOWLEDGED: 'yes'})
        self.assertEqual({'stop.claimed', 'build.spawned'}, armed)
        self.assertIn('build.spawned, stop.claimed', logs.output[0])

    def test_not_an_oslo_config_option(self):
        from compute_agent.conf import opts
        names = {opt.name for _group, options in opts.list_opts()
                 for opt in options}
        self.assertFalse({name for name in names if 'failpoint' in name})


class ReachTest(base.TestCase):
    def setUp(self):
        super().setUp()
        self.addCleanup(failpoints.arm_from_environment, {})

    def test_an_armed_failpoint_kills_with_sigkill(self):
        failpoints.arm_from_environment({
            failpoints.ENV_ARMED: failpoints.STOP_CLAIMED,
            failpoints.ENV_ACKNOWLEDGED: 'yes'})
        with mock.patch('os.kill') as kill, \
                self.assertLogs('compute_agent.failpoints',
                                'CRITICAL') as logs:
            failpoints.reach(failpoints.STOP_CLAIMED)
        kill.assert_called_once_with(os.getpid(), signal.SIGKILL)
        self.assertIn('stop.claimed', logs.output[0])

    def test_other_failpoints_pass(self):
        failpoints.arm_from_environment({
            failpoints.ENV_ARMED: failpoints.STOP_CLAIMED,
            failpoints.ENV_ACKNOWLEDGED: 'yes'})
        with mock.patch('os.kill') as kill:
            failpoints.reach(failpoints.STOP_POWERED_OFF)
            failpoints.arm_from_environment({})
            failpoints.reach(failpoints.STOP_CLAIMED)
        kill.assert_not_called()
