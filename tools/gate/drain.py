"""SIGTERM an agent in the middle of an operation, and check its drain.

The sequence every scenario shares, once its operation is under way:

1. ``wait_in_flight``: poll ``get_service_status`` on compute-alt until
   the agent lists the operation as in flight (and, optionally, until it
   has reached the stage the scenario wants to interrupt). An operation
   that finishes first is a failure: there would be nothing to drain.
2. ``sigterm_and_drain``: ``systemctl stop`` the agent's unit (systemd
   SIGTERMs the main process); when `systemctl status` shows its
   ``STATUS=draining`` (compute no longer consumed), send a request to
   its compute topic; check on compute-alt that it is draining with the
   operation in flight; wait for the operation to end and the unit to
   stop; check what systemd reports (Result=success, exit status 0, no
   SIGKILL at TimeoutStopSec=) and the timing; see the request waiting
   on the broker; ``systemctl start`` the agent and see the request
   served.

An operation is a deployment.PendingCall (an RPC call whose answer ends
it), or anything else with the same ``method``, ``request_id``, ``done``,
``ended`` (time.monotonic() it was seen to end) and ``wait(timeout)``:
e.g. a follower of a migration that runs on after the request that
started it was answered.

The drain lag is the agent's exit time (systemd's
ExecMainExitTimestampMonotonic) minus the end of the last thing it had
in flight: the later of its last answer to the gate and the
operation's end, both as seen from outside the agent.
"""

import dataclasses
import re
import time

import oslo_messaging

from tests.fixtures import rpc
from tools.gate.failure import expect
from tools.gate.failure import GateFailure
from tools.gate.systemd_agent import STOPPED

IN_FLIGHT_POLL = 0.01
IN_FLIGHT_TIMEOUT = 60
# The agent exits within this long of its last in-flight request ending.
MAX_DRAIN_LAG = 1.0
# Wait for the operation itself: a clean power-off may take the default
# shutdown_timeout (60 s) plus a forced one.
OPERATION_TIMEOUT = 240
# How long the request queued during the drain may wait for the restart.
QUEUED_TIMEOUT = 300
STATUS_TIMEOUT = 10
# How long a unit stopped with the agent may take once the agent is gone.
STOPPED_WITH_TIMEOUT = 90
_DRAINING_STATUS = re.compile(r'draining: (\d+) operation')


@dataclasses.dataclass
class DrainResult:
    lag: float  # seconds from the last end of in-flight work to the exit
    drain_seconds: float  # seconds from SIGTERM to the exit
    queued_result: object  # the reply to the request sent mid-drain


def is_operation(operation):
    """The in-flight entry test for an operation: its request id."""
    return lambda entry: entry['request_id'] == operation.request_id


def wait_in_flight(host, operation, where=None, timeout=IN_FLIGHT_TIMEOUT):
    """Poll compute-alt until an in-flight entry on host satisfies where
    (default: is_operation(operation)); returns the status seen."""
    where = where or is_operation(operation)
    deadline = time.monotonic() + timeout
    while True:
        if operation.done:
            raise GateFailure(
                f'{operation.method} ({operation.request_id}) ended before '
                f'it was seen in flight on {host.name} at the stage to '
                f'interrupt: nothing to SIGTERM in the middle of')
        status = host.rpc.call('get_service_status', topic=rpc.ALT_TOPIC,
                               timeout=STATUS_TIMEOUT)
        if any(where(entry) for entry in status['in_flight']):
            return status
        if time.monotonic() > deadline:
            raise GateFailure(f'{operation.method} on {host.name} not seen '
                              f'in flight within {timeout} s')
        time.sleep(IN_FLIGHT_POLL)


def _wait_for_draining_status(agent, timeout=STATUS_TIMEOUT):
    """The count of operations in the unit's StatusText= while it stops
    (what `systemctl status` shows of the drain)."""
    match = agent.wait_for_status(_DRAINING_STATUS, timeout)
    if match is None:
        raise GateFailure(agent.report(
            'systemctl status showed no "draining" status after the stop '
            'began'))
    return int(match.group(1))


def _check_status_on_alt(host, operation, where):
    """status --alt during the drain: draining, the operation in flight."""
    try:
        status = host.rpc.call('get_service_status', topic=rpc.ALT_TOPIC,
                               timeout=STATUS_TIMEOUT)
    except oslo_messaging.MessagingTimeout:
        # Unanswered only when the agent has gone in the meantime; the
        # request then waits on compute-alt for the restart.
        expect(host.agent.state() in STOPPED,
               f'{host.name} answered no get_service_status on '
               f'compute-alt while draining')
        return
    expect(status['state'] == 'draining',
           f'{host.name} reports state {status["state"]!r} on compute-alt '
           f'after SIGTERM')
    listed = any(where(entry) for entry in status['in_flight'])
    expect(listed or operation.done,
           f'{host.name} draining without {operation.method} in flight: '
           f'{status["in_flight"]}')


def sigterm_and_drain(deployment, host, operation, queued_method,
                      queued_kwargs, lags, where=None,
                      timeout=OPERATION_TIMEOUT, stopped_with=()):
    """SIGTERM host's agent while operation runs; check the drain (see the
    module docstring). where picks the operation's in-flight entry on
    host (default: is_operation). Each measured lag is appended to lags,
    so that a run that fails a later check still reports it. Units named
    in stopped_with are stopped in the same systemctl transaction (a host
    shutdown), and waited for before the agent is started again (which
    starts those it wants)."""
    where = where or is_operation(operation)
    agent = host.agent
    run = agent.sigterm(*stopped_with)
    in_flight = _wait_for_draining_status(agent)
    expect(in_flight >= 1, f'{host.name} reported draining with '
                           f'{in_flight} operations in flight')
    queued = host.rpc.call_in_background(queued_method, topic=rpc.TOPIC,
                                         timeout=QUEUED_TIMEOUT,
                                         **queued_kwargs)
    if not operation.done:
        _check_status_on_alt(host, operation, where)
    try:
        operation.wait(timeout)
    except Exception as error:
        raise GateFailure(f'{operation.method} on {host.name} failed '
                          f'during the drain: {error!r}')
    agent.wait_exit()
    expect(not run.killed, agent.report(
        f'still running {agent.stop_timeout:g} s (TimeoutStopSec) after '
        f'the stop began: systemd killed it (Result={run.result})'))

    # An end seen from outside only after the exit (a migration whose
    # record the other host updates a moment later) counts as a lag of 0.
    last_end = max(moment for moment in
                   (host.rpc.last_answer_before(run.exit_time),
                    operation.ended) if moment is not None)
    result = DrainResult(lag=max(0.0, run.exit_time - last_end),
                         drain_seconds=run.exit_time - run.signal_time,
                         queued_result=None)
    lags.append(result.lag)
    expect((run.result, run.exit_code) == ('success', 0), agent.report(
        f'stopped with Result={run.result}, exit status {run.exit_code}'))
    expect(operation.ended > run.signal_time,
           f'{operation.method} ended before the SIGTERM: it was not in '
           f'flight when the drain began')
    expect(queued.sent < run.exit_time and not queued.done,
           f'{queued_method} was not sent during the drain, or was '
           f'answered before the agent exited')
    expect(result.lag <= MAX_DRAIN_LAG,
           f'{host.name} exited {result.lag:.3f} s after its last in-flight '
           f'request ended (limit {MAX_DRAIN_LAG} s)')
    expect('Drained in' in agent.journal_text(run),
           agent.report('no "Drained in" line in the log'))
    expect(result.drain_seconds <= host.graceful_shutdown_timeout,
           f'{host.name} took {result.drain_seconds:.1f} s to exit, more '
           f'than graceful_shutdown_timeout '
           f'({host.graceful_shutdown_timeout} s)')
    waiting = deployment.broker.queue_depth(host.compute_queue())
    expect(waiting >= 1, f'nothing waits on {host.compute_queue()} after '
                         f'the exit: {queued_method} was lost')
    for unit in stopped_with:
        agent.systemd.wait_for_state(
            unit, STOPPED_WITH_TIMEOUT,
            ActiveState=lambda state: state in STOPPED)

    ready = agent.start()
    try:
        result.queued_result = queued.wait(QUEUED_TIMEOUT)
    except Exception as error:
        raise GateFailure(f'{queued_method}, sent during the drain, was not '
                          f'served after the restart: {error!r}')
    expect(queued.replied > ready.started,
           f'{queued_method} was answered before the restart')
    return result
