"""The gate's migration scenarios: a live or cold migration (or a revert)
between host-a and host-b, with the source or the destination agent
SIGTERMed while it is in flight there.

A migration runs on after the request that started it is answered, so
its end is watched by a MigrationFollower: it polls the migration record
on both hosts (on compute-alt, which answers while a host drains,
through clients of its own so that the drained host's last answer to the
gate stays the drain's own measure) and notes when either first reports
an end.

The request sent to the SIGTERMed host's compute topic during the drain
is list_instances: after a migration the guest may have left that host.
"""

import threading
import time

import oslo_messaging

from tests.fixtures import rpc
from tools.gate import drain
from tools.gate import guests
from tools.gate import scenarios
from tools.gate.failure import expect
from tools.gate.failure import GateFailure

FOLLOW_POLL = 0.01
FOLLOW_CALL_TIMEOUT = 2
LIVE_ENDS = ('completed', 'failed', 'cancelled', 'error')
COLD_ENDS = ('completed', 'failed', 'cancelled', 'error')


class MigrationFollower:
    """An operation for drain.sigterm_and_drain: a migration, ended when
    either end first reports one of ends."""

    def __init__(self, deployment, migration, ends):
        self.method = migration['kind']
        self.request_id = migration['request_id']
        self.migration_id = migration['id']
        self.status = migration['status']
        self.ended = None
        self._ends = ends
        self._done = threading.Event()
        self._clients = []
        for name in (migration['source_host'], migration['dest_host']):
            client = rpc.AgentRPCClient(deployment.broker.transport_url,
                                        name, timeout=FOLLOW_CALL_TIMEOUT)
            client.setUp()
            self._clients.append(client)
        threading.Thread(target=self._follow, daemon=True).start()

    def _follow(self):
        while not self._done.is_set():
            for client in self._clients:
                try:
                    record = client.call('get_migration', topic=rpc.ALT_TOPIC,
                                         migration_id=self.migration_id)
                except (oslo_messaging.MessagingTimeout,
                        oslo_messaging.RemoteError):
                    continue   # that end is down for now, or not told yet
                if record['status'] in self._ends:
                    self.status = record['status']
                    self.ended = time.monotonic()
                    self._done.set()
                    return
            time.sleep(FOLLOW_POLL)

    @property
    def done(self):
        return self._done.is_set()

    def wait(self, timeout):
        if not self._done.wait(timeout):
            raise TimeoutError(f'migration {self.migration_id} not over '
                               f'within {timeout} s')
        if self.status != 'completed':
            raise GateFailure(f'migration {self.migration_id} ended '
                              f'{self.status}')
        return self.status

    def close(self):
        self._done.set()
        for client in self._clients:
            client.cleanUp()


def expect_migration_status(hosts, migration, status):
    """Both ends' records of the migration say status."""
    for host in hosts:
        seen = host.rpc.call('get_migration', topic=rpc.ALT_TOPIC,
                             migration_id=migration['id'])['status']
        expect(seen == status, f'{host.name} records migration '
                               f'{migration["id"]} as {seen}, not {status}')


def on_stage(operation, method):
    """The in-flight entry of operation's migration at the named step."""
    return lambda entry: (entry['request_id'] == operation.request_id and
                          entry['method'] == method)


class _MigrationScenario(scenarios.Scenario):
    # The end interrupted ('source' or 'dest'): SIGTERMed, or what the
    # scenario's interrupt() does instead.
    sigterm = None

    def hosts(self, deployment):
        source = self.pick_host(deployment)
        return source, deployment.other_hosts(source)[0]

    def interrupt_at(self, deployment, host, operation, stage):
        drain.wait_in_flight(host, operation,
                             where=on_stage(operation, stage))
        self.interrupt(deployment, host, operation, 'list_instances', {},
                       where=on_stage(operation, stage))

    def follow(self, deployment, migration, ends):
        follower = MigrationFollower(deployment, migration, ends)
        self._followers.append(follower)
        return follower

    def run(self, deployment):
        self._followers = []
        try:
            self.run_migration(deployment)
        finally:
            for follower in self._followers:
                follower.close()


class _LiveMigrationSigterm(_MigrationScenario):
    def run_migration(self, deployment):
        source, dest = self.hosts(deployment)
        instance_uuid = self.boot(deployment, source)
        guests.wait_until_ready(source, instance_uuid)
        migration = source.rpc.call('live_migrate_instance',
                                    instance_uuid=instance_uuid,
                                    dest_host=dest.name)
        follower = self.follow(deployment, migration, LIVE_ENDS)
        if self.sigterm == 'source':
            self.interrupt_at(deployment, source, follower,
                              'live_migration')
        else:
            self.interrupt_at(deployment, dest, follower,
                              'incoming_live_migration')
        record = dest.rpc.call('get_instance', instance_uuid=instance_uuid)
        guests.expect_record(record, dest, 'active', 'running')
        guests.expect_domain_only_on(deployment, dest, instance_uuid,
                                     guests.RUNNING)
        expect_migration_status((source, dest), migration, 'completed')


class LiveMigrationSigtermSource(_LiveMigrationSigterm):
    """SIGTERM the source while libvirt moves the guest."""

    name = 'live-migration-sigterm-source'
    sigterm = 'source'


class LiveMigrationSigtermDest(_LiveMigrationSigterm):
    """SIGTERM the destination while libvirt moves the guest to it."""

    name = 'live-migration-sigterm-dest'
    sigterm = 'dest'


# The ACPI-ignoring guest holds the source's power-off for this long,
# the window in which the agent is SIGTERMed.
COLD_SHUTDOWN_TIMEOUT = 5


class _ColdMigrationSigterm(_MigrationScenario):
    def migrate(self, deployment, source, dest):
        """A resize of a guest with a disk, confirmed-ready on dest; the
        named host SIGTERMed while the source waits for the guest to
        power off (or, with sigterm None, no SIGTERM)."""
        instance_uuid = self.boot(deployment, source, honours_acpi=False,
                                  with_disk=True)
        guests.wait_until_ready(source, instance_uuid)
        migration = dest.rpc.call(
            'prep_resize', instance_uuid=instance_uuid,
            new_flavor={'vcpus': 1, 'memory_mb': 160},
            source_host=source.name,
            shutdown_timeout=COLD_SHUTDOWN_TIMEOUT)
        follower = self.follow(deployment, migration, COLD_ENDS)
        if self.sigterm == 'source':
            self.interrupt_at(deployment, source, follower,
                              'resize_instance')
        elif self.sigterm == 'dest':
            self.interrupt_at(deployment, dest, follower, 'resize')
        else:
            follower.wait(drain.OPERATION_TIMEOUT)
        record = dest.rpc.call('get_instance', instance_uuid=instance_uuid)
        guests.expect_record(record, dest, 'resized', 'running')
        expect(record['flavor']['memory_mb'] == 160 and
               record['last_power_off']['result'] == 'forced',
               f'resized record: flavor {record["flavor"]}, power-off '
               f'{record["last_power_off"]}')
        # The original stays defined, off, on the source until confirmed.
        expect(guests.domain_state(dest, instance_uuid) == guests.RUNNING,
               f'virsh on {dest.name}: {instance_uuid} is not running')
        expect(guests.domain_state(source, instance_uuid) ==
               guests.SHUT_OFF,
               f'virsh on {source.name}: the original of {instance_uuid} '
               f'is not kept off for a revert')
        # Across the source's restart, if it was SIGTERMed: the whole
        # journal, not the last run's.
        with open(source.agent.journal, errors='replace') as journal:
            streamed = (f'Streamed the disk of instance {instance_uuid}'
                        in journal.read())
        expect(streamed, f'{source.name} did not stream the disk of '
                         f'{instance_uuid} through {dest.name}\'s libvirtd')
        return instance_uuid, migration

    def run_migration(self, deployment):
        source, dest = self.hosts(deployment)
        instance_uuid, migration = self.migrate(deployment, source, dest)
        confirmed = source.rpc.call('confirm_resize',
                                    migration_id=migration['id'])
        expect(confirmed['status'] == 'confirmed',
               f'confirm_resize left {confirmed["status"]}')
        guests.expect_record(
            dest.rpc.call('get_instance', instance_uuid=instance_uuid),
            dest, 'active', 'running')
        guests.expect_domain_only_on(deployment, dest, instance_uuid,
                                     guests.RUNNING)


class ColdMigrationSigtermSource(_ColdMigrationSigterm):
    """SIGTERM the source while it powers the guest off for a resize."""

    name = 'cold-migration-sigterm-source'
    sigterm = 'source'


class ColdMigrationSigtermDest(_ColdMigrationSigterm):
    """SIGTERM the destination while the source powers the guest off."""

    name = 'cold-migration-sigterm-dest'
    sigterm = 'dest'


class RevertResizeSigterm(_ColdMigrationSigterm):
    """Resize, then SIGTERM the destination while it reverts."""

    name = 'revert-resize-sigterm'

    def run_migration(self, deployment):
        source, dest = self.hosts(deployment)
        instance_uuid, migration = self.migrate(deployment, source, dest)
        revert = dest.rpc.call_in_background(
            'revert_resize', migration_id=migration['id'],
            timeout=drain.OPERATION_TIMEOUT)
        drain.wait_in_flight(dest, revert)
        self.interrupt(deployment, dest, revert, 'list_instances', {})
        guests.expect_record(revert.result, source, 'active', 'running')
        expect(revert.result['flavor']['memory_mb'] == 128,
               f'reverted flavor {revert.result["flavor"]}')
        guests.expect_domain_only_on(deployment, source, instance_uuid,
                                     guests.RUNNING)
        expect_migration_status((source, dest), migration, 'reverted')


SCENARIOS = [
    LiveMigrationSigtermSource,
    LiveMigrationSigtermDest,
    ColdMigrationSigtermSource,
    ColdMigrationSigtermDest,
    RevertResizeSigterm,
]
