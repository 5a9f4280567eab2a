"""The libvirt connection, its event-loop and dispatcher threads, and
reconnects, on the fake libvirt."""

import logging
import threading
from unittest import mock

import fixtures
import libvirt

from compute_agent.virt.libvirt import host as libvirt_host
from compute_agent.virt.libvirt import supervisor
from tests.fixtures.polling import wait_for
from tests.unit import base
from tests.unit import fake_libvirt

URI = 'qemu+unix:///system'
UUID = fake_libvirt.UUID
DEADLINE = 10


class Waiter(threading.Event):
    """What a power-off registers: set(seen_at) by the dispatcher."""

    seen_at = None

    def set(self, seen_at=None):
        self.seen_at = seen_at
        super().set()


class HostTestCase(base.TestCase):
    def setUp(self):
        super().setUp()
        self.log = self.useFixture(fixtures.FakeLogger(
            level=logging.DEBUG, format='%(levelname)s %(message)s'))
        self.connections = []
        self.open_errors = []
        self.useFixture(fixtures.MockPatchObject(
            libvirt, 'open', side_effect=self._open))
        self.host = libvirt_host.Host(URI)

    def _open(self, uri):
        """A new FakeConnection per open, or the next of open_errors."""
        if self.open_errors:
            raise self.open_errors.pop(0)
        connection = fake_libvirt.FakeConnection()
        self.connections.append(connection)
        return connection

    def stopped(self, connection):
        """Deliver a STOPPED event for UUID on connection."""
        connection.emit(fake_libvirt.FakeDomain(connection, UUID, ''),
                        libvirt.VIR_DOMAIN_EVENT_STOPPED)

    def watch(self):
        waiter = Waiter()
        self.host.watch_power_off(UUID, waiter)
        self.addCleanup(self.host.unwatch_power_off, UUID, waiter)
        return waiter


class DispatcherTest(HostTestCase):
    def test_stopped_event_wakes_the_waiter(self):
        connection = self.host.connect()
        waiter = self.watch()
        self.stopped(connection)
        self.assertTrue(waiter.wait(DEADLINE))

    def test_the_waiter_learns_when_the_event_reached_the_agent(self):
        self.host = libvirt_host.Host(URI, clock=lambda: 42.5)
        connection = self.host.connect()
        waiter = self.watch()
        self.stopped(connection)
        self.assertTrue(waiter.wait(DEADLINE))
        self.assertEqual(42.5, waiter.seen_at)

    def test_dispatcher_survives_an_unexpected_error(self):
        connection = self.host.connect()
        waiter = self.watch()
        broken = mock.Mock()
        broken.UUIDString.side_effect = RuntimeError('boom')
        connection.emit(broken, libvirt.VIR_DOMAIN_EVENT_STOPPED)
        self.stopped(connection)

        self.assertTrue(waiter.wait(DEADLINE),
                        'the event after the error was not dispatched')
        self.assertIn('ERROR', self.log.output)
        self.assertIn('Traceback', self.log.output)
        self.assertIn('RuntimeError: boom', self.log.output)
        health = self.host.health()
        self.assertEqual((1, 'RuntimeError: boom'),
                         (health['dispatcher_restarts'],
                          health['last_error']))


class EventLoopTest(HostTestCase):
    def test_event_loop_survives_an_unexpected_error(self):
        # Appended to on the loop's native thread, polled here: a green
        # event set from a native thread would not wake an eventlet-mode
        # run of this test.
        calls = []

        def run_once():
            calls.append(1)
            if len(calls) == 1:
                raise libvirt.libvirtError('event loop broke')
            # Ends this test's loop thread (the supervisor lets
            # SystemExit through, as the thread's end).
            raise SystemExit()

        self.useFixture(fixtures.MonkeyPatch(
            'compute_agent.virt.libvirt.host._event_loop', None))
        self.useFixture(fixtures.MockPatchObject(
            libvirt, 'virEventRegisterDefaultImpl'))
        self.useFixture(fixtures.MockPatchObject(
            libvirt, 'virEventRunDefaultImpl', side_effect=run_once))
        libvirt_host._start_event_loop()

        wait_for(lambda: len(calls) == 2, DEADLINE,
                 'the event loop run again after an error')
        self.assertIn('Traceback', self.log.output)
        self.assertIn('event loop broke', self.log.output)


class SupervisedLoopTest(base.TestCase):
    def test_a_persistent_error_backs_off_and_shows_as_restarting(self):
        pauses = []
        pausing, release = threading.Event(), threading.Event()

        def sleep(pause):
            pauses.append(pause)
            if len(pauses) == 8:
                pausing.set()
                release.wait(DEADLINE)
                raise SystemExit()   # ends the loop's thread

        loop = supervisor.SupervisedLoop(
            'broken', mock.Mock(side_effect=ValueError('always')),
            sleep=sleep)
        loop.start()
        self.assertTrue(pausing.wait(DEADLINE))
        health = loop.health()
        release.set()

        self.assertEqual([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0], pauses)
        self.assertEqual(('restarting', 8, 'ValueError: always'),
                         (health['state'], health['restarts'],
                          health['last_error']))


class ReconnectTest(HostTestCase):
    def test_reconnect_closes_the_lost_connection(self):
        old = self.host.connect()
        old.lose()
        new = self.host.connection

        self.assertIsNot(old, new)
        self.assertTrue(old.closed)
        self.assertEqual({}, old.lifecycle_callbacks)
        self.assertIsNone(old.close_callback)
        self.assertEqual(1, len(new.lifecycle_callbacks))

    def test_connection_that_takes_no_callback_is_closed(self):
        refusing = fake_libvirt.FakeConnection()
        refusing.domainEventRegisterAny = mock.Mock(
            side_effect=fake_libvirt.libvirt_error(
                libvirt.VIR_ERR_NO_SUPPORT, 'no events here'))
        self.useFixture(fixtures.MockPatchObject(libvirt, 'open',
                                                 return_value=refusing))
        self.assertRaises(libvirt.libvirtError, self.host.connect)
        self.assertTrue(refusing.closed)

    def test_lost_connection_is_replaced_without_being_asked_for(self):
        old = self.host.connect()
        waiter = self.watch()
        old.lose()

        new = wait_for(lambda: len(self.connections) == 2
                       and self.connections[1].lifecycle_callbacks
                       and self.connections[1], DEADLINE,
                       'a new connection with the event callback')
        self.stopped(new)
        self.assertTrue(waiter.wait(DEADLINE))
        self.assertTrue(old.closed)

    def test_reconnect_retries_while_libvirtd_is_down(self):
        old = self.host.connect()
        self.open_errors = [fake_libvirt.libvirt_error(
            libvirt.VIR_ERR_SYSTEM_ERROR, 'Failed to connect socket')] * 3
        old.lose()

        wait_for(lambda: self.host.health()['connected'], DEADLINE,
                 'reconnected')
        health = self.host.health()
        self.assertEqual((URI, 1, 2),
                         (health['uri'], health['reconnects'],
                          len(self.connections)))
        self.assertIn('Failed to connect socket', self.log.output)
        self.assertIn('Reconnected to libvirt', self.log.output)


class HealthTest(HostTestCase):
    def test_healthy_host(self):
        self.host.connect()
        self.assertEqual(
            {'uri': URI, 'connected': True, 'reconnects': 0,
             'event_loop': 'running', 'event_loop_restarts': 0,
             'dispatcher': 'running', 'dispatcher_restarts': 0,
             'last_error': None},
            self.host.health())
