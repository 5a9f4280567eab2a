"""compute_agent/queue_guarantees.py: the start line on queued work."""

from oslo_config import cfg
import oslo_messaging

from compute_agent import queue_guarantees
from tests.unit import base


class DescribeTest(base.TestCase):
    def _conf(self, url, **rabbit):
        conf = cfg.ConfigOpts()
        conf([], project='compute-agent-test')
        # Registers the driver's options, as the agent's transport does;
        # nothing connects before a message is sent.
        transport = oslo_messaging.get_rpc_transport(conf, url=url)
        conf.set_override('transport_url', url)
        self.addCleanup(transport.cleanup)
        for name, value in rabbit.items():
            conf.set_override(name, value, group='oslo_messaging_rabbit')
        return conf

    def test_quorum_queues_on_three_nodes_keep_queued_work(self):
        line = queue_guarantees.describe(self._conf(
            'rabbit://u:p@a:5672,u:p@b:5672,u:p@c:5672/',
            rabbit_quorum_queue=True))
        self.assertIn('quorum queues on 3 broker nodes', line)
        self.assertIn('replicated and survive a rolling restart of the '
                      'nodes and the loss of one node', line)

    def test_quorum_queues_on_one_node_name_the_single_point(self):
        line = queue_guarantees.describe(self._conf(
            'rabbit://u:p@a:5672/', rabbit_quorum_queue=True))
        self.assertIn('quorum queues on 1 broker node', line)
        self.assertIn("kept on that node's disk", line)
        self.assertIn('wait while it is down', line)

    def test_default_classic_queues_say_queued_work_can_be_lost(self):
        line = queue_guarantees.describe(self._conf('rabbit://u:p@a:5672/'))
        self.assertIn('classic queues', line)
        self.assertIn('lost when the broker node holding them restarts',
                      line)
        self.assertIn('rabbit_quorum_queue', line)

    def test_durable_classic_queues(self):
        line = queue_guarantees.describe(self._conf(
            'rabbit://u:p@a:5672,u:p@b:5672/', amqp_durable_queues=True))
        self.assertIn('durable classic queues', line)
        self.assertIn('unavailable while the node holding them is down',
                      line)

    def test_a_transport_other_than_rabbit_promises_nothing(self):
        line = queue_guarantees.describe(self._conf('fake://'))
        self.assertIn('transport fake', line)
