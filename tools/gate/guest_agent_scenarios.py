"""The gate's guest-agent scenario: a clean stop of a guest that runs
the QEMU guest agent (and ignores ACPI), its host SIGTERMed while the
stop waits, the guest powered off through its agent during the drain.

A stop through a connected guest agent is over in a quarter of a
second, too short a window to SIGTERM into reliably. So the stop is
sent while the guest still boots: its agent is not connected yet, the
first request falls back to ACPI (logged), which this guest ignores, and
the agent is SIGTERMed while the stop waits. The guest agent connects
during the drain (the guest's READY line), and the next request, one
[compute] shutdown_retry_interval after the first, goes through it, as
the guest's own console line shows. The drain ends as soon as the guest
is off.
"""

from tests.realguest import libvirtd
from tools.gate import drain
from tools.gate import guests
from tools.gate import scenarios
from tools.gate.failure import expect

# Long enough for the guest agent to connect (~8 s after the build, more
# under load) and for several retries, far from the forced power-off.
GUEST_AGENT_STOP_TIMEOUT = 90
# compute_agent/virt/power.py's words.
ACPI = 'acpi'
GUEST_AGENT = 'guest-agent'
# The agent's WARNING when the guest agent does not take a request.
FALLBACK_LINE = 'the guest agent did not take the shutdown request'


def _console(host, instance_uuid):
    with open(host.console_log(instance_uuid), errors='replace') as log:
        return log.read()


class StopGuestAgentSigterm(scenarios.Scenario):
    """A clean stop of a guest agent's guest, sent before its agent
    connects, SIGTERMed while it waits on ACPI: the retry during the
    drain powers the guest off through its agent."""

    name = 'stop-guest-agent-sigterm'

    def run(self, deployment):
        host = self.pick_host(deployment)
        instance_uuid = self.boot(deployment, host, with_guest_agent=True)
        stop = host.rpc.call_in_background(
            'stop_instance', instance_uuid=instance_uuid,
            shutdown_timeout=GUEST_AGENT_STOP_TIMEOUT,
            timeout=drain.OPERATION_TIMEOUT)
        waiting = drain.is_operation(stop)
        drain.wait_in_flight(host, stop, where=lambda entry: (
            waiting(entry) and
            (entry.get('power_off') or {}).get('method') == ACPI))
        expect(libvirtd.GUEST_READY_LINE not in _console(host,
                                                         instance_uuid),
               'the guest agent had connected before the stop fell back '
               'to ACPI')
        queued = self.interrupt(deployment, host, stop, 'get_instance',
                                {'instance_uuid': instance_uuid})
        power_off = stop.result['last_power_off']
        expect((power_off['requested'], power_off['result'],
                power_off['method']) == ('clean', 'clean', GUEST_AGENT),
               f'last_power_off {power_off}; expected clean -> clean '
               f'through the {GUEST_AGENT}')
        console = _console(host, instance_uuid)
        expect(libvirtd.GUEST_READY_LINE in console and
               libvirtd.GUEST_AGENT_POWER_OFF_LINE in console,
               f'the console of {instance_uuid} does not show its guest '
               f'agent connecting and powering it off:\n{console[-1000:]}')
        # Across the restart: the whole journal, not the last run's.
        with open(host.agent.journal, errors='replace') as journal:
            logged = [line for line in journal
                      if instance_uuid in line and FALLBACK_LINE in line]
        expect(logged, host.agent.report(
            f'no "{FALLBACK_LINE}" line for {instance_uuid}'))
        for record in (stop.result, queued):
            guests.expect_record(record, host, 'stopped', 'shutdown')
        guests.expect_domain_only_on(deployment, host, instance_uuid,
                                     guests.SHUT_OFF)


SCENARIOS = [
    StopGuestAgentSigterm,
]
