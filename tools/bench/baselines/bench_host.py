"""One simulated host for the side-by-side bench, and its baseline.

A private RabbitMQ, a private libvirtd (real QEMU guests under it), the
bench's own view of the guests' STOPPED events, an agent on that
libvirtd, and the bare oslo.messaging server (bare_server.py) on the same
broker, each with a wire client. Every start of the agent or the bare
server is timed to its READY=1.
"""

import os
import time
import uuid

import fixtures

from tests.fixtures import agent as agent_fixture
from tests.fixtures import rabbitmq
from tests.fixtures import rpc
from tests.realguest import libvirtd
from tools.bench.baselines import lifecycle

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))))
# The smallest memory the guests' kernel and ~1 MB initramfs boot in
# comfortably; under TCG the guests' cost is CPU, not memory.
GUEST_MEMORY_MB = 96
# Generous: TCG guests on 2 shared cores, several booting at once.
GUEST_BOOT_TIMEOUT = 300
STOP_TIMEOUT = 120
READY_TIMEOUT = 60


class BareServerProcess(agent_fixture.AgentProcess):
    """The baseline server run as the agent fixture runs an agent: same
    config file, NOTIFY_SOCKET, signals and exit watching."""

    module = 'tools.bench.baselines.bare_server'


def _ready_seconds(process, started):
    process.wait_ready(READY_TIMEOUT)
    ready = [n.received for n in process.notifications
             if n.fields.get('READY') == '1']
    return ready[-1] - started


class BenchHost(fixtures.Fixture):
    """After setUp: hypervisor, events, agent, bare, their clients
    agent_rpc and bare_rpc, and ready_seconds['agent'] and ['bare'] (one
    per start)."""

    def __init__(self, images):
        super().__init__()
        self.images = images

    def _setUp(self):
        url = self.useFixture(rabbitmq.RabbitMQFixture()).transport_url
        self.hypervisor = self.useFixture(
            libvirtd.PrivateLibvirtd('bench-host'))
        self.events = lifecycle.StoppedEvents(self.hypervisor.uri)
        self.events.open()
        self.addCleanup(self.events.close)
        self.ready_seconds = {'agent': [], 'bare': []}
        self.agent = self._started('agent', agent_fixture.AgentProcess(
            url, connection_uri=self.hypervisor.uri, virt_type='qemu',
            shutdown_timeout=60, graceful_shutdown_timeout=60))
        # Run with python -m from anywhere: the repository on its path.
        self.bare = self._started('bare', BareServerProcess(
            url, environment={'PYTHONPATH': REPO_ROOT}))
        self.agent_rpc = self.useFixture(rpc.AgentRPCClient(
            url, self.agent.host, timeout=STOP_TIMEOUT))
        self.bare_rpc = self.useFixture(rpc.AgentRPCClient(
            url, self.bare.host, timeout=STOP_TIMEOUT))

    def _started(self, name, process):
        started = time.monotonic()
        self.useFixture(process)
        self.ready_seconds[name].append(_ready_seconds(process, started))
        return process

    def restart(self, name):
        """Start the (exited) agent or bare server again, to READY."""
        process = getattr(self, name)
        started = time.monotonic()
        process.restart()
        self.ready_seconds[name].append(_ready_seconds(process, started))

    # -- guests ----------------------------------------------------------

    def console_log(self, instance_uuid):
        return os.path.join(self.agent.state_path, 'instances',
                            instance_uuid, 'console.log')

    def boot(self):
        """A new guest that honours ACPI, booted by the agent (not yet
        READY: see wait_ready)."""
        instance = {
            'uuid': str(uuid.uuid4()), 'name': 'bench-acpi', 'vcpus': 1,
            'memory_mb': GUEST_MEMORY_MB,
            'image': {'id': 'debian-busybox', 'properties': {},
                      'kernel': self.images['kernel'],
                      'ramdisk': self.images['initramfs_acpi'],
                      'cmdline': libvirtd.GUEST_CMDLINE}}
        return self.agent_rpc.call('build_and_run_instance',
                                   instance=instance)['uuid']

    def start(self, instance_uuid):
        """Start a stopped guest again through the agent. Its console log
        is emptied first, so that wait_ready sees this boot's READY."""
        open(self.console_log(instance_uuid), 'w').close()
        self.agent_rpc.call('start_instance', instance_uuid=instance_uuid)

    def wait_ready(self, instance_uuid):
        libvirtd.wait_until_guest_ready(self.console_log(instance_uuid),
                                        GUEST_BOOT_TIMEOUT)

    def stop(self, instance_uuid):
        """A clean stop through the agent: (request sent, reply received,
        the agent's power-off record)."""
        requested = time.monotonic()
        record = self.agent_rpc.call('stop_instance',
                                     instance_uuid=instance_uuid)
        return requested, time.monotonic(), record['last_power_off']
