"""The workers report their work through the Telemetry they were given:
operations, power-offs, the drain and the service's start and stop."""

import inspect
import os
import threading

from compute_agent import db
from compute_agent import endpoints
from compute_agent import exception
from compute_agent import image_store
from compute_agent import manager
from compute_agent import telemetry
from compute_agent import tracker as tracker_module
from tests.fixtures.polling import wait_for
from tests.unit import compute_host
from tests.unit import test_manager
from tests.unit import test_service


class RecordingObserver(telemetry.Observer):
    """Records every event as (name, {argument: value}), whether the
    caller passed its arguments by position or by keyword."""

    def __init__(self):
        self.events = []

    def __getattribute__(self, name):
        if name.startswith('_') or name == 'events' or \
                not hasattr(telemetry.Observer, name):
            return super().__getattribute__(name)
        signature = inspect.signature(getattr(telemetry.Observer, name))

        def record(*args, **kwargs):
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            del arguments['self']
            self.events.append((name, arguments))
        return record

    def named(self, *names):
        return [(name, arguments) for name, arguments in self.events
                if name in names]


class OperationTelemetryTest(test_manager.ManagerTestCase):
    def _new_manager(self, default_timeout=60):
        self.observer = RecordingObserver()
        self.telemetry = telemetry.Telemetry([self.observer])
        database = db.Database(self.db_path)
        images_path = os.path.join(self.state_dir, 'images')
        os.makedirs(images_path, exist_ok=True)
        compute = manager.ComputeManager(
            host=test_manager.HOST, driver=self.driver, database=database,
            image_store=image_store.ImageStore(images_path, database),
            default_shutdown_timeout=default_timeout,
            shutdown_retry_interval=10, telemetry=self.telemetry)
        return compute_host.ComputeHost(compute, test_manager.FakeService())

    def test_a_clean_stop_reports_its_operation_and_its_power_off(self):
        uuid = self.boot()['uuid']
        self.observer.events.clear()
        self.manager.stop_instance(self.ctxt, uuid)
        names = [name for name, _ in self.observer.events]
        self.assertEqual(['operation_started', 'power_off_started',
                          'power_off_ended', 'operation_ended'], names)
        started, power_started, power_ended, ended = \
            [arguments for _, arguments in self.observer.events]
        self.assertEqual({'operation': 'stop', 'instance_uuid': uuid,
                          'request_id': 'req-test'}, started)
        self.assertEqual({'instance_uuid': uuid, 'operation': 'stop',
                          'requested': 'clean', 'timeout': 60,
                          'timeout_source': 'config'}, power_started)
        outcome = power_ended['outcome']
        self.assertEqual(('clean', 'clean', 60, 'config'),
                         (outcome['requested'], outcome['result'],
                          outcome['timeout'], outcome['timeout_source']))
        self.assertEqual('stop', power_ended['operation'])
        self.assertEqual(('stop', uuid, 'req-test', None),
                         (ended['operation'], ended['instance_uuid'],
                          ended['request_id'], ended['error']))
        self.assertIsInstance(ended['seconds'], float)

    def test_a_forced_stop_reports_the_request_as_the_source(self):
        uuid = self.boot()['uuid']
        self.observer.events.clear()
        self.manager.stop_instance(self.ctxt, uuid, clean_shutdown=False)
        (_, power_started), = self.observer.named('power_off_started')
        self.assertEqual(('forced', 0, 'request'),
                         (power_started['requested'], power_started['timeout'],
                          power_started['timeout_source']))
        (_, power_ended), = self.observer.named('power_off_ended')
        self.assertEqual('forced', power_ended['outcome']['result'])

    def test_an_image_timeout_is_reported_with_its_source(self):
        uuid = self.boot(image={'id': 'img', 'properties': {
            'os_shutdown_timeout': '7'}})['uuid']
        self.manager.terminate_instance(self.ctxt, uuid)
        (_, power_started), = self.observer.named('power_off_started')
        self.assertEqual(('delete', 7, 'image'),
                         (power_started['operation'], power_started['timeout'],
                          power_started['timeout_source']))

    def test_a_refused_operation_ends_with_its_error(self):
        uuid = self.boot()['uuid']
        self.manager.stop_instance(self.ctxt, uuid)
        self.observer.events.clear()
        self.assertRaises(exception.InstanceInvalidState,
                          self.manager.stop_instance, self.ctxt, uuid)
        (_, started), (_, ended) = self.observer.events
        self.assertEqual('stop', started['operation'])
        self.assertIsInstance(ended['error'], exception.InstanceInvalidState)

    def test_an_unknown_instance_ends_with_instance_not_found(self):
        self.assertRaises(exception.InstanceNotFound,
                          self.manager.start_instance, self.ctxt,
                          '5e5b6e0f-0b6a-4a8c-9f51-2f2d0cbb0a11')
        (_, ended), = self.observer.named('operation_ended')
        self.assertEqual('start', ended['operation'])
        self.assertIsInstance(ended['error'], exception.InstanceNotFound)

    def test_every_operation_that_starts_ends_once(self):
        uuid = self.boot()['uuid']
        self.manager.reboot_instance(self.ctxt, uuid, 'SOFT')
        self.manager.reboot_instance(self.ctxt, uuid, 'HARD')
        self.manager.rescue_instance(self.ctxt, uuid)
        self.manager.unrescue_instance(self.ctxt, uuid)
        self.manager.terminate_instance(self.ctxt, uuid)
        started = [a['operation'] for _, a in
                   self.observer.named('operation_started')]
        ended = [a['operation'] for _, a in
                 self.observer.named('operation_ended')]
        self.assertEqual(['build', 'soft-reboot', 'hard-reboot', 'rescue',
                          'unrescue', 'delete'], started)
        self.assertEqual(started, ended)

    def test_a_failing_observer_does_not_fail_the_operation(self):
        class Broken(telemetry.Observer):
            def operation_started(self, *args):
                raise RuntimeError('the bus is gone')
        self.telemetry._observers = (Broken(), self.observer)
        uuid = self.boot()['uuid']
        self.assertEqual('active',
                         self.manager.get_instance(self.ctxt, uuid)[
                             'vm_state'])


class ServiceTelemetryTest(test_service.ServiceTestCase):
    """The service's own events, with the fake servers of test_service."""

    def make_service(self, manager=None, **kwargs):
        self.observer = RecordingObserver()
        return super().make_service(
            manager, telemetry=telemetry.Telemetry([self.observer]),
            **kwargs)

    def versions(self):
        return {'host': 'host-a',
                'service_version': endpoints.SERVICE_VERSION,
                'rpc_api_version': endpoints.RPC_API_VERSION}

    def test_start_and_an_idle_stop(self):
        svc = self.make_service()
        svc.start()
        self.assertEqual([('service_started', self.versions())],
                         self.observer.events)
        svc.stop()
        names = [name for name, _ in self.observer.events]
        self.assertEqual(['service_started', 'drain_started', 'drain_ended',
                          'service_stopped'], names)
        self.assertEqual({'in_flight': []}, self.observer.events[1][1])
        drain_ended = self.observer.events[2][1]
        self.assertEqual((True, []),
                         (drain_ended['drained'], drain_ended['left']))
        self.assertIsInstance(drain_ended['seconds'], float)
        self.assertEqual(('service_stopped', self.versions()),
                         self.observer.events[3])

    def test_the_drain_reports_what_was_in_flight(self):
        svc = self.make_service()
        svc.start()
        token = self.tracker.start('compute', 'stop_instance', 'u-1', 'r-1')
        stopper = threading.Thread(target=svc.stop)
        stopper.start()
        wait_for(lambda: self.observer.named('drain_started'), 10,
                 'drain_started')
        (_, drain_started), = self.observer.named('drain_started')
        self.assertEqual([('stop_instance', 'u-1', 'r-1')],
                         [(op['method'], op['instance_uuid'],
                           op['request_id'])
                          for op in drain_started['in_flight']])
        self.assertEqual([], self.observer.named('drain_ended'))
        self.tracker.end(token)
        stopper.join(10)
        self.assertFalse(stopper.is_alive())
        (_, drain_ended), = self.observer.named('drain_ended')
        self.assertTrue(drain_ended['drained'])

    def test_a_drain_cut_short_says_what_was_left(self):
        clock = test_service.TickingClock(step=5)
        self.tracker = tracker_module.InFlightTracker(clock=clock)
        svc = self.make_service(graceful=20, clock=clock)
        svc.start()
        self.tracker.start('compute-alt', 'resize_instance', 'u-2', 'r-2')
        self._release_listeners_at_cleanup()
        with self.assertLogs('compute_agent.service', 'ERROR'):
            svc.stop()
        (_, drain_ended), = self.observer.named('drain_ended')
        self.assertFalse(drain_ended['drained'])
        self.assertEqual(['resize_instance'],
                         [op['method'] for op in drain_ended['left']])
        self.assertEqual(1, len(self.observer.named('service_stopped')))

    def test_a_stop_before_serving_reports_no_service_events(self):
        svc = self.make_service()
        svc.stop()
        self.assertEqual([], self.observer.events)
