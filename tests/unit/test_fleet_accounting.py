"""The fleet run's bookkeeping: lost and twice-run requests judged from
the agents' records, the percentiles, and the records read from SQLite
files shaped like the agent's."""

import collections
import os
import sqlite3

import fixtures
import testtools

from tools.bench.fleet import accounting
from tools.bench.fleet import records

HOST = 'host-a'
OTHER = 'host-b'


def request(request_id, outcome=accounting.ANSWERED, host=HOST,
            evidence=accounting.ACTIONS, key=None, error_type=None,
            operation='stop clean', phase='steady', seconds=0.01):
    return accounting.Request(request_id, host, operation, phase, evidence,
                              key, outcome, error_type, seconds=seconds)


def actions(*found):
    """Evidence of action records: (host, request id) once per entry."""
    return {accounting.ACTIONS: collections.Counter(found)}


class JudgeTest(testtools.TestCase):

    def test_one_record_per_request_is_neither_lost_nor_twice(self):
        verdict = accounting.judge(
            [request('r1'), request('r2', accounting.TIMED_OUT)],
            actions((HOST, 'r1'), (HOST, 'r2')))
        self.assertEqual(([], [], 0), (verdict.lost, verdict.executed_twice,
                                       verdict.refused))

    def test_answered_without_record_is_lost(self):
        sent = request('r1')
        verdict = accounting.judge([sent], actions())
        self.assertEqual([sent], verdict.lost)

    def test_timed_out_without_record_is_lost(self):
        sent = request('r1', accounting.TIMED_OUT)
        self.assertEqual([sent], accounting.judge([sent], actions()).lost)

    def test_two_records_of_one_request_ran_twice(self):
        sent = request('r1')
        verdict = accounting.judge([sent], actions((HOST, 'r1'),
                                                   (HOST, 'r1')))
        self.assertEqual(([], [sent]), (verdict.lost,
                                        verdict.executed_twice))

    def test_a_record_on_another_host_does_not_count(self):
        sent = request('r1')
        verdict = accounting.judge([sent], actions((OTHER, 'r1')))
        self.assertEqual([sent], verdict.lost)

    def test_contract_error_without_record_was_refused(self):
        verdict = accounting.judge(
            [request('r1', accounting.FAILED, error_type='InvalidInput')],
            actions())
        self.assertEqual(([], 1), (verdict.lost, verdict.refused))

    def test_other_error_without_record_is_lost(self):
        sent = request('r1', accounting.FAILED, error_type='ValueError')
        self.assertEqual([sent], accounting.judge([sent], actions()).lost)

    def test_error_reply_with_its_action_ran_once(self):
        verdict = accounting.judge(
            [request('r1', accounting.FAILED,
                     error_type='InstanceInvalidState')],
            actions((HOST, 'r1')))
        self.assertEqual(([], [], 0), (verdict.lost, verdict.executed_twice,
                                       verdict.refused))

    def test_evidence_kinds_are_kept_apart(self):
        migrate = request('r1', evidence=accounting.MIGRATIONS)
        confirm = request('r2', evidence=accounting.CONFIRMED, key='m1')
        verdict = accounting.judge([migrate, confirm], {
            accounting.ACTIONS: collections.Counter({(HOST, 'r1'): 1}),
            accounting.CONFIRMED: collections.Counter({(HOST, 'm1'): 1})})
        self.assertEqual([migrate], verdict.lost)


class FiguresTest(testtools.TestCase):

    def test_nearest_rank_percentiles(self):
        samples = list(range(1, 101))
        self.assertEqual((50, 99, 100, 1), (
            accounting.percentile(samples, 0.5),
            accounting.percentile(samples, 0.99),
            accounting.percentile(samples, 1.0),
            accounting.percentile(samples, 0.0)))
        self.assertEqual(7, accounting.percentile([7], 0.99))
        self.assertIsNone(accounting.percentile([], 0.5))

    def test_latencies_per_operation_and_phase_answered_only(self):
        figures = accounting.latencies([
            request('r1', seconds=0.010),
            request('r2', seconds=0.030),
            request('r3', phase='restarts', seconds=2.0),
            request('r4', accounting.TIMED_OUT, seconds=60.0)])
        self.assertEqual(
            {'stop clean': {'steady': {'n': 2, 'p50': 10.0, 'p99': 30.0},
                            'restarts': {'n': 1, 'p50': 2000.0,
                                         'p99': 2000.0}}}, figures)

    def test_counts(self):
        self.assertEqual(
            {'sent': 4, 'answered': 1, 'failed': 1, 'timed_out': 1,
             'broken': 1},
            accounting.counts([
                request('r1'), request('r2', accounting.FAILED),
                request('r3', accounting.TIMED_OUT),
                request('r4', accounting.BROKEN)]))

    def test_ledger_keeps_requests_in_order(self):
        ledger = accounting.Ledger()
        sent = [ledger.add(request(f'r{n}')) for n in range(3)]
        self.assertEqual(sent, ledger.requests())


class ReadEvidenceTest(testtools.TestCase):

    def database(self, host, actions=(), migrations=()):
        path = os.path.join(self.useFixture(fixtures.TempDir()).path,
                            'agent.sqlite')
        connection = sqlite3.connect(path)
        connection.execute('CREATE TABLE instance_actions '
                           '(id INTEGER PRIMARY KEY, request_id TEXT)')
        connection.execute('CREATE TABLE migrations (id TEXT, request_id '
                           'TEXT, source_host TEXT, dest_host TEXT, '
                           'status TEXT)')
        connection.executemany(
            'INSERT INTO instance_actions (request_id) VALUES (?)',
            [(request_id,) for request_id in actions])
        connection.executemany('INSERT INTO migrations VALUES (?,?,?,?,?)',
                               migrations)
        connection.commit()
        connection.close()
        return path

    def test_counts_each_kind_on_its_host(self):
        evidence = records.read_evidence({
            HOST: self.database(HOST, ['r1', 'r1', None], [
                ('m1', 'r3', OTHER, HOST, 'completed')]),
            OTHER: self.database(OTHER, ['r1'], [
                ('m1', 'r3', OTHER, HOST, 'confirmed')]),
        })
        self.assertEqual({(HOST, 'r1'): 2, (OTHER, 'r1'): 1},
                         dict(evidence[accounting.ACTIONS]))
        self.assertEqual({(HOST, 'r3'): 1},
                         dict(evidence[accounting.MIGRATIONS]))
        self.assertEqual({(OTHER, 'm1'): 1},
                         dict(evidence[accounting.CONFIRMED]))
