"""Arming one host's agent with one failpoint, under its systemd.

The switch is the environment only (compute_agent/failpoints.py). It is
set in the host's systemd manager environment (systemctl
set-environment), which systemd hands to every process it starts from
then on; the unit is restarted, so it comes up armed; and the variables
are unset again at once, before anything is triggered. When the agent
then kills itself at the failpoint, the process Restart=on-failure
starts is therefore unarmed, with no race: systemd reads its environment
afresh for each start.
"""

import dataclasses
import os
import time

from compute_agent import failpoints

ARMED_LINE = 'TEST FAILPOINTS ARMED'
# systemd's line when the unit's main process died of SIGKILL.
KILLED_LINE = 'code=killed, status=9/KILL'
# From the doomed request to the failpoint: a clean power-off of a
# guest, a snapshot, a spawn.
REACH_TIMEOUT = 180


class ArmingError(Exception):
    pass


@dataclasses.dataclass
class Armed:
    """One host's agent, armed with one failpoint."""

    host: object  # tools.gate.deployment.Host
    failpoint: str
    identity: object  # systemd_agent.Identity of the armed process
    run: object  # its systemd_agent.AgentRun
    kills_before: int  # KILLED_LINE count in systemd's log


def _log_count(host, text):
    try:
        with open(host.systemd.log_file, errors='replace') as log:
            return log.read().count(text)
    except FileNotFoundError:
        return 0


def arm(host, failpoint):
    """Restart host's agent armed with failpoint; ArmingError unless the
    new process says it is armed with it."""
    systemd = host.systemd
    agent = host.agent
    systemd.systemctl('set-environment', f'{failpoints.ENV_ARMED}={failpoint}',
                      f'{failpoints.ENV_ACKNOWLEDGED}='
                      f'{failpoints.ACKNOWLEDGEMENT}')
    try:
        agent.stop()
        run = agent.start()
    finally:
        systemd.systemctl('unset-environment', failpoints.ENV_ARMED,
                          failpoints.ENV_ACKNOWLEDGED)
    armed_lines = [line for line in agent.journal_text(run).splitlines()
                   if ARMED_LINE in line]
    if not any(failpoint in line for line in armed_lines):
        raise ArmingError(agent.report(
            f'restarted to arm {failpoint}, but it logged no '
            f'"{ARMED_LINE}" line naming it'))
    return Armed(host, failpoint, agent.identity(), run,
                 _log_count(host, KILLED_LINE))


def wait_killed_and_restarted(armed, timeout=REACH_TIMEOUT):
    """Wait for the armed agent to reach its failpoint and die of
    SIGKILL, and for systemd's Restart= to have it running and ready
    again; seconds from the failpoint line to ready. ArmingError if the
    failpoint is not reached in time."""
    agent = armed.host.agent
    line = f'Failpoint {armed.failpoint} reached'
    reached = agent.wait_for_output(line, timeout, armed.run)
    if reached is None:
        raise ArmingError(agent.report(
            f'{armed.failpoint} not reached within {timeout} s'))
    offset = os.path.getsize(agent.journal)
    agent.wait_restarted(armed.identity.restarts, offset)
    ready = time.monotonic()
    if _log_count(armed.host, KILLED_LINE) <= armed.kills_before:
        raise ArmingError(agent.report(
            f'restarted after {armed.failpoint}, but systemd did not log '
            f'a death by SIGKILL ("{KILLED_LINE}")'))
    return ready - reached


def disarm(armed):
    """Make sure the agent no longer runs armed: a case that failed
    before the failpoint leaves the armed process running."""
    agent = armed.host.agent
    if agent.identity().main_pid == armed.identity.main_pid:
        agent.stop()
        agent.start()
