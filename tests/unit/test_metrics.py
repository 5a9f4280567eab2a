"""The Prometheus metrics: what each event does to the rendered registry,
bounded labels, the libvirt health read at scrape time, and the HTTP
endpoint."""

import re
import socket
import urllib.request

from oslo_config import cfg
import prometheus_client
from prometheus_client import parser

from compute_agent import concurrency
from compute_agent.conf import metrics as metrics_conf
from compute_agent.conf import opts
from compute_agent import metrics
from compute_agent import power_offs
from compute_agent import telemetry
from compute_agent.virt import driver as virt_driver
from tests.unit import base

UUID = '0d1c5b7e-4f0a-4c1e-9a55-3e1f2b6c7d80'
UUID_PATTERN = re.compile(
    r'[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}',
    re.IGNORECASE)
# Bounds the HTTP tests' waits; only a hang comes near it.
HANG_TIMEOUT = 10


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def samples(registry):
    """{(sample name, frozenset of labels): value} of the rendered text."""
    text = prometheus_client.generate_latest(registry).decode()
    found = {}
    for family in parser.text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = \
                sample.value
    return found


def value(registry, name, **labels):
    return samples(registry).get((name, frozenset(labels.items())))


def clean_outcome(**extra):
    return dict({'requested': 'clean', 'result': 'clean', 'method': 'acpi',
                 'seconds': 1.5, 'timeout': 60, 'timeout_source': 'config',
                 'detected_by': 'event'}, **extra)


class ObserverTest(base.TestCase):
    def setUp(self):
        super().setUp()
        self.clock = Clock()
        self.health = {'connected': True, 'event_loop': 'running',
                       'dispatcher': 'running', 'reconnects': 2}
        self.observer = metrics.MetricsObserver(
            hypervisor_health=lambda: self.health, clock=self.clock)
        self.registry = self.observer.registry

    def value(self, name, **labels):
        return value(self.registry, name, **labels)

    def stop(self, outcome, error=None):
        self.observer.operation_started('stop', UUID, 'req-1')
        self.observer.power_off_started(UUID, 'stop', outcome['requested'],
                                        60, 'config')
        self.observer.power_off_ended(UUID, 'stop', outcome)
        self.observer.operation_ended('stop', UUID, 'req-1', 2.0, error)

    def test_a_clean_power_off_is_counted_with_its_seconds(self):
        self.stop(clean_outcome())
        self.assertEqual(1, self.value(
            'compute_agent_power_offs_total', requested='clean',
            result='clean', method='acpi'))
        self.assertEqual(1, self.value(
            'compute_agent_power_off_seconds_count', requested='clean',
            result='clean'))
        self.assertEqual(1.5, self.value(
            'compute_agent_power_off_seconds_sum', requested='clean',
            result='clean'))

    def test_a_clean_request_forced_after_its_timeout(self):
        self.stop(clean_outcome(result='forced', method='destroy',
                                seconds=60.2, detected_by=None))
        self.assertEqual(1, self.value(
            'compute_agent_power_offs_total', requested='clean',
            result='forced', method='destroy'))

    def test_the_detection_lag_runs_from_the_event_to_the_operation_end(
            self):
        self.observer.operation_started('stop', UUID, 'req-1')
        # The power-off ended 4 ms after the event; the operation's
        # records took 20 ms more.
        self.observer.power_off_ended(
            UUID, 'stop', clean_outcome(off_event_at=self.clock.now - 0.004))
        self.clock.now += 0.020
        self.observer.operation_ended('stop', UUID, 'req-1', 1.6)
        self.assertEqual(1, self.value(
            'compute_agent_power_off_detection_lag_seconds_count'))
        self.assertAlmostEqual(0.024, self.value(
            'compute_agent_power_off_detection_lag_seconds_sum'))
        self.assertEqual(1, self.value(
            'compute_agent_power_off_detection_lag_seconds_bucket',
            le='0.025'))

    def test_no_detection_lag_without_an_event(self):
        self.stop(clean_outcome(detected_by='poll'))
        self.stop(clean_outcome(result='forced', method='destroy'))
        self.assertEqual(0, self.value(
            'compute_agent_power_off_detection_lag_seconds_count'))

    def test_operations_in_flight_go_up_and_back(self):
        self.observer.operation_started('stop', UUID, 'req-1')
        self.observer.operation_started('rescue', 'another', 'req-2')
        self.assertEqual(1, self.value(
            'compute_agent_operations_in_flight', operation='stop'))
        self.observer.operation_ended('stop', UUID, 'req-1', 1.0)
        self.observer.operation_ended('rescue', 'another', 'req-2', 1.0,
                                      error=ValueError('bad'))
        self.assertEqual(0, self.value(
            'compute_agent_operations_in_flight', operation='stop'))
        self.assertEqual(0, self.value(
            'compute_agent_operations_in_flight', operation='rescue'))
        self.assertEqual(1, self.value(
            'compute_agent_operations_total', operation='stop',
            outcome='ok'))
        self.assertEqual(1, self.value(
            'compute_agent_operations_total', operation='rescue',
            outcome='ValueError'))

    def test_rpc_requests_by_method_topic_and_outcome(self):
        self.observer.rpc_request_ended('stop_instance', 'compute', 'ok',
                                        0.2)
        self.observer.rpc_request_ended('stop_instance', 'compute',
                                        'InstanceNotFound', 0.01)
        self.assertEqual(1, self.value(
            'compute_agent_rpc_requests_total', method='stop_instance',
            topic='compute', outcome='InstanceNotFound'))
        self.assertEqual(2, self.value(
            'compute_agent_rpc_request_seconds_count',
            method='stop_instance', topic='compute'))

    def test_the_service_state_and_its_drain(self):
        def state():
            return [name for name in metrics.SERVICE_STATES
                    if self.value('compute_agent_service_state',
                                  compute_agent_service_state=name) == 1]
        self.assertEqual(['starting'], state())
        self.assertIsNone(self.value('compute_agent_drain_seconds'))
        self.observer.service_started('host-a', 7, '1.9')
        self.assertEqual(['running'], state())
        self.observer.drain_started([])
        self.clock.now += 3
        self.assertEqual(['draining'], state())
        self.assertEqual(3, self.value('compute_agent_drain_seconds'))
        self.observer.drain_ended(2.5, True, [])
        self.clock.now += 3
        self.assertEqual(2.5, self.value('compute_agent_drain_seconds'))
        self.observer.service_stopped('host-a', 7, '1.9')
        self.assertEqual(['stopped'], state())

    def test_the_service_info(self):
        self.observer.service_started('host-a', 7, '1.9')
        self.assertEqual(1, self.value(
            'compute_agent_service_info', host='host-a',
            service_version='7', rpc_api_version='1.9',
            concurrency=concurrency.mode()))

    def test_the_libvirt_link_is_read_at_each_scrape(self):
        self.assertEqual(1, self.value('compute_agent_libvirt_connected'))
        self.assertEqual(1, self.value(
            'compute_agent_libvirt_event_loop_alive'))
        self.assertEqual(2, self.value(
            'compute_agent_libvirt_reconnects_total'))
        self.health = dict(self.health, connected=False,
                           event_loop='restarting', dispatcher='stopped')
        self.assertEqual(0, self.value('compute_agent_libvirt_connected'))
        self.assertEqual(0, self.value(
            'compute_agent_libvirt_event_loop_alive'))
        self.assertEqual(0, self.value(
            'compute_agent_libvirt_event_dispatcher_alive'))

    def test_a_failing_health_read_leaves_the_libvirt_gauges_out(self):
        def broken():
            raise RuntimeError('libvirt is wedged')
        observer = metrics.MetricsObserver(hypervisor_health=broken)
        found = samples(observer.registry)
        self.assertNotIn(('compute_agent_libvirt_connected', frozenset()),
                         found)
        self.assertIn(('compute_agent_service_state',
                       frozenset({('compute_agent_service_state',
                                   'starting')})), found)


class BoundedLabelsTest(base.TestCase):
    def test_no_label_value_can_carry_a_uuid(self):
        """Every event, with uuids and request ids wherever a caller could
        put one, leaves no uuid in any label value."""
        observer = metrics.MetricsObserver(
            hypervisor_health=lambda: {'connected': True})
        sneaky = [UUID, UUID.replace('-', ''), 'stop-' + UUID,
                  'req-' + UUID, 'instance-' + UUID[:8]]
        for word in sneaky:
            observer.service_started(word, 1, '1.0')
            observer.operation_started(word, UUID, 'req-' + UUID)
            observer.power_off_started(UUID, word, 'clean', 60, 'config')
            observer.power_off_ended(UUID, word, {
                'requested': word, 'result': word, 'method': word,
                'seconds': 1, 'off_event_at': 99.999})
            observer.operation_ended(word, UUID, 'req-' + UUID, 1.0,
                                     error=None)
            observer.rpc_request_ended(word, word, word, 0.1)
            observer.drain_started([{'instance_uuid': UUID}])
            observer.drain_ended(1.0, False, [{'instance_uuid': UUID}])
        text = prometheus_client.generate_latest(observer.registry).decode()
        labels = [value for family in
                  parser.text_string_to_metric_families(text)
                  for sample in family.samples
                  for key, value in sample.labels.items()
                  if key != 'host']
        self.assertTrue(labels)
        self.assertEqual([], [value for value in labels
                              if UUID_PATTERN.search(value)
                              or re.search(r'[0-9a-f]{8}', value)])

    def test_words_of_the_code_pass(self):
        for word in ('stop', 'soft-reboot', 'already-off', 'guest-agent',
                     'get_service_status', 'compute-alt',
                     'InstanceNotFound', 'MessagingTimeout'):
            self.assertEqual(word, metrics.bounded_label(word))

    def test_anything_else_is_other(self):
        for word in (UUID, 'req-' + UUID, 'deadbeef', '', None, 42,
                     'x' * 65, 'two words', '../etc'):
            self.assertEqual(metrics.OTHER, metrics.bounded_label(word))


class ServerTest(base.TestCase):
    def test_serves_the_registry_over_http(self):
        observer = metrics.MetricsObserver()
        observer.rpc_request_ended('get_service_status', 'compute', 'ok',
                                   0.01)
        server = metrics.MetricsServer(observer.registry, '127.0.0.1', 0)
        server.start()
        self.addCleanup(server.stop)
        url = f'http://127.0.0.1:{server.port}/metrics'
        with urllib.request.urlopen(url, timeout=HANG_TIMEOUT) as reply:
            text = reply.read().decode()
        self.assertIn('compute_agent_rpc_requests_total{method="get_service_'
                      'status",outcome="ok",topic="compute"} 1.0', text)

    def test_a_port_in_use_is_an_error_naming_the_option(self):
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(('127.0.0.1', 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = metrics.MetricsServer(metrics.MetricsObserver().registry,
                                       '127.0.0.1', port)
        error = self.assertRaises(metrics.MetricsError, server.start)
        self.assertIn(f'[metrics] host = 127.0.0.1, port = {port}',
                      str(error))
        self.assertIn('in use', str(error))


class ConfigTest(base.TestCase):
    def conf(self, **overrides):
        conf = cfg.ConfigOpts()
        metrics_conf.register_opts(conf)
        conf([])
        for name, setting in overrides.items():
            conf.set_override(name, setting, group='metrics')
            # The group's options are shared by every ConfigOpts they are
            # registered with, and so are their overrides.
            self.addCleanup(conf.clear_override, name, group='metrics')
        return conf

    def test_off_by_default_on_loopback(self):
        conf = self.conf()
        self.assertEqual((False, '127.0.0.1', 9178),
                         (conf.metrics.enabled, conf.metrics.host,
                          conf.metrics.port))
        self.assertEqual((None, None), metrics.from_config(conf, None))

    def test_enabled_serves(self):
        observer, server = metrics.from_config(
            self.conf(enabled=True, port=0), lambda: None)
        self.addCleanup(server.stop)
        self.assertIs(observer.registry, server._registry)
        self.assertGreater(server.port, 0)

    def test_the_options_are_listed_for_the_sample(self):
        groups = {getattr(group, 'name', group): options
                  for group, options in opts.list_opts()}
        self.assertEqual(['enabled', 'host', 'port'],
                         [opt.name for opt in groups['metrics']])


class DetectionLagSourceTest(base.TestCase):
    """Where the detection lag starts: the driver's result says when the
    guest's off event reached the agent; the power-off's report to the
    observers carries it, and the record on the wire does not."""

    def power_off(self, off_event_at):
        reports = []

        class Observer(telemetry.Observer):
            def power_off_ended(self, instance_uuid, operation, outcome):
                reports.append(outcome)

        class Driver:
            def get_power_state(self, uuid):
                return virt_driver.RUNNING

            def power_off(self, uuid, clean, timeout, retry, control=None,
                          use_guest_agent=False):
                return virt_driver.PowerOffResult(
                    'clean', 'clean', 'acpi', 1.0, timeout,
                    detected_by='event' if off_event_at else 'poll',
                    off_event_at=off_event_at)

        offs = power_offs.PowerOffs(
            Driver(), power_offs.PowerOffRegistry(), 60, 10,
            telemetry=telemetry.Telemetry([Observer()]))
        record = offs.power_off({'uuid': UUID, 'image': {}}, None, True,
                                None, 'stop')
        return record, reports[0]

    def test_the_event_time_reaches_the_observers_only(self):
        record, reported = self.power_off(10.0)
        self.assertNotIn('off_event_at', record)
        self.assertEqual(10.0, reported['off_event_at'])

    def test_none_when_no_event_ended_the_wait(self):
        record, reported = self.power_off(None)
        self.assertNotIn('off_event_at', reported)
