"""The broker fails under a draining or working agent.

Each test has a RabbitMQ node of its own, stopped and started again on the
same port (a broker restart, as the agent sees it). The agent's queues are
classic and not durable, so a restart empties them: the agent declares
them again when it reconnects.
"""

import time

import oslo_messaging

from tests.faults import base
from tests.faults import held_work
from tests.fixtures import agent as agent_fixture
from tests.fixtures.polling import wait_for
from tests.fixtures import rabbitmq
from tests.fixtures import rpc
from tests.realguest import libvirtd

# Small, so that the launcher's alarm (exit 1 at this many seconds after
# SIGTERM) would show within the test.
SHORT_GRACEFUL = 20
GRACEFUL = 60
# Bounds that only keep a broken agent from hanging the run.
TIMEOUT = 30
RECONNECT_TIMEOUT = 90
CALL_TIMEOUT = 5


def call_until_answered(client, method, timeout=RECONNECT_TIMEOUT,
                        **kwargs):
    """client.call(method) retried while the broker or the agent are not
    back yet: a request sent before the agent has declared its queue again
    is dropped and times out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.call(method, timeout=CALL_TIMEOUT, **kwargs)
        except (oslo_messaging.MessagingTimeout,
                oslo_messaging.MessageDeliveryFailure):
            if time.monotonic() > deadline:
                raise


class BrokerTestCase(base.TestCase):
    def start(self, **agent_options):
        self.broker = self.useFixture(rabbitmq.RabbitMQFixture()).broker
        self.agent = self.useFixture(agent_fixture.AgentProcess(
            self.broker.transport_url, **agent_options))
        self.agent.wait_ready()
        self.client = self.useFixture(rpc.AgentRPCClient(
            self.broker.transport_url, self.agent.host, timeout=TIMEOUT))

    def restart_broker(self):
        started = time.monotonic()
        self.broker.stop_node()
        self.broker.start_node()
        return time.monotonic() - started


class BrokerDownTest(BrokerTestCase):
    def test_sigterm_with_the_broker_down_exits_0_before_the_alarm(self):
        """Stop the broker, then SIGTERM an idle agent whose
        graceful_shutdown_timeout is 20 s."""
        self.start(graceful_shutdown_timeout=SHORT_GRACEFUL)
        self.broker.stop_node()
        self.agent.sigterm()
        code = self.agent.wait_exit(SHORT_GRACEFUL + TIMEOUT)
        took = self.agent.exit_time - self.agent.signal_time
        log = self.agent.log_text()
        left_behind = [line.partition(' compute_agent.service ')[2]
                       for line in log.splitlines()
                       if 'leaving it behind' in line]
        self.add_finding(
            f'exit {code} {took:.1f} s after SIGTERM (the alarm would end '
            f'it at {SHORT_GRACEFUL} s with 1); listeners left behind: '
            f'{left_behind}')
        # Exit 0 settles it: the alarm's exit is 1. The log shows that the
        # exit came by the agent's own drain.
        self.assertEqual(0, code)
        self.assertIn('Drained in', log)


class BrokerRestartInDrainTest(BrokerTestCase):
    def test_broker_restart_during_a_drain_exits_0_in_time(self):
        """Hold a build in flight, SIGTERM, restart the broker while the
        drain waits for the build, then release the build over the
        restarted broker."""
        self.start(graceful_shutdown_timeout=GRACEFUL)
        instance = held_work.held_instance()
        self.client.cast(held_work.BUILD, instance=instance)
        wait_for(lambda: held_work.builds_in_flight(self.client), TIMEOUT,
                 'the held build in flight')
        self.agent.sigterm()
        wait_for(lambda: 'Draining' in self.agent.log_text(), TIMEOUT,
                 'the drain')
        down_for = self.restart_broker()
        self.assertTrue(self.agent.running, 'the agent exited with the '
                                            'broker down, build unfinished')
        delivered = call_until_answered(
            self.client, 'external_instance_event', topic=rpc.ALT_TOPIC,
            instance_uuid=instance['uuid'], name=held_work.EVENT,
            tag=instance['uuid'])['delivered']
        code = self.agent.wait_exit(GRACEFUL + TIMEOUT)
        took = self.agent.exit_time - self.agent.signal_time

        self.agent.restart()
        self.agent.wait_ready()
        record = held_work.instance_or_none(self.client, instance['uuid'])
        self.add_finding(
            f'broker restarted in {down_for:.1f} s during the drain; the '
            f'event {"woke" if delivered else "did not wake"} the build; '
            f'agent exit {code} {took:.1f} s after SIGTERM '
            f'(graceful_shutdown_timeout {GRACEFUL} s); after a restart '
            f'the instance is {record and record["vm_state"]}')
        self.assertTrue(delivered)
        # 0: the drain's own exit, not the alarm's (1).
        self.assertEqual(0, code)
        self.assertEqual('active', record['vm_state'])


class BrokerRestartInPowerOffTest(BrokerTestCase):
    SHUTDOWN_TIMEOUT = 10

    def test_broker_restart_in_a_clean_power_off(self):
        """Stop a real QEMU guest that ignores ACPI (shutdown_timeout
        10 s) and restart the broker while the agent waits for it."""
        available, reason = libvirtd.realguest_available()
        if not available:
            self.skipTest(reason)
        images = libvirtd.guest_images()
        hypervisor = self.useFixture(libvirtd.PrivateLibvirtd('host-a'))
        self.start(connection_uri=hypervisor.uri, virt_type='qemu',
                   graceful_shutdown_timeout=GRACEFUL)
        instance = held_work.held_instance()
        del instance['wait_for_events']
        instance['image'].update(
            kernel=images['kernel'], ramdisk=images['initramfs_noacpi'],
            cmdline=libvirtd.GUEST_CMDLINE)
        self.client.call(held_work.BUILD, instance=instance, timeout=120)
        libvirtd.wait_until_guest_ready(
            f'{self.agent.state_path}/instances/{instance["uuid"]}/'
            f'console.log')

        self.client.cast('stop_instance', instance_uuid=instance['uuid'],
                         shutdown_timeout=self.SHUTDOWN_TIMEOUT)
        wait_for(lambda: held_work.instance_or_none(
            self.client, instance['uuid'])['task_state'], TIMEOUT,
            'the clean power-off waiting for the guest')
        down_for = self.restart_broker()
        record = wait_for(
            lambda: self._settled(instance['uuid']), RECONNECT_TIMEOUT,
            'the power-off settled, seen after the broker restart')
        statuses = [call_until_answered(self.client, 'get_service_status',
                                        topic=topic)['state']
                    for topic in (rpc.TOPIC, rpc.ALT_TOPIC)]
        self.add_finding(
            f'broker restarted in {down_for:.1f} s during a clean '
            f'power-off of a guest ignoring ACPI; the instance is '
            f'{record["vm_state"]}, {record["power_state"]}, power-off '
            f'{record["last_power_off"]}; agent pid {self.agent.pid} '
            f'running {self.agent.running}, status on both topics '
            f'{statuses}')
        self.assertEqual(('stopped', 'shutdown'),
                         (record['vm_state'], record['power_state']))
        self.assertEqual(('clean', 'forced'),
                         (record['last_power_off']['requested'],
                          record['last_power_off']['result']))
        self.assertTrue(self.agent.running)
        self.assertEqual(['running', 'running'], statuses)

    def _settled(self, instance_uuid):
        record = call_until_answered(self.client, 'get_instance',
                                     instance_uuid=instance_uuid)
        return record if record['task_state'] is None else None
