"""Two hypervisor hosts on one machine.

A private RabbitMQ; for each of host-a and host-b a real systemd of its
own (tests/fixtures/systemd.py) running a private libvirtd (own
directories, host UUID and migration ports) as libvirtd.service
(tools/gate/libvirtd_unit.py) and the shipped compute-agent.service
(tools/gate/systemd_agent.py), ordered after it; an RPC client per
agent that notes when every reply arrived, which is how drain lags are
measured from outside the agent. Everything stays up across the runs of
a gate job; agents are started again after each stop.
"""

import configparser
import dataclasses
import os
import threading
import time

import fixtures
import oslo_messaging

from tests.fixtures import rabbitmq
from tests.fixtures import rpc
from tests.fixtures import cgroups
from tests.fixtures import systemd
from tests.realguest import libvirtd
from tools.gate import libvirtd_unit
from tools.gate import systemd_agent
from tools.gate.failure import GateFailure

HOST_NAMES = ('host-a', 'host-b')
RPC_TIMEOUT = 60


class PendingCall:
    """An RPC call running in a thread of its own."""

    def __init__(self, client, method, topic, request_id, timeout, kwargs):
        self.method = method
        self.request_id = request_id or rpc.new_request_id()
        self.sent = time.monotonic()
        self.replied = None
        self.result = self.error = None
        self._done = threading.Event()
        threading.Thread(
            target=self._call, daemon=True,
            args=(client, topic, timeout, kwargs)).start()

    def _call(self, client, topic, timeout, kwargs):
        try:
            self.result = client.call(self.method, topic=topic,
                                      request_id=self.request_id,
                                      timeout=timeout, **kwargs)
        except Exception as error:  # reported to whoever waits
            self.error = error
        finally:
            self.replied = time.monotonic()
            self._done.set()

    @property
    def done(self):
        return self._done.is_set()

    @property
    def ended(self):
        """When the answer (or error) arrived; None until then."""
        return self.replied

    def wait(self, timeout):
        """The call's result; raises its error, or TimeoutError."""
        if not self._done.wait(timeout):
            raise TimeoutError(f'{self.method} ({self.request_id}) not '
                               f'answered within {timeout} s')
        if self.error is not None:
            raise self.error
        return self.result


class RecordingClient:
    """Calls to one agent; remembers when each answer arrived."""

    def __init__(self, client):
        self._client = client
        self._lock = threading.Lock()
        self._answers = []  # time.monotonic() of each reply or error

    def call(self, method, topic=rpc.TOPIC, timeout=RPC_TIMEOUT,
             request_id=None, **kwargs):
        try:
            result = self._client.call(method, topic=topic, timeout=timeout,
                                       request_id=request_id, **kwargs)
        except oslo_messaging.MessagingTimeout:
            raise  # nobody answered
        except Exception:
            self._note_answer()  # an error reply is an answer too
            raise
        self._note_answer()
        return result

    def _note_answer(self):
        with self._lock:
            self._answers.append(time.monotonic())

    def call_in_background(self, method, topic=rpc.TOPIC,
                           timeout=RPC_TIMEOUT, request_id=None, **kwargs):
        return PendingCall(self, method, topic, request_id, timeout, kwargs)

    def cast(self, method, topic=rpc.TOPIC, **kwargs):
        self._client.cast(method, topic=topic, **kwargs)

    def last_answer_before(self, moment):
        with self._lock:
            earlier = [t for t in self._answers if t <= moment]
        return max(earlier) if earlier else None


@dataclasses.dataclass
class Host:
    name: str
    libvirtd: libvirtd_unit.LibvirtdUnit
    systemd: systemd.PrivateSystemd
    agent: systemd_agent.SystemdAgent
    rpc: RecordingClient
    state_path: str
    graceful_shutdown_timeout: int

    def console_log(self, instance_uuid):
        return os.path.join(self.state_path, 'instances', instance_uuid,
                            'console.log')

    def compute_queue(self):
        return f'{rpc.TOPIC}.{self.name}'


class Deployment(fixtures.Fixture):
    """The broker, both hosts, and the guest images."""

    def __init__(self, workdir, executable, concurrency):
        super().__init__()
        self.workdir = workdir
        self.executable = executable
        self.concurrency = concurrency  # every agent's mode
        self.hosts = {}
        # Each host's systemd cgroup subtree: none may outlive the gate.
        self.cgroup_names = []
        self.images = None
        self.broker = None

    def _setUp(self):
        self.images = libvirtd.guest_images()
        self.broker = self.useFixture(rabbitmq.RabbitMQFixture()).broker
        for name in HOST_NAMES:
            self.hosts[name] = self._start_host(name)

    def _start_host(self, name):
        host_dir = os.path.join(self.workdir, name)
        host_systemd = systemd.PrivateSystemd(name, base_dir=host_dir)
        self.cgroup_names.append(host_systemd.cgroup_name)
        self.useFixture(host_systemd)
        # Its guests are destroyed and it is stopped after the agent, and
        # before the host's systemd goes with whatever QEMU is left.
        hypervisor = self.useFixture(libvirtd_unit.LibvirtdUnit(
            name, host_systemd, os.path.join(self.workdir, 'libvirt')))
        state_path = os.path.join(host_dir, 'state')
        # The unit's StateDirectory= creates the default state_path; each
        # agent here has its own.
        os.makedirs(state_path, exist_ok=True)
        config_file = os.path.join(host_dir, 'compute-agent.conf')
        self._write_config(config_file, name, state_path, hypervisor.uri)
        agent = systemd_agent.SystemdAgent(
            host_systemd, self.executable, config_file,
            os.path.join(host_dir, 'journal.log'), self.concurrency)
        # Stopped like any service (it drains), before libvirtd and then
        # its systemd go.
        self.addCleanup(agent.stop)
        agent.start()
        client = self.useFixture(rpc.AgentRPCClient(
            self.broker.transport_url, name, timeout=RPC_TIMEOUT))
        recording = RecordingClient(client)
        status = recording.call('get_service_status')
        # The drop-in's environment reached the agent: the runs test the
        # mode the report names.
        if status.get('concurrency') != self.concurrency:
            raise GateFailure(
                f'the agent on {name} runs in '
                f'{status.get("concurrency")} mode, not in '
                f'{self.concurrency} as its unit\'s environment says')
        return Host(name, hypervisor, host_systemd, agent, recording,
                    state_path,
                    status['graceful_shutdown_timeout'])

    def _write_config(self, path, host, state_path, connection_uri):
        # The production defaults stand (shutdown_timeout,
        # graceful_shutdown_timeout, retry interval): the gate tests the
        # agent as shipped, as it behaves between separate hosts. Logs go
        # to stderr, i.e. the journal.
        config = configparser.ConfigParser(interpolation=None)
        config.read_dict({
            'DEFAULT': {'host': host,
                        'transport_url': self.broker.transport_url,
                        'state_path': state_path},
            'libvirt': {'connection_uri': connection_uri,
                        # No usable KVM on the machines this runs on.
                        'virt_type': 'qemu',
                        # Real hosts without shared storage stream a cold
                        # migration's disk (auto); two hosts on one
                        # machine see each other's files and would not.
                        'cold_migration_disk_transfer': 'stream'},
        })
        with open(path, 'w') as config_out:
            config.write(config_out)

    def other_hosts(self, host):
        return [other for other in self.hosts.values() if other is not host]

    def recover(self):
        """Every host's libvirtd and agent running and ready again,
        whatever a failed run left behind: a hung agent is killed
        first."""
        for host in self.hosts.values():
            host.libvirtd.recover()
            host.agent.recover()

    def supervisor(self):
        """'systemd <version>', as the hosts' systemd reports it."""
        versions = {host.systemd.version.split(' (')[0]
                    for host in self.hosts.values()}
        return ', '.join(sorted(versions))

    def cgroups_left(self):
        """What the hosts' systemds left in the machine's cgroup
        hierarchies (call after cleanUp): nothing, normally."""
        return sorted({path for name in self.cgroup_names
                       for path in cgroups.leftovers(name)})
