"""SIGTERM an agent in the middle of an operation, and check its drain.

The sequence every scenario shares, once its operation is under way:

1. ``wait_in_flight``: poll ``get_service_status`` on compute-alt until
   the agent lists the operation as in flight (and, optionally, until it
   has reached the stage the scenario wants to interrupt). An operation
   that finishes first is a failure: there would be nothing to drain.
2. ``sigterm_and_drain``: SIGTERM the agent (the unit's main pid); when it
   reports ``STATUS=draining`` (compute no longer consumed), send a
   request to its compute topic; check on compute-alt that it is
   draining with the operation in flight; wait for the operation to end
   and the agent to exit; check exit status, timing and notifications;
   see the request waiting on the broker; restart the agent and see the
   request served.

An operation is a deployment.PendingCall (an RPC call whose answer ends
it), or anything else with the same ``method``, ``request_id``, ``done``,
``ended`` (time.monotonic() it was seen to end) and ``wait(timeout)``:
e.g. a follower of a migration that runs on after the request that
started it was answered.

The drain lag is the agent's exit time minus the end of the last thing
it had in flight: the later of its last answer to the gate and the
operation's end, both as seen from outside the agent.
"""

import dataclasses
import re
import time

import oslo_messaging

from tests.fixtures import rpc
from tools.gate.failure import expect
from tools.gate.failure import GateFailure

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


def _wait_for_draining_status(agent, run, timeout=STATUS_TIMEOUT):
    deadline = run.signal_time + timeout
    while time.monotonic() < deadline:
        for value in run.field_values('STATUS'):
            match = _DRAINING_STATUS.match(value)
            if match:
                return int(match.group(1))
        if run.exit_time is not None:
            break
        time.sleep(0.005)
    raise GateFailure(agent.report(
        'no STATUS=draining notification after SIGTERM'))


def _check_status_on_alt(host, operation, where, run):
    """status --alt during the drain: draining, the operation in flight."""
    try:
        status = host.rpc.call('get_service_status', topic=rpc.ALT_TOPIC,
                               timeout=STATUS_TIMEOUT)
    except oslo_messaging.MessagingTimeout:
        # Unanswered only when the agent has gone in the meantime; the
        # request then waits on compute-alt for the restart.
        expect(run.exit_time is not None,
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


def _check_notifications(agent, run):
    strays = [n.fields for n in agent.stray_notifications
              if n.received >= run.started]
    expect(not strays, f'notifications from a pid other than the main '
                       f'one (NotifyAccess=main ignores them): {strays}')
    expect(run.first('STOPPING', '1') is not None,
           'no STOPPING=1 notification after SIGTERM')
    statuses = run.field_values('STATUS')
    expect(statuses and statuses[-1] == 'stopped',
           f'last STATUS= was not "stopped": {statuses}')


def sigterm_and_drain(deployment, host, operation, queued_method,
                      queued_kwargs, lags, where=None,
                      timeout=OPERATION_TIMEOUT):
    """SIGTERM host's agent while operation runs; check the drain (see the
    module docstring). where picks the operation's in-flight entry on
    host (default: is_operation). Each measured lag is appended to lags,
    so that a run that fails a later check still reports it."""
    where = where or is_operation(operation)
    agent = host.agent
    run = agent.sigterm()
    in_flight = _wait_for_draining_status(agent, run)
    expect(in_flight >= 1, f'{host.name} reported draining with '
                           f'{in_flight} operations in flight')
    queued = host.rpc.call_in_background(queued_method, topic=rpc.TOPIC,
                                         timeout=QUEUED_TIMEOUT,
                                         **queued_kwargs)
    if not operation.done:
        _check_status_on_alt(host, operation, where, run)
    try:
        operation.wait(timeout)
    except Exception as error:
        raise GateFailure(f'{operation.method} on {host.name} failed '
                          f'during the drain: {error!r}')
    agent.wait_exit()
    expect(not run.killed, agent.report(
        f'still running {agent.unit.stop_timeout:g} s (TimeoutStopSec) '
        f'after SIGTERM; killed'))

    # An end seen from outside only after the exit (a migration whose
    # record the other host updates a moment later) counts as a lag of 0.
    last_end = max(moment for moment in
                   (host.rpc.last_answer_before(run.exit_time),
                    operation.ended) if moment is not None)
    result = DrainResult(lag=max(0.0, run.exit_time - last_end),
                         drain_seconds=run.exit_time - run.signal_time,
                         queued_result=None)
    lags.append(result.lag)
    expect(run.exit_code == 0, agent.report(
        f'exited with {run.exit_code} after SIGTERM'))
    expect(operation.ended > run.signal_time,
           f'{operation.method} ended before the SIGTERM: it was not in '
           f'flight when the drain began')
    expect(queued.sent < run.exit_time and not queued.done,
           f'{queued_method} was not sent during the drain, or was '
           f'answered before the agent exited')
    expect(result.lag <= MAX_DRAIN_LAG,
           f'{host.name} exited {result.lag:.3f} s after its last in-flight '
           f'request ended (limit {MAX_DRAIN_LAG} s)')
    _check_notifications(agent, run)
    expect('Drained in' in agent.journal_text(run),
           agent.report('no "Drained in" line in the log'))
    expect(result.drain_seconds <= host.graceful_shutdown_timeout,
           f'{host.name} took {result.drain_seconds:.1f} s to exit, more '
           f'than graceful_shutdown_timeout '
           f'({host.graceful_shutdown_timeout} s)')
    waiting = deployment.broker.queue_depth(host.compute_queue())
    expect(waiting >= 1, f'nothing waits on {host.compute_queue()} after '
                         f'the exit: {queued_method} was lost')

    agent.start()
    ready = agent.wait_ready()
    try:
        result.queued_result = queued.wait(QUEUED_TIMEOUT)
    except Exception as error:
        raise GateFailure(f'{queued_method}, sent during the drain, was not '
                          f'served after the restart: {error!r}')
    expect(queued.replied > ready.started,
           f'{queued_method} was answered before the restart')
    return result
