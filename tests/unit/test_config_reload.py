"""What SIGHUP re-reads and reopens (compute_agent/conf/reload.py)."""

import logging
import os

import fixtures
from oslo_config import cfg
from oslo_log import log as oslo_log

from compute_agent.conf import reload
from tests.unit import base

TEST_LOGGER = 'compute_agent_test_reload'


class ReloadConfigTest(base.TestCase):
    def setUp(self):
        super().setUp()
        self.directory = self.useFixture(fixtures.TempDir()).path
        self.config_file = os.path.join(self.directory, 'agent.conf')
        for logger in (logging.getLogger(), logging.getLogger(TEST_LOGGER)):
            self.addCleanup(logger.setLevel, logger.level)
        self.conf = cfg.ConfigOpts()
        oslo_log.register_options(self.conf)
        reload.register_hooks(self.conf)
        self._write_config(debug=False, levels=f'{TEST_LOGGER}=WARN')
        self.conf(['--config-file', self.config_file])

    def _write_config(self, debug, levels):
        with open(self.config_file, 'w') as config:
            config.write(f'[DEFAULT]\ndebug = {debug}\n'
                         f'default_log_levels = {levels}\n')

    def test_log_levels_change_without_a_restart(self):
        self._write_config(debug=False, levels=f'{TEST_LOGGER}=DEBUG')
        summary = reload.reload_config(self.conf)
        self.assertEqual(logging.DEBUG, logging.getLogger(TEST_LOGGER).level)
        self.assertIn(f'default_log_levels = {TEST_LOGGER}=DEBUG', summary)

    def test_a_logger_no_longer_listed_inherits_again(self):
        logging.getLogger(TEST_LOGGER).setLevel(logging.WARNING)
        self._write_config(debug=False, levels='')
        reload.reload_config(self.conf)
        self.assertEqual(logging.NOTSET, logging.getLogger(TEST_LOGGER).level)

    def test_debug_changes_the_root_level(self):
        logging.getLogger().setLevel(logging.INFO)
        self._write_config(debug=True, levels=f'{TEST_LOGGER}=WARN')
        summary = reload.reload_config(self.conf)
        self.assertEqual(logging.DEBUG, logging.getLogger().level)
        self.assertIn('debug = True', summary)

    def test_says_when_nothing_changed(self):
        self.assertIn('no option changed', reload.reload_config(self.conf))


class ReopenLogFilesTest(base.TestCase):
    def test_a_renamed_log_file_is_replaced_at_its_path(self):
        # As logrotate does: rename, then SIGHUP.
        path = os.path.join(self.useFixture(fixtures.TempDir()).path,
                            'agent.log')
        logger = logging.getLogger('compute_agent_test_reopen')
        handler = logging.FileHandler(path)
        logger.addHandler(handler)
        self.addCleanup(handler.close)
        self.addCleanup(logger.removeHandler, handler)
        logger.warning('before the rename')
        os.rename(path, path + '.1')

        self.assertIn(path, reload.reopen_log_files())
        logger.warning('after the rename')

        with open(path) as current, open(path + '.1') as rotated:
            self.assertEqual(('after the rename\n', 'before the rename\n'),
                             (current.read(), rotated.read()))
