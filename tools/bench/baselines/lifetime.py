"""The process's own life: drain lag, idle exit and RSS, each for the
agent and for the bare oslo.messaging server (bare_server.py).

Drain lag is the exit time minus the reply to the operation in flight
when SIGTERM came: for the agent a clean stop of a real guest, for the
bare server its hold() of about as long.
"""

import threading
import time

from tests.fixtures.polling import wait_for
from tools.bench import procfs
from tools.bench.baselines import bench_host

# Seconds the bare server's in-flight hold() lasts: about a clean stop
# of the ACPI guest under TCG.
HOLD_SECONDS = 1.5
# An exit this long after SIGTERM is a hung drain (the run fails).
EXIT_TIMEOUT = 60


def _exited(process):
    """Seconds from the last signal to the exit; raises if it hung or
    failed."""
    code = process.wait_exit(EXIT_TIMEOUT)
    if code != 0:
        raise RuntimeError(f'{process.host} exited with {code}')
    return process.exit_time - process.signal_time


class _InFlight:
    """call() in a thread; replied holds time.monotonic() of its reply."""

    def __init__(self, call):
        self.replied = None
        self.error = None
        self._call = call
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        try:
            self._call()
            self.replied = time.monotonic()
        except Exception as exc:   # re-raised by join(), in the caller
            self.error = exc

    def join(self):
        self._thread.join(bench_host.STOP_TIMEOUT)
        if self.error is not None:
            raise self.error
        if self.replied is None:
            raise TimeoutError('the call in flight got no reply')
        return self.replied


def _drain(host, name, call, under_way, what):
    """call() in a thread; once under_way() says it is, SIGTERM the agent
    or bare server (name), which is started again after. {exit, lag}."""
    process = getattr(host, name)
    in_flight = _InFlight(call)
    wait_for(under_way, 30, what)
    process.sigterm()
    replied = in_flight.join()
    figures = {'exit': _exited(process), 'lag': process.exit_time - replied}
    host.restart(name)
    return figures


def agent_drain(host, instance_uuid):
    """SIGTERM while the agent stops the (stopped) guest after starting
    it again."""
    host.start(instance_uuid)
    host.wait_ready(instance_uuid)
    return _drain(
        host, 'agent', lambda: host.stop(instance_uuid),
        lambda: host.agent_rpc.call('get_service_status')['in_flight'],
        'the clean stop in flight')


def bare_drain(host):
    """SIGTERM while the bare server holds a call."""
    def holds():
        return sum(n.fields.get('STATUS') == 'holding'
                   for n in host.bare.notifications)
    holds_before = holds()
    return _drain(
        host, 'bare',
        lambda: host.bare_rpc.call('hold', seconds=HOLD_SECONDS),
        lambda: holds() > holds_before, 'the hold in flight')


def idle_exit(host, name, idle):
    """Idle for idle seconds, its RSS, then SIGTERM; started again after.
    {exit, rss_mib}."""
    process = getattr(host, name)
    time.sleep(idle)   # past the listeners' longest broker poll
    rss = procfs.rss_mib(process.pid)
    process.sigterm()
    exit_seconds = _exited(process)
    host.restart(name)
    return {'exit': exit_seconds, 'rss_mib': rss}
