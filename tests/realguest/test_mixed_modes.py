"""Two agents in different concurrency modes, one threading and one
eventlet, migrating a real QEMU guest between them both ways: the mode
is not on the wire, so either may be the source of a live migration or
the destination of a cold one."""

from tests.fixtures import rpc
from tests.realguest import test_migration


class MixedModesTest(test_migration.TwoHostsTestCase):
    concurrency_modes = {'source': 'eventlet', 'dest': 'threading'}

    def migrate_live(self, from_role, to_role, guest):
        migration = self.clients[from_role].call(
            'live_migrate_instance', instance_uuid=guest,
            dest_host=self.agents[to_role].host)
        done = self.follow(from_role, migration['id'])
        self.assertEqual('completed', done['status'], done['message'])
        self.assertRunsOn(to_role, guest)

    def test_live_migration_both_ways_then_a_cold_one(self):
        for role, mode in self.concurrency_modes.items():
            status = self.clients[role].call('get_service_status',
                                             topic=rpc.ALT_TOPIC)
            self.assertEqual(mode, status['concurrency'], role)
        guest = self.boot(with_disk=True)
        self.migrate_live('source', 'dest', guest)
        self.migrate_live('dest', 'source', guest)

        # Cold: the threading agent pulls the guest from the eventlet one,
        # which powers it off and copies its disk.
        migration = self.clients['dest'].call(
            'prep_resize', instance_uuid=guest,
            new_flavor={'vcpus': 1, 'memory_mb': 192},
            source_host=self.agents['source'].host)
        done = self.follow('dest', migration['id'])
        self.assertEqual('completed', done['status'], done['message'])
        confirmed = self.clients['source'].call('confirm_resize',
                                                migration_id=done['id'])
        self.assertEqual('confirmed', confirmed['status'])
        self.assertIsNone(self.libvirt_state('source', guest))
        self.assertRunsOn('dest', guest)
