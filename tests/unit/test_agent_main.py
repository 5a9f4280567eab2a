"""The daemon's entry point (compute_agent/cmd/agent.py main)."""

import logging
from unittest import mock

from oslo_config import cfg

from compute_agent.cmd import agent
from compute_agent import failpoints
from compute_agent.conf import default
from tests.unit import base


class MainTest(base.TestCase):
    def setUp(self):
        super().setUp()
        conf = cfg.ConfigOpts()
        default.register_opts(conf)
        for name, value in (('CONF', conf),
                            # Keeps the test's log capture in place.
                            ('logging.setup', mock.Mock()),
                            ('log_safety.install', mock.Mock()),
                            ('signals.SignalInbox', mock.Mock())):
            patcher = mock.patch(f'compute_agent.cmd.agent.{name}', value)
            patcher.start()
            self.addCleanup(patcher.stop)

    def test_a_failed_start_logs_its_reason_and_traceback_at_error(self):
        with mock.patch.object(agent, 'build_service',
                               side_effect=RuntimeError('no broker')):
            with self.assertLogs('compute_agent.cmd.agent',
                                 logging.ERROR) as logs:
                self.assertEqual(1, agent.main([]))
        record = logs.records[0]
        self.assertIn('no broker', record.getMessage())
        self.assertIsNotNone(record.exc_info, 'no traceback logged')
        self.assertIs(RuntimeError, record.exc_info[0])

    def test_failpoints_without_their_acknowledgement_refuse_the_start(self):
        environ = {failpoints.ENV_ARMED: failpoints.BUILD_SPAWNED}
        with mock.patch.dict('os.environ', environ), \
                mock.patch.object(agent, 'build_service') as build:
            with self.assertLogs('compute_agent.cmd.agent',
                                 logging.ERROR) as logs:
                self.assertEqual(1, agent.main([]))
        build.assert_not_called()
        self.assertIn(failpoints.ENV_ACKNOWLEDGED, logs.output[0])
