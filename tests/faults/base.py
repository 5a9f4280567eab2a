"""The base of every fault test (tox -e faults).

The faults report (python -m tools.faults) shows, for each test, the
first line of its docstring as what it did, and the text of its
``finding`` detail as what it found. ``add_finding`` collects several
findings of one test into that one detail.
"""

import fixtures
import testtools
from testtools import content


class TestCase(testtools.TestCase):
    def setUp(self):
        super().setUp()
        # Logs of the code under test stay out of the report; a failing
        # test carries them as a detail.
        self.useFixture(fixtures.FakeLogger())
        self._findings = []

    def add_finding(self, text):
        """Report text under this test's 'finding' detail."""
        if not self._findings:
            self.addDetail('finding', content.Content(
                content.UTF8_TEXT,
                lambda: ['\n'.join(self._findings).encode()]))
        self._findings.append(text)
