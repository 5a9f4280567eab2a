"""compute_agent.db against a real SQLite file, with real threads."""

import os
import shutil
import tempfile
import threading
import uuid

from compute_agent import db
from tests.unit import base

THREADS = 8
ROUNDS = 20
JOIN_TIMEOUT = 60


def instance_values(instance_uuid, name='vm'):
    return dict(uuid=instance_uuid, name=name, host='host-a',
                vm_state='building', task_state='spawning',
                power_state='nostate', vcpus=1, memory_mb=128,
                image={'id': 'img', 'properties': {}}, last_power_off=None)


def run_together(count, call):
    """call(index) in count threads lined up on a barrier, so that they
    reach the database as nearly at once as threads can; returns each
    thread's result or exception, by index."""
    barrier = threading.Barrier(count)
    outcomes = [None] * count

    def run(index):
        barrier.wait(JOIN_TIMEOUT)
        try:
            outcomes[index] = call(index)
        except Exception as error:
            outcomes[index] = error

    threads = [threading.Thread(target=run, args=(index,))
               for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
        if thread.is_alive():
            raise AssertionError(f'a thread still runs {JOIN_TIMEOUT} s on')
    return outcomes


class DatabaseTestCase(base.TestCase):
    def setUp(self):
        super().setUp()
        state_dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, state_dir, True)
        self.path = os.path.join(state_dir, 'agent.sqlite')
        self.db = db.Database(self.path)


class CreateInstanceTest(DatabaseTestCase):
    def test_a_taken_uuid_is_refused(self):
        instance_uuid = str(uuid.uuid4())
        first = self.db.create_instance(**instance_values(instance_uuid))
        self.assertEqual('vm', first['name'])
        self.assertIsNone(self.db.create_instance(
            **instance_values(instance_uuid, name='other')))
        self.assertEqual(first, self.db.get_instance(instance_uuid))

    def test_concurrent_creates_of_one_uuid_give_one_record(self):
        # Each thread has its own Database (its own connections), as two
        # RPC threads of the agent would have their own sessions.
        databases = [db.Database(self.path) for _ in range(THREADS)]
        for _ in range(ROUNDS):
            instance_uuid = str(uuid.uuid4())
            outcomes = run_together(THREADS, lambda index: databases[
                index].create_instance(**instance_values(
                    instance_uuid, name=f'vm-{index}')))
            errors = [o for o in outcomes if isinstance(o, Exception)]
            self.assertEqual([], errors)
            created = [o for o in outcomes if o is not None]
            self.assertEqual(1, len(created), outcomes)
            self.assertEqual(created[0],
                             self.db.get_instance(instance_uuid))
