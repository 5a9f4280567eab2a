"""compute-agent.service on one simulated host, driven with systemctl.

A thin layer over the host's own systemd (tests/fixtures/systemd.py),
which runs the shipped unit with a drop-in for paths, output and the
concurrency mode only.
Starts return once systemd has seen READY=1 (Type=notify); a stop is
requested without waiting and followed in `systemctl show`; what systemd
reports after the exit (Result=, ExecMainCode=, ExecMainStatus=) is the
run's outcome, and systemd's own SIGKILL after TimeoutStopSec= shows as
Result=timeout.

systemd's monotonic timestamps are CLOCK_MONOTONIC, the clock
time.monotonic() reads (no time namespace separates the simulated host),
so a run's exit can be compared with when the gate saw answers arrive.
"""

import dataclasses
import os
import time

from compute_agent import concurrency as concurrency_mode
from tests.fixtures import systemd
from tools.gate import unitfile

UNIT = systemd.AGENT_UNIT
STOPPED = ('inactive', 'failed')
LOG_TAIL_LINES = 40
# Beyond TimeoutStopSec=: systemd's SIGKILL and reaping come first.
STOP_MARGIN = 30
# RestartSec= (5 s) and a start under load: systemd's restart after a
# crash is back within this.
RESTART_TIMEOUT = 90
# ExecMainCode= of a main process that exited (CLD_EXITED).
_EXITED = '1'
_POLL = 0.02


def _monotonic(microseconds):
    return int(microseconds) / 1e6


@dataclasses.dataclass
class AgentRun:
    """One start of the unit, as systemd reported it."""

    main_pid: int
    started: float  # time.monotonic() values throughout
    output_offset: int
    stop_requested: float | None = None  # just before systemctl stop
    signal_time: float | None = None  # systemd began the stop (SIGTERM)
    exit_time: float | None = None
    exit_code: int | None = None  # negative: the killing signal
    result: str | None = None  # Result= after the exit

    @property
    def killed(self):
        """systemd SIGKILLed it once TimeoutStopSec= had passed."""
        return self.result == 'timeout'


@dataclasses.dataclass(frozen=True)
class Identity:
    """Which process runs the unit, and how often systemd restarted it."""

    main_pid: int
    restarts: int  # NRestarts=
    state: str  # ActiveState/SubState

    def changes_since(self, earlier):
        """What differs from earlier in a unit that should have kept
        running untouched: one line per change, none if nothing did."""
        changes = []
        if self.main_pid != earlier.main_pid:
            changes.append(f'MainPID {earlier.main_pid} -> {self.main_pid}')
        if self.restarts != earlier.restarts:
            changes.append(f'NRestarts {earlier.restarts} -> '
                           f'{self.restarts}')
        if self.state != 'active/running':
            changes.append(f'state {self.state}')
        return changes


class SystemdAgent:
    """The agent unit of one host's private systemd."""

    def __init__(self, host_systemd, executable, config_file, output_file,
                 concurrency=concurrency_mode.THREADING):
        self.systemd = host_systemd
        self.journal = output_file  # stands in for the journal
        # The mode is chosen where the unit is deployed, as its paths and
        # config are: an Environment= line in the same drop-in, the way
        # an operator would set it (the unit itself is shipped as is).
        host_systemd.install_agent(
            executable, config_file, output_file,
            environment={concurrency_mode.ENVIRONMENT_VARIABLE: concurrency})
        # What systemd itself will enforce, as it parsed the unit.
        self.stop_timeout = unitfile.parse_time_span(
            self.show('TimeoutStopUSec')['TimeoutStopUSec'])
        self.run = None

    def show(self, *properties):
        return self.systemd.show(UNIT, *properties)

    def state(self):
        return self.show('ActiveState')['ActiveState']

    def _output_size(self):
        try:
            return os.path.getsize(self.journal)
        except FileNotFoundError:
            return 0

    def start(self):
        """systemctl start: returns once READY=1 has arrived."""
        offset = self._output_size()
        self.systemd.systemctl('start', UNIT)
        shown = self.show('MainPID', 'ExecMainStartTimestampMonotonic')
        self.run = AgentRun(
            main_pid=int(shown['MainPID']),
            started=_monotonic(shown['ExecMainStartTimestampMonotonic']),
            output_offset=offset)
        return self.run

    def sigterm(self, *also_stopped):
        """systemctl stop, not waited for: SIGTERM to the main process.
        Units named in also_stopped are stopped in the same transaction,
        as a host shutdown does, in the order their After= gives."""
        run = self.run
        run.stop_requested = time.monotonic()
        self.systemd.systemctl('--no-block', 'stop', UNIT, *also_stopped)
        return run

    def wait_exit(self):
        """Wait for the stop to end (systemd's SIGKILL after
        TimeoutStopSec= included); the run, with what systemd reports."""
        run = self.run
        self.systemd.wait_for_state(
            UNIT, self.stop_timeout + STOP_MARGIN,
            ActiveState=lambda state: state in STOPPED)
        shown = self.show('Result', 'ExecMainCode', 'ExecMainStatus',
                          'ExecMainExitTimestampMonotonic',
                          'ActiveExitTimestampMonotonic')
        run.result = shown['Result']
        status = int(shown['ExecMainStatus'])
        run.exit_code = (status if shown['ExecMainCode'] == _EXITED
                         else -status)
        run.exit_time = _monotonic(shown['ExecMainExitTimestampMonotonic'])
        run.signal_time = _monotonic(shown['ActiveExitTimestampMonotonic'])
        return run

    def wait_for_status(self, pattern, timeout):
        """Poll StatusText= while the unit stops until pattern matches
        it; the match, or None once it has stopped or timeout passed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            shown = self.show('ActiveState', 'StatusText')
            match = pattern.match(shown['StatusText'])
            if match:
                return match
            if shown['ActiveState'] in STOPPED:
                return None
            time.sleep(_POLL)
        return None

    def stop(self):
        self.systemd.systemctl('stop', UNIT, check=False)

    def identity(self):
        shown = self.show('MainPID', 'NRestarts', 'ActiveState', 'SubState')
        return Identity(int(shown['MainPID']), int(shown['NRestarts']),
                        f'{shown["ActiveState"]}/{shown["SubState"]}')

    def reload(self):
        """systemctl reload: returns once ExecReload= (kill -HUP
        $MAINPID) has run, i.e. the SIGHUP was sent."""
        self.systemd.systemctl('reload', UNIT)

    def kill(self):
        """systemctl kill -s KILL, as a crash: every process of the
        unit dies at once. The offset of the journal's end before it."""
        offset = self._output_size()
        self.systemd.systemctl('kill', '-s', 'KILL', UNIT)
        return offset

    def wait_restarted(self, restarts_before, output_offset,
                       timeout=RESTART_TIMEOUT):
        """Wait for Restart= to have started the unit again and for it
        to be ready (active, running: Type=notify's READY=1); the new
        run, its output from output_offset on."""
        shown = self.systemd.wait_for_state(
            UNIT, timeout,
            NRestarts=lambda count: int(count) > restarts_before,
            ActiveState='active', SubState='running')
        shown.update(self.show('MainPID', 'ExecMainStartTimestampMonotonic'))
        self.run = AgentRun(
            main_pid=int(shown['MainPID']),
            started=_monotonic(shown['ExecMainStartTimestampMonotonic']),
            output_offset=output_offset)
        return self.run

    def wait_for_output(self, text, timeout, run=None):
        """Poll the run's output until it contains text; time.monotonic()
        when it was first seen, or None after timeout."""
        deadline = time.monotonic() + timeout
        while True:
            if text in self.journal_text(run):
                return time.monotonic()
            if time.monotonic() > deadline:
                return None
            time.sleep(_POLL)

    def recover(self):
        """Running and ready again, whatever a failed run left: a hung
        or half-stopped agent is killed, its failure forgotten."""
        shown = self.show('ActiveState', 'SubState')
        if (shown['ActiveState'], shown['SubState']) == ('active',
                                                         'running'):
            return
        self.systemd.systemctl('kill', '-s', 'KILL', UNIT, check=False)
        # Ends a pending stop or restart; nothing runs any more.
        self.systemd.systemctl('stop', UNIT, check=False)
        self.systemd.systemctl('reset-failed', UNIT, check=False)
        self.start()

    def journal_text(self, run=None):
        """What the agent wrote in the given run (default: the last)."""
        run = run or self.run
        with open(self.journal, 'rb') as journal:
            journal.seek(run.output_offset)
            return journal.read().decode(errors='replace')

    def report(self, problem):
        tail = '\n'.join(self.journal_text().splitlines()[-LOG_TAIL_LINES:])
        status = self.systemd.systemctl('status', '--no-pager', '-n0', UNIT,
                                        check=False)
        return (f'{UNIT} on {self.systemd.name}: {problem}\n'
                f'--- systemctl status ---\n{status}'
                f'--- tail of {self.journal} ---\n{tail}')
