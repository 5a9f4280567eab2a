"""Signals at awkward moments: a real agent process and a real broker.

SIGHUP under load (nothing lost, nothing restarted), SIGHUP switching
debug logging and reopening a renamed log file, SIGINT's immediate exit,
and SIGTERM at several moments of the agent's start.
"""

import configparser
import os
import signal
import threading
import uuid

from tests.faults import base
from tests.faults import held_work
from tests.fixtures import agent as agent_fixture
from tests.fixtures.polling import wait_for
from tests.fixtures import rabbitmq
from tests.fixtures import rpc

RELOAD_LINE = 'SIGHUP: re-read the configuration'
SERVING_LINE = 'compute-agent serving topics'
# Bounds that only keep a broken agent from hanging the run.
TIMEOUT = 30
EXIT_TIMEOUT = 60
SIGHUPS = 5
HELD_BUILDS = 4


def _read(path):
    try:
        with open(path, errors='replace') as text:
            return text.read()
    except FileNotFoundError:
        return ''


class SignalTestCase(base.TestCase):
    def setUp(self):
        super().setUp()
        self.broker = rabbitmq.shared_broker()
        self.agent = self.useFixture(agent_fixture.AgentProcess(
            self.broker.transport_url))
        self.agent.wait_ready()
        self.client = self.useFixture(rpc.AgentRPCClient(
            self.broker.transport_url, self.agent.host, timeout=TIMEOUT))

    def reload_lines(self, path=None):
        text = _read(path) if path else self.agent.log_text()
        return [line for line in text.splitlines() if RELOAD_LINE in line]

    def sighup(self):
        """SIGHUP, and the reload line it made the agent log."""
        seen = len(self.reload_lines())
        self.agent.signal(signal.SIGHUP)
        return wait_for(lambda: self.reload_lines()[seen:], TIMEOUT,
                        'the reload line of a SIGHUP')[0]

    def log_after(self, line):
        return self.agent.log_text().partition(line)[2]

    def set_option(self, section, option, value):
        config = configparser.ConfigParser(interpolation=None)
        config.read(self.agent.config_file)
        config.set(section, option, value)
        with open(self.agent.config_file, 'w') as config_out:
            config.write(config_out)

    def hold_builds(self, count):
        """Start count held builds, each answered in results[uuid]; returns
        (uuids, threads, results) once the agent has them all in flight."""
        instances = [held_work.held_instance() for _ in range(count)]
        results = {}

        def build(instance):
            results[instance['uuid']] = self.client.call(
                held_work.BUILD, instance=instance, timeout=EXIT_TIMEOUT)
        threads = [threading.Thread(target=build, args=(instance,))
                   for instance in instances]
        for thread in threads:
            thread.start()
        uuids = sorted(instance['uuid'] for instance in instances)
        wait_for(lambda: held_work.builds_in_flight(self.client) == uuids,
                 TIMEOUT, f'{count} held builds in flight')
        return uuids, threads, results


class SighupTest(SignalTestCase):
    def test_sighup_under_load_loses_nothing_and_restarts_nothing(self):
        """SIGHUP five times while four builds are held in flight and
        status calls stream on both topics."""
        uuids, builds, results = self.hold_builds(HELD_BUILDS)
        streaming = threading.Event()
        answers, errors = [], []

        def stream_status_calls():
            topics = (rpc.TOPIC, rpc.ALT_TOPIC)
            while streaming.is_set():
                try:
                    answers.append(self.client.call(
                        'get_service_status',
                        topic=topics[len(answers) % 2])['state'])
                except Exception as error:
                    errors.append(repr(error))
        streaming.set()
        streamer = threading.Thread(target=stream_status_calls)
        streamer.start()
        try:
            answered_before = len(answers)
            reloads = [self.sighup() for _ in range(SIGHUPS)]
            answered_during = len(answers) - answered_before
            still_held = held_work.builds_in_flight(self.client)
        finally:
            streaming.clear()
            streamer.join(TIMEOUT)
        for instance_uuid in uuids:
            self.assertTrue(held_work.release(self.client, instance_uuid))
        for thread in builds:
            thread.join(TIMEOUT)

        ready = [n.pid for n in self.agent.notifications
                 if n.fields.get('READY') == '1']
        self.add_finding(
            f'{SIGHUPS} SIGHUPs, {len(reloads)} reload lines '
            f'("{reloads[-1].partition(RELOAD_LINE)[2].strip()}"); '
            f'{answered_during} status calls answered while they came, '
            f'{len(errors)} failed; the {HELD_BUILDS} held builds stayed in '
            f'flight ({len(still_held)}) and then finished '
            f'{sorted(r["vm_state"] for r in results.values())}; READY '
            f'sent {len(ready)} time(s), pid {self.agent.pid} still '
            f'running: {self.agent.running}')
        self.assertEqual([], errors)
        self.assertEqual({'running'}, set(answers))
        self.assertEqual(uuids, still_held)
        self.assertEqual({u: 'active' for u in uuids},
                         {u: r['vm_state'] for u, r in results.items()})
        # The same process, started once.
        self.assertTrue(self.agent.running)
        self.assertEqual([self.agent.pid], ready)
        self.assertEqual(1, self.agent.log_text().count(SERVING_LINE))
        self.agent.sigterm()
        self.assertEqual(0, self.agent.wait_exit(EXIT_TIMEOUT))

    def debug_lines_after(self, line):
        return [logged for logged in self.log_after(line).splitlines()
                if ' DEBUG ' in logged]

    def build(self):
        """A build: its guest's lifecycle events are logged at DEBUG."""
        instance = held_work.held_instance()
        del instance['wait_for_events']
        return self.client.call(held_work.BUILD, instance=instance)

    def test_sighup_switches_debug_logging_on_and_off(self):
        """Set debug = True in the config file and SIGHUP, build an
        instance; set it back, SIGHUP and build again."""
        self.assertNotIn(' DEBUG ', self.agent.log_text())
        self.set_option('DEFAULT', 'debug', 'True')
        switched_on = self.sighup()
        self.build()
        debug_line = wait_for(lambda: self.debug_lines_after(switched_on),
                              TIMEOUT, 'a DEBUG line after the reload')[0]

        self.set_option('DEFAULT', 'debug', 'False')
        switched_off = self.sighup()
        # Every line logged at DEBUG after this reload line was emitted
        # after the level changed back.
        self.build()
        debug_after_off = self.debug_lines_after(switched_off)
        self.add_finding(f'on: {switched_on}\nfirst DEBUG line: '
                         f'{debug_line}\noff: {switched_off}\nDEBUG lines '
                         f'after it: {len(debug_after_off)}')
        self.assertIn('debug = True', switched_on)
        self.assertIn('debug = False', switched_off)
        self.assertEqual([], debug_after_off)

    def test_sighup_applies_new_log_levels(self):
        """Set default_log_levels = oslo_messaging=DEBUG (debug stays
        off) and SIGHUP, then make a call."""
        self.set_option('DEFAULT', 'default_log_levels',
                        'oslo_messaging=DEBUG')
        reloaded = self.sighup()
        self.client.call('get_service_status')
        debug_line = wait_for(lambda: self.debug_lines_after(reloaded),
                              TIMEOUT, 'an oslo_messaging DEBUG line')[0]
        self.add_finding(f'{reloaded}\nthen: {debug_line}')
        self.assertIn('default_log_levels = oslo_messaging=DEBUG', reloaded)
        self.assertIn(' DEBUG oslo_messaging', debug_line)

    def test_renamed_log_file_is_replaced_after_sighup(self):
        """Rename the log file as logrotate does, then SIGHUP."""
        rotated = self.agent.log_file + '.1'
        os.rename(self.agent.log_file, rotated)
        self.agent.signal(signal.SIGHUP)
        wait_for(lambda: self.reload_lines(self.agent.log_file), TIMEOUT,
                 'the reload line in a new file at the configured path')
        status = self.client.call('get_service_status')
        self.add_finding(
            f'new {self.agent.log_file}: '
            f'{self.reload_lines(self.agent.log_file)[0]}; rotated file '
            f'has {len(self.reload_lines(rotated))} reload line(s); '
            f'agent {status["state"]}')
        self.assertEqual([], self.reload_lines(rotated))
        self.assertEqual('running', status['state'])


class SigintTest(SignalTestCase):
    def test_sigint_exits_at_once_without_draining(self):
        """SIGINT while a build is held in flight."""
        instance = held_work.held_instance()
        self.client.cast(held_work.BUILD, instance=instance)
        wait_for(lambda: held_work.builds_in_flight(self.client), TIMEOUT,
                 'the held build in flight')
        self.agent.sigint()
        code = self.agent.wait_exit(EXIT_TIMEOUT)
        log = self.agent.log_text()
        self.add_finding(f'exit {code} '
                         f'{self.agent.exit_time - self.agent.signal_time:.2f}'
                         f' s after SIGINT; drained: {"Drain" in log}')
        self.assertEqual(1, code)
        self.assertNotIn('Drain', log)


class SigtermDuringStartTest(base.TestCase):
    # What the agent's log shows when SIGTERM is sent, in start order.
    MOMENTS = [
        ('its first log line (the service being built)',
         'compute-agent starting as host'),
        ('the launcher about to call start()',
         'running service in main process'),
        ('init_host connected to libvirt', 'Connected to libvirt'),
        # Set per run: compute-alt has taken a request queued for it, so
        # the servers are starting (compute right after compute-alt).
        ('compute-alt serving, just before READY', None),
    ]

    def test_sigterm_at_each_moment_of_the_start(self):
        """SIGTERM an agent at four moments of its start, each time with
        a build queued for it before."""
        broker = rabbitmq.shared_broker()
        agent = self.useFixture(agent_fixture.AgentProcess(
            broker.transport_url))
        client = self.useFixture(rpc.AgentRPCClient(
            broker.transport_url, agent.host, timeout=TIMEOUT))
        # A first run declares the agent's queues: casts wait there.
        agent.wait_ready()
        agent.sigterm()
        self.assertEqual(0, agent.wait_exit(EXIT_TIMEOUT))

        builds = []
        outcomes = []
        for moment, marker in self.MOMENTS:
            instance = held_work.held_instance()
            del instance['wait_for_events']
            client.cast(held_work.BUILD, instance=instance)
            builds.append(instance['uuid'])
            if marker is None:
                marker_uuid = str(uuid.uuid4())
                client.cast('external_instance_event', topic=rpc.ALT_TOPIC,
                            instance_uuid=marker_uuid, name='start-marker')
                marker = f'for instance {marker_uuid}'
            log_start = len(agent.log_text())
            agent.restart()
            wait_for(lambda: marker in agent.log_text()[log_start:],
                     TIMEOUT, moment)
            agent.sigterm()
            code = agent.wait_exit(EXIT_TIMEOUT)
            run_log = agent.log_text()[log_start:]
            said = [line.partition(' compute_agent.service ')[2]
                    for line in run_log.splitlines()
                    if 'nothing to drain' in line or 'Drained in' in line]
            ready = any(n.fields.get('READY') == '1' and n.pid == agent.pid
                        for n in agent.notifications)
            outcomes.append((moment, code, said, ready))
        self.add_finding('\n'.join(
            f'{moment}: exit {code}, READY {"sent" if ready else "not sent"}'
            f', said {said}' for moment, code, said, ready in outcomes))
        for moment, code, said, _ready in outcomes:
            self.assertEqual(0, code, moment)
            self.assertEqual(1, len(said), f'{moment}: {said}')

        # Never lost: each build was served, or waited on the broker for
        # this start.
        agent.restart()
        agent.wait_ready()
        states = wait_for(
            lambda: self._all_settled(client, builds), TIMEOUT,
            'every build queued before a SIGTERM served')
        self.add_finding(f'builds after the last restart: {states}')
        self.assertEqual(['active'] * len(builds), states)
        self.assertEqual(0, broker.queue_depth(f'{rpc.TOPIC}.{agent.host}'))

    @staticmethod
    def _all_settled(client, builds):
        records = [held_work.instance_or_none(client, u) for u in builds]
        if any(r is None or r['vm_state'] == 'building' for r in records):
            return None
        return [r['vm_state'] for r in records]
