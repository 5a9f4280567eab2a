"""python -m tools.faults [STESTR FILTER ...]

Runs the stestr suite tests/faults one test at a time, prints a line as
each test ends, then the report (tools/faults/report.py). The subunit
stream is kept in build/faults/last.subunit. Exits 1 when a test failed,
stestr failed or no test ran.
"""

import argparse
import os
import subprocess
import sys

from tools.faults import report
from tools.faults import results

TEST_PATH = './tests/faults'
DEFAULT_STREAM_FILE = os.path.join('build', 'faults', 'last.subunit')


class _Tee:
    """A reader that copies what it reads to a file."""

    def __init__(self, source, copy):
        self._source = source
        self._copy = copy

    def read(self, size=-1):
        data = self._source.read(size)
        self._copy.write(data)
        return data


def run(filters, stream_file):
    os.makedirs(os.path.dirname(stream_file) or '.', exist_ok=True)
    command = [sys.executable, '-m', 'stestr', f'--test-path={TEST_PATH}',
               'run', '--concurrency', '1', '--subunit', *filters]
    print('faults: ' + ' '.join(command), flush=True)
    outcomes = []

    def on_outcome(outcome):
        outcomes.append(outcome)
        print(report.progress_line(outcome), flush=True)
    with open(stream_file, 'wb') as copy:
        process = subprocess.Popen(command, stdout=subprocess.PIPE)
        results.read(_Tee(process.stdout, copy), on_outcome)
        status = process.wait()
    print(report.format_report(outcomes), flush=True)
    if status != 0 or not outcomes or any(o.failed for o in outcomes):
        print(f'faults: FAILED (stestr exit {status}; stream in '
              f'{stream_file})', flush=True)
        return 1
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m tools.faults',
        description='Run the faults suite (tests/faults) and report what '
                    'each test did and found.')
    parser.add_argument('--stream-file', default=DEFAULT_STREAM_FILE,
                        help='where to keep the subunit stream '
                             '(default %(default)s)')
    parser.add_argument('filters', nargs='*',
                        help='stestr filters (regexes) selecting tests')
    options = parser.parse_args(argv)
    return run(options.filters, options.stream_file)


if __name__ == '__main__':
    sys.exit(main())
