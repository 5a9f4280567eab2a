"""tox -e gate -- [--repeat N] [--report PATH] [--scenario NAME ...]
                  [--concurrency threading|eventlet]

Brings up the two-host deployment once, runs every selected scenario N
times in random order (the seed is printed, and --seed repeats an
order), prints a table, writes the JSON report, and exits 1 if any run
failed or the deployment could not be brought up.
"""

import argparse
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import traceback

import fixtures

from compute_agent import concurrency
from tools.gate import deployment as gate_deployment
from tools.gate import report
from tools.gate import registry
from tools.gate import unitfile
from tools.gate.failure import GateFailure


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog='tox -e gate --',
        description='The graceful-shutdown gate: agents SIGTERMed in the '
                    'middle of real operations on two hosts.')
    parser.add_argument('--repeat', type=int, default=1, metavar='N',
                        help='runs of each scenario, in random order '
                             '(default 1)')
    parser.add_argument('--report', metavar='PATH',
                        help='write the results here as JSON')
    parser.add_argument('--scenario', action='append',
                        choices=sorted(registry.by_name()), metavar='NAME',
                        help='run only this scenario (repeatable; default '
                             'all: %(choices)s)')
    parser.add_argument('--concurrency', choices=concurrency.MODES,
                        default=concurrency.mode_from_environment(),
                        help='the mode the agents run in (default: the one '
                             f'{concurrency.ENVIRONMENT_VARIABLE} names '
                             'here, else threading)')
    parser.add_argument('--seed', type=int,
                        help='seed of the run order and host choices')
    parser.add_argument('--workdir', metavar='DIR',
                        help='where the brokers, libvirtds and agents keep '
                             'their state and logs (default: a new '
                             'temporary directory, removed when every run '
                             'passed)')
    parser.add_argument('--executable', default=os.path.join(
        os.path.dirname(sys.executable), unitfile.EXECUTABLE_NAME),
        help='the installed compute-agent entry point that replaces '
             'ExecStart\'s (default: the one beside this Python)')
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error('--repeat must be at least 1')
    if args.scenario:
        # A name given twice is one scenario, not twice the runs.
        args.scenario = list(dict.fromkeys(args.scenario))
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(2 ** 32)
    return args


def _leave_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def say(message):
    print(f'gate: {message}', flush=True)


def run_once(deployment, scenario_class, rng):
    scenario = scenario_class(rng)
    started = time.monotonic()
    failure = None
    try:
        scenario.run(deployment)
    except GateFailure as error:
        failure = str(error) or 'GateFailure without a message'
    except Exception:
        failure = traceback.format_exc()
    # Put the deployment back for the next run: agents up, guests gone.
    # Each step runs even when the other failed, so that one agent that
    # would not restart does not leave this run's guests to the next.
    for step in (deployment.recover, lambda: scenario.cleanup(deployment)):
        try:
            step()
        except Exception:
            failure = failure or ('cleanup after the run failed:\n'
                                  + traceback.format_exc())
    result = report.RunResult(scenario_class.name, failure is None,
                              scenario.drain_lags,
                              time.monotonic() - started, failure)
    return result, scenario.sigtermed


def run_plan(deployment, plan, rng):
    results = []
    for index, scenario_class in enumerate(plan, 1):
        result, sigtermed = run_once(deployment, scenario_class,
                                     random.Random(rng.random()))
        lags = ', '.join(f'{lag:.3f} s' for lag in result.drain_lags)
        say(f'[{index}/{len(plan)}] {result.scenario} '
            f'(SIGTERM {", ".join(sigtermed) or "none"}): '
            f'{"passed" if result.passed else "FAILED"} in '
            f'{result.seconds:.1f} s; drain lag {lags or "-"}')
        if result.failure:
            print(result.failure, flush=True)
        results.append(result)
    return results


def _run_deployed(deployment, plan, rng, started):
    """Bring the deployment up, run the plan, take it down; (results,
    the hosts' systemd version), or (None, None) if it did not come up."""
    try:
        deployment.setUp()
    except fixtures.MultipleExceptions as errors:
        # The first is what went wrong; cleanup has run.
        say('the deployment did not come up:')
        traceback.print_exception(errors.args[0][1])
        return None, None
    try:
        supervisor = deployment.supervisor()
        say(f'deployment up in {time.monotonic() - started:.1f} s, agents '
            f'under {supervisor}')
        return run_plan(deployment, plan, rng), supervisor
    finally:
        deployment.cleanUp()


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    chosen = args.scenario or [s.name for s in registry.SCENARIOS]
    rng = random.Random(args.seed)
    plan = [registry.by_name()[name] for name in chosen
            for _ in range(args.repeat)]
    rng.shuffle(plan)
    workdir = args.workdir or tempfile.mkdtemp(prefix='compute-agent-gate-')
    os.makedirs(workdir, exist_ok=True)
    say(f'{len(plan)} runs, seed {args.seed}, agents in '
        f'{args.concurrency} mode, workdir {workdir}')

    # A CI system stops a job that overran with SIGTERM: leave through the
    # cleanups, so that no broker, libvirtd or guest outlives the job.
    signal.signal(signal.SIGTERM, _leave_on_sigterm)
    started = time.monotonic()
    deployment = gate_deployment.Deployment(workdir, args.executable,
                                            args.concurrency)
    try:
        results, supervisor = _run_deployed(deployment, plan, rng, started)
    finally:
        # Even after a failed run or setup, the hosts' systemds must have
        # left nothing in the machine's cgroup hierarchies.
        left = deployment.cgroups_left()
        if left:
            say('cgroups left on the machine after the gate:\n  '
                + '\n  '.join(left))
        else:
            say('nothing left in the machine\'s cgroup hierarchies')
    if results is None or left:
        return 1

    seconds = time.monotonic() - started
    summary = report.summarize(results, chosen)
    print(report.format_table(summary), flush=True)
    if args.report:
        report.write_json(args.report, summary, args.repeat, args.seed,
                          seconds, supervisor, args.concurrency)
        say(f'report written to {args.report}')
    failed = [result for result in results if not result.passed]
    if failed:
        say(f'{len(failed)} of {len(results)} runs FAILED in {seconds:.0f} '
            f's; logs are under {workdir} (each host\'s journal.log, the '
            f'agent\'s output, and systemd-*/systemd.log)')
        return 1
    say(f'all {len(results)} runs passed in {seconds:.0f} s')
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0
