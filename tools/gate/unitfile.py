"""The shipped systemd unit, read the way the gate and its lint need it.

The gate runs the unit under a real systemd with a drop-in whose
ExecStart= is the unit's own command line with the installed program
and the gate's config file substituted (command_line); tools/gate/
verify_unit.py checks the settings the agent relies on. Only the unit
syntax the shipped file uses is understood; anything else in ExecStart=
(specifiers, variables, prefixes) is refused, since the drop-in's
command line would drop it, so the gate never tests a command line
other than the one operators run.
"""

import dataclasses
import os
import re
import shlex

UNIT_PATH = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), 'etc', 'systemd',
    'compute-agent.service')
# The config file ExecStart names; the gate substitutes its own.
CONFIG_FILE = '/etc/compute-agent/compute-agent.conf'
EXECUTABLE_NAME = 'compute-agent'
# systemd's default for a setting the unit leaves out.
DEFAULT_KILL_MODE = 'control-group'

_SPAN_UNITS = {
    'us': 1e-6, 'usec': 1e-6, 'ms': 1e-3, 'msec': 1e-3,
    's': 1.0, 'sec': 1.0, 'second': 1.0, 'seconds': 1.0, '': 1.0,
    'm': 60.0, 'min': 60.0, 'minute': 60.0, 'minutes': 60.0,
    'h': 3600.0, 'hr': 3600.0, 'hour': 3600.0, 'hours': 3600.0,
}
_SPAN_PART = re.compile(r'\s*(\d+(?:\.\d+)?)\s*([a-z]*)')


class UnitError(Exception):
    """The unit says something the gate cannot run faithfully."""


def parse_time_span(text):
    """Seconds in a systemd time span such as '200s', '3min 20s', '90'."""
    text = text.strip()
    if text == 'infinity':
        return float('inf')
    seconds, position = 0.0, 0
    while position < len(text):
        match = _SPAN_PART.match(text, position)
        if not match or match.group(2) not in _SPAN_UNITS:
            raise UnitError(f'cannot read time span {text!r}')
        seconds += float(match.group(1)) * _SPAN_UNITS[match.group(2)]
        position = match.end()
    return seconds


def _logical_lines(text):
    """Lines with comments dropped and backslash continuations joined."""
    pending = ''
    for raw in text.splitlines():
        line = raw.strip()
        # systemd skips comment lines inside a continued line too.
        if (not line and not pending) or line[:1] in ('#', ';'):
            continue
        if line.endswith('\\'):
            pending += line[:-1] + ' '
            continue
        yield pending + line
        pending = ''
    if pending:
        yield pending


def parse_sections(text):
    """{section: [(key, value), ...]}, keys in file order."""
    sections, current = {}, None
    for line in _logical_lines(text):
        if line.startswith('[') and line.endswith(']'):
            current = sections.setdefault(line[1:-1], [])
            continue
        key, equals, value = line.partition('=')
        if current is None or not equals:
            raise UnitError(f'not a unit file line: {line!r}')
        current.append((key.strip(), value.strip()))
    return sections


@dataclasses.dataclass(frozen=True)
class ServiceUnit:
    path: str
    settings: dict  # [Service] key -> list of values, in file order

    @classmethod
    def load(cls, path=UNIT_PATH):
        with open(path) as unit_file:
            sections = parse_sections(unit_file.read())
        settings = {}
        for key, value in sections.get('Service', []):
            # An empty assignment resets a list setting, as in systemd.
            settings[key] = [] if value == '' else (
                settings.get(key, []) + [value])
        return cls(path, settings)

    def last(self, key, default=None):
        values = self.settings.get(key)
        return values[-1] if values else default

    @property
    def service_type(self):
        return self.last('Type', 'simple')

    @property
    def notify_access(self):
        return self.last('NotifyAccess', 'none')

    @property
    def kill_mode(self):
        return self.last('KillMode', DEFAULT_KILL_MODE)

    @property
    def stop_timeout(self):
        return parse_time_span(self.last('TimeoutStopSec', '90s'))

    @property
    def state_directory(self):
        return self.last('StateDirectory')

    def exec_start(self):
        """ExecStart= as an argv list, exactly as written."""
        values = self.settings.get('ExecStart', [])
        if len(values) != 1:
            raise UnitError(f'{self.path}: expected one ExecStart=, found '
                            f'{len(values)}')
        line = values[0]
        if line[:1] in '@-:+!' or '%' in line or '$' in line:
            raise UnitError(f'{self.path}: ExecStart= uses a prefix, '
                            f'specifier or variable the gate\'s drop-in '
                            f'would not carry over: {line!r}')
        return shlex.split(line)

    def command_line(self, executable, config_file):
        """ExecStart with the installed executable and a config file of
        the caller's in place of the packaged paths."""
        argv = self.exec_start()
        if os.path.basename(argv[0]) != EXECUTABLE_NAME:
            raise UnitError(f'{self.path}: ExecStart= runs {argv[0]}, not '
                            f'{EXECUTABLE_NAME}')
        try:
            position = argv.index('--config-file') + 1
        except ValueError:
            position = None
        if position is None or argv[position:position + 1] != [CONFIG_FILE]:
            raise UnitError(f'{self.path}: ExecStart= does not pass '
                            f'--config-file {CONFIG_FILE}')
        return ([executable] + argv[1:position] + [config_file]
                + argv[position + 1:])
