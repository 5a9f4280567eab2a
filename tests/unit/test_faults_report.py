"""The faults report (tools/faults): reading stestr's subunit stream and
formatting what each test did, how it ended and what it found."""

import datetime
import io

import subunit

from tests.unit import base
from tools.faults import report
from tools.faults import results

_START = datetime.datetime(2026, 11, 29, 12, 0, 0,
                           tzinfo=datetime.timezone.utc)


def _stream(*tests):
    """A subunit v2 byte stream: each test is (id, status, seconds,
    {attachment name: text}), listed first as stestr does."""
    data = io.BytesIO()
    writer = subunit.StreamResultToBytes(data)
    for test_id, *_ in tests:
        writer.status(test_id=test_id, test_status='exists')
    data.write(b'runner output that is not subunit\n')
    for test_id, status, seconds, attachments in tests:
        writer.status(test_id=test_id, test_status='inprogress',
                      timestamp=_START)
        for name, text in attachments.items():
            writer.status(test_id=test_id, file_name=name,
                          file_bytes=text.encode(),
                          mime_type='text/plain; charset=utf8')
        writer.status(test_id=test_id, test_status=status,
                      timestamp=_START + datetime.timedelta(seconds=seconds))
    data.seek(0)
    return data


def _read(stream):
    outcomes = []
    results.read(stream, outcomes.append)
    return outcomes


class DocumentedTest:
    def test_something(self):
        """Did one thing to the agent,
        across two lines.

        The rest of the docstring is not shown.
        """

    def test_undocumented(self):
        pass


class ReadTest(base.TestCase):
    def test_outcomes_with_duration_and_text_details(self):
        outcomes = _read(_stream(
            ('t.a', 'success', 2.5, {'finding': 'one\ntwo'}),
            ('t.b', 'fail', 1.0, {'traceback': 'Traceback\nBoom: no'})))
        self.assertEqual(
            [('t.a', 'success', 2.5, {'finding': 'one\ntwo'}, False),
             ('t.b', 'fail', 1.0, {'traceback': 'Traceback\nBoom: no'},
              True)],
            [(o.test_id, o.status, o.seconds, o.details, o.failed)
             for o in outcomes])


class DescribeTest(base.TestCase):
    def test_first_paragraph_of_the_docstring_on_one_line(self):
        self.assertEqual(
            'Did one thing to the agent, across two lines.',
            report.describe(f'{__name__}.DocumentedTest.test_something'))

    def test_missing_docstring_or_test(self):
        for test_id in (f'{__name__}.DocumentedTest.test_undocumented',
                        f'{__name__}.DocumentedTest.test_gone',
                        'no.such.module.Test.test_x'):
            self.assertEqual('(no docstring)', report.describe(test_id))


class FormatTest(base.TestCase):
    def _report(self, *tests):
        return report.format_report(
            _read(_stream(*tests)), describe=lambda test_id: f'did {test_id}')

    def test_summary_and_one_entry_per_test(self):
        text = self._report(
            ('t.pass', 'success', 12.25, {'finding': 'found one\nfound two'}),
            ('t.fail', 'fail', 3.0,
             {'traceback': 'Traceback (most recent call last):\n'
                           '  ...\nAssertionError: 1 != 2\n'
                           ': the message, on a line of its own\n'}),
            ('t.skip', 'skip', 0.0, {'reason': 'no libvirtd'}))
        self.assertEqual([
            '== faults report: 3 test(s): 1 fail, 1 skip, 1 pass; '
            '15.2 s ==',
            'PASS      12.2s t.pass',
            '         did:   did t.pass',
            '         found: found one',
            '         found: found two',
            'FAIL       3.0s t.fail',
            '         did:   did t.fail',
            '         why:   AssertionError: 1 != 2',
            'SKIP       0.0s t.skip',
            '         did:   did t.skip',
            '         why:   no libvirtd'], text.splitlines())

    def test_long_lines_wrap_under_their_label(self):
        text = self._report(('t.x', 'success', 1.0,
                             {'finding': 'word ' * 30}))
        found = [line for line in text.splitlines()
                 if line.startswith('         found') or
                 line.startswith(' ' * 16)]
        self.assertGreater(len(found), 1)
        self.assertTrue(all(len(line) <= report.WIDTH for line in found))

    def test_no_tests(self):
        self.assertEqual('== faults report: 0 test(s): none ran; 0.0 s ==',
                         report.format_report([]))

    def test_progress_line(self):
        outcome = results.Outcome('t.x', 'uxsuccess', None, {})
        self.assertEqual('faults: UXPASS     ?   t.x',
                         report.progress_line(outcome))
