"""state_files.prepare: the agent's own files under state_path."""

import logging
import os
import stat

import fixtures

from compute_agent import state_files
from tests.unit import base


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


class PrepareTest(base.TestCase):
    def setUp(self):
        super().setUp()
        # prepare() sets the process umask: give the test runner its own
        # back afterwards.
        previous = os.umask(0o022)
        self.addCleanup(os.umask, previous)
        self.root = self.useFixture(fixtures.TempDir()).path
        self.log = self.useFixture(fixtures.FakeLogger(level=logging.INFO))

    def test_creates_state_path_and_sets_umask(self):
        state_path = os.path.join(self.root, 'a', 'state')
        state_files.prepare(state_path)
        self.assertEqual(0o711, mode_of(state_path))
        created = os.path.join(state_path, 'agent.sqlite')
        with open(created, 'w'):
            pass
        os.mkdir(os.path.join(state_path, 'instances'))
        self.assertEqual(0o600, mode_of(created))
        self.assertEqual(0o711, mode_of(os.path.join(state_path,
                                                     'instances')))
        self.assertEqual('', self.log.output)

    def test_tightens_what_an_older_version_left_open(self):
        state_path = os.path.join(self.root, 'state')
        os.mkdir(state_path, 0o775)
        os.chmod(state_path, 0o775)
        paths = {name: os.path.join(state_path, name) for name in
                 ('agent.sqlite', 'agent.sqlite-journal', 'other')}
        for path in paths.values():
            with open(path, 'w'):
                pass
            os.chmod(path, 0o664)

        state_files.prepare(state_path)
        self.assertEqual(0o711, mode_of(state_path))
        self.assertEqual(0o600, mode_of(paths['agent.sqlite']))
        self.assertEqual(0o600, mode_of(paths['agent.sqlite-journal']))
        # Not the agent's to judge: left as it was.
        self.assertEqual(0o664, mode_of(paths['other']))
        self.assertEqual(3, self.log.output.count('changed to'))

        state_files.prepare(state_path)
        self.assertEqual(3, self.log.output.count('changed to'))

    def test_keeps_a_tighter_mode(self):
        state_path = os.path.join(self.root, 'state')
        os.mkdir(state_path, 0o700)
        state_files.prepare(state_path)
        self.assertEqual(0o700, mode_of(state_path))
        self.assertEqual('', self.log.output)
