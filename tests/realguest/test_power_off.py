"""Clean-then-forced power-off and the SIGTERM drain with real QEMU guests.

Each test runs a private libvirtd (one simulated hypervisor host), an
agent process on it and a private RabbitMQ, and boots small guests built
from Debian packages: one honours the ACPI power button, the other
ignores it. Guests run under TCG, so they take several seconds to boot.
"""

import os
import threading
import time
import uuid

import testtools

from tests.fixtures import agent as agent_fixture
from tests.fixtures.polling import wait_for
from tests.fixtures import rabbitmq
from tests.fixtures import rpc
from tests.realguest import base
from tests.realguest import libvirtd

# The guests' shutdown requests are re-sent this often.
RETRY_INTERVAL = 30


class RealGuestTestCase(base.TestCase):
    def setUp(self):
        super().setUp()
        self.broker = rabbitmq.shared_broker()
        self.hypervisor = self.useFixture(libvirtd.PrivateLibvirtd('host-a'))
        self.agent = self.useFixture(agent_fixture.AgentProcess(
            self.broker.transport_url, connection_uri=self.hypervisor.uri,
            virt_type='qemu', shutdown_timeout=60,
            graceful_shutdown_timeout=120,
            shutdown_retry_interval=RETRY_INTERVAL))
        self.agent.wait_ready()
        self.rpc = self.useFixture(rpc.AgentRPCClient(
            self.broker.transport_url, self.agent.host, timeout=180))

    def boot(self, honours_acpi, with_disk=False, **properties):
        initramfs = self.images['initramfs_acpi' if honours_acpi
                                else 'initramfs_noacpi']
        instance = {
            'uuid': str(uuid.uuid4()),
            'name': 'acpi' if honours_acpi else 'stubborn',
            'vcpus': 1, 'memory_mb': 128,
            'image': {'id': 'debian-busybox', 'properties': properties,
                      'kernel': self.images['kernel'],
                      'ramdisk': initramfs,
                      'cmdline': libvirtd.GUEST_CMDLINE}}
        if with_disk:
            instance['image']['disk'] = self.images['disk']
        record = self.rpc.call('build_and_run_instance', instance=instance)
        self.assertEqual(('active', 'running'),
                         (record['vm_state'], record['power_state']))
        return record['uuid']

    def wait_until_guest_ready(self, instance_uuid):
        libvirtd.wait_until_guest_ready(os.path.join(
            self.agent.state_path, 'instances', instance_uuid,
            'console.log'))

    def stop(self, instance_uuid, topic=rpc.TOPIC, **kwargs):
        return self.rpc.call('stop_instance', topic=topic,
                             instance_uuid=instance_uuid, **kwargs)


class PowerOffTest(RealGuestTestCase):
    def test_acpi_guest_stops_clean_and_ignoring_guest_is_forced(self):
        cooperative = self.boot(honours_acpi=True)
        stubborn = self.boot(honours_acpi=False)
        self.wait_until_guest_ready(cooperative)
        self.wait_until_guest_ready(stubborn)

        clean = self.stop(cooperative)['last_power_off']
        self.addDetail('clean-power-off', testtools.content.json_content(
            clean))
        self.assertEqual(('clean', 'clean', 'acpi', 60),
                         (clean['requested'], clean['result'],
                          clean['method'], clean['timeout']))
        # The wait ended on seeing the guest off: by its lifecycle event,
        # or by the state poll that can see it in the same instant. (That
        # the event ends it at once is shown on the test driver, in
        # tests/unit/test_libvirt_driver.py; how long it took is in the
        # clean-power-off detail.)
        self.assertIn(clean['detected_by'], ('event', 'poll'))

        forced = self.stop(stubborn, shutdown_timeout=5)['last_power_off']
        self.addDetail('forced-power-off', testtools.content.json_content(
            forced))
        # Asked cleanly, then destroyed: with no forced request sent, only
        # the end of its 5 s does that (that the destroy waits for it is
        # checked on a simulated clock in tests/unit/test_power.py).
        self.assertEqual(('clean', 'forced', 'destroy', 5),
                         (forced['requested'], forced['result'],
                          forced['method'], forced['timeout']))
        self.assertNotIn('detected_by', forced)

        console = self.rpc.call('get_console_output', topic=rpc.ALT_TOPIC,
                                instance_uuid=cooperative)
        self.assertIn(libvirtd.GUEST_READY_LINE, console)
        for instance_uuid in (cooperative, stubborn):
            record = self.rpc.call('get_instance',
                                   instance_uuid=instance_uuid)
            self.assertEqual(('stopped', 'shutdown'),
                             (record['vm_state'], record['power_state']))


class DrainTest(RealGuestTestCase):
    def test_sigterm_finishes_in_flight_power_offs_and_keeps_new_work(self):
        on_compute = self.boot(honours_acpi=False)
        on_alt = self.boot(honours_acpi=False)
        self.wait_until_guest_ready(on_compute)
        self.wait_until_guest_ready(on_alt)

        results, finished = {}, {}

        def stop_in_background(instance_uuid, topic):
            results[topic] = self.stop(instance_uuid, topic=topic,
                                       shutdown_timeout=8)
            finished[topic] = time.monotonic()
        stoppers = [threading.Thread(target=stop_in_background,
                                     args=(uuid_, topic))
                    for uuid_, topic in ((on_compute, rpc.TOPIC),
                                         (on_alt, rpc.ALT_TOPIC))]
        for stopper in stoppers:
            stopper.start()
        wait_for(lambda: len(self.rpc.call('get_service_status')
                             ['in_flight']) == 2, 30,
                 'both stops in flight')

        self.agent.sigterm()
        status = wait_for(
            lambda: (s := self.rpc.call('get_service_status',
                                        topic=rpc.ALT_TOPIC, timeout=10))
            and s['state'] == 'draining' and s,
            30, 'draining state on compute-alt')
        self.assertEqual({on_compute, on_alt},
                         {op['instance_uuid'] for op in status['in_flight']})
        # An impatient second SIGTERM changes nothing.
        self.agent.sigterm()

        # New work sent while draining waits on the broker.
        queued = {'uuid': str(uuid.uuid4()), 'name': 'queued', 'vcpus': 1,
                  'memory_mb': 128,
                  'image': {'id': 'debian-busybox', 'properties': {},
                            'kernel': self.images['kernel'],
                            'ramdisk': self.images['initramfs_acpi'],
                            'cmdline': libvirtd.GUEST_CMDLINE}}
        self.rpc.cast('build_and_run_instance', instance=queued)

        for stopper in stoppers:
            stopper.join(120)
        self.assertEqual(0, self.agent.wait_exit(60))
        for topic in (rpc.TOPIC, rpc.ALT_TOPIC):
            self.assertEqual('forced',
                             results[topic]['last_power_off']['result'])
        drain_lag = self.agent.exit_time - max(finished.values())
        self.addDetail('drain-lag-seconds',
                       testtools.content.text_content(f'{drain_lag:.3f}'))
        notifications = [n.fields for n in self.agent.notifications]
        self.assertTrue(any(n.get('STOPPING') == '1' for n in notifications))

        self.assertEqual(1, self.broker.queue_depth(
            f'compute.{self.agent.host}'))
        self.agent.restart()
        self.agent.wait_ready()
        record = wait_for(
            lambda: self._find(queued['uuid']), 120, 'queued build served')
        self.assertEqual('active', record['vm_state'])

    def _find(self, instance_uuid):
        for record in self.rpc.call('list_instances'):
            if record['uuid'] == instance_uuid and \
                    record['task_state'] is None:
                return record
        return None


class InterruptTest(RealGuestTestCase):
    def test_sigint_exits_at_once_and_restart_settles_the_guest(self):
        stubborn = self.boot(honours_acpi=False)
        self.wait_until_guest_ready(stubborn)
        self.rpc.cast('stop_instance', instance_uuid=stubborn,
                      shutdown_timeout=60)
        wait_for(lambda: self.rpc.call('get_instance',
                                       instance_uuid=stubborn)['task_state'],
                 30, 'stop in progress')

        self.agent.sigint()
        self.assertEqual(1, self.agent.wait_exit(30))
        self.agent.restart()
        self.agent.wait_ready()
        record = self.rpc.call('get_instance', instance_uuid=stubborn)
        # The guest ignored ACPI and was never destroyed: still running.
        self.assertEqual(('active', 'running', None),
                         (record['vm_state'], record['power_state'],
                          record['task_state']))
        self.assertIn('interrupted', self.agent.log_text())
