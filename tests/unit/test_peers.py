"""peers.call_watched: a step waiting on another agent gives the request
up once that agent shows it no longer has it."""

import threading

import oslo_messaging

from compute_agent import exception
from compute_agent import peers
from tests.unit import base

CTXT = {'request_id': 'req-1'}
INTERVAL = 0.01
DEADLINE = 10   # only a hang reaches it


class StatusOnly:
    """get_service_status of one agent: in_flight as the test sets it."""

    def __init__(self):
        self.in_flight = []
        self.reachable = True
        self.asked = threading.Event()

    def get_service_status(self, ctxt, host, alt=False, timeout=None):
        self.asked.set()
        if not self.reachable:
            raise oslo_messaging.MessagingTimeout('no answer')
        return {'state': 'running', 'in_flight': list(self.in_flight)}


class CallWatchedTest(base.TestCase):
    def setUp(self):
        super().setUp()
        self.peer = StatusOnly()
        self.answer = threading.Event()
        self.addCleanup(self.answer.set)

    def _call(self):
        if not self.answer.wait(DEADLINE):
            raise AssertionError('never answered')
        return 'answer'

    def _watched(self):
        return peers.call_watched(self.peer, CTXT, 'host-b',
                                  'finish_resize', self._call,
                                  interval=INTERVAL)

    def test_the_answer_while_the_peer_works_on_it(self):
        self.peer.in_flight = [{'method': 'finish_resize',
                                'request_id': 'req-1'}]
        threading.Timer(0.1, self.answer.set).start()
        self.assertEqual('answer', self._watched())

    def test_an_error_of_the_call_is_raised(self):
        def fails():
            raise oslo_messaging.RemoteError('InvalidInput', 'no')
        self.assertRaises(oslo_messaging.RemoteError, peers.call_watched,
                          self.peer, CTXT, 'host-b', 'finish_resize', fails,
                          interval=INTERVAL)

    def test_lost_once_the_peer_no_longer_has_it(self):
        # The agent restarted: its status answers, without the request
        # (another request of the same id and another method don't count).
        self.peer.in_flight = [
            {'method': 'get_instance', 'request_id': 'req-1'},
            {'method': 'finish_resize', 'request_id': 'req-2'}]
        self.assertRaises(peers.RequestLost, self._watched)

    def test_waits_while_the_peer_cannot_be_asked(self):
        self.peer.reachable = False
        threading.Timer(0.2, self.answer.set).start()
        self.assertEqual('answer', self._watched())
        self.assertTrue(self.peer.asked.is_set())

    def test_a_lost_request_is_a_migration_error_naming_the_restart(self):
        def lost():
            with peers.calling('host-b', 'start the migrated instance'):
                self._watched()
        error = self.assertRaises(exception.MigrationError, lost)
        self.assertIn('host host-b restarted before it answered',
                      str(error))
