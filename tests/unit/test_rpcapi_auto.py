"""[upgrade_levels] compute = auto when a host does not answer: a stopped
agent (a rolling restart) must not make its requests fail; they are sent
and wait on the broker, at a version the host is known or bound to take.
"""

import logging
import threading
from unittest import mock

import oslo_messaging

from compute_agent import rpcapi
from compute_agent import rpcapi_versions
from tests.unit import test_rpcapi

HOST = test_rpcapi.HOST
UUID = test_rpcapi.UUID
CTXT = test_rpcapi.CTXT
DISCOVERY = (HOST, 'compute-alt', '1.0', rpcapi_versions.DISCOVERY_TIMEOUT)


class _AutoTestCase(test_rpcapi._APITestCase):
    """An auto-pinned API whose host answers get_service_status with
    self.service_version, or not at all while it is None."""

    def setUp(self):
        super().setUp()
        self.service_version = None
        self.client.call.side_effect = self.answer

    def answer(self, ctxt, method, **kwargs):
        if self.clients_made()[-1][3] != rpcapi_versions.DISCOVERY_TIMEOUT:
            return {}
        if self.service_version is None:
            raise oslo_messaging.MessagingTimeout('agent stopped')
        return {'service_version': self.service_version}

    def sent(self):
        """(topic, version) of each client made for a request, not a
        version probe."""
        return [(topic, version) for _host, topic, version, timeout
                in self.clients_made()
                if timeout != rpcapi_versions.DISCOVERY_TIMEOUT]


class TestUnansweredHost(_AutoTestCase):
    def test_request_is_sent_at_its_own_version_not_failed(self):
        api = self.api('auto')
        with self.assertLogs(rpcapi_versions.__name__,
                             logging.WARNING) as logs:
            api.stop_instance(CTXT, HOST, UUID)
        self.assertEqual([('compute', '1.0')], self.sent())
        self.assertIn(HOST, logs.output[0])
        self.assertIn('unknown', logs.output[0])

    def test_only_compute_alt_is_asked(self):
        # compute-alt exists (the broker took the probe), so the agent has
        # both servers and stops compute first: compute cannot answer
        # where compute-alt did not.
        self.api('auto').version_cap(HOST)
        self.assertEqual([DISCOVERY], self.clients_made())

    def test_continuation_goes_where_every_agent_with_it_listens(self):
        api = self.api('auto')
        # 1.4 methods exist only on agents with compute-alt.
        api.get_migration(CTXT, HOST, UUID)
        # get_service_status (1.0) may reach an agent without it.
        api.get_service_status(CTXT, HOST, alt=True)
        self.assertEqual([('compute-alt', '1.4'), ('compute', '1.0')],
                         self.sent())

    def test_version_cap_is_what_the_request_needs(self):
        api = self.api('auto')
        self.assertEqual('1.0', api.version_cap(HOST))
        self.assertEqual('1.4', api.version_cap(HOST, '1.4'))

    def test_resize_to_an_unknown_source_leaves_out_the_target(self):
        self.api('auto').resize_instance(
            CTXT, HOST, {'id': UUID}, '/x', False,
            migration_target={'libvirt_uri': 'qemu+tls://hv-2/system'})
        self.assertEqual([('compute-alt', '1.4')], self.sent())
        self.assertNotIn('migration_target',
                         self.client.call.call_args.kwargs)

    def test_host_never_on_the_bus_still_fails_at_once(self):
        def refuse(ctxt, method, **kwargs):
            raise oslo_messaging.MessageUndeliverable(
                Exception('no route'), 'compute_agent', 'compute.x', {})
        self.client.call.side_effect = refuse
        self.assertRaises(oslo_messaging.MessageUndeliverable,
                          self.api('auto').stop_instance, CTXT, HOST, UUID)


class TestStaleCap(_AutoTestCase):
    def test_last_answer_is_used_after_it_expired(self):
        api = self.api('auto')
        self.service_version = 5
        self.assertEqual('1.4', api.version_cap(HOST))
        self.service_version = None
        self.clock.now += rpcapi_versions.AUTO_PIN_CACHE_SECONDS
        with self.assertLogs(rpcapi_versions.__name__, logging.INFO) as logs:
            self.assertEqual('1.4', api.version_cap(HOST))
        self.assertEqual(2, len(self.status_probes()))
        self.assertIn('1.4', logs.output[0])

    def test_a_new_answer_replaces_it(self):
        api = self.api('auto')
        self.service_version = 4
        api.version_cap(HOST)
        self.clock.now += rpcapi_versions.AUTO_PIN_CACHE_SECONDS
        self.service_version = 6
        self.assertEqual('1.5', api.version_cap(HOST))


class TestRediscoveryRateLimit(_AutoTestCase):
    def test_unanswered_host_is_not_asked_again_for_a_while(self):
        api = self.api('auto')
        api.version_cap(HOST)
        self.clock.now += rpcapi_versions.AUTO_RETRY_SECONDS - 1
        for _ in range(3):
            api.stop_instance(CTXT, HOST, UUID)
        self.assertEqual(1, len(self.status_probes()))
        self.assertEqual([('compute', '1.0')] * 3, self.sent())

    def test_asked_again_after_the_retry_interval_and_then_cached(self):
        api = self.api('auto')
        api.version_cap(HOST)
        self.clock.now += rpcapi_versions.AUTO_RETRY_SECONDS
        self.service_version = 6
        self.assertEqual('1.5', api.version_cap(HOST))
        self.clock.now += rpcapi_versions.AUTO_PIN_CACHE_SECONDS - 1
        self.assertEqual('1.5', api.version_cap(HOST))
        self.assertEqual(2, len(self.status_probes()))

    def test_other_hosts_are_asked_as_usual(self):
        api = self.api('auto')
        api.version_cap(HOST)
        self.service_version = 6
        self.assertEqual('1.5', api.version_cap('hv-2'))
        self.assertEqual(2, len(self.status_probes()))

    def test_warned_once_per_outage(self):
        api = self.api('auto')
        with self.assertLogs(rpcapi_versions.__name__,
                             logging.WARNING) as logs:
            api.version_cap(HOST)
            self.clock.now += rpcapi_versions.AUTO_RETRY_SECONDS
            api.version_cap(HOST)
            self.assertEqual(1, len(logs.output))
            self.service_version = 6
            self.clock.now += rpcapi_versions.AUTO_RETRY_SECONDS
            api.version_cap(HOST)
            self.service_version = None
            self.clock.now += rpcapi_versions.AUTO_PIN_CACHE_SECONDS
            self.clock.now += rpcapi_versions.AUTO_RETRY_SECONDS
            # Known before: a stale cap, logged below WARNING.
            api.version_cap(HOST)
        self.assertEqual(1, len(logs.output))


class TestOneQuestionPerHost(_AutoTestCase):
    """Requests to a host whose version is being asked wait for that
    question's answer instead of each asking (and each waiting up to the
    discovery timeout) again."""

    DEADLINE = 30

    def setUp(self):
        super().setUp()
        self.asked = threading.Event()
        self.release = threading.Event()
        self.client.call.side_effect = self.slow_answer
        # Counts the requests that wait for another's question.
        self.waiting = threading.Semaphore(0)
        waiting = self.waiting

        class CountedEvent(threading.Event):
            def wait(self, timeout=None):
                waiting.release()
                return super().wait(timeout)

        class CountedQuestion(rpcapi_versions._Question):
            def __init__(self, cap):
                super().__init__(cap)
                self.answered = CountedEvent()

        patcher = mock.patch.object(rpcapi_versions, '_Question',
                                    CountedQuestion)
        patcher.start()
        self.addCleanup(patcher.stop)
        self.addCleanup(self.release.set)

    def slow_answer(self, ctxt, method, **kwargs):
        if method != 'get_service_status':
            return {}
        self.asked.set()
        self.release.wait(self.DEADLINE)
        if self.service_version is None:
            raise oslo_messaging.MessagingTimeout('agent stopped')
        return {'service_version': self.service_version}

    def caps_of_concurrent_requests(self, count, needed):
        api = self.api('auto')
        caps = []
        threads = [threading.Thread(
            target=lambda: caps.append(api.version_cap(HOST, needed)))
            for _ in range(count)]
        threads[0].start()
        self.assertTrue(self.asked.wait(self.DEADLINE))
        for thread in threads[1:]:
            thread.start()
        for _ in threads[1:]:
            self.assertTrue(self.waiting.acquire(timeout=self.DEADLINE))
        self.release.set()
        for thread in threads:
            thread.join(self.DEADLINE)
        return caps

    def test_an_answer_is_shared(self):
        self.service_version = 6
        self.assertEqual(['1.5'] * 4, self.caps_of_concurrent_requests(
            4, '1.0'))
        self.assertEqual(1, len(self.status_probes()))

    def test_no_answer_is_shared_too(self):
        # Each request then goes at its own version, to wait on the broker.
        self.assertEqual(['1.4'] * 3, self.caps_of_concurrent_requests(
            3, '1.4'))
        self.assertEqual(1, len(self.status_probes()))


class TestUnpinnedUnchanged(_AutoTestCase):
    def test_no_pin_and_fixed_pin_never_ask(self):
        self.assertEqual(rpcapi.VERSION, self.api().version_cap(HOST, '1.0'))
        self.assertEqual('1.2', self.api('1.2').version_cap(HOST, '1.0'))
        self.assertEqual([], self.status_probes())
