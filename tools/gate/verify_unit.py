"""Lint etc/systemd/compute-agent.service (tox -e systemd-verify).

Two kinds of check:

* what the agent and the gate rely on: Type=notify with
  NotifyAccess=main, a KillMode that signals the agent alone, a
  TimeoutStopSec above the agent's default graceful_shutdown_timeout, a
  StateDirectory that is the default state_path, an ExecStart the
  gate can start, and an ExecReload that sends SIGHUP to the agent;
* ``systemd-analyze verify``. It checks that ExecStart's executable
  exists, and the packaged path does not on a CI machine, so it verifies a
  copy whose ExecStart runs the entry point installed in this virtualenv
  (the same program, installed elsewhere). systemd-analyze only warns
  about a bad value and still exits 0, so any line it prints about the
  unit fails the lint.
"""

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

from compute_agent.conf import default as agent_defaults
from tools.gate import unitfile

_EXEC_START = re.compile(r'^(ExecStart=)(\S+)', re.MULTILINE)


def _option_default(name):
    for option in agent_defaults.agent_opts:
        if option.name == name:
            return option.default
    raise LookupError(name)


def policy_problems(unit):
    problems = []
    if (unit.service_type, unit.notify_access) != ('notify', 'main'):
        problems.append(
            f'Type={unit.service_type} NotifyAccess={unit.notify_access}: '
            f'the agent reports readiness and its drain with sd_notify, '
            f'so Type=notify and NotifyAccess=main')
    if unit.kill_mode not in ('mixed', 'process'):
        problems.append(
            f'KillMode={unit.kill_mode}: SIGTERM must reach the agent '
            f'alone (mixed or process), which then drains')
    graceful = agent_defaults.GRACEFUL_SHUTDOWN_TIMEOUT_DEFAULT
    if unit.stop_timeout <= graceful:
        problems.append(
            f'TimeoutStopSec={unit.stop_timeout:g}s is not above the '
            f'default graceful_shutdown_timeout ({graceful} s): systemd '
            f'would kill an agent that is still draining')
    state_path = _option_default('state_path')
    if os.path.join('/var/lib', unit.state_directory or '') != state_path:
        problems.append(
            f'StateDirectory={unit.state_directory}: the default '
            f'state_path is {state_path}')
    try:
        unit.command_line('/bin/compute-agent', '/tmp/gate.conf')
    except unitfile.UnitError as error:
        problems.append(str(error))
    reload = unit.last('ExecReload')
    argv = shlex.split(reload or '')
    if argv[:1] != ['/bin/kill'] or argv[1:] != ['-HUP', '$MAINPID']:
        problems.append(
            f'ExecReload={reload or ""}: systemctl reload must send SIGHUP '
            f'to the agent alone (/bin/kill -HUP $MAINPID), which re-reads '
            f'its mutable options and reopens its log files in place')
    return problems


def systemd_analyze_problems(unit_path, executable):
    """What systemd-analyze says about a copy run from executable."""
    with open(unit_path) as unit_file:
        text, count = _EXEC_START.subn(
            lambda match: match.group(1) + executable, unit_file.read())
    if count != 1:
        return [f'{unit_path}: expected one ExecStart= line, found {count}']
    unit_name = os.path.basename(unit_path)
    with tempfile.TemporaryDirectory() as directory:
        copy = os.path.join(directory, unit_name)
        with open(copy, 'w') as copy_file:
            copy_file.write(text)
        result = subprocess.run(
            [shutil.which('systemd-analyze') or 'systemd-analyze', 'verify',
             '--man=no', copy], capture_output=True, text=True)
    output = (result.stdout + result.stderr).replace(copy, unit_path)
    problems = [line for line in output.splitlines() if unit_name in line]
    others = [line for line in output.splitlines()
              if line.strip() and unit_name not in line]
    for line in others:
        print(f'systemd-verify: note (not about {unit_name}): {line}')
    if result.returncode != 0 and not problems:
        problems.append(f'systemd-analyze verify exited with '
                        f'{result.returncode}')
    return problems


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--unit', default=unitfile.UNIT_PATH)
    parser.add_argument(
        '--executable', default=os.path.join(
            os.path.dirname(sys.executable), unitfile.EXECUTABLE_NAME),
        help='installed compute-agent entry point to verify the unit '
             'with (default: the one beside this Python)')
    args = parser.parse_args(argv)
    if not os.access(args.executable, os.X_OK):
        print(f'systemd-verify: {args.executable} is not an executable; '
              f'install the package first', file=sys.stderr)
        return 1
    problems = (policy_problems(unitfile.ServiceUnit.load(args.unit))
                + systemd_analyze_problems(args.unit, args.executable))
    for problem in problems:
        print(f'systemd-verify: {problem}', file=sys.stderr)
    if not problems:
        print(f'systemd-verify: {args.unit} is clean')
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
