"""Notifications: what the observer sends through a real Notifier (its
in-memory 'test' driver) matches the samples of
doc/source/notifications.rst, and the queue in front of the bus never
holds up the work."""

import glob
import json
import os
import re
import threading

from oslo_config import cfg
from oslo_messaging.notify import _impl_test
from oslo_messaging import conffixture

from compute_agent import exception
from compute_agent import notifications
from compute_agent import tracker as tracker_module
from compute_agent.virt import driver as virt_driver
from tests.fixtures.polling import wait_for
from tests.unit import base

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), '..', '..'))
DOC = os.path.join(ROOT, 'doc', 'source', 'notifications.rst')
SAMPLES = os.path.join(ROOT, 'doc', 'source', 'notifications')
HOST = 'host-a'
UUID = '5f0b4a4e-2c1d-4a3e-9a57-0d6f2e1c7b21'


def make_conf(test, drivers):
    conf = cfg.ConfigOpts()
    test.useFixture(conffixture.ConfFixture(conf))
    conf.register_opt(cfg.StrOpt('host'))
    conf.set_override('host', HOST)
    conf.set_override('transport_url', 'fake://')
    conf.set_override('driver', drivers, group=notifications.GROUP)
    return conf


def samples():
    """event_type -> the sample notification of doc/source/notifications/."""
    found = {}
    for path in sorted(glob.glob(os.path.join(SAMPLES, '*.json'))):
        with open(path, encoding='utf-8') as sample:
            found[os.path.basename(path)[:-len('.json')]] = json.load(sample)
    return found


def json_type(value):
    return {dict: 'object', list: 'array', str: 'string', bool: 'boolean',
            int: 'number', float: 'number', type(None): 'null'}[type(value)]


class SamplesTest(base.TestCase):
    def emit_every_event(self):
        """Every kind of event, sent through from_config's observer and
        the real Notifier; returns the messages the driver got."""
        _impl_test.reset()
        self.addCleanup(_impl_test.reset)
        observer = notifications.from_config(make_conf(self, ['test']))
        tracker = tracker_module.InFlightTracker()
        tracker.start('compute', 'stop_instance', UUID, 'req-1')
        in_flight = tracker.snapshot()
        outcome = virt_driver.PowerOffResult(
            requested='clean', result='clean', method='acpi', seconds=1.5,
            timeout=60, detected_by='event').to_record()

        observer.service_started(HOST, 6, '1.5')
        observer.operation_started('stop', UUID, 'req-1')
        observer.power_off_started(UUID, 'stop', 'clean', 60, 'config')
        observer.power_off_ended(UUID, 'stop',
                                 dict(outcome, timeout_source='config'))
        observer.operation_ended('stop', UUID, 'req-1', 1.6)
        observer.operation_ended(
            'stop', UUID, 'req-2', 0.01,
            error=exception.InstanceInvalidState(
                action='stop', instance_uuid=UUID, state='stopped',
                allowed='vm_state is active'))
        observer.drain_started(in_flight)
        observer.drain_ended(2.0, True, [])
        observer.service_stopped(HOST, 6, '1.5')   # flushes the queue
        return [message for _ctxt, message, _priority, _retry
                in _impl_test.NOTIFICATIONS]

    def assertSameShape(self, sample, emitted, where):
        self.assertEqual(json_type(sample), json_type(emitted), where)
        if isinstance(sample, dict):
            self.assertEqual(sorted(sample), sorted(emitted), where)
            for key in sample:
                if sample[key] is not None and emitted[key] is not None:
                    self.assertSameShape(sample[key], emitted[key],
                                         f'{where}.{key}')
        elif isinstance(sample, list) and sample and emitted:
            self.assertSameShape(sample[0], emitted[0], f'{where}[0]')

    def test_the_samples_match_what_the_code_sends(self):
        emitted = self.emit_every_event()
        documented = samples()
        self.assertEqual(sorted(documented),
                         sorted({message['event_type']
                                 for message in emitted}),
                         'every event has a sample, every sample an event')
        for message in emitted:
            sample = documented[message['event_type']]
            where = message['event_type']
            self.assertEqual(sample['priority'], message['priority'], where)
            self.assertEqual(sample['publisher_id'],
                             message['publisher_id'], where)
            for key in (notifications.NAME, notifications.VERSION):
                self.assertEqual(sample['payload'][key],
                                 message['payload'][key], where)
            self.assertSameShape(sample, message, where)

    def test_every_sample_is_in_the_document(self):
        with open(DOC, encoding='utf-8') as doc:
            text = doc.read()
        for event_type in samples():
            self.assertIn(f'.. literalinclude:: notifications/'
                          f'{event_type}.json', text)

    def test_the_document_names_every_operation(self):
        with open(DOC, encoding='utf-8') as doc:
            text = doc.read()
        code = ''
        for path in glob.glob(os.path.join(ROOT, 'compute_agent', '*.py')):
            with open(path, encoding='utf-8') as source:
                code += source.read()
        actions = set(re.findall(r"_ops\.run\(\s*ctxt, \w+, '([\w-]+)'",
                                 code))
        self.assertGreater(len(actions), 10)
        for action in sorted(actions):
            self.assertIn(f'``{notifications.event_type(action, "*")}``',
                          text)


class FromConfigTest(base.TestCase):
    def test_off_without_a_driver_or_with_noop(self):
        for drivers in ([], ['noop']):
            self.assertIsNone(
                notifications.from_config(make_conf(self, drivers)))

    def test_on_with_a_driver(self):
        observer = notifications.from_config(make_conf(self,
                                                       ['messagingv2']))
        self.assertIsInstance(observer, notifications.Notifications)

    def test_event_types_use_underscores(self):
        self.assertEqual('instance.shelve_offload.end',
                         notifications.event_type('shelve-offload', 'end'))


class RecordingNotifier:
    """Stands in for oslo_messaging.Notifier; blocked until release()
    when made with blocked=True, as a send to a broker that is gone."""

    def __init__(self, blocked=False):
        self.sent = []
        self.called = threading.Event()
        self._open = threading.Event()
        if not blocked:
            self._open.set()

    def release(self):
        self._open.set()

    def info(self, ctxt, event_type, payload):
        self.called.set()
        if not self._open.wait(30):
            raise AssertionError('never released')
        if event_type == 'broken':
            raise RuntimeError('cannot serialise')
        self.sent.append(event_type)

    error = info


class QueuedSenderTest(base.TestCase):
    def test_sent_in_order(self):
        notifier = RecordingNotifier()
        sender = notifications.QueuedSender(notifier)
        for name in ('a', 'b', 'c'):
            sender.send('info', name, {})
        self.assertTrue(sender.flush(10))
        self.assertEqual(['a', 'b', 'c'], notifier.sent)

    def test_a_failed_send_does_not_stop_the_next(self):
        notifier = RecordingNotifier()
        sender = notifications.QueuedSender(notifier)
        sender.send('info', 'broken', {})
        sender.send('error', 'next', {})
        self.assertTrue(sender.flush(10))
        self.assertEqual(['next'], notifier.sent)

    def test_a_bus_that_takes_nothing_neither_blocks_nor_grows(self):
        notifier = RecordingNotifier(blocked=True)
        self.addCleanup(notifier.release)
        sender = notifications.QueuedSender(notifier, capacity=2)
        sender.send('info', 'n0', {})
        self.assertTrue(notifier.called.wait(10))   # n0 is being sent
        with self.assertLogs('compute_agent.notifications',
                             'WARNING') as logs:
            for number in range(1, 5):   # returns at once: nothing waits
                sender.send('info', f'n{number}', {})
        self.assertEqual(1, len(logs.output))
        self.assertIn('dropping', logs.output[0])
        self.assertFalse(sender.flush(0.05))
        notifier.release()
        self.assertTrue(sender.flush(10))
        # n0 was being sent when the queue filled; two waited.
        self.assertEqual(['n0', 'n1', 'n2'], notifier.sent)

    def test_the_stop_waits_a_bounded_time_for_the_queue(self):
        notifier = RecordingNotifier(blocked=True)
        self.addCleanup(notifier.release)
        observer = notifications.Notifications(
            HOST, notifications.QueuedSender(notifier))
        with self.assertLogs('compute_agent.notifications', 'WARNING'):
            observer.service_stopped(HOST, 6, '1.5')
        notifier.release()
        wait_for(lambda: notifier.sent == ['service.update'], 10,
                 'the queued service.update sent once the bus is back')
