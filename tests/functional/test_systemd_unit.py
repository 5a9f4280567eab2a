"""The shipped systemd unit under a real systemd.

Each test runs a private systemd (tests/fixtures/systemd.py) with
etc/systemd/compute-agent.service installed unchanged (a drop-in gives
only this machine's paths and output file), drives the agent with
systemctl as an operator would, and checks what systemd reports
(`systemctl show`) as well as what the agent answers over the test's
private RabbitMQ. The hypervisor is libvirt's test:///default; builds
held waiting for an external event (tests/faults/held_work.py) keep work
in flight. After every test, nothing of it may be left in the machine's
cgroup hierarchies.
"""

import configparser
import os
import subprocess
import sys
import threading
import uuid

import testtools
from testtools import content

from tests.faults import held_work
from tests.fixtures import cgroups
from tests.fixtures.polling import wait_for
from tests.fixtures import rabbitmq
from tests.fixtures import rpc
from tests.fixtures import systemd
from tools.gate import unitfile

AGENT = systemd.AGENT_UNIT
RELOAD_LINE = 'SIGHUP: re-read the configuration'
# Bounds that only keep a broken agent from hanging the run.
TIMEOUT = 60
HELD_BUILDS = 2


class HeldBuild:
    """A held build called in a thread; its answer once released."""

    def __init__(self, client):
        self.instance = held_work.held_instance()
        self.uuid = self.instance['uuid']
        self.result = self.error = None
        self._thread = threading.Thread(target=self._call, args=(client,))
        self._thread.start()

    def _call(self, client):
        try:
            self.result = client.call(held_work.BUILD,
                                      instance=self.instance,
                                      timeout=TIMEOUT * 2)
        except Exception as error:  # reported by answer()
            self.error = error

    def answer(self):
        self._thread.join(TIMEOUT * 2)
        if self._thread.is_alive() or self.error is not None:
            raise AssertionError(f'held build {self.uuid}: no answer '
                                 f'({self.error!r})')
        return self.result


class SystemdUnitTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        reason = systemd.unavailable_reason()
        if reason:
            self.skipTest(reason)
        self.broker = rabbitmq.shared_broker()
        self.host = systemd.PrivateSystemd('unit-test')
        # Runs after the private systemd's own cleanup.
        self.addCleanup(self._check_no_cgroups_left, self.host.cgroup_name)
        self.useFixture(self.host)
        self.addDetail('supervisor', content.text_content(self.host.version))
        self.hostname = f'systemd-{uuid.uuid4().hex[:10]}'
        self.output_file = os.path.join(self.host.base_dir, 'agent.log')
        self.addDetail('agent-output', content.Content(
            content.UTF8_TEXT, lambda: [self._output().encode()]))
        self.host.install_agent(self._executable(), self._write_config(),
                                self.output_file)
        self.unit = unitfile.ServiceUnit.load()
        self.client = self.useFixture(rpc.AgentRPCClient(
            self.broker.transport_url, self.hostname, timeout=TIMEOUT))

    @staticmethod
    def _executable():
        # The entry point `pip install` made in this virtualenv.
        return os.path.join(os.path.dirname(sys.executable), 'compute-agent')

    def _write_config(self):
        # state_path stays the default, /var/lib/compute-agent, made by
        # the unit's StateDirectory= in the simulated host's /var/lib.
        # Logs go to stderr, i.e. the unit's output file.
        path = os.path.join(self.host.base_dir, 'compute-agent.conf')
        config = configparser.ConfigParser(interpolation=None)
        config.read_dict({
            'DEFAULT': {'host': self.hostname,
                        'transport_url': self.broker.transport_url},
            'libvirt': {'connection_uri': 'test:///default'},
        })
        with open(path, 'w') as config_out:
            config.write(config_out)
        return path

    def _output(self):
        try:
            with open(self.output_file, errors='replace') as output:
                return output.read()
        except FileNotFoundError:
            return ''

    def _check_no_cgroups_left(self, name):
        self.assertEqual([], cgroups.leftovers(name))

    def _start(self):
        self.host.systemctl('start', AGENT)
        return self.host.show(AGENT, 'ActiveState', 'SubState', 'MainPID',
                              'StatusText', 'NRestarts')

    def _hold_builds(self, count):
        builds = [HeldBuild(self.client) for _ in range(count)]
        uuids = sorted(build.uuid for build in builds)
        # Recorded, not only in flight: what a kill then interrupts has
        # an action record to show it.
        wait_for(lambda: held_work.builds_recorded(self.client) == uuids,
                 TIMEOUT, f'{count} held builds recorded')
        return builds

    def test_start_returns_once_ready(self):
        self.assertTrue(self.host.version.startswith('systemd '),
                        self.host.version)

        shown = self._start()

        # Type=notify: systemctl start came back only after READY=1.
        self.assertEqual(('active', 'running'),
                         (shown['ActiveState'], shown['SubState']))
        self.assertEqual(f'serving as host {self.hostname}',
                         shown['StatusText'])
        status = self.client.call('get_service_status')
        self.assertEqual('running', status['state'])
        # StateDirectory= made the default state_path, with its mode.
        state_dir = os.path.join(self.host.var_lib, 'compute-agent')
        self.assertEqual(0o711, os.stat(state_dir).st_mode & 0o777)

    def test_reload_while_operations_run(self):
        before = self._start()
        builds = self._hold_builds(HELD_BUILDS)

        self.host.systemctl('reload', AGENT)

        wait_for(lambda: RELOAD_LINE in self._output(), TIMEOUT,
                 'the reload line')
        for topic in (rpc.TOPIC, rpc.ALT_TOPIC):
            self.assertEqual('running', self.client.call(
                'get_service_status', topic=topic)['state'])
        self.assertEqual(sorted(build.uuid for build in builds),
                         held_work.builds_in_flight(self.client))
        for build in builds:
            self.assertTrue(held_work.release(self.client, build.uuid))
        self.assertEqual(['active'] * HELD_BUILDS,
                         [build.answer()['vm_state'] for build in builds])
        after = self.host.show(AGENT, 'ActiveState', 'MainPID', 'NRestarts')
        self.assertEqual(('active', before['MainPID'], '0'),
                         (after['ActiveState'], after['MainPID'],
                          after['NRestarts']))

    def test_stop_drains_in_flight_work_and_exits_0(self):
        self._start()
        build = self._hold_builds(1)[0]

        self.host.systemctl('--no-block', 'stop', AGENT)

        draining = self.host.wait_for_state(
            AGENT, TIMEOUT, ActiveState='deactivating',
            StatusText=lambda text: text.startswith('draining'))
        self.addDetail('status-in-drain',
                       content.text_content(draining['StatusText']))
        self.assertTrue(held_work.release(self.client, build.uuid))
        self.assertEqual('active', build.answer()['vm_state'])
        # Result=timeout would say TimeoutStopSec= ran out first.
        stopped = self.host.wait_for_state(
            AGENT, self.unit.stop_timeout, ActiveState='inactive')
        stopped.update(self.host.show(AGENT, 'Result', 'ExecMainCode',
                                      'ExecMainStatus', 'StatusText'))
        self.addDetail('stopped', content.json_content(stopped))
        # ExecMainCode=1 (exited): the agent's own exit, not the zeros of
        # a unit systemd unloaded and loaded afresh.
        self.assertEqual(('success', '1', '0'),
                         (stopped['Result'], stopped['ExecMainCode'],
                          stopped['ExecMainStatus']), stopped)
        self.assertRegex(self._output(), r'Drained in [\d.]+ s; exiting')

    def test_sigkill_is_restarted_and_the_build_settled(self):
        before = self._start()
        build = self._hold_builds(1)[0]

        self.host.systemctl('kill', '-s', 'KILL', AGENT)

        # Restart=on-failure: the kill is a failure, RestartSec= passes
        # in auto-restart, then the agent is started again.
        self.host.wait_for_state(AGENT, TIMEOUT, SubState='auto-restart',
                                 Result='signal')
        self.host.wait_for_state(AGENT, TIMEOUT, ActiveState='active',
                                 SubState='running', NRestarts='1')
        self.assertNotEqual(before['MainPID'],
                            self.host.show(AGENT, 'MainPID')['MainPID'])
        record = self.client.call('get_instance', instance_uuid=build.uuid)
        self.addDetail('record-after-restart', content.json_content(record))
        self.assertIsNone(record['task_state'])
        builds = [entry for entry in self.client.call(
            'get_instance_actions', instance_uuid=build.uuid)
            if entry['action'] == 'build']
        self.assertEqual('interrupted', builds[-1]['result'])
        self.assertIsNotNone(builds[-1]['finish_time'])


class TeardownTest(testtools.TestCase):

    def test_cleanup_kills_everything_in_its_cgroups(self):
        reason = systemd.unavailable_reason()
        if reason:
            self.skipTest(reason)
        host = systemd.PrivateSystemd('teardown-test')
        host.setUp()
        try:
            # A process outside its PID namespace, dropped into one of its
            # cgroups: systemd's death does not end it, the cleanup must.
            stray = subprocess.Popen(['sleep', '600'])
            self.addCleanup(stray.kill)
            with open(host.cgroups.procs_files()[0], 'w') as procs:
                procs.write(str(stray.pid))
            self.assertIn(stray.pid, host.cgroups.processes())
        finally:
            host.cleanUp()
        self.assertEqual(-9, stray.wait(TIMEOUT))
        self.assertEqual([], cgroups.leftovers(host.cgroup_name))
