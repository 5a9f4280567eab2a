"""tox -e crash-matrix -- [--report PATH] [--only REGEX] [--sample N]
[--seed S] [--list] [--rst] [--from-report PATH ...]

Brings up the gate's two-host deployment (tools/gate/deployment.py:
each agent under a systemd of its own, private libvirtds, QEMU guests),
runs each selected case once (tools/crash_matrix/matrix.py), prints a
table (and with --rst the operator guide's table), writes the JSON
report, and exits 1 if any case was not safe.

--sample N runs N of the selected failpoints: a window of a fixed mix of
them that moves with the seed, so that consecutive seeds cover every one
of them in turn. The seed defaults to the day (UTC), so daily CI runs
rotate through the matrix; the seed and the picked names are printed,
and --seed repeats a run.

--rst --from-report PATH (repeatable) prints the operator guide's table
from earlier reports without running anything; a later report's row
replaces an earlier one's for the same failpoint. With --report, the
merged rows are written there too. doc/source/crash-matrix-report.json
holds the rows of the operator guide's table:

    python -m tools.crash_matrix --rst \
        --from-report doc/source/crash-matrix-report.json \
        --from-report NEW.json --report doc/source/crash-matrix-report.json
"""

import argparse
import datetime
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import time
import traceback

import fixtures

from compute_agent import concurrency
from tools.crash_matrix import cases
from tools.crash_matrix import matrix
from tools.crash_matrix import report
from tools.gate import deployment as gate_deployment
from tools.gate import unitfile

# The fixed mix that --sample windows move over: each window holds
# failpoints of several operations.
_MIX_SEED = 11


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog='tox -e crash-matrix --',
        description='The crash matrix: the agent killed at each named '
                    'failpoint on real guests, restarted by systemd, and '
                    'both hosts checked.')
    parser.add_argument('--report', metavar='PATH',
                        help='write the rows here as JSON')
    parser.add_argument('--only', metavar='REGEX',
                        help='only failpoints this matches (re.search)')
    parser.add_argument('--sample', type=int, metavar='N',
                        help='run N of the selected failpoints, rotating '
                             'with the seed (default: all of them)')
    parser.add_argument('--seed', type=int,
                        help='which window --sample takes (default: the '
                             'day number, UTC)')
    parser.add_argument('--list', action='store_true',
                        help='print the selected cases and exit')
    parser.add_argument('--rst', action='store_true',
                        help='also print the operator guide\'s table')
    parser.add_argument('--from-report', action='append', metavar='PATH',
                        help='with --rst: render these reports\' rows '
                             'instead of running (repeatable)')
    parser.add_argument('--workdir', metavar='DIR',
                        help='where brokers, libvirtds and agents keep '
                             'state and logs (default: a temporary '
                             'directory, removed when every case was '
                             'safe)')
    parser.add_argument('--executable', default=os.path.join(
        os.path.dirname(sys.executable), unitfile.EXECUTABLE_NAME),
        help='the installed compute-agent entry point (default: the one '
             'beside this Python)')
    args = parser.parse_args(argv)
    if args.sample is not None and args.sample < 1:
        parser.error('--sample must be at least 1')
    if args.from_report and not args.rst:
        parser.error('--from-report goes with --rst')
    if args.seed is None:
        args.seed = datetime.datetime.now(datetime.timezone.utc).date() \
            .toordinal()
    return args


def select(case_classes, only=None):
    if only is None:
        return list(case_classes)
    pattern = re.compile(only)
    return [case for case in case_classes if pattern.search(case.name())]


def pick_sample(names, size, seed):
    """size of names: the seed-th window over a fixed mix of them, so
    that seeds s, s+1, ... cover all names within ceil(len/size) runs."""
    mix = sorted(names)
    random.Random(_MIX_SEED).shuffle(mix)
    size = min(size, len(mix))
    start = (seed * size) % len(mix) if mix else 0
    return [mix[(start + index) % len(mix)] for index in range(size)]


def say(message):
    print(f'crash-matrix: {message}', flush=True)


def _leave_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def _render(args, names):
    reports = [report.read_json(path) for path in args.from_report]
    rows = report.ordered(report.merge(reports), names)
    print(report.format_rst(rows), end='')
    if args.report:
        # The merged rows, e.g. to keep beside the operator guide.
        report.write_json(args.report, rows, None, None,
                          sum(entry.get('seconds') or 0
                              for entry in reports),
                          reports[-1].get('supervisor'))
    return 0


def _run_all(deployment, plan):
    rows = []
    for index, case_class in enumerate(plan, 1):
        row = matrix.run_case(deployment, case_class)
        say(f'[{index}/{len(plan)}] {row.failpoint} ({row.operation}, '
            f'{row.host["name"]} killed): '
            f'{"safe" if row.safe else "NOT SAFE"} in {row.seconds:.1f} s; '
            f'{row.outcome}')
        for failure in row.failures:
            print(f'    {failure}', flush=True)
        rows.append(row)
    return rows


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    known = cases.all_cases()
    names = [case.name() for case in known]
    if args.from_report:
        return _render(args, names)
    plan = select(known, args.only)
    if args.sample is not None:
        picked = set(pick_sample([case.name() for case in plan],
                                 args.sample, args.seed))
        plan = [case for case in plan if case.name() in picked]
        say(f'sample of {len(plan)}, seed {args.seed} (repeat with --seed '
            f'{args.seed}): {", ".join(case.name() for case in plan)}')
    if args.list:
        for case in plan:
            print(f'{case.name()}  {case.operation}  {case.armed_role}')
        return 0
    if not plan:
        say('no case selected')
        return 1

    workdir = args.workdir or tempfile.mkdtemp(
        prefix='compute-agent-crash-matrix-')
    os.makedirs(workdir, exist_ok=True)
    say(f'{len(plan)} cases, workdir {workdir}')
    signal.signal(signal.SIGTERM, _leave_on_sigterm)
    started = time.monotonic()
    # The agents run in the mode this run's environment names, as the
    # gate's do by default.
    deployment = gate_deployment.Deployment(
        workdir, args.executable, concurrency.mode_from_environment())
    rows = supervisor = None
    try:
        deployment.setUp()
    except fixtures.MultipleExceptions as errors:
        say('the deployment did not come up:')
        traceback.print_exception(errors.args[0][1])
    else:
        try:
            supervisor = deployment.supervisor()
            say(f'deployment up in {time.monotonic() - started:.1f} s, '
                f'agents under {supervisor}')
            rows = _run_all(deployment, plan)
        finally:
            deployment.cleanUp()
    left = deployment.cgroups_left()
    if left:
        say('cgroups left on the machine:\n  ' + '\n  '.join(left))
    if rows is None:
        return 1

    seconds = time.monotonic() - started
    rows = report.ordered(rows, names)
    print(report.format_table(rows), flush=True)
    if args.rst:
        print(report.format_rst(rows), end='', flush=True)
    if args.report:
        report.write_json(args.report, rows, args.seed, args.sample,
                          seconds, supervisor)
        say(f'report written to {args.report}')
    unsafe = [row for row in rows if not row.safe]
    if unsafe or left:
        say(f'{len(unsafe)} of {len(rows)} cases NOT SAFE in {seconds:.0f} '
            f's; logs under {workdir}')
        return 1
    say(f'all {len(rows)} cases safe in {seconds:.0f} s')
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0
