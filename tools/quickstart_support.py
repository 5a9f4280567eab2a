"""The quick start's narration and its agent process: what
tools/quickstart.py prints with, and how it runs and watches the agent."""

import os
import signal
import socket
import subprocess
import textwrap
import threading
import time

READY_TIMEOUT = 60
DRAIN_TIMEOUT = 90  # above graceful_shutdown_timeout, the agent's own limit
WIDTH = 79


class StepFailed(Exception):
    """A step did not behave the way the walk-through says it does."""


def check(condition, problem):
    if not condition:
        raise StepFailed(problem)


# -- narration -------------------------------------------------------------

_section_number = 0


def section(title):
    global _section_number
    _section_number += 1
    heading = f'{_section_number}. {title}'
    print(f'\n{heading}\n{"-" * len(heading)}', flush=True)


def _fill(text, **indents):
    # Paths stay whole, so they can be copied from the terminal.
    return textwrap.fill(' '.join(text.split()), WIDTH,
                         break_long_words=False, break_on_hyphens=False,
                         **indents)


def say(text):
    print(_fill(text), flush=True)


def show_output(text, indent='    '):
    for line in text.rstrip('\n').splitlines():
        print(f'{indent}{line}')


def ok(text):
    print(_fill(text, initial_indent='  ok: ', subsequent_indent='      '),
          flush=True)


# -- the agent process -----------------------------------------------------

class Agent:
    """``compute-agent --config-file F`` with a NOTIFY_SOCKET we read.

    The socket stands in for systemd's: the agent is a Type=notify service
    and reports READY=1, STOPPING=1 and STATUS=... through it.
    """

    def __init__(self, config_file, work_dir, env):
        self.config_file = config_file
        self.output_file = os.path.join(work_dir, 'agent-output.log')
        self._env = env
        self.process = None
        self.started_at = None
        self._notifications = []  # (time.monotonic(), {key: value})
        self._arrived = threading.Condition()
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(os.path.join(work_dir, 'notify.sock'))
        self._socket.settimeout(0.2)
        self._listening = True
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def notify_socket(self):
        return self._socket.getsockname()

    @property
    def command(self):
        return ['compute-agent', '--config-file', self.config_file]

    def _read(self):
        while self._listening:
            try:
                data = self._socket.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            fields = dict(line.partition('=')[::2] for line in
                          data.decode(errors='replace').splitlines())
            with self._arrived:
                self._notifications.append((time.monotonic(), fields))
                self._arrived.notify_all()

    def start(self):
        env = dict(self._env, NOTIFY_SOCKET=self.notify_socket)
        with self._arrived:
            self._run_starts_at = len(self._notifications)
        self.started_at = time.monotonic()
        with open(self.output_file, 'ab') as output:
            # A session of its own: a Ctrl-C at the terminal reaches only
            # this script, which then stops the agent in order.
            self.process = subprocess.Popen(
                self.command, env=env, stdin=subprocess.DEVNULL,
                stdout=output, stderr=subprocess.STDOUT,
                start_new_session=True)

    def notifications_since(self, since):
        with self._arrived:
            return [(at, fields) for at, fields in self._notifications
                    if at >= since]

    def wait_ready(self, timeout=READY_TIMEOUT):
        """(seconds from start to READY=1, the READY notification)."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                for at, fields in self._notifications[self._run_starts_at:]:
                    if fields.get('READY') == '1':
                        return at - self.started_at, fields
                if self.process.poll() is not None:
                    raise StepFailed(f'the agent exited with status '
                                     f'{self.process.returncode} before '
                                     f'it was ready')
                if time.monotonic() > deadline:
                    raise StepFailed(f'the agent sent no READY=1 within '
                                     f'{timeout} s')
                self._arrived.wait(0.1)

    def running(self):
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout=DRAIN_TIMEOUT):
        """SIGTERM; (exit status, seconds from signal to exit)."""
        signalled = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise StepFailed(f'the agent was still running {timeout} s '
                             f'after SIGTERM')
        return status, time.monotonic() - signalled, signalled

    def close(self):
        """Leave no agent behind, whatever state the walk-through is in."""
        if self.running():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._listening = False
        self._reader.join()
        self._socket.close()


def format_fields(fields):
    return ' '.join(f'{key}={value}' for key, value in fields.items())
