"""What the fleet run's control plane sent, and what became of it.

Pure bookkeeping, no RPC: the ledger of requests (one entry per request
the control plane sent, with how its call ended), the verdict on each
request judged against the agents' own records, and the percentiles.

The ground truth of "did it run, and how often" is what the agents wrote
to their SQLite files, keyed by the host the request was sent to:
- most requests leave one action record carrying their request id;
- prep_resize leaves one migration record (on the destination, which is
  the host it is sent to) carrying its request id;
- confirm_resize leaves no record of its own: the migration it names is
  'confirmed' on the source (a second confirm is refused by the status
  check, so "twice" cannot happen there and is not looked for).
A request whose evidence is missing is lost, unless its call got an error
reply of the wire contract, which means the agent refused it before
running it. Evidence found twice means it ran twice.
"""

import collections
import dataclasses
import math
import threading

# Error replies that say the request was refused (the five of the wire
# contract). A refusal leaves no record, or one action ended 'error'.
CONTRACT_ERRORS = frozenset({'InstanceNotFound', 'InstanceInvalidState',
                             'InvalidInput', 'MigrationError',
                             'HypervisorError'})

# Kinds of evidence, as records.read_evidence() counts them.
ACTIONS = 'actions'
MIGRATIONS = 'migrations'
CONFIRMED = 'confirmed'

# How a call ended.
ANSWERED = 'answered'
FAILED = 'failed'          # an error reply
TIMED_OUT = 'timed_out'    # no reply within the call's timeout
BROKEN = 'broken'          # no reply for another reason (connection, ...)


@dataclasses.dataclass
class Request:
    """One request sent to host; key names its evidence (the request id,
    or for confirm_resize the migration id)."""

    request_id: str
    host: str
    operation: str
    phase: str
    evidence: str = ACTIONS
    key: str | None = None
    outcome: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    seconds: float | None = None

    def __post_init__(self):
        if self.key is None:
            self.key = self.request_id


class Ledger:
    """Every request the control plane sent; its workers add to it."""

    def __init__(self):
        self._lock = threading.Lock()
        self._requests = []

    def add(self, request):
        with self._lock:
            self._requests.append(request)
        return request

    def requests(self):
        with self._lock:
            return list(self._requests)


@dataclasses.dataclass
class Verdict:
    lost: list
    executed_twice: list
    refused: int


def judge(requests, evidence):
    """Lost and executed-twice requests.

    :param evidence: {kind: Counter((host, key) -> records found)}.
    """
    lost, twice, refused = [], [], 0
    for request in requests:
        found = evidence.get(request.evidence, {}).get(
            (request.host, request.key), 0)
        if found > 1:
            twice.append(request)
        elif found == 0:
            if request.outcome == FAILED and \
                    request.error_type in CONTRACT_ERRORS:
                refused += 1
            else:
                lost.append(request)
    return Verdict(lost, twice, refused)


def percentile(samples, fraction):
    """Nearest-rank percentile: an observed value, None when empty."""
    ordered = sorted(samples)
    if not ordered:
        return None
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def latencies(requests):
    """{operation: {phase: {'n', 'p50', 'p99'}}} in ms, answered only."""
    samples = collections.defaultdict(lambda: collections.defaultdict(list))
    for request in requests:
        if request.outcome == ANSWERED and request.seconds is not None:
            samples[request.operation][request.phase].append(
                request.seconds * 1000)
    return {operation: {phase: {'n': len(values),
                                'p50': percentile(values, 0.50),
                                'p99': percentile(values, 0.99)}
                        for phase, values in phases.items()}
            for operation, phases in samples.items()}


def counts(requests):
    """sent, and how many calls ended each way."""
    outcomes = collections.Counter(request.outcome for request in requests)
    return {'sent': len(requests), 'answered': outcomes[ANSWERED],
            'failed': outcomes[FAILED], 'timed_out': outcomes[TIMED_OUT],
            'broken': outcomes[BROKEN]}


def spread(values):
    """median and max of values, None for both when empty."""
    return {'median': percentile(values, 0.5),
            'max': max(values) if values else None}
