"""Log lines with control characters escaped, through oslo.log's own
formatter as the agent sets it up."""

import io
import logging
import sys
import unicodedata
import uuid

from oslo_config import cfg
from oslo_log import formatters
from oslo_log import log as oslo_logging

from compute_agent import log_safety
from tests.unit import base

HOSTILE_NAME = 'vm\n2026-11-29 12:00:00.000 1 INFO forged line\x00\r\x1b[2J'


class EscapeTest(base.TestCase):
    def test_printable_text_is_left_as_it_is(self):
        for text in ('', 'Built instance web-1 in 0.52 s', 'сервер ウェブ',
                     'a\\nb'):
            self.assertEqual(text, log_safety.escape(text))

    def test_control_characters_become_visible_escapes(self):
        self.assertEqual(
            'a\\nb\\rc\\td\\x00e\\x1bf\\x7fg\\x85h\\u2028i\\ud800',
            log_safety.escape('a\nb\rc\td\x00e\x1bf\x7fg\x85h\u2028i\ud800'))

    def test_a_traceback_keeps_its_lines(self):
        self.assertEqual(
            'Traceback\n  line\\x00\\r\n',
            log_safety.escape_multiline('Traceback\n  line\x00\r\n'))


class HasUnsafeTest(base.TestCase):
    def test_exactly_the_control_separator_and_surrogate_categories(self):
        # What validation refuses in names and what the log escapes are
        # one set: Cc, Zl, Zp and Cs, over every code point.
        wrong = [hex(code) for code in range(sys.maxunicode + 1)
                 if log_safety.has_unsafe(chr(code)) !=
                 (unicodedata.category(chr(code)) in
                  ('Cc', 'Zl', 'Zp', 'Cs'))]
        self.assertEqual([], wrong)


class InstalledTest(base.TestCase):
    """The agent's setup: oslo.log's ContextFormatter on a handler, and
    log_safety.install() right after."""

    def setUp(self):
        super().setUp()
        conf = cfg.ConfigOpts()
        oslo_logging.register_options(conf)
        conf([])
        self.addCleanup(logging.setLogRecordFactory,
                        logging.getLogRecordFactory())
        log_safety.install()
        self.output = io.StringIO()
        handler = logging.StreamHandler(self.output)
        handler.setFormatter(formatters.ContextFormatter(config=conf))
        self.log = logging.getLogger(f'test_log_safety.{uuid.uuid4().hex}')
        self.log.propagate = False
        self.log.setLevel(logging.DEBUG)
        self.log.addHandler(handler)

    def lines(self):
        return self.output.getvalue().splitlines()

    def test_a_hostile_instance_name_stays_on_one_escaped_line(self):
        record = {'uuid': str(uuid.uuid4()), 'name': HOSTILE_NAME}
        self.log.info('Built instance %s (%s) in %.2f s', record['uuid'],
                      record['name'], 0.5)
        [line] = self.lines()
        self.assertIn(
            '(vm\\n2026-11-29 12:00:00.000 1 INFO forged line\\x00\\r'
            '\\x1b[2J) in 0.50 s', line)
        self.assertNotIn('\x00', self.output.getvalue())
        self.assertNotIn('\x1b', self.output.getvalue())

    def test_a_message_without_arguments_is_escaped_too(self):
        self.log.warning('name ' + HOSTILE_NAME)
        self.assertEqual(1, len(self.lines()))

    def test_an_exception_message_stays_on_its_line_in_a_traceback(self):
        try:
            raise RuntimeError(f'no such guest {HOSTILE_NAME}')
        except RuntimeError:
            self.log.exception('Unexpected failure to stop instance')
        text = self.output.getvalue()
        self.assertNotIn('\x00', text)
        self.assertNotIn('\r', text)
        # The summary on the message's line is escaped; the traceback
        # keeps its lines, each carrying oslo.log's exception prefix.
        first, *traceback = self.lines()
        self.assertIn('Unexpected failure to stop instance: RuntimeError: '
                      'no such guest vm\\n2026', first)
        self.assertGreater(len(traceback), 2)
        prefix = traceback[0].split('Traceback')[0]
        self.assertTrue(prefix)
        for line in traceback:
            self.assertTrue(line.startswith(prefix), line)

    def test_install_twice_escapes_once(self):
        log_safety.install()
        self.log.info('%s', 'a\nb')
        [line] = self.lines()
        self.assertTrue(line.endswith(' a\\nb'), line)
