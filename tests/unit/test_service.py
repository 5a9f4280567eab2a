"""The Service's state machine and drain order, with fake RPC servers."""

import os
import socket
import tempfile
import threading
import time
from unittest import mock

import fixtures

from compute_agent import concurrency
from compute_agent import rpc
from compute_agent import service
from compute_agent import tracker as tracker_module
from tests.fixtures.polling import wait_for
from tests.unit import base


class FakeServer:
    """Like the rabbit listener, stop() returns only once the listener's
    current poll ends, which a request to its queue makes happen.

    on_start, if given, runs inside start(): what happens while the server
    is being started."""

    def __init__(self, topic, events, wakes, on_start=None):
        self.topic = topic
        self.events = events
        self.wake = wakes[topic]
        self.on_start = on_start

    def start(self):
        self.events.append(('start', self.topic))
        if self.on_start:
            self.on_start(self.topic)

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
    """init_host runs during_init_host, if given, before it returns."""

    def __init__(self, during_init_host=None):
        self.init_host_calls = 0
        self.drain_deadlines = []
        self.during_init_host = during_init_host

    def init_host(self, tracker, service_status):
        self.init_host_calls += 1
        if self.during_init_host:
            self.during_init_host()
        return []

    def drain_started(self, deadline):
        self.drain_deadlines.append(deadline)


class FakeInbox:
    """Stands in for signals.SignalInbox: signals are delivered by the
    test (deliver), or by each wait() in turn from a script."""

    def __init__(self, clock, script=()):
        self.clock = clock
        self.terminate_requested_at = None
        self.reloads = 0
        self.installed = False
        self.reloads_ignored = False
        self.script = list(script)

    def install(self):
        self.installed = True

    def deliver(self, name):
        if name == 'SIGTERM':
            if self.terminate_requested_at is None:
                self.terminate_requested_at = self.clock()
        elif not self.reloads_ignored:
            self.reloads += 1

    def take_reload_request(self):
        requested, self.reloads = bool(self.reloads), 0
        return requested

    def ignore_reloads(self):
        self.reloads_ignored = True

    def wait(self, timeout):
        if not self.script:
            raise AssertionError('wait() called with nothing left to do')
        self.script.pop(0)()


class TickingClock:
    """Each reading is step seconds after the previous one, so deadlines
    pass after a few readings without real waiting."""

    def __init__(self, step):
        self.now = 0.0
        self.step = step

    def __call__(self):
        self.now += self.step
        return self.now


def make_conf(graceful=180, shutdown_timeout=60):
    return mock.Mock(host='host-a', graceful_shutdown_timeout=graceful,
                     shutdown_timeout=shutdown_timeout)


class ServiceTestCase(base.TestCase):
    """A Service over fake RPC servers and a socket for its
    sd_notify datagrams."""

    def setUp(self):
        super().setUp()
        self.events = []
        self.tracker = tracker_module.InFlightTracker()
        self.wakes = {'compute': threading.Event(),
                      'compute-alt': threading.Event()}
        self.on_start = None
        for name, fake in (
                ('create_server',
                 lambda transport, topic, host, endpoints, tracker,
                 telemetry=None:
                 FakeServer(topic, self.events, self.wakes, self.on_start)),
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

    def make_service(self, manager=None, **kwargs):
        conf = {key: kwargs.pop(key) for key in ('graceful',
                                                 'shutdown_timeout')
                if key in kwargs}
        return service.Service(make_conf(**conf), manager or FakeManager(),
                               transport=None, tracker=self.tracker,
                               **kwargs)

    def _release_listeners_at_cleanup(self):
        for wake in self.wakes.values():
            self.addCleanup(wake.set)


class ServiceTest(ServiceTestCase):
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
        # The service and the tracker read one clock, which passes the
        # deadline (19 s after SIGTERM) within a few readings.
        clock = TickingClock(step=5)
        self.tracker = tracker_module.InFlightTracker(clock=clock)
        svc = self.make_service(graceful=20, clock=clock)
        svc.start()
        self.tracker.start('compute-alt', 'resize_instance', 'u-2', 'r-2')
        self._release_listeners_at_cleanup()
        with self.assertLogs('compute_agent.service', 'ERROR') as logs:
            svc.stop()
        self.assertEqual('stopped', svc.state)
        self.assertIn('Drain deadline reached', logs.output[0])
        self.assertIn('resize_instance', logs.output[0])

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

    def test_status_names_the_concurrency_mode(self):
        svc = self.make_service()
        svc.start()
        self.assertEqual(concurrency.mode(), svc.status()['concurrency'])
        self.assertIn(svc.status()['concurrency'], concurrency.MODES)

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

    # -- a stop that arrives while the service is starting ---------------

    def test_sigterm_before_start_starts_nothing(self):
        inbox = FakeInbox(time.monotonic)
        inbox.deliver('SIGTERM')
        manager = FakeManager()
        svc = self.make_service(manager=manager, signals=inbox)
        svc.start()
        svc.wait()
        self.assertTrue(inbox.installed)
        self.assertEqual((0, []), (manager.init_host_calls, self.events))
        self.assertEqual('stopped', svc.state)

    def test_stop_before_start_starts_nothing(self):
        manager = FakeManager()
        svc = self.make_service(manager=manager)
        svc.stop()
        svc.start()
        self.assertEqual((0, []), (manager.init_host_calls, self.events))
        self.assertEqual('stopped', svc.state)

    def test_sigterm_during_init_host_stops_before_serving(self):
        inbox = FakeInbox(time.monotonic)
        manager = FakeManager(
            during_init_host=lambda: inbox.deliver('SIGTERM'))
        svc = self.make_service(manager=manager, signals=inbox)
        with self.assertLogs('compute_agent.service', 'INFO') as logs:
            svc.start()
            svc.wait()   # nothing was taken: returns at once
        # init_host finished what it started; no server took any work.
        self.assertEqual((1, []), (manager.init_host_calls, self.events))
        self.assertEqual('stopped', svc.state)
        self.assertIn('nothing to drain', '\n'.join(logs.output))
        self.assertFalse(any('READY=1' in n for n in self.notifications()))

    def test_sigterm_while_the_servers_start_is_drained(self):
        inbox = FakeInbox(time.monotonic)
        taken = []

        def during_start(topic):
            if topic == rpc.ALT_TOPIC:
                # compute-alt took a request, then SIGTERM came.
                taken.append(self.tracker.start(topic, 'finish_resize',
                                                'u-9'))
            else:
                inbox.deliver('SIGTERM')
        self.on_start = during_start
        svc = self.make_service(signals=inbox)
        svc.start()
        waiter = threading.Thread(target=svc.wait)
        with self.assertLogs('compute_agent.service', 'INFO') as logs:
            waiter.start()
            wait_for(lambda: svc.status()['state'] == 'draining', 10,
                     'draining')
            # The request compute-alt took is still served.
            self.assertNotIn(('stop', rpc.ALT_TOPIC), self.events)
            self.tracker.end(taken[0])
            waiter.join(10)
        self.assertFalse(waiter.is_alive(), 'wait() did not return')
        self.assertEqual([('start', rpc.ALT_TOPIC), ('start', rpc.TOPIC),
                          ('stop', rpc.TOPIC), ('stop', rpc.ALT_TOPIC)],
                         self.events)
        self.assertEqual('stopped', svc.state)
        self.assertIn('Drained', '\n'.join(logs.output))

    def test_stop_while_a_server_starts_waits_for_the_start_and_drains(self):
        release = threading.Event()
        self.addCleanup(release.set)

        def during_start(topic):
            if topic == rpc.TOPIC and not release.wait(10):
                raise AssertionError('compute server start never released')
        self.on_start = during_start
        svc = self.make_service()
        starter = threading.Thread(target=svc.start)
        starter.start()
        wait_for(lambda: ('start', rpc.TOPIC) in self.events, 10,
                 'the compute server starting')
        stopper = threading.Thread(target=svc.stop)
        stopper.start()
        wait_for(lambda: svc.stop_requested, 10, 'the stop noted')
        release.set()
        starter.join(10)
        stopper.join(10)
        self.assertFalse(stopper.is_alive(), 'stop() did not return')
        self.assertEqual([('start', rpc.ALT_TOPIC), ('start', rpc.TOPIC),
                          ('stop', rpc.TOPIC), ('stop', rpc.ALT_TOPIC)],
                         self.events)
        self.assertEqual('stopped', svc.state)

    def test_stop_gives_up_on_a_start_that_hangs_at_the_deadline(self):
        hang = threading.Event()
        self.addCleanup(hang.set)
        manager = FakeManager(during_init_host=lambda: hang.wait(30))
        svc = self.make_service(manager=manager, graceful=20,
                                clock=TickingClock(step=5))
        threading.Thread(target=svc.start, daemon=True).start()
        wait_for(lambda: manager.init_host_calls, 10, 'init_host running')
        stopper = threading.Thread(target=svc.stop)
        with self.assertLogs('compute_agent.service', 'ERROR') as logs:
            stopper.start()
            stopper.join(10)
        self.assertFalse(stopper.is_alive(), 'stop() waits for start '
                                             'past its deadline')
        self.assertIn('start', logs.output[0])

    # -- stop() keeps its deadline when the broker is gone ---------------

    def _stop_in_thread(self, svc):
        stopper = threading.Thread(target=svc.stop, daemon=True)
        with self.assertLogs('compute_agent.service', 'INFO') as logs:
            stopper.start()
            stopper.join(10)
        self.assertFalse(stopper.is_alive(),
                         'stop() still waiting on a listener')
        return '\n'.join(logs.output)

    def test_a_listener_that_never_stops_is_abandoned_at_the_deadline(self):
        # With the broker down the listener's stop never returns, and
        # every wake-up cast fails at once.
        broker_down = mock.Mock()
        broker_down.cast.side_effect = ConnectionRefusedError
        service.rpc.self_client.side_effect = None
        service.rpc.self_client.return_value = broker_down
        self._release_listeners_at_cleanup()
        svc = self.make_service(graceful=20, clock=TickingClock(step=5))
        svc.start()
        output = self._stop_in_thread(svc)
        self.assertEqual('stopped', svc.state)
        self.assertIn(f'{rpc.TOPIC} listener', output)
        self.assertIn('Drained', output)
        self.assertTrue(broker_down.cast.called)

    def test_a_wake_up_cast_that_blocks_does_not_hold_the_drain(self):
        unblock = threading.Event()
        self.addCleanup(unblock.set)
        hanging = mock.Mock()
        hanging.cast.side_effect = lambda ctxt, method: unblock.wait(30)
        service.rpc.self_client.side_effect = None
        service.rpc.self_client.return_value = hanging
        self._release_listeners_at_cleanup()
        svc = self.make_service(graceful=20, clock=TickingClock(step=5))
        svc.start()
        output = self._stop_in_thread(svc)
        self.assertEqual('stopped', svc.state)
        self.assertIn('Drained', output)

    # -- SIGHUP ----------------------------------------------------------

    def test_sighup_reloads_in_place_while_work_goes_on(self):
        token = self.tracker.start(rpc.TOPIC, 'stop_instance', 'u-1')
        seen = {}
        reloaded_in = []

        def reload_config():
            reloaded_in.append(svc.state)
            return 'debug changed from False to True'

        def look_then_sigterm():
            seen.update(state=svc.state, in_flight=len(self.tracker),
                        events=list(self.events))
            self.tracker.end(token)
            inbox.deliver('SIGTERM')
        inbox = FakeInbox(time.monotonic, script=[
            lambda: inbox.deliver('SIGHUP'),
            lambda: inbox.deliver('SIGHUP'),
            look_then_sigterm])
        svc = self.make_service(signals=inbox, reload_config=reload_config)
        svc.start()
        with self.assertLogs('compute_agent.service', 'INFO') as logs:
            svc.wait()
        self.assertEqual(['running', 'running'], reloaded_in)
        # Nothing was restarted and the operation in flight went on.
        self.assertEqual({'state': 'running', 'in_flight': 1,
                          'events': [('start', rpc.ALT_TOPIC),
                                     ('start', rpc.TOPIC)]}, seen)
        lines = [line for line in logs.output if 'SIGHUP' in line]
        self.assertEqual(2, len(lines), logs.output)
        self.assertIn('debug changed from False to True', lines[0])
        self.assertEqual('stopped', svc.state)

    def test_a_reload_that_fails_leaves_the_agent_serving(self):
        def reload_config():
            raise ValueError('bad value on line 3')

        def look_then_sigterm():
            self.assertEqual('running', svc.state)
            inbox.deliver('SIGTERM')
        inbox = FakeInbox(time.monotonic, script=[
            lambda: inbox.deliver('SIGHUP'), look_then_sigterm])
        svc = self.make_service(signals=inbox, reload_config=reload_config)
        svc.start()
        with self.assertLogs('compute_agent.service', 'ERROR') as logs:
            svc.wait()
        self.assertIn('bad value on line 3', '\n'.join(logs.output))

    def test_sighup_during_the_drain_is_ignored(self):
        inbox = FakeInbox(time.monotonic)
        reloads = []
        svc = self.make_service(signals=inbox,
                                reload_config=lambda: reloads.append(1))
        svc.start()
        token = self.tracker.start(rpc.ALT_TOPIC, 'finish_resize', 'u-2')
        inbox.deliver('SIGTERM')
        waiter = threading.Thread(target=svc.wait)
        waiter.start()
        wait_for(lambda: svc.status()['state'] == 'draining', 10,
                 'draining')
        inbox.deliver('SIGHUP')
        self.tracker.end(token)
        waiter.join(10)
        self.assertFalse(waiter.is_alive(), 'wait() did not return')
        self.assertTrue(inbox.reloads_ignored)
        self.assertEqual([], reloads)


class WakeClientTest(base.TestCase):
    def test_wake_up_cast_tries_the_broker_once(self):
        # A broker that is down must not hold the drain in a reconnect
        # loop: retry=0 makes the cast give up after one attempt.
        with mock.patch.object(rpc.oslo_messaging,
                               'get_rpc_client') as get_client:
            rpc.self_client(mock.sentinel.transport, rpc.TOPIC, 'host-a')
        self.assertEqual(0, get_client.call_args.kwargs.get('retry'))
