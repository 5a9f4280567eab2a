"""In-flight operation tracker and admission gate for the RPC servers.

Every request an RPC server has taken off the broker is registered here
before it is handed to a worker thread, and unregistered after its reply
has been sent. The drain waits on this registry, so it sees each request
from the moment the broker can no longer redeliver it until it is done.
"""

import dataclasses
import threading
import time


@dataclasses.dataclass(frozen=True)
class Operation:
    token: int
    topic: str
    method: str
    instance_uuid: str | None
    request_id: str | None
    started: float

    def describe(self, now):
        return {
            'method': self.method,
            'instance_uuid': self.instance_uuid,
            'request_id': self.request_id,
            'topic': self.topic,
            'elapsed': round(now - self.started, 3),
        }


class InFlightTracker:
    """The requests the RPC servers have taken and not yet answered, and
    the background work that holds the drain.

    Owns ``_operations`` (token -> Operation) and the token counter,
    both guarded by the condition ``_changed``, which also wakes a drain
    waiting for the set to empty.
    """

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._changed = threading.Condition()
        self._operations = {}
        self._next_token = 0

    def start(self, topic, method, instance_uuid=None, request_id=None):
        with self._changed:
            self._next_token += 1
            operation = Operation(self._next_token, topic, method,
                                  instance_uuid, request_id, self._clock())
            self._operations[operation.token] = operation
            return operation.token

    def end(self, token):
        with self._changed:
            self._operations.pop(token, None)
            if not self._operations:
                self._changed.notify_all()

    def snapshot(self):
        """The operations in flight, oldest first, as plain dicts."""
        with self._changed:
            operations = sorted(self._operations.values(),
                                key=lambda op: op.started)
        now = self._clock()
        return [op.describe(now) for op in operations]

    def __len__(self):
        with self._changed:
            return len(self._operations)

    def wait_until_drained(self, deadline, report=None, report_every=5.0):
        """Block until nothing is in flight or the deadline passes.

        :param deadline: a value of the tracker's clock, or None to wait
            without limit.
        :param report: called with snapshot() every report_every seconds
            while work remains, so the caller can log progress.
        :returns: True when drained, False when the deadline passed first.
        """
        next_report = self._clock() + report_every
        with self._changed:
            while self._operations:
                now = self._clock()
                if deadline is not None and now >= deadline:
                    return False
                if report is not None and now >= next_report:
                    next_report = now + report_every
                    self._changed.release()
                    try:
                        report(self.snapshot())
                    finally:
                        self._changed.acquire()
                    continue
                limits = [next_report - now] if report else []
                if deadline is not None:
                    limits.append(deadline - now)
                self._changed.wait(min(limits) if limits else None)
            return True
