"""The base of every unit test."""

import fixtures
import testtools


class TestCase(testtools.TestCase):
    """Captures logging: a passing test prints nothing, and a failing
    one carries its log as a detail. A traceback an error path logs on
    purpose must not read like a failure in CI's output."""

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.FakeLogger())
