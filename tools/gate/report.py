"""The gate's results: one line per scenario, as a table and as JSON.

JSON (the interface CI and operators' jobs read)::

    {"scenarios": [{"name", "runs", "passed", "drain_lag_median",
                    "drain_lag_max", "failures"}],
     "repeat", "seed", "seconds", "supervisor", "concurrency"}

"supervisor" names what ran the agents, e.g. "systemd 252";
"concurrency" the agents' mode, "threading" or "eventlet".

Drain lags are in seconds, over every run that measured one (a failed run
with a long lag must show in the maximum); null when none did.
"""

import dataclasses
import json
import os
import statistics


@dataclasses.dataclass
class RunResult:
    scenario: str
    passed: bool
    drain_lags: list  # seconds, one per SIGTERM of the run
    seconds: float  # wall-clock length of the run
    failure: str | None = None


def headline(failure):
    """One line that says what went wrong: a check's message, or the
    exception line at the end of a traceback (with what it interrupted)."""
    lines = [line for line in (failure or '').splitlines() if line.strip()]
    if not lines:
        return 'failed without a message'
    if 'Traceback (most recent call last):' not in lines:
        return lines[0]
    context = lines[0] if not lines[0].startswith('Traceback') else ''
    return ' '.join(part for part in (context, lines[-1].strip()) if part)


def summarize(results, scenario_names):
    """Per-scenario figures, in scenario_names order."""
    summary = []
    for name in scenario_names:
        runs = [result for result in results if result.scenario == name]
        lags = [lag for result in runs for lag in result.drain_lags]
        summary.append({
            'name': name,
            'runs': len(runs),
            'passed': sum(result.passed for result in runs),
            'drain_lag_median': (round(statistics.median(lags), 3)
                                 if lags else None),
            'drain_lag_max': round(max(lags), 3) if lags else None,
            'failures': [headline(result.failure)
                         for result in runs if not result.passed],
        })
    return summary


def _seconds(value):
    return '-' if value is None else f'{value:.3f} s'


def format_table(summary):
    header = ('scenario', 'runs', 'passed', 'median drain lag',
              'max drain lag')
    rows = [(entry['name'], str(entry['runs']), str(entry['passed']),
             _seconds(entry['drain_lag_median']),
             _seconds(entry['drain_lag_max'])) for entry in summary]
    widths = [max(len(row[column]) for row in [header] + rows)
              for column in range(len(header))]

    def line(row):
        # Names left-aligned, figures right-aligned.
        return '  '.join([row[0].ljust(widths[0])] + [
            cell.rjust(width) for cell, width in zip(row[1:], widths[1:])])
    return '\n'.join([line(header), line(['-' * w for w in widths])]
                     + [line(row) for row in rows])


def write_json(path, summary, repeat, seed, seconds, supervisor,
               concurrency):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with open(path, 'w') as report:
        json.dump({'scenarios': summary, 'repeat': repeat, 'seed': seed,
                   'seconds': round(seconds, 1), 'supervisor': supervisor,
                   'concurrency': concurrency},
                  report, indent=2)
        report.write('\n')
