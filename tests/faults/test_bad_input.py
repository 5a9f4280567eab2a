"""Bad input to every RPC method: hostile values, wrong types, missing and
extra arguments, and requests naming what the host does not own.

The bulk runs in this process (fuzz_host.InProcessHost: the agent's
manager, SQLite file and libvirt driver on a private libvirt test host,
through the agent's RPC dispatcher), where a case costs a few
milliseconds; a smaller sample goes over a real broker to an agent
process. Each request must be answered with one of the contract's errors
and change nothing: no record, no libvirt domain, no file.

Generation is derandomized (the same cases on every run). Each kind of
case of each method (a bad value of each argument, each missing one, an
extra one, a foreign reference) gets its share of a method's examples,
at least MIN_EXAMPLES_PER_KIND. More cases on demand:
FAULTS_FUZZ_EXAMPLES (per method, default 60: about 2,000 cases in all)
and FAULTS_FUZZ_BROKER_CASES (default 100).
"""

import collections
import math
import os
import re
import time
import uuid

import fixtures
from hypothesis import HealthCheck
from hypothesis import Phase
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import oslo_messaging

from tests.faults import base
from tests.faults import fuzz_host
from tests.faults import fuzz_methods
from tests.faults import fuzz_requests
from tests.fixtures import agent as agent_fixture
from tests.fixtures import rabbitmq
from tests.fixtures import rpc

EXAMPLES_PER_METHOD = int(os.environ.get('FAULTS_FUZZ_EXAMPLES', '60'))
BROKER_CASES = int(os.environ.get('FAULTS_FUZZ_BROKER_CASES', '100'))
# CI runs at least this many in-process cases (issue 9).
MIN_CASES = 1000
# Background work a wrongly accepted request started gets this long to
# end before the case's changes are read.
SETTLE_TIMEOUT = 5.0
MIN_EXAMPLES_PER_KIND = 4


def _settings(examples):
    return settings(max_examples=examples, derandomize=True, database=None,
                    deadline=None, phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=list(HealthCheck))


class Failure:
    def __init__(self, case, problems):
        self.case = case
        self.problems = problems

    def __str__(self):
        args = fuzz_host.short(self.case.args, 400)
        return (f'{self.case.method} [{self.case.kind}] {args}: '
                f'{"; ".join(self.problems)}')


class MethodListTest(base.TestCase):
    def test_every_rpc_method_has_a_bad_input_model(self):
        """Compared the RPC methods compute_agent.rpcapi sends with the
        manager's @remotable methods and the bad-input models: each method
        must be in all three, and each model must cover every argument."""
        sent = fuzz_methods.client_methods()
        remotable = fuzz_methods.remotable_methods()
        self.assertEqual(sorted(sent), sorted(remotable),
                         'rpcapi and the manager disagree on the methods')
        missing = sorted(set(remotable) - set(fuzz_requests.MODELS))
        self.assertEqual([], missing, 'RPC methods without a bad-input '
                         'model in tests/faults/fuzz_requests.py')
        for name, signature in remotable.items():
            self.assertEqual(
                sorted(signature.params),
                sorted(fuzz_requests.MODELS[name].invalid),
                f'{name}: the model must give bad values for exactly the '
                f'method\'s arguments')


class InProcessBadInputTest(base.TestCase):
    def setUp(self):
        super().setUp()
        broker = rabbitmq.shared_broker()
        self.transport = self.useFixture(
            fuzz_host.BrokerTransport(broker.transport_url)).transport
        self.scratch_path = self.useFixture(
            fixtures.TempDir()).path
        self.host = self._new_host()

    def _new_host(self):
        return self.useFixture(fuzz_host.InProcessHost(
            self.transport, self.scratch_path))

    def test_every_method_refuses_bad_input(self):
        """Sent bad requests to every RPC method through the agent's RPC
        dispatcher (real manager, SQLite file and libvirt test host):
        each must get a contract error and change no record, domain or
        file."""
        methods = fuzz_methods.remotable_methods()
        counts = collections.Counter()
        failures = collections.defaultdict(list)
        started = time.monotonic()
        for name in sorted(methods):
            self._fuzz(name, methods[name], counts, failures[name])
        seconds = time.monotonic() - started
        total = sum(counts.values())
        self.add_finding(
            f'{total} cases over {len(methods)} methods in {seconds:.1f} s; '
            f'by kind: {_by_kind(counts)}')
        failed = [failure for name in sorted(failures)
                  for failure in failures[name]]
        for members in _grouped(failed):
            methods = sorted({failure.case.method for failure in members})
            self.add_finding(
                f'{len(members)} failing case(s) in {len(methods)} '
                f'method(s) ({", ".join(methods)}); e.g. {members[0]}')
        if EXAMPLES_PER_METHOD >= 30:
            self.assertGreaterEqual(total, MIN_CASES)
        self.assertEqual([], sorted({failure.case.method
                                     for failure in failed}),
                         'methods that took bad input (see the finding)')

    def _fuzz(self, method, signature, counts, failures):
        kinds = fuzz_requests.cases(method, signature, self.host.view)
        examples = max(MIN_EXAMPLES_PER_KIND,
                       math.ceil(EXAMPLES_PER_METHOD / len(kinds)))
        for strategy in kinds.values():
            @_settings(examples)
            @given(case=strategy)
            def run(case):
                counts[(method, case.kind.split()[0])] += 1
                problems = self._check(case)
                if problems:
                    failures.append(Failure(case, problems))
                    # Later cases need the seeded host as it was.
                    self.host = self._new_host()
            run()

    def _check(self, case):
        before = self.host.snapshot()
        outcome = self.host.call(case.method, case.args)
        problems = []
        if not outcome.is_contract_error:
            problems.append(outcome.describe())
        if not self.host.tracker.wait_until_drained(
                time.monotonic() + SETTLE_TIMEOUT):
            problems.append(f'left work running: '
                            f'{self.host.tracker.snapshot()}')
        changes = fuzz_host.differences(before, self.host.snapshot())
        if changes:
            problems.append(f'changed {len(changes)} thing(s): ' +
                            '; '.join(changes[:4]))
        return problems


def _grouped(failures):
    """Failures alike (same kind of case, same kind of problem) together,
    whatever the method; the largest group first."""
    groups = collections.defaultdict(list)
    for failure in failures:
        kind = failure.case.kind
        problem = re.sub(r'\d+', 'N', failure.problems[0].split(':')[0])
        groups[('extra' if kind == 'extra' else kind, problem)].append(
            failure)
    return sorted(groups.values(), key=len, reverse=True)


def _by_kind(counts):
    kinds = collections.Counter()
    for (_, kind), number in counts.items():
        kinds[kind] += number
    return ', '.join(f'{kind} {number}' for kind, number in
                     sorted(kinds.items()))


# Names the test client's call() takes itself: sent only in process.
_CLIENT_ARGUMENTS = {'self', 'ctxt', 'method', 'topic', 'request_id',
                     'timeout'}


class BrokerBadInputTest(base.TestCase):
    """A sample of the same cases over a real broker, to an agent process
    on libvirt's test driver."""

    def setUp(self):
        super().setUp()
        broker = rabbitmq.shared_broker()
        self.agent = self.useFixture(agent_fixture.AgentProcess(
            broker.transport_url, shutdown_timeout=1))
        self.agent.wait_ready()
        self.rpc = self.useFixture(rpc.AgentRPCClient(
            broker.transport_url, self.agent.host, timeout=30))

    def _seed(self):
        instances = {}
        for state in ('active', 'stopped', 'deleted'):
            record = self.rpc.call('build_and_run_instance', instance={
                'uuid': str(uuid.uuid5(uuid.NAMESPACE_URL, state)),
                'name': f'fuzz-{state}', 'vcpus': 1, 'memory_mb': 64,
                'image': {'id': 'fuzz-image', 'properties': {}}})
            instances[state] = record['uuid']
        self.rpc.call('stop_instance', instance_uuid=instances['stopped'],
                      clean_shutdown=False)
        self.rpc.call('terminate_instance',
                      instance_uuid=instances['deleted'],
                      clean_shutdown=False)
        # No migration has run here: ids of migrations it never saw.
        return fuzz_requests.HostView(
            host=self.agent.host, peer='fuzz-peer-no-agent-listens-as',
            instances=instances,
            source_migration=str(uuid.uuid5(uuid.NAMESPACE_URL, 'out')),
            dest_migration=str(uuid.uuid5(uuid.NAMESPACE_URL, 'in')),
            scratch_path=self.agent.base_dir)

    def _state(self, view):
        return {'instances': self.rpc.call('list_instances'),
                'migrations': self.rpc.call('list_migrations',
                                            topic=rpc.ALT_TOPIC),
                'each': [self.rpc.call('get_instance', instance_uuid=uuid_)
                         for uuid_ in view.instance_uuids]}

    def test_agent_over_the_broker_refuses_bad_input(self):
        """Sent a sample of bad requests over a real broker to an agent
        process: each must come back as a contract error, the agent must
        stay up, and list_instances, get_instance and list_migrations
        must answer as before."""
        view = self._seed()
        methods = fuzz_methods.remotable_methods()
        every_case = st.one_of([
            strategy for name in sorted(methods) for strategy in
            fuzz_requests.cases(name, methods[name], view).values()
        ]).filter(lambda case: not set(case.args) & _CLIENT_ARGUMENTS)
        before = self._state(view)
        failures, sent = [], []

        @_settings(BROKER_CASES)
        @given(case=every_case)
        def run(case):
            sent.append(case)
            problems = self._send(case)
            state = self._state(view)
            if state != before:
                problems.append('instances or migrations changed')
            if problems:
                failures.append(Failure(case, problems))
        run()
        self.add_finding(f'{len(sent)} cases over the broker to agent '
                         f'{self.agent.host}')
        for failure in failures[:10]:
            self.add_finding(str(failure))
        self.assertTrue(self.agent.running, 'the agent died')
        self.assertEqual([], [str(f) for f in failures])

    def _send(self, case):
        try:
            result = self.rpc.call(case.method, topic=rpc.TOPIC, **case.args)
        except oslo_messaging.RemoteError as error:
            if error.exc_type in fuzz_host.CONTRACT_ERRORS:
                return []
            return [f'{error.exc_type}: {fuzz_host.short(error.value)}']
        except oslo_messaging.MessagingTimeout:
            return ['no answer within 30 s']
        return [f'succeeded, returning {fuzz_host.short(result)}']
