"""The agent against its baselines, side by side, on real QEMU guests.

One run, one table: every row is a figure of the agent, the same figure
of a baseline a user would otherwise run, and their ratio. Baselines: a
1 s state poller for power-off detection, one guest stopped alone for a
mass power-off, a bare oslo.messaging server (baselines/bare_server.py)
for RPC throughput, drain, idle exit, start and memory. Needs root (a
private libvirtd, as tox -e realguest). Run from the repository root:
``python -m tools.bench.side_by_side`` (``tox -e bench``); --help lists
the options. A benchmark, not a test: nothing here passes or fails on
speed; a broken run (an error, a hung drain) exits non-zero.
"""

import argparse
import json
import logging
import os
import sys

# tests/__init__ selects the concurrency mode (and oslo.service's
# backend), which must happen before anything imports oslo_messaging.
from tests.realguest import libvirtd
from tools.bench.baselines import bench_host
from tools.bench.baselines import figures
from tools.bench.baselines import lifetime
from tools.bench.baselines import power_off
from tools.bench.baselines import rpc_rounds

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def measure(args):
    raw = {'loadavg_before': os.getloadavg()[0]}
    with bench_host.BenchHost(libvirtd.guest_images()) as host:
        raw['rpc'] = rpc_rounds.interleaved(
            {'agent': host.agent_rpc, 'bare': host.bare_rpc},
            args.rpc_rounds, args.calls)
        guest, raw['detection'] = power_off.detection_rounds(
            host, args.rounds)
        raw['accelerator'] = host.events.accelerator(guest)
        raw['mass_guests'], raw['mass'] = power_off.mass_rounds(
            host, args.guests, args.mass_rounds)
        raw['drain'] = {'agent': [], 'bare': []}
        for _ in range(args.repeat):
            raw['drain']['agent'].append(lifetime.agent_drain(host, guest))
            raw['drain']['bare'].append(lifetime.bare_drain(host))
        raw['idle'] = {'agent': [], 'bare': []}
        for _ in range(args.repeat):
            for name in ('agent', 'bare'):
                raw['idle'][name].append(
                    lifetime.idle_exit(host, name, args.idle))
        raw['ready'] = host.ready_seconds
        raw['graceful_shutdown_timeout'] = (
            host.agent.graceful_shutdown_timeout)
    raw['loadavg_after'] = os.getloadavg()[0]
    return raw


def _medians(samples, key, scale=1):
    value = figures.median([sample[key] for sample in samples])
    return value * scale if value is not None else None


def rows(raw):
    """The table's rows from measure()'s figures."""
    detection, mass = raw['detection'], raw['mass']
    n = len(detection)
    mass_n = raw['mass_guests']
    rpc = raw['rpc']
    rounds = len(rpc['agent']['sequential'])
    drain, idle = raw['drain'], raw['idle']
    repeat = len(drain['agent'])
    bare = 'bare oslo.messaging server'
    table = [
        figures.Row('power-off: STOPPED event -> noticed', 'ms',
                    _medians(detection, 'agent_lag', 1000),
                    _medians(detection, 'poller_lag', 1000),
                    '1 s poller: read state, then sleep 1 s', 'lower',
                    f'{n}'),
        figures.Row(f'mass power-off, {mass_n} at once: requests -> last '
                    f'reply', 's', _medians(mass, 'all'),
                    _medians(detection, 'stop'),
                    '1 guest alone: request -> reply', 'lower',
                    f'{len(mass)} / {n}'),
        figures.Row(f'mass power-off, {mass_n} at once: requests -> last '
                    f'STOPPED', 's', _medians(mass, 'all_off'),
                    _medians(detection, 'off'),
                    '1 guest alone: request -> STOPPED', 'lower',
                    f'{len(mass)} / {n}'),
        figures.Row(f'mass power-off, {mass_n} at once: worst STOPPED -> '
                    f'reply', 'ms', _medians(mass, 'worst_lag', 1000),
                    _medians(detection, 'agent_lag', 1000),
                    '1 guest alone: STOPPED -> reply', 'lower',
                    f'{len(mass)} / {n}')]
    for mode, label in (('sequential', 'sequential'),
                        ('threads', f'{rpc_rounds.THREADS} threads')):
        table.append(figures.Row(
            f'RPC get_service_status, {label}', 'calls/s',
            figures.median(rpc['agent'][mode]),
            figures.median(rpc['bare'][mode]),
            f'{bare}, a trivial method', 'higher', f'{rounds}'))
    table += [
        figures.Row('drain: SIGTERM in a clean stop, reply -> exit', 's',
                    _medians(drain['agent'], 'lag'),
                    _medians(drain['bare'], 'lag'),
                    f'{bare}: stop(), wait() after its call', 'lower',
                    f'{repeat}'),
        figures.Row('drain: reply -> exit', 's',
                    _medians(drain['agent'], 'lag'),
                    raw['graceful_shutdown_timeout'],
                    'graceful_shutdown_timeout, waited out (configured)',
                    'lower', f'{repeat}'),
        figures.Row('idle: SIGTERM -> exit', 's',
                    _medians(idle['agent'], 'exit'),
                    _medians(idle['bare'], 'exit'), f'{bare}: stop(), wait()',
                    'lower', f'{repeat}'),
        figures.Row('start -> READY=1', 's',
                    figures.median(raw['ready']['agent']),
                    figures.median(raw['ready']['bare']),
                    f'{bare}: start()', 'lower',
                    f'{len(raw["ready"]["agent"])} / '
                    f'{len(raw["ready"]["bare"])}'),
        figures.Row('RSS, idle', 'MiB', _medians(idle['agent'], 'rss_mib'),
                    _medians(idle['bare'], 'rss_mib'), bare, 'lower',
                    f'{repeat}')]
    return table


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--rounds', type=int, default=5,
                        help='clean stops of one guest (detection, and '
                             'the mass power-off\'s baseline)')
    parser.add_argument('--guests', type=int, default=8,
                        help='guests stopped at once')
    parser.add_argument('--mass-rounds', type=int, default=2,
                        help='mass power-offs')
    parser.add_argument('--rpc-rounds', type=int, default=9,
                        help='interleaved RPC rounds')
    parser.add_argument('--calls', type=int, default=200,
                        help='RPC calls per round and mode')
    parser.add_argument('--repeat', type=int, default=3,
                        help='drains and idle exits of each')
    parser.add_argument('--idle', type=float, default=8.0,
                        help='seconds idle before the idle SIGTERM')
    parser.add_argument('--json', metavar='PATH',
                        help='also write the machine, rows and raw '
                             'figures here')
    args = parser.parse_args()
    available, reason = libvirtd.realguest_available()
    if not available:
        sys.exit(f'side_by_side: {reason}')
    # The table is the output: errors still show.
    logging.basicConfig(level=logging.ERROR)
    raw = measure(args)
    machine = figures.machine(REPO_ROOT, raw['accelerator'])
    table = rows(raw)
    print(figures.header(machine))
    print(f'1-min load average before / after: '
          f'{raw["loadavg_before"]:.2f} / {raw["loadavg_after"]:.2f}')
    print('figures are medians; n: samples of agent / baseline')
    print('\n'.join(figures.format_table(table)))
    if args.json:
        with open(args.json, 'w') as out:
            json.dump({'machine': machine,
                       'rows': [row.as_dict() for row in table],
                       'raw': raw}, out, indent=2)


if __name__ == '__main__':
    main()
