"""The gate's systemctl wrapper (tools/gate/systemd_agent.py) against a
fake host systemd: what it asks systemctl, and how it reads
`systemctl show`."""

import os
import re

import fixtures

from tools.gate import systemd_agent
from tests.unit import base

UNIT = systemd_agent.UNIT


class FakeHostSystemd:
    """Records systemctl calls; show() answers from a dict per property."""

    name = 'host-x'

    def __init__(self, **shown):
        self.calls = []
        self.installed = None
        self.shown = {'TimeoutStopUSec': '3min 20s'}
        self.shown.update(shown)
        self.states = []  # ActiveState answers, one per show, then stays

    def install_agent(self, executable, config_file, output_file,
                      environment):
        self.installed = (executable, config_file, output_file, environment)

    def systemctl(self, *args, check=True):
        self.calls.append((args, check))
        return ''

    def show(self, unit, *properties):
        assert unit == UNIT, unit
        if self.states and 'ActiveState' in properties:
            self.shown['ActiveState'] = self.states.pop(0)
        return {name: self.shown[name] for name in properties}

    def wait_for_state(self, unit, timeout, **expected):
        self.calls.append((('wait_for_state', timeout), True))
        return self.show(unit, *expected)


class TestSystemdAgent(base.TestCase):
    def setUp(self):
        super().setUp()
        self.output = os.path.join(
            self.useFixture(fixtures.TempDir()).path, 'journal.log')
        self.host = FakeHostSystemd(
            MainPID='42', ExecMainStartTimestampMonotonic='5000000')
        self.agent = systemd_agent.SystemdAgent(
            self.host, '/venv/bin/compute-agent', '/etc/c.conf', self.output)

    def _stopped(self, **shown):
        self.host.shown.update({
            'ActiveState': 'inactive', 'Result': 'success',
            'ExecMainCode': '1', 'ExecMainStatus': '0',
            'ExecMainExitTimestampMonotonic': '9500000',
            'ActiveExitTimestampMonotonic': '7250000'})
        self.host.shown.update(shown)

    def test_installs_the_unit_and_reads_systemds_stop_timeout(self):
        self.assertEqual(('/venv/bin/compute-agent', '/etc/c.conf',
                          self.output,
                          {'COMPUTE_AGENT_CONCURRENCY': 'threading'}),
                         self.host.installed)
        self.assertEqual(200.0, self.agent.stop_timeout)

    def test_the_concurrency_mode_goes_into_the_units_environment(self):
        systemd_agent.SystemdAgent(
            self.host, '/venv/bin/compute-agent', '/etc/c.conf',
            self.output, concurrency='eventlet')
        self.assertEqual({'COMPUTE_AGENT_CONCURRENCY': 'eventlet'},
                         self.host.installed[3])

    def test_start_notes_the_run_and_where_its_output_begins(self):
        with open(self.output, 'w') as output:
            output.write('earlier run\n')
        run = self.agent.start()
        self.assertEqual([(('start', UNIT), True)], self.host.calls)
        self.assertEqual((42, 5.0, 12),
                         (run.main_pid, run.started, run.output_offset))
        with open(self.output, 'a') as output:
            output.write('this run\n')
        self.assertEqual('this run\n', self.agent.journal_text())

    def test_a_clean_stop_as_systemd_reports_it(self):
        run = self.agent.start()
        self.assertIs(run, self.agent.sigterm())
        self.assertEqual((('--no-block', 'stop', UNIT), True),
                         self.host.calls[-1])
        self._stopped()
        self.agent.wait_exit()
        # TimeoutStopSec= and a margin for systemd's own SIGKILL.
        self.assertIn((('wait_for_state', 230.0), True), self.host.calls)
        self.assertEqual(('success', 0, 9.5, 7.25, False),
                         (run.result, run.exit_code, run.exit_time,
                          run.signal_time, run.killed))

    def test_killed_at_timeout_stop_sec_and_signal_exits(self):
        self.agent.start()
        self.agent.sigterm()
        self._stopped(ActiveState='failed', Result='timeout',
                      ExecMainCode='2', ExecMainStatus='9')
        run = self.agent.wait_exit()
        self.assertEqual((-9, True), (run.exit_code, run.killed))

    def test_status_while_stopping(self):
        pattern = re.compile(r'draining: (\d+) operation')
        self.host.shown['StatusText'] = 'draining: 2 operation(s)'
        self.host.states = ['deactivating']
        self.assertEqual('2', self.agent.wait_for_status(pattern, 5)[1])
        # Stopped before the status was seen: None, at once.
        self.host.shown['StatusText'] = ''
        self.host.states = ['inactive']
        self.assertIsNone(self.agent.wait_for_status(pattern, 60))

    def test_recover_leaves_a_running_agent_alone(self):
        self.host.shown.update(ActiveState='active', SubState='running')
        self.agent.recover()
        self.assertEqual([], self.host.calls)

    def test_recover_kills_forgets_the_failure_and_starts(self):
        self.host.shown.update(ActiveState='deactivating',
                               SubState='stop-sigterm')
        self.agent.recover()
        self.assertEqual([
            (('kill', '-s', 'KILL', UNIT), False),
            (('stop', UNIT), False),
            (('reset-failed', UNIT), False),
            (('start', UNIT), True)], self.host.calls)

    def test_reload_is_systemctl_reload(self):
        self.agent.reload()
        self.assertEqual([(('reload', UNIT), True)], self.host.calls)

    def test_identity_as_systemctl_show_reports_it(self):
        self.host.shown.update(NRestarts='1', ActiveState='active',
                               SubState='running')
        self.assertEqual(systemd_agent.Identity(42, 1, 'active/running'),
                         self.agent.identity())

    def test_a_kill_and_systemds_restart(self):
        with open(self.output, 'w') as output:
            output.write('killed run\n')
        self.agent.start()
        offset = self.agent.kill()
        self.assertEqual(11, offset)
        self.assertEqual((('kill', '-s', 'KILL', UNIT), True),
                         self.host.calls[-1])
        self.host.shown.update(
            MainPID='77', NRestarts='1', ActiveState='active',
            SubState='running', ExecMainStartTimestampMonotonic='8000000')
        run = self.agent.wait_restarted(0, offset)
        self.assertEqual((('wait_for_state', 90), True),
                         self.host.calls[-1])
        self.assertEqual((77, 8.0, 11),
                         (run.main_pid, run.started, run.output_offset))
        self.assertIs(run, self.agent.run)
        with open(self.output, 'a') as output:
            output.write('restarted\n')
        self.assertEqual('restarted\n', self.agent.journal_text())

    def test_waiting_for_a_line_of_output(self):
        run = self.agent.start()
        with open(self.output, 'w') as output:
            output.write('SIGHUP: re-read\n')
        self.assertIsNotNone(self.agent.wait_for_output('re-read', 0, run))
        self.assertIsNone(self.agent.wait_for_output('absent', 0, run))


class TestIdentity(base.TestCase):
    def test_unchanged_running_unit_has_no_changes(self):
        before = systemd_agent.Identity(42, 0, 'active/running')
        self.assertEqual([], systemd_agent.Identity(
            42, 0, 'active/running').changes_since(before))

    def test_every_change_is_named(self):
        before = systemd_agent.Identity(42, 0, 'active/running')
        after = systemd_agent.Identity(77, 1, 'activating/start')
        self.assertEqual(['MainPID 42 -> 77', 'NRestarts 0 -> 1',
                          'state activating/start'],
                         after.changes_since(before))
