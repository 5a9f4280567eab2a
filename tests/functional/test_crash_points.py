"""A SIGKILL at each step of the single-host operations (the first slice
of the crash matrix), on one agent with libvirt's test driver.

For each failpoint an agent is started armed with it
(compute_agent/failpoints.py), the operation is run until the agent kills
itself there, and the agent is restarted unarmed. Then: no task state is
left; the record agrees with libvirt; the interrupted action is closed
with result ``interrupted`` and a message; the instance can be deleted;
and the operation succeeds when run again on this agent.

The test driver keeps its domains in the agent's process, so a restarted
agent finds none of them: every instance it settles has lost its guest
("nostate"). Whether a step leaves its guest running or off is a question
for the same matrix on QEMU guests; here what is checked is that the
restart settles every record, leaves nothing stuck and no snapshot
behind, and keeps the instance deletable.
"""

import os
import signal
import sqlite3
import uuid

import testtools
from testtools import content

from compute_agent import failpoints
from tests.fixtures import agent as agent_fixture
from tests.fixtures import rabbitmq
from tests.fixtures import rpc

# The operation each failpoint's prefix belongs to: (action recorded,
# the steps that set the instance up, the RPC method that is killed).
OPERATIONS = {
    'build': ('build', (), None),
    'start': ('start', ('stop_instance',), 'start_instance'),
    'stop': ('stop', (), 'stop_instance'),
    'reboot': ('soft-reboot', (), 'reboot_instance'),
    'rescue': ('rescue', (), 'rescue_instance'),
    'unrescue': ('unrescue', ('rescue_instance',), 'unrescue_instance'),
    'shelve': ('shelve', (), 'shelve_instance'),
    'offload': ('shelve-offload', (), 'shelve_offload_instance'),
    'unshelve': ('unshelve', ('shelve_instance', 'shelve_offload_instance'),
                 'unshelve_instance'),
}
SINGLE_HOST = sorted(name for name in failpoints.ALL
                     if name.split('.')[0] in OPERATIONS)
EXIT_TIMEOUT = 30


def new_instance():
    return {'uuid': str(uuid.uuid4()), 'name': 'crash', 'vcpus': 1,
            'memory_mb': 64, 'image': {'id': 'img', 'properties': {}}}


class CrashPointTest(testtools.TestCase):
    """One test per failpoint, generated below."""

    def _agent(self, failpoint):
        broker = rabbitmq.shared_broker()
        agent = self.useFixture(agent_fixture.AgentProcess(
            broker.transport_url, shutdown_timeout=5,
            environment={failpoints.ENV_ARMED: failpoint,
                         failpoints.ENV_ACKNOWLEDGED: 'yes'}))
        agent.wait_ready()
        client = self.useFixture(rpc.AgentRPCClient(broker.transport_url,
                                                    agent.host))
        return agent, client

    def _run(self, client, method, instance_uuid=None):
        if method is None:
            return client.call('build_and_run_instance',
                               instance=new_instance())
        return client.call(method, instance_uuid=instance_uuid)

    def _send(self, client, method, instance_uuid):
        if method is None:
            client.cast('build_and_run_instance', instance=new_instance())
        else:
            client.cast(method, instance_uuid=instance_uuid)

    def _set_up_instance(self, client, setup):
        record = client.call('build_and_run_instance',
                             instance=new_instance())
        for method in setup:
            client.call(method, instance_uuid=record['uuid'])
        return record['uuid']

    def _snapshots(self, agent):
        """Snapshot records of the agent's database: (id, instance)."""
        path = os.path.join(agent.state_path, 'agent.sqlite')
        with sqlite3.connect(f'file:{path}?mode=ro', uri=True) as db:
            return db.execute(
                'SELECT id, instance_uuid FROM snapshots').fetchall()

    def check(self, failpoint):
        action, setup, method = OPERATIONS[failpoint.split('.')[0]]
        agent, client = self._agent(failpoint)
        instance_uuid = None
        if method is not None:
            instance_uuid = self._set_up_instance(client, setup)
        # The request that reaches the failpoint would get no answer: it
        # is cast, and the agent's death is what is waited for.
        self._send(client, method, instance_uuid)
        self.assertEqual(-signal.SIGKILL, agent.wait_exit(EXIT_TIMEOUT))
        self.assertIn(f'Failpoint {failpoint} reached', agent.log_text())
        if instance_uuid is None:
            [instance_uuid] = [record['uuid'] for record in
                               self._records_after_restart(agent, client)]
        else:
            self._records_after_restart(agent, client)

        record = client.call('get_instance', instance_uuid=instance_uuid)
        actions = [entry for entry in client.call(
            'get_instance_actions', instance_uuid=instance_uuid)
            if entry['action'] == action]
        finding = (f'{failpoint}: left {record["vm_state"]}/'
                   f'{record["power_state"]} task {record["task_state"]}; '
                   f'action {actions[-1]["result"]}: '
                   f'{actions[-1]["message"]}')
        self.addDetail('finding', content.text_content(finding))
        self.assertIsNone(record['task_state'], finding)
        # The test driver lost every guest with the process: a record
        # that agrees with libvirt says so.
        self.assertEqual('nostate', record['power_state'], finding)
        self.assertEqual('interrupted', actions[-1]['result'], finding)
        self.assertIsNotNone(actions[-1]['finish_time'], finding)
        self.assertIn('interrupted by a stop of the agent',
                      actions[-1]['message'] or '', finding)
        self.assertEqual('running', client.call(
            'get_service_status')['state'])

        deleted = client.call('terminate_instance',
                              instance_uuid=instance_uuid)
        self.assertEqual(('deleted', None),
                         (deleted['vm_state'], deleted['task_state']))
        self.assertEqual([], self._snapshots(agent),
                         f'{failpoint}: snapshots left after the delete')
        # Run again, unarmed, the operation succeeds.
        retried_uuid = None
        if method is not None:
            retried_uuid = self._set_up_instance(client, setup)
        retried = self._run(client, method, retried_uuid)
        self.assertIsNone(retried['task_state'])

    def _records_after_restart(self, agent, client):
        agent.restart(environment={})
        agent.wait_ready()
        records = client.call('list_instances')
        self.addDetail('records-after-restart',
                       content.json_content(records))
        return records


def _add_test(failpoint):
    def test(self):
        self.check(failpoint)
    test.__doc__ = f'A SIGKILL at failpoint {failpoint}, then a restart.'
    setattr(CrashPointTest, 'test_' + failpoint.replace('.', '_'), test)


for _failpoint in SINGLE_HOST:
    _add_test(_failpoint)
