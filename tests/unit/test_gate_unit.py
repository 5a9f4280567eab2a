"""How the gate reads the shipped systemd unit (tools/gate/unitfile.py)
and the policy CI holds it to (tools/gate/verify_unit.py)."""

import os

import fixtures

from tools.gate import unitfile
from tools.gate import verify_unit
from tests.unit import base


_UNIT = """\
# leading comment
[Unit]
Description=test unit

[Service]
; a comment of the other kind
Type=notify
ExecStart=/opt/venv/bin/compute-agent \\
    --config-file /etc/compute-agent/compute-agent.conf \\
    --debug
Environment="GREETING=hello world" MODE=test
Environment=DROPPED=1
Environment=
Environment=KEPT=2
TimeoutStopSec=10s
TimeoutStopSec=3min 20s
"""


class TestUnitFile(base.TestCase):
    def test_time_spans(self):
        for text, seconds in [('200s', 200.0), ('3min 20s', 200.0),
                              ('90', 90.0), ('1.5s', 1.5),
                              ('500ms', 0.5), ('1h 1m', 3660.0),
                              (' 2 min ', 120.0), ('1.5s 250ms', 1.75),
                              ('infinity', float('inf'))]:
            self.assertEqual(seconds, unitfile.parse_time_span(text), text)

    def test_unreadable_time_spans(self):
        for text in ('5d', 'soon', '-5s', 'min', '5S', '3min twenty'):
            error = self.assertRaises(unitfile.UnitError,
                                      unitfile.parse_time_span, text)
            self.assertEqual(f'cannot read time span {text!r}', str(error))

    def _load(self, text):
        directory = self.useFixture(fixtures.TempDir()).path
        path = os.path.join(directory, 'compute-agent.service')
        with open(path, 'w') as unit_file:
            unit_file.write(text)
        return unitfile.ServiceUnit.load(path)

    def _service(self, **settings):
        return unitfile.ServiceUnit('test.service', {
            key: [value] for key, value in settings.items()})

    def test_shipped_unit(self):
        unit = unitfile.ServiceUnit.load()
        self.assertEqual(unitfile.UNIT_PATH, unit.path)
        self.assertEqual(('notify', 'main', 'mixed', 200.0),
                         (unit.service_type, unit.notify_access,
                          unit.kill_mode, unit.stop_timeout))
        argv = unit.exec_start()
        self.assertEqual(unitfile.EXECUTABLE_NAME,
                         os.path.basename(argv[0]))
        self.assertEqual(['--config-file', unitfile.CONFIG_FILE], argv[1:3])

    def test_continuations_comments_resets_and_last_value_wins(self):
        unit = self._load(_UNIT)
        self.assertEqual(['/opt/venv/bin/compute-agent', '--config-file',
                          unitfile.CONFIG_FILE, '--debug'],
                         unit.exec_start())
        self.assertEqual(('notify', 200.0),
                         (unit.service_type, unit.stop_timeout))
        self.assertEqual(['KEPT=2'], unit.settings['Environment'])

    def test_systemd_defaults_for_missing_settings(self):
        unit = self._service(ExecStart='/usr/bin/compute-agent')
        self.assertEqual(('simple', 'none', 'control-group', 90.0, None),
                         (unit.service_type, unit.notify_access,
                          unit.kill_mode, unit.stop_timeout,
                          unit.state_directory))

    def test_comment_lines_inside_a_continued_line_are_skipped(self):
        unit = self._load('[Service]\n'
                          'ExecStart=/usr/bin/compute-agent \\\n'
                          '# why the next option is there\n'
                          '; and the other comment kind\n'
                          '    --config-file /etc/c.conf\n'
                          'Type=notify\n')
        self.assertEqual(['/usr/bin/compute-agent', '--config-file',
                          '/etc/c.conf'], unit.exec_start())
        self.assertEqual('notify', unit.service_type)

    def test_lines_outside_key_value_syntax(self):
        for text in ('Type=notify\n[Service]\n', '[Service]\nType notify\n'):
            error = self.assertRaises(unitfile.UnitError, self._load, text)
            self.assertIn('not a unit file line', str(error))

    def test_exec_start_refusals(self):
        refused = "the gate's drop-in would not carry over"
        for values, message in [
                ([], 'expected one ExecStart=, found 0'),
                (['/usr/bin/compute-agent'] * 2,
                 'expected one ExecStart=, found 2'),
                (['/usr/bin/compute-agent --host %H'], refused),
                (['/usr/bin/compute-agent --config-file $CONF'], refused),
                (['/usr/bin/compute-agent --config-file ${CONF}'],
                 refused)] + [
                ([prefix + '/usr/bin/compute-agent'], refused)
                for prefix in '-@+!:']:
            unit = unitfile.ServiceUnit('t', {'ExecStart': values})
            error = self.assertRaises(unitfile.UnitError, unit.exec_start)
            self.assertIn(message, str(error))

    def test_command_line_substitutes_executable_and_config(self):
        unit = self._load(_UNIT)
        self.assertEqual(['/venv/bin/compute-agent', '--config-file',
                          '/tmp/gate.conf', '--debug'],
                         unit.command_line('/venv/bin/compute-agent',
                                           '/tmp/gate.conf'))

    def test_command_line_refuses_another_program_or_config(self):
        for line, message in [
                ('/usr/bin/other --config-file ' + unitfile.CONFIG_FILE,
                 'runs /usr/bin/other, not compute-agent'),
                ('/usr/bin/compute-agent', 'does not pass --config-file'),
                ('/usr/bin/compute-agent --config-file /etc/other.conf',
                 'does not pass --config-file'),
                ('/usr/bin/compute-agent --config-file',
                 'does not pass --config-file')]:
            unit = self._service(ExecStart=line)
            error = self.assertRaises(unitfile.UnitError, unit.command_line,
                                      '/bin/compute-agent', '/tmp/g.conf')
            self.assertIn(message, str(error))


class TestPolicyProblems(base.TestCase):
    def _problems(self, **changes):
        shipped = unitfile.ServiceUnit.load()
        settings = dict(shipped.settings)
        settings.update({key: [value] for key, value in changes.items()})
        return verify_unit.policy_problems(
            unitfile.ServiceUnit(shipped.path, settings))

    def test_shipped_unit_and_acceptable_alternatives_are_clean(self):
        self.assertEqual([], self._problems())
        self.assertEqual([], self._problems(KillMode='process',
                                            TimeoutStopSec='181s'))

    def test_each_broken_setting_is_one_problem(self):
        for changes, expected in [
                ({'Type': 'simple'}, 'Type=simple NotifyAccess=main'),
                ({'NotifyAccess': 'all'}, 'Type=notify NotifyAccess=all'),
                ({'KillMode': 'control-group'}, 'KillMode=control-group'),
                # Equal to graceful_shutdown_timeout is already too short.
                ({'TimeoutStopSec': '3min'}, 'TimeoutStopSec=180s'),
                ({'StateDirectory': 'agent'}, 'StateDirectory=agent'),
                ({'ExecStart': '-/usr/bin/compute-agent'}, 'ExecStart='),
                # A reload is SIGHUP to the main process, nothing else.
                ({'ExecReload': '/bin/kill -TERM $MAINPID'}, 'ExecReload='),
                ({'ExecReload': '/bin/kill -HUP $MAINPID other'},
                 'ExecReload='),
                ({'ExecReload': ''}, 'ExecReload=:')]:
            problems = self._problems(**changes)
            self.assertEqual(1, len(problems), problems)
            self.assertIn(expected, problems[0])
