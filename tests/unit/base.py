"""The base of every unit test."""

import fixtures
from oslo_config import cfg
import oslo_messaging
from oslo_messaging import conffixture
import testtools

from compute_agent import rpc
from compute_agent import tracker


class TestCase(testtools.TestCase):
    """Captures logging: a passing test prints nothing, and a failing
    one carries its log as a detail. A traceback an error path logs on
    purpose must not read like a failure in CI's output."""

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.FakeLogger())


def fake_rpc_server(test, host, endpoints):
    """The RPC server rpc.create_server builds for topic compute, on a
    fake:// transport of its own that test cleans up."""
    conf = cfg.ConfigOpts()
    test.useFixture(conffixture.ConfFixture(conf))
    transport = oslo_messaging.get_rpc_transport(conf, url='fake://')
    test.addCleanup(transport.cleanup)
    return rpc.create_server(transport, rpc.TOPIC, host, endpoints,
                             tracker.InFlightTracker())
