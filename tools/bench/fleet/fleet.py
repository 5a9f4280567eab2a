"""N agents, each its own host, on a private three-node RabbitMQ cluster.

Every agent runs on libvirt's test:///default driver with a state_path of
its own, quorum queues, and every node in its transport_url
(tests.fixtures.rabbitmq_cluster, tests.fixtures.agent). The fleet also
restarts its agents one at a time, as a rolling upgrade does, kills a
broker node and brings it back, and measures what it holds: RSS, queues.
"""

import os
import threading
import time
import uuid

import fixtures

from tests.fixtures import agent as agent_fixture
from tests.fixtures import rabbitmq_cluster
from tests.fixtures import rpc
from tools.bench import procfs

# Bounds that only keep a broken run from hanging: 50 agents starting at
# once on 2 cores take about a minute to all be ready.
READY_TIMEOUT = 300
EXIT_TIMEOUT = 90
QUORUM = {'oslo_messaging_rabbit': {'rabbit_quorum_queue': 'true'}}


class Fleet(fixtures.Fixture):
    """The cluster and the agents; the cluster outlives the agents."""

    def __init__(self, size):
        super().__init__()
        self.size = size

    def _setUp(self):
        started = time.monotonic()
        self.cluster = self.useFixture(rabbitmq_cluster.ClusterFixture())
        self.cluster_start_seconds = time.monotonic() - started
        started = time.monotonic()
        run = uuid.uuid4().hex[:6]
        # All started at once, then waited for: they boot in parallel.
        self.agents = [self.useFixture(agent_fixture.AgentProcess(
            self.cluster.transport_url, host=f'fleet-{run}-{index:03d}',
            extra_config=QUORUM)) for index in range(self.size)]
        for agent in self.agents:
            agent.wait_ready(READY_TIMEOUT)
        self.agents_start_seconds = time.monotonic() - started
        self.drain_seconds = {}

    @property
    def hosts(self):
        return [agent.host for agent in self.agents]

    @property
    def transport_url(self):
        return self.cluster.transport_url

    def databases(self):
        return {agent.host: os.path.join(agent.state_path, 'agent.sqlite')
                for agent in self.agents}

    def restart(self, agent, down=0):
        """SIGTERM, wait for the exit, stay down for down seconds (as an
        upgrade's package install does), start again, wait until ready."""
        agent.sigterm()
        code = agent.wait_exit(EXIT_TIMEOUT)
        if code != 0:
            raise agent_fixture.AgentError(
                f'agent {agent.host} exited with {code} after SIGTERM')
        self.drain_seconds[agent.host] = agent.exit_time - agent.signal_time
        time.sleep(down)
        agent.restart()
        agent.wait_ready(READY_TIMEOUT)

    def rolling_restart(self, halfway=None, down=0):
        """Every agent in turn; halfway() is called once half are done."""
        for index, agent in enumerate(self.agents):
            if halfway is not None and index == len(self.agents) // 2:
                halfway()
            self.restart(agent, down)

    def broker_outage(self, node_down_seconds):
        """Kill the first node (where every client connects first) and
        start it again node_down_seconds later, in a thread; returns it
        and a dict that gets the outage's times, and the connections and
        quorum queue leaders the node had."""
        node = self.cluster.nodes[0]
        times = {'connections': self.connections_by_node().get(node.node),
                 'leaders': sum(leader == node.node for _, leader, _
                                in self.cluster.queues().values())}

        def outage():
            times['killed'] = time.monotonic()
            self.cluster.kill(node)
            time.sleep(node_down_seconds)
            self.cluster.start(node)
            times['back'] = time.monotonic()

        thread = threading.Thread(target=outage, name='broker-outage',
                                  daemon=True)
        thread.start()
        return thread, times

    def agent_rss(self):
        return [procfs.rss_mib(agent.pid) for agent in self.agents
                if agent.running]

    def broker_rss(self):
        """MiB per running node, by node name."""
        rss = {}
        for node in self.cluster.nodes:
            pid = node._beam_pid()
            if pid is not None and node.running:
                rss[node.node] = procfs.rss_mib(pid)
        return rss

    def connections_by_node(self):
        """{node name: AMQP connections}; a connection's Erlang pid
        names the node that holds it."""
        pids = self.cluster.nodes[0].ctl(
            'list_connections', '--quiet', '--no-table-headers',
            'pid').split()
        return {node.node: sum(node.node in pid for pid in pids)
                for node in self.cluster.nodes}

    def queue_counts(self):
        """{queue type: count} on the cluster."""
        counted = {}
        for kind, _, _ in self.cluster.queues().values():
            counted[kind] = counted.get(kind, 0) + 1
        return counted

    def queued_for_agents(self):
        """Messages waiting in the agents' per-host queues; None while
        the broker cannot count one of them."""
        prefixes = tuple(f'{topic}.' for topic in (rpc.TOPIC, rpc.ALT_TOPIC))
        counts = [messages for name, (_, _, messages)
                  in self.cluster.queues().items()
                  if name.startswith(prefixes)]
        return None if None in counts else sum(counts)

    def stop_agents(self):
        """SIGTERM every agent, then wait for each to exit."""
        for agent in self.agents:
            if agent.running:
                agent.sigterm()
        for agent in self.agents:
            agent.wait_exit(EXIT_TIMEOUT)
