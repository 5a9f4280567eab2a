"""The gate's reload and crash scenarios: `systemctl reload` (SIGHUP) or
`systemctl kill -s KILL` in the middle of an operation on a real guest.

A reload must leave the agent alone: the same main process, no restart,
its reload line in the log, and the operation ends as it would have
without the signal, with the guest where it should be. Each reload
scenario is a SIGTERM scenario of tools/gate/scenarios.py or
migration_scenarios.py with a reload where that SIGTERMs (reloaded()),
so that every kind of operation the gate drains is also reloaded, with
the same checks of its outcome. A kill is a
crash: the unit's Restart=on-failure starts the agent again, and the new
process settles the instance before it serves anything (no task state
left, the record agreeing with libvirt, the interrupted action closed
with a message), after which the instance can be stopped.
"""

import time

from tools.gate import drain
from tools.gate import guests
from tools.gate import migration_scenarios
from tools.gate import scenarios
from tools.gate.failure import expect

# What the agent logs once it has acted on a SIGHUP (compute_agent/
# service.py).
RELOAD_LINE = 'SIGHUP: re-read the configuration without a restart'
RELOAD_LOG_TIMEOUT = 30
# The ACPI-ignoring guest holds a clean stop for this long before the
# forced power-off: the window the reload lands in, with room to spare
# under load.
RELOAD_STOP_TIMEOUT = 10
# The stop the kill interrupts would wait this long; the kill comes long
# before.
KILLED_STOP_TIMEOUT = scenarios.CLEAN_STOP_TIMEOUT
# The killed stop's request is never answered: its message was taken
# off the queue by the process that died.
UNANSWERED_TIMEOUT = 30
INTERRUPTED = 'interrupted'


def reload_during(host, operation):
    """systemctl reload host's agent while operation runs; check that the
    SIGHUP came before its end, was logged, and that the same process
    runs on, never restarted, once the operation has ended."""
    agent = host.agent
    before = agent.identity()
    run = agent.run
    agent.reload()
    reloaded = time.monotonic()
    expect(operation.ended is None or operation.ended > reloaded,
           f'{operation.method} ended before the reload was sent: it was '
           f'not in the middle of it')
    expect(agent.wait_for_output(RELOAD_LINE, RELOAD_LOG_TIMEOUT, run),
           agent.report(f'no "{RELOAD_LINE}" line in the log within '
                        f'{RELOAD_LOG_TIMEOUT} s of the reload'))
    operation.wait(drain.OPERATION_TIMEOUT)
    changes = agent.identity().changes_since(before)
    expect(not changes, agent.report(
        f'not the same running process after the reload: '
        f'{"; ".join(changes)}'))


class _ReloadInstead:
    """Mixed in before a SIGTERM scenario: `systemctl reload` where it
    would SIGTERM, and the same checks of the outcome. Nothing is held
    back by a reload, so there is no queued request to check."""

    def interrupt(self, deployment, host, operation, queued_method,
                  queued_kwargs, where=None):
        reload_during(host, operation)
        return None


def reloaded(scenario, name, **overrides):
    """scenario with a reload in place of its SIGTERM, named name;
    overrides replace class attributes (e.g. a longer shutdown_timeout)."""
    doc = (f'{scenario.__doc__.strip()}\n\nReloaded instead of '
           f'SIGTERMed: the operation ends as it does there, and the same '
           f'agent process runs on.')
    return type(scenario.__name__.replace('Sigterm', 'Reload'),
                (_ReloadInstead, scenario),
                dict(overrides, name=name, __doc__=doc,
                     __module__=__name__))


class KillStopIgnoringAcpi(scenarios.Scenario):
    """A clean stop of a guest that ignores ACPI, the agent killed while
    it waits: systemd restarts it, it settles the instance, which can
    then be stopped."""

    name = 'kill-stop-ignoring-acpi'

    def run(self, deployment):
        host = self.pick_host(deployment)
        agent = host.agent
        instance_uuid = self.boot(deployment, host, honours_acpi=False)
        guests.wait_until_ready(host, instance_uuid)
        stop = host.rpc.call_in_background(
            'stop_instance', instance_uuid=instance_uuid,
            shutdown_timeout=KILLED_STOP_TIMEOUT,
            timeout=UNANSWERED_TIMEOUT)
        waiting = drain.is_operation(stop)
        drain.wait_in_flight(
            host, stop,
            where=lambda entry: waiting(entry) and entry.get('power_off'))
        before = agent.identity()
        offset = agent.kill()
        run = agent.wait_restarted(before.restarts, offset)
        after = agent.identity()
        expect((after.restarts, after.state) ==
               (before.restarts + 1, 'active/running')
               and after.main_pid not in (before.main_pid, 0),
               agent.report(f'after the kill: {after}; expected one '
                            f'restart more than {before}, a new MainPID'))
        expect(not stop.done or stop.error is not None,
               f'the killed stop was answered: {stop.result}')
        # Settled before serving: the guest ignored the button, so it
        # still runs, and the instance is active again.
        record = host.rpc.call('get_instance', instance_uuid=instance_uuid)
        guests.expect_record(record, host, 'active', 'running')
        guests.expect_domain_only_on(deployment, host, instance_uuid,
                                     guests.RUNNING)
        actions = host.rpc.call('get_instance_actions',
                                instance_uuid=instance_uuid)
        killed = [action for action in actions
                  if action['request_id'] == stop.request_id]
        expect(len(killed) == 1 and killed[0]['result'] == INTERRUPTED
               and killed[0]['message'],
               f'action records of the killed stop: {killed}; expected '
               f'one, {INTERRUPTED}, with a message')
        expect('interrupted' in agent.journal_text(run),
               agent.report('the restarted agent logged no settling of '
                            'the interrupted stop'))
        stopped = host.rpc.call('stop_instance', instance_uuid=instance_uuid,
                                clean_shutdown=False)
        guests.expect_record(stopped, host, 'stopped', 'shutdown')
        guests.expect_domain_only_on(deployment, host, instance_uuid,
                                     guests.SHUT_OFF)


# A reload in the middle of each kind of operation the gate SIGTERMs in
# the middle of.
RELOADED = [
    reloaded(scenarios.BuildSigterm, 'reload-build'),
    reloaded(scenarios.StopIgnoringAcpiSigterm, 'reload-stop-ignoring-acpi',
             shutdown_timeout=RELOAD_STOP_TIMEOUT),
    reloaded(migration_scenarios.LiveMigrationSigtermSource,
             'reload-live-migration-source'),
    reloaded(migration_scenarios.LiveMigrationSigtermDest,
             'reload-live-migration-dest'),
    reloaded(migration_scenarios.ColdMigrationSigtermSource,
             'reload-cold-migration-source'),
    reloaded(migration_scenarios.RevertResizeSigterm,
             'reload-revert-resize'),
]

SCENARIOS = RELOADED + [
    KillStopIgnoringAcpi,
]
