"""The Service's state machine and drain order, with fake RPC servers."""

import os
import socket
import tempfile
import threading
from unittest import mock

import fixtures

from compute_agent import service
from compute_agent import tracker as tracker_module
from tests.fixtures.polling import wait_for
from tests.unit import base


class FakeServer:
    """Like the rabbit listener, stop() returns only once the listener's
    current poll ends, which a request to its queue makes happen."""

    def __init__(self, topic, events, wakes):
        self.topic = topic
        self.events = events
        self.wake = wakes[topic]

    def start(self):
        self.events.append(('start', self.topic))

    def stop(self):
        self.events.append(('stop', self.topic))
        if not self.wake.wait(10):
            raise AssertionError(f'{self.topic} listener never woken')


class FakeWakeClient:
    def __init__(self, wake):
        self.wake = wake

    def cast(self, ctxt, method):
        assert method == 'get_service_status'
        self.wake.set()


class FakeManager:
    def __init__(self):
        self.init_host_calls = 0
        self.drain_deadlines = []

    def init_host(self, svc):
        self.init_host_calls += 1

    def drain_started(self, deadline):
        self.drain_deadlines.append(deadline)


def make_conf(graceful=180, shutdown_timeout=60):
    return mock.Mock(host='host-a', graceful_shutdown_timeout=graceful,
                     shutdown_timeout=shutdown_timeout)


class ServiceTest(base.TestCase):
    def setUp(self):
        super().setUp()
        self.events = []
        self.tracker = tracker_module.InFlightTracker()
        self.wakes = {'compute': threading.Event(),
                      'compute-alt': threading.Event()}
        for name, fake in (
                ('create_server',
                 lambda transport, topic, host, endpoints, tracker:
                 FakeServer(topic, self.events, self.wakes)),
                ('self_client',
                 lambda transport, topic, host:
                 FakeWakeClient(self.wakes[topic]))):
            patcher = mock.patch.object(service.rpc, name, side_effect=fake)
            patcher.start()
            self.addCleanup(patcher.stop)
        self.notify_socket = self._listen_for_notifications()

    def _listen_for_notifications(self):
        path = os.path.join(tempfile.mkdtemp(), 'notify')
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(0)
        self.addCleanup(sock.close)
        self.useFixture(fixtures.EnvironmentVariable('NOTIFY_SOCKET', path))
        return sock

    def notifications(self):
        received = []
        while True:
            try:
                received.append(self.notify_socket.recv(4096).decode())
            except BlockingIOError:
                return received

    def make_service(self, **conf):
        return service.Service(make_conf(**conf), FakeManager(),
                               transport=None, tracker=self.tracker)

    def test_start_serves_both_topics_alt_first_and_reports_ready(self):
        svc = self.make_service()
        svc.start()
        self.assertEqual([('start', 'compute-alt'), ('start', 'compute')],
                         self.events)
        self.assertEqual('running', svc.state)
        self.assertIn('READY=1', self.notifications()[0])

    def test_stop_wakes_each_listener_so_it_stops_at_once(self):
        svc = self.make_service()
        svc.start()
        svc.stop()   # FakeServer.stop() blocks until its queue is woken
        self.assertTrue(all(wake.is_set() for wake in self.wakes.values()))

    def test_idle_stop_stops_compute_first_and_exits_drained(self):
        svc = self.make_service()
        svc.start()
        self.events.clear()
        svc.stop()
        self.assertEqual([('stop', 'compute'), ('stop', 'compute-alt')],
                         self.events)
        self.assertEqual('stopped', svc.state)
        sent = self.notifications()
        self.assertTrue(any('STOPPING=1' in n for n in sent), sent)
        # wait() returns once the drain has finished.
        svc.wait()

    def test_stop_waits_for_in_flight_work_before_stopping_alt(self):
        svc = self.make_service()
        svc.start()
        token = self.tracker.start('compute', 'stop_instance', 'u-1', 'r-1')
        stopper = threading.Thread(target=svc.stop)
        stopper.start()
        wait_for(lambda: svc.status()['state'] == 'draining', 10,
                 'draining')
        self.assertIn(('stop', 'compute'), self.events)
        self.assertNotIn(('stop', 'compute-alt'), self.events)
        self.assertEqual(['stop_instance'],
                         [op['method'] for op in svc.status()['in_flight']])
        self.tracker.end(token)
        stopper.join(10)
        self.assertFalse(stopper.is_alive())
        self.assertEqual(('stop', 'compute-alt'), self.events[-1])

    def test_drain_gives_up_at_the_deadline(self):
        svc = self.make_service(graceful=2)   # deadline 1 s after SIGTERM
        svc.start()
        self.tracker.start('compute-alt', 'resize_instance', 'u-2', 'r-2')
        with self.assertLogs('compute_agent.service', 'ERROR') as logs:
            svc.stop()
        self.assertEqual('stopped', svc.state)
        self.assertIn('resize_instance', '\n'.join(logs.output))

    def test_reported_running_until_compute_has_stopped_consuming(self):
        # Until the compute server's stop returns it may still take a
        # request: the status must not claim new work waits on the broker.
        svc = self.make_service()
        svc.start()
        self.wakes['compute'].clear()
        seen = []
        real_set = self.wakes['compute'].set

        def wake():
            seen.append(svc.status()['state'])
            real_set()
        self.wakes['compute'].set = wake
        svc.stop()
        self.assertEqual(['running'], seen[:1])
        self.assertEqual('draining', svc.status()['state'])

    def test_second_stop_is_harmless(self):
        svc = self.make_service()
        svc.start()
        svc.stop()
        self.events.clear()
        svc.stop()
        self.assertEqual([], self.events)

    def test_status_hides_the_status_call_itself(self):
        svc = self.make_service()
        svc.start()
        self.tracker.start('compute', 'get_service_status')
        self.tracker.start('compute', 'build_and_run_instance', 'u-3')
        self.assertEqual(['build_and_run_instance'],
                         [op['method'] for op in svc.status()['in_flight']])

    def test_warns_when_drain_cannot_cover_a_clean_power_off(self):
        svc = self.make_service(graceful=60, shutdown_timeout=60)
        with self.assertLogs('compute_agent.service', 'WARNING') as logs:
            svc.start()
        self.assertIn('graceful_shutdown_timeout', logs.output[0])

    def test_no_deadline_when_graceful_timeout_is_zero(self):
        svc = self.make_service(graceful=0)
        self.assertIsNone(svc._drain_deadline(started=10.0))
        svc = self.make_service(graceful=30)
        self.assertEqual(10.0 + 30 - service.ALARM_MARGIN,
                         svc._drain_deadline(started=10.0))
