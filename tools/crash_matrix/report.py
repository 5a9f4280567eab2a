"""The crash matrix's results: one row per failpoint, as a table, as
reStructuredText for the operator guide, and as JSON.

JSON (what CI and operators' jobs read)::

    {"rows": [{"failpoint", "operation", "host": {"name", "role"},
               "outcome", "safe", "seconds", "restart_seconds",
               "failures"}],
     "seed", "sample", "seconds", "supervisor"}

``outcome`` is one line: the state recovery left and what the retry (or
revert) did, e.g. "stopped/shutdown; action interrupted; retried:
already stopped/shutdown". ``safe`` is true when every check passed
(tools/crash_matrix/checks.py) and the retry worked; ``failures`` lists
what did not.
"""

import dataclasses
import json
import os
import re


@dataclasses.dataclass
class Row:
    failpoint: str
    operation: str
    host: dict  # {'name': ..., 'role': 'host' | 'source' | 'destination'}
    outcome: str
    safe: bool
    seconds: float  # the whole case, prepare to cleanup
    restart_seconds: float | None = None  # failpoint line to ready again
    failures: list = dataclasses.field(default_factory=list)

    @classmethod
    def from_json(cls, entry):
        return cls(**{field.name: entry[field.name]
                      for field in dataclasses.fields(cls)
                      if field.name in entry})


def _killed(row):
    return (row.host['role'] if row.host['role'] != 'host'
            else row.host['name'])


def format_table(rows):
    header = ('failpoint', 'operation', 'killed', 'safe', 'seconds',
              'outcome')
    lines = [(row.failpoint, row.operation, _killed(row),
              'yes' if row.safe else 'NO', f'{row.seconds:.1f}',
              row.outcome) for row in rows]
    widths = [max(len(line[column]) for line in [header] + lines)
              for column in range(len(header) - 1)]

    def line(cells):
        return '  '.join([cell.ljust(width) for cell, width in
                          zip(cells[:-1], widths)] + [cells[-1]])
    return '\n'.join([line(header), line(['-' * w for w in widths]
                                         + ['-' * 7])]
                     + [line(cells) for cells in lines])


def format_rst(rows):
    """A list-table for doc/source/operator-guide.rst."""
    out = ['.. list-table::', '   :header-rows: 1',
           '   :widths: 22 12 10 50 6', '',
           '   * - Failpoint', '     - Operation', '     - Agent killed',
           '     - What the restart left; the retry',
           '     - Safe']
    for row in rows:
        out += [f'   * - ``{row.failpoint}``', f'     - {row.operation}',
                f'     - {_killed(row)}', f'     - {_rst_text(row.outcome)}',
                f'     - {"yes" if row.safe else "**no**"}']
    return '\n'.join(out) + '\n'


def _rst_text(text):
    # Markup an outcome may hold by accident: emphasis, literals, and a
    # word ending in "_" (a reference).
    text = text.replace('*', r'\*').replace('`', r'\`')
    return re.sub(r'(?<=\w)_(?!\w)', r'\_', text)


def ordered(rows, names):
    """rows in the order of names (the cases' order), others after."""
    position = {name: index for index, name in enumerate(names)}
    return sorted(rows, key=lambda row: (position.get(row.failpoint,
                                                      len(position)),
                                         row.failpoint))


def merge(reports):
    """The rows of several JSON reports, one per failpoint; a later
    report's row replaces an earlier one's."""
    rows = {}
    for report in reports:
        for entry in report['rows']:
            rows[entry['failpoint']] = Row.from_json(entry)
    return list(rows.values())


def read_json(path):
    with open(path) as report:
        return json.load(report)


def write_json(path, rows, seed, sample, seconds, supervisor):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with open(path, 'w') as report:
        json.dump({'rows': [dataclasses.asdict(row) for row in rows],
                   'seed': seed, 'sample': sample,
                   'seconds': round(seconds, 1), 'supervisor': supervisor},
                  report, indent=2)
        report.write('\n')
