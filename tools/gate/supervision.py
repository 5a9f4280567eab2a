"""Run an agent the way systemd runs compute-agent.service.

What is emulated, from the unit file: the command line (ExecStart=, with
the installed entry point and the gate's config file substituted), the
environment (systemd's service PATH, Environment=, NOTIFY_SOCKET and
nothing inherited from the gate), the working directory /, a session of
its own, Type=notify readiness within TimeoutStartSec=, NotifyAccess=main
(datagrams from any other pid are set aside, not believed), SIGTERM to the
main process only, SIGKILL once TimeoutStopSec= has passed, and
KillMode='s treatment of processes left behind. stdout and stderr go to a
file that stands in for the journal.
"""

import dataclasses
import os
import signal
import subprocess
import threading
import time

from tests.fixtures import agent as agent_fixture
from tools.gate import unitfile

_POLL = 0.2
LOG_TAIL_LINES = 40


class SupervisionError(Exception):
    """The agent did not start, or did not stop, as the unit requires."""


@dataclasses.dataclass
class AgentRun:
    """One start of the agent, from exec to exit."""

    pid: int
    started: float  # time.monotonic() values throughout
    journal_offset: int
    notifications: list = dataclasses.field(default_factory=list)
    signal_time: float | None = None
    exit_time: float | None = None
    exit_code: int | None = None
    # systemd's SIGKILL after TimeoutStopSec= ended it.
    killed: bool = False

    def field_values(self, key):
        return [n.fields[key] for n in self.notifications if key in n.fields]

    def first(self, key, value):
        """Arrival time of the first notification with key=value."""
        for notification in self.notifications:
            if notification.fields.get(key) == value:
                return notification.received
        return None


class SupervisedAgent:
    """compute-agent started from the unit, on a notify socket we read."""

    def __init__(self, unit, executable, config_file, run_dir):
        self.unit = unit
        self.argv = unit.command_line(executable, config_file)
        self.run_dir = run_dir
        self.journal = os.path.join(run_dir, 'journal.log')
        self.run = None
        self.stray_notifications = []  # from pids other than the main one
        self._runs_by_pid = {}
        self._process = None
        self._changed = threading.Condition()
        os.makedirs(run_dir, exist_ok=True)
        self._socket_path = os.path.join(run_dir, 'notify')
        self._socket = agent_fixture.bind_notify_socket(self._socket_path,
                                                        timeout=_POLL)
        self._listening = True
        self._reader = threading.Thread(target=self._read_notifications,
                                        daemon=True)
        self._reader.start()

    # -- notifications --------------------------------------------------

    def _read_notifications(self):
        while self._listening:
            try:
                notification = agent_fixture.receive_notification(
                    self._socket)
            except OSError:
                return
            if notification is None:
                continue
            with self._changed:
                run = self._runs_by_pid.get(notification.pid)
                if run is None:
                    self.stray_notifications.append(notification)
                else:
                    run.notifications.append(notification)
                self._changed.notify_all()

    # -- start ----------------------------------------------------------

    def _environment(self):
        env = {'PATH': unitfile.SERVICE_PATH}
        env.update(self.unit.environment())
        env['NOTIFY_SOCKET'] = self._socket_path
        return env

    def start(self):
        if self.running:
            raise SupervisionError(f'{self.argv[0]} (pid {self.run.pid}) '
                                   f'is still running')
        with open(self.journal, 'ab') as journal:
            offset = journal.tell()
            journal.write(f'--- starting: {" ".join(self.argv)}\n'.encode())
            journal.flush()
            process = subprocess.Popen(
                self.argv, env=self._environment(), cwd='/',
                stdin=subprocess.DEVNULL, stdout=journal,
                stderr=subprocess.STDOUT, start_new_session=True)
        with self._changed:
            self._process = process
            self.run = AgentRun(pid=process.pid, started=time.monotonic(),
                                journal_offset=offset)
            self._runs_by_pid[process.pid] = self.run
        threading.Thread(target=self._watch_exit, args=(process, self.run),
                         daemon=True).start()
        return self.run

    def _watch_exit(self, process, run):
        code = process.wait()
        with self._changed:
            run.exit_time = time.monotonic()
            run.exit_code = code
            self._changed.notify_all()

    @property
    def running(self):
        return self.run is not None and self.run.exit_time is None

    def wait_ready(self):
        """Block until READY=1, within TimeoutStartSec= as systemd does."""
        run = self.run
        deadline = run.started + self.unit.start_timeout
        with self._changed:
            while run.first('READY', '1') is None:
                if run.exit_time is not None:
                    raise SupervisionError(self.report(
                        f'exited with {run.exit_code} before READY=1'))
                if time.monotonic() > deadline:
                    break
                self._changed.wait(_POLL)
        if run.first('READY', '1') is None:
            self._kill(run)
            raise SupervisionError(self.report(
                f'no READY=1 within TimeoutStartSec '
                f'({self.unit.start_timeout:g} s); killed'))
        return run

    # -- stop -----------------------------------------------------------

    def sigterm(self):
        """systemctl stop's first step: SIGTERM to the main process."""
        run = self.run
        run.signal_time = time.monotonic()
        os.kill(run.pid, signal.SIGTERM)
        return run

    def wait_exit(self):
        """Wait for the SIGTERMed agent to exit; past TimeoutStopSec=,
        SIGKILL it as systemd would. Returns the run."""
        run = self.run
        deadline = run.signal_time + self.unit.stop_timeout
        with self._changed:
            while run.exit_time is None and time.monotonic() < deadline:
                self._changed.wait(min(_POLL, deadline - time.monotonic()))
        if run.exit_time is None:
            run.killed = True
            self._kill(run)
        self._kill_leftovers(run)
        return run

    def stop(self):
        if self.running:
            self.sigterm()
            self.wait_exit()

    def _kill(self, run):
        try:
            os.kill(run.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        with self._changed:
            while run.exit_time is None:
                self._changed.wait(_POLL)
        self._kill_leftovers(run)

    def _kill_leftovers(self, run):
        # KillMode=mixed and control-group SIGKILL whatever the agent left
        # in its cgroup; here, its session's process group stands in.
        if self.unit.kill_mode == 'process':
            return
        try:
            os.killpg(run.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def kill(self):
        """SIGKILL a running agent, e.g. to recover after a failed run."""
        if self.running:
            self._kill(self.run)

    def close(self):
        self.kill()
        self._listening = False
        self._reader.join()
        self._socket.close()

    # -- journal --------------------------------------------------------

    def journal_text(self, run=None):
        """What the agent wrote in the given run (default: the last)."""
        run = run or self.run
        with open(self.journal, 'rb') as journal:
            journal.seek(run.journal_offset)
            return journal.read().decode(errors='replace')

    def report(self, problem):
        tail = '\n'.join(self.journal_text().splitlines()[-LOG_TAIL_LINES:])
        return (f'agent {self.argv}: {problem}\n'
                f'--- tail of {self.journal} ---\n{tail}')
