"""The gate's scenarios: an operation on a real guest, the agent running
it SIGTERMed half-way, then checks.

To add one, subclass Scenario with a unique ``name`` and a ``run``, and
list the class in a SCENARIOS list that tools/gate/registry.py
reads. ``run`` gets the Deployment (``hosts``
host-a and host-b, ``images``, ``broker``), starts its operation,
waits with drain.wait_in_flight until it is really under way on the host
to SIGTERM, calls ``self.interrupt`` on that host, and then
checks the outcome: the agent's record and libvirt's view
(guests.expect_record, guests.expect_domain_only_on). It raises
GateFailure (failure.expect) on the first check that fails. Guests booted
through ``boot`` (or registered with ``own``) are removed after the run,
on whichever host their record names, whatever happened.

An operation answered by one RPC call is a PendingCall
(``host.rpc.call_in_background``). Work that runs on after its request
was answered (a migration) needs an object with the same ``method``,
``request_id``, ``done``, ``ended`` and ``wait`` that follows it to its
end, e.g. by polling get_migration on compute-alt; and when the host to
SIGTERM is not the one that took the request (a migration's
destination), a ``where`` predicate that finds that host's in-flight
entry for it.
"""

from tools.gate import drain
from tools.gate import guests
from tools.gate.failure import expect

# A clean stop that would not be cut short by the default
# graceful_shutdown_timeout; the ACPI guest powers off in ~2 s.
CLEAN_STOP_TIMEOUT = 60
# Short, so the ignoring guest's forced power-off comes soon; long enough
# that the SIGTERM lands well inside the wait.
SHORT_STOP_TIMEOUT = 5


class Scenario:
    """One run of one scenario; a fresh instance per run."""

    name = None

    def __init__(self, rng):
        self.rng = rng
        self.drain_lags = []  # seconds, one per SIGTERM
        self.sigtermed = []  # names of the hosts SIGTERMed
        self._guests = []  # (host, instance uuid) to remove afterwards

    def run(self, deployment):
        raise NotImplementedError

    def pick_host(self, deployment):
        return deployment.hosts[self.rng.choice(sorted(deployment.hosts))]

    def own(self, host, instance_uuid):
        self._guests.append((host, instance_uuid))

    def boot(self, deployment, host, **spec_options):
        spec = guests.instance_spec(deployment.images, f'gate-{self.name}',
                                    **spec_options)
        self.own(host, spec['uuid'])
        record = host.rpc.call('build_and_run_instance', instance=spec)
        guests.expect_record(record, host, 'active', 'running')
        return spec['uuid']

    def interrupt(self, deployment, host, operation, queued_method,
                  queued_kwargs, where=None):
        """SIGTERM host's agent in the middle of operation and check its
        drain (drain.sigterm_and_drain, which restarts it); the answer to
        queued_method, sent to compute during the drain and served after
        the restart. A scenario that replaces the SIGTERM by another
        signal overrides this (signal_scenarios.reloaded), and returns
        None when nothing was held back."""
        self.sigtermed.append(host.name)
        return drain.sigterm_and_drain(
            deployment, host, operation, queued_method, queued_kwargs,
            self.drain_lags, where=where).queued_result

    def cleanup(self, deployment):
        for host, instance_uuid in self._guests:
            guests.remove(deployment, self._owner(deployment, host,
                                                  instance_uuid),
                          instance_uuid)

    @staticmethod
    def _owner(deployment, booted_on, instance_uuid):
        """The host whose agent has the guest now: a migration may have
        moved it from where it was booted (the old host then no longer
        knows it)."""
        for host in [booted_on] + deployment.other_hosts(booted_on):
            try:
                host.rpc.call('get_instance', instance_uuid=instance_uuid)
            except Exception:
                continue
            return host
        return booted_on


class BuildSigterm(Scenario):
    """SIGTERM the host while it builds a guest (with a disk overlay)."""

    name = 'build-sigterm'

    def run(self, deployment):
        host = self.pick_host(deployment)
        spec = guests.instance_spec(deployment.images, 'gate-build',
                                    with_disk=True)
        self.own(host, spec['uuid'])
        build = host.rpc.call_in_background(
            'build_and_run_instance', instance=spec,
            timeout=drain.OPERATION_TIMEOUT)
        drain.wait_in_flight(host, build)
        queued = self.interrupt(deployment, host, build, 'get_instance',
                                {'instance_uuid': spec['uuid']})
        for record in (build.result, queued):
            if record is not None:
                guests.expect_record(record, host, 'active', 'running')
        guests.expect_domain_only_on(deployment, host, spec['uuid'],
                                     guests.RUNNING)
        # The guest built during the drain really boots.
        guests.wait_until_ready(host, spec['uuid'])


class _StopSigterm(Scenario):
    """A clean stop of a running guest, SIGTERMed while it waits for the
    guest to power off."""

    honours_acpi = None
    shutdown_timeout = None
    expected = None  # (result, method) in last_power_off

    def run(self, deployment):
        host = self.pick_host(deployment)
        instance_uuid = self.boot(deployment, host,
                                  honours_acpi=self.honours_acpi)
        guests.wait_until_ready(host, instance_uuid)
        stop = host.rpc.call_in_background(
            'stop_instance', instance_uuid=instance_uuid,
            shutdown_timeout=self.shutdown_timeout,
            timeout=drain.OPERATION_TIMEOUT)
        # The power button has been pressed and the agent waits.
        waiting = drain.is_operation(stop)
        drain.wait_in_flight(
            host, stop,
            where=lambda entry: waiting(entry) and entry.get('power_off'))
        queued = self.interrupt(deployment, host, stop, 'get_instance',
                                {'instance_uuid': instance_uuid})
        power_off = stop.result['last_power_off']
        expect((power_off['requested'], power_off['result'],
                power_off['method'], power_off['timeout'])
               == ('clean',) + self.expected + (self.shutdown_timeout,),
               f'last_power_off {power_off}; expected clean -> '
               f'{self.expected} with timeout {self.shutdown_timeout}')
        self.check_power_off(power_off)
        for record in (stop.result, queued):
            if record is not None:
                guests.expect_record(record, host, 'stopped', 'shutdown')
        guests.expect_domain_only_on(deployment, host, instance_uuid,
                                     guests.SHUT_OFF)

    def check_power_off(self, power_off):
        """Scenario-specific checks of last_power_off."""


class StopAcpiSigterm(_StopSigterm):
    """An ACPI-honouring guest powers off cleanly during the drain."""

    name = 'stop-acpi-sigterm'
    honours_acpi = True
    shutdown_timeout = CLEAN_STOP_TIMEOUT
    expected = ('clean', 'acpi')


class StopIgnoringAcpiSigterm(_StopSigterm):
    """A guest that ignores ACPI is destroyed at its timeout during the
    drain."""

    name = 'stop-ignoring-acpi-sigterm'
    honours_acpi = False
    shutdown_timeout = SHORT_STOP_TIMEOUT
    expected = ('forced', 'destroy')

    def check_power_off(self, power_off):
        expect(power_off['seconds'] >= self.shutdown_timeout,
               f'forced after {power_off["seconds"]} s, before its '
               f'{self.shutdown_timeout} s timeout')


# The scenarios of this module, in report order (tools/gate/registry.py
# lists every module's).
SCENARIOS = [
    BuildSigterm,
    StopAcpiSigterm,
    StopIgnoringAcpiSigterm,
]
