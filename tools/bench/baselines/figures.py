"""Medians, ratios, the machine and the side-by-side table (pure parts).

Every row holds a figure of the agent, the same figure of a baseline,
their ratio (agent / baseline) and which way is better, so a reader
never has to find the baseline elsewhere.
"""

import dataclasses
import os
import platform
import statistics
import subprocess


def median(samples):
    """The median of the samples that are not None, or None if none."""
    values = [value for value in samples if value is not None]
    return statistics.median(values) if values else None


def ratio(figure, baseline):
    """figure / baseline, or None when either is missing or the baseline
    is zero."""
    if figure is None or not baseline:
        return None
    return figure / baseline


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of the table: label, unit, the two figures, how many
    samples each median is of, what the baseline is, and which way is
    better ('lower' or 'higher')."""

    label: str
    unit: str
    agent: float
    baseline: float
    baseline_is: str
    better: str
    samples: str = ''

    @property
    def ratio(self):
        return ratio(self.agent, self.baseline)

    def as_dict(self):
        return dict(dataclasses.asdict(self), ratio=self.ratio)


def _number(value, unit):
    if value is None:
        return '-'
    digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 3
    if unit == 'MiB':
        digits = 1
    return f'{value:.{digits}f}'


def _ratio_text(value):
    if value is None:
        return '-'
    return f'{value:.3f}' if value < 0.1 else f'{value:.2f}'


HEADER = ('figure', 'agent', 'baseline', 'agent/baseline', 'better',
          'n', 'baseline is')


def format_table(rows):
    """The rows as aligned text lines, a header and a rule first."""
    cells = [HEADER, tuple('-' * len(title) for title in HEADER)]
    for row in rows:
        cells.append((f'{row.label}, {row.unit}',
                      _number(row.agent, row.unit),
                      _number(row.baseline, row.unit),
                      _ratio_text(row.ratio), row.better, row.samples,
                      row.baseline_is))
    widths = [max(len(line[i]) for line in cells)
              for i in range(len(HEADER))]
    return ['  '.join(f'{cell:<{width}}' for cell, width
                      in zip(line, widths)).rstrip() for line in cells]


def cpu_model(cpuinfo='/proc/cpuinfo'):
    try:
        with open(cpuinfo) as info:
            for line in info:
                if line.startswith('model name'):
                    return line.partition(':')[2].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown CPU'


def git_commit(repo):
    """The short hash of HEAD, '+changes' when the tree differs from it."""
    def git(*args):
        return subprocess.run(['git', '-C', repo, *args], text=True,
                              capture_output=True).stdout.strip()
    dirty = git('status', '--porcelain', '--untracked-files=no')
    return git('rev-parse', '--short', 'HEAD') + ('+changes' if dirty
                                                  else '')


def machine(repo, accelerator):
    """What the figures were measured on; accelerator: 'TCG' or 'KVM',
    as the guests ran."""
    return {'cores': os.cpu_count(), 'kernel': platform.release(),
            'cpu': cpu_model(), 'guests': accelerator,
            'python': platform.python_version(), 'commit': git_commit(repo)}


def header(machine_figures):
    m = machine_figures
    return (f'{m["cores"]} cores, {m["cpu"]}, Linux {m["kernel"]}, '
            f'guests under {m["guests"]}, Python {m["python"]}, '
            f'commit {m["commit"]}')
