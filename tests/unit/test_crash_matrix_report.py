"""The crash matrix's report rows, its tables and the checks' pure
logic (tools/crash_matrix/report.py, checks.py)."""

import json
import os

import fixtures

from tests.unit import base
from tools.crash_matrix import checks
from tools.crash_matrix import report

UUID = '11111111-2222-3333-4444-555555555555'


def _row(failpoint='stop.claimed', safe=True, role='host',
         outcome='stopped/shutdown; action interrupted'):
    return report.Row(failpoint=failpoint, operation='stop',
                      host={'name': 'host-a', 'role': role},
                      outcome=outcome, safe=safe, seconds=12.34)


class ReportTest(base.TestCase):
    def test_json_rows_have_the_required_keys(self):
        path = os.path.join(self.useFixture(fixtures.TempDir()).path,
                            'sub', 'report.json')
        report.write_json(path, [_row()], 5, 3, 61.26, 'systemd 252')
        with open(path) as written:
            data = json.load(written)
        [row] = data['rows']
        self.assertLessEqual({'failpoint', 'operation', 'host', 'outcome',
                              'safe'}, set(row))
        self.assertEqual({'name': 'host-a', 'role': 'host'}, row['host'])
        self.assertEqual((5, 3, 61.3, 'systemd 252'),
                         (data['seed'], data['sample'], data['seconds'],
                          data['supervisor']))
        self.assertEqual(_row(), report.Row.from_json(row))

    def test_table_marks_unsafe_rows(self):
        table = report.format_table([_row(), _row('stop.powered_off',
                                                  safe=False)])
        lines = table.splitlines()
        self.assertEqual(4, len(lines))
        self.assertIn('yes', lines[2])
        self.assertIn('NO', lines[3])
        self.assertTrue(lines[3].endswith(
            'stopped/shutdown; action interrupted'))

    def test_rst_is_a_list_table_with_one_item_per_row(self):
        rst = report.format_rst([_row(), _row('x.y', safe=False,
                                              role='destination')])
        self.assertTrue(rst.startswith('.. list-table::'))
        self.assertEqual(3, rst.count('   * - '))
        self.assertIn('     - destination', rst)
        self.assertIn('**no**', rst)

    def test_rst_escapes_markup_in_outcomes(self):
        rst = report.format_rst([_row(
            outcome='shelved_offloaded; *odd* `text` ends_')])
        self.assertIn(r'shelved_offloaded; \*odd\* \`text\` ends\_', rst)

    def test_rows_follow_the_cases_order_and_later_reports_win(self):
        first = {'rows': [vars(_row('b')), vars(_row('a'))]}
        second = {'rows': [vars(_row('a', safe=False))]}
        rows = report.ordered(report.merge([first, second]), ['a', 'b'])
        self.assertEqual([('a', False), ('b', True)],
                         [(row.failpoint, row.safe) for row in rows])


def _view(name='host-a', records=None, domains=None, dirs=(), files=(),
          snapshots=(), actions=None, migrations=()):
    return checks.HostView(
        name=name, records=records or {}, actions=actions or {},
        migrations=list(migrations), domains=domains or {},
        instance_dirs=set(dirs), image_files=set(files),
        snapshots=list(snapshots))


def _record(vm_state='active', power_state='running', task_state=None):
    return {'uuid': UUID, 'vm_state': vm_state, 'power_state': power_state,
            'task_state': task_state}


class ChecksTest(base.TestCase):
    def test_a_settled_instance_passes(self):
        views = {'host-a': _view(records={UUID: _record()},
                                 domains={UUID: 'running'}, dirs=[UUID]),
                 'host-b': _view('host-b')}
        self.assertEqual([], checks.one_home(views, UUID, 'host-a'))
        self.assertEqual([], checks.task_states(views)
                         + checks.agree_with_libvirt(views)
                         + checks.orphans(views))

    def test_after_cleanup_the_case_guests_are_gone(self):
        views = {'host-a': _view(records={UUID: _record()},
                                 domains={UUID: 'running'}, dirs=[UUID])}
        self.assertEqual(['host-a: 11111111-2222-3333-4444-555555555555 '
                          'still held after its delete'],
                         checks.after_cleanup(views, [UUID]))

    def test_an_earlier_case_guest_is_not_this_case_finding(self):
        views = {'host-a': _view(records={UUID: _record(
            task_state='resize_migrating')})}
        self.assertEqual([], checks.task_states(views, ['other'])
                         + checks.agree_with_libvirt(views, ['other']))
        self.assertEqual(3, len(checks.task_states(views, [UUID])
                                + checks.agree_with_libvirt(views, [UUID])))

    def test_task_state_and_disagreement_with_libvirt(self):
        views = {'host-a': _view(records={UUID: _record(
            task_state='powering_off')}, domains={UUID: 'shutdown'})}
        self.assertEqual(3, len(checks.task_states(views)
                                + checks.agree_with_libvirt(views)))

    def test_no_domain_is_nostate(self):
        views = {'host-a': _view(records={UUID: _record(
            'shelved_offloaded', 'nostate')})}
        self.assertEqual([], checks.agree_with_libvirt(views))

    def test_orphans(self):
        views = {'host-a': _view(
            domains={UUID: 'running'}, dirs=[UUID], files=['/i/s.qcow2'],
            snapshots=[{'id': 's', 'instance_uuid': UUID,
                        'path': '/i/gone.qcow2'}])}
        found = checks.orphans(views)
        self.assertEqual(5, len(found), found)

    def test_held_twice_or_defined_elsewhere(self):
        views = {'host-a': _view(records={UUID: _record()}),
                 'host-b': _view('host-b', records={UUID: _record()})}
        self.assertIn('held by 2 hosts', checks.one_home(views, UUID)[0])
        views['host-b'] = _view('host-b', domains={UUID: 'running'})
        self.assertIn('defined in libvirt',
                      checks.one_home(views, UUID)[0])

    def test_kept_for_confirm_is_not_an_orphan(self):
        migration = {'instance_uuid': UUID, 'kind': 'resize',
                     'status': 'completed', 'source_host': 'host-a'}
        views = {'host-a': _view(domains={UUID: 'shutdown'}, dirs=[UUID],
                                 migrations=[migration])}
        self.assertEqual([], checks.orphans(views))

    def test_actions_closed_with_a_message(self):
        action = {'action': 'stop', 'request_id': 'req-1',
                  'finish_time': None, 'result': 'running', 'message': None}
        views = {'host-a': _view(actions={UUID: [action]})}
        self.assertEqual(2, len(checks.actions_closed(views, UUID,
                                                      ['req-1'])))
        action.update(finish_time='now', result='interrupted',
                      message='interrupted by a stop of the agent')
        self.assertEqual([], checks.actions_closed(views, UUID, ['req-1']))
        self.assertIn('no action record',
                      checks.actions_closed(views, UUID, ['req-2'])[0])

    def test_state_left(self):
        action = {'request_id': 'r', 'result': 'interrupted'}
        views = {'host-a': _view(records={UUID: _record()},
                                 actions={UUID: [action]}),
                 'host-b': _view('host-b')}
        self.assertEqual('active/running; action interrupted',
                         checks.state_left(views, UUID, ['r']))
        self.assertEqual('active/running on host-a; action interrupted',
                         checks.state_left(views, UUID, ['r'],
                                           name_hosts=True))
