"""The gate's host-shutdown scenario: a host whose agent runs a live
migration (as its source) is shut down.

The host's compute-agent.service and libvirtd.service are stopped in one
`systemctl stop` transaction, as a shutdown stops every unit: systemd
orders the stop jobs by the units' After= in reverse, so the shipped
unit's After=libvirtd.service stops the agent first, and libvirtd's stop
waits for the agent's to end. The agent's drain lets the migration run
to its end, through the libvirtd still up, and exits as soon as it has;
only then does libvirtd go down. systemd's own timestamps show that
order; the migration must have completed, the guest running on the
destination, both hosts' records agreeing. The host is then started
again: compute-agent.service, which wants libvirtd.service, starts both.
"""

from tools.gate import drain
from tools.gate import migration_scenarios
from tools.gate.failure import expect


def _seconds(shown, name):
    return int(shown[name]) / 1e6


class HostShutdownLiveMigrationSource(
        migration_scenarios.LiveMigrationSigtermSource):
    """Shut the source host down (its agent and libvirtd in one systemctl
    transaction) while libvirt moves a guest away: the agent stops
    first, its drain completes the migration, then libvirtd stops."""

    name = 'host-shutdown-live-migration-source'

    def interrupt(self, deployment, host, operation, queued_method,
                  queued_kwargs, where=None):
        agent_run = host.agent.run
        libvirtd_unit = host.libvirtd.unit
        self.sigtermed.append(host.name)
        queued = drain.sigterm_and_drain(
            deployment, host, operation, queued_method, queued_kwargs,
            self.drain_lags, where=where,
            stopped_with=(libvirtd_unit,)).queued_result
        # The last stop's transitions; the start since leaves them.
        shown = host.systemd.show(
            libvirtd_unit, 'ActiveState', 'ActiveExitTimestampMonotonic',
            'InactiveEnterTimestampMonotonic',
            'ActiveEnterTimestampMonotonic')
        libvirtd_stopping = _seconds(shown, 'ActiveExitTimestampMonotonic')
        libvirtd_stopped = _seconds(shown, 'InactiveEnterTimestampMonotonic')
        expect(agent_run.signal_time < agent_run.exit_time
               <= libvirtd_stopping < libvirtd_stopped,
               f'on {host.name}: the agent\'s stop began at '
               f'{agent_run.signal_time:.3f}, it exited at '
               f'{agent_run.exit_time:.3f}, libvirtd\'s stop began at '
               f'{libvirtd_stopping:.3f} and ended at '
               f'{libvirtd_stopped:.3f}; expected the agent gone before '
               f'libvirtd\'s stop began')
        expect(shown['ActiveState'] == 'active' and
               _seconds(shown, 'ActiveEnterTimestampMonotonic')
               > libvirtd_stopped,
               f'{libvirtd_unit} on {host.name} not started again with the '
               f'agent: {shown}')
        return queued


SCENARIOS = [
    HostShutdownLiveMigrationSource,
]
