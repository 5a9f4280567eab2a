"""A fleet of agents on a three-node RabbitMQ cluster through a rolling
restart and a broker node's loss: does any request get lost, or run
twice?

N agents (each its own host, on libvirt's test:///default driver, with
quorum queues) take a steady stream of operations from a control plane
built on compute_agent.rpcapi. Meanwhile every agent is restarted in turn
with SIGTERM, and halfway through one broker node is killed and brought
back. The agents' own records (their SQLite files, read after the run)
say what ran and how often. Exits 1 when a request was lost or ran
twice. Run from the repository root: python -m tools.bench.fleet_bench.
"""

import argparse
import json
import logging
import os
import sys
import time

# The table is the output: hide oslo.messaging's reconnect chatter.
logging.basicConfig(level=logging.CRITICAL)

# tests/__init__ selects the concurrency mode (and oslo.service's
# backend), which must happen before anything imports oslo_messaging.
from tests.fixtures import polling  # noqa: E402

from compute_agent import rpcapi_versions  # noqa: E402

from tools.bench.fleet import accounting  # noqa: E402
from tools.bench.fleet import control  # noqa: E402
from tools.bench.fleet import fleet as fleet_fixture  # noqa: E402
from tools.bench.fleet import records  # noqa: E402
from tools.bench.fleet import report  # noqa: E402

SCALING_SIZES = (10, 25, 50)
# Bounds that only keep a broken run from hanging.
SETTLE_TIMEOUT = 180


def run(args, size):
    """One fleet run of size agents; its figures."""
    began = time.monotonic()
    ledger = accounting.Ledger()
    figures = {'agents': size, 'upgrade_level': args.upgrade_level,
               'agent_down_s': args.down,
               'auto_cache_s': rpcapi_versions.AUTO_PIN_CACHE_SECONDS,
               'loadavg_before': os.getloadavg()[0]}
    with fleet_fixture.Fleet(size) as fleet:
        figures['cluster_start_s'] = fleet.cluster_start_seconds
        figures['agents_start_s'] = fleet.agents_start_seconds
        client = fleet.useFixture(control.ComputeClient(
            fleet.transport_url, args.timeout, args.upgrade_level))
        plane = control.ControlPlane(client.api, fleet.hosts, ledger,
                                     args.concurrency, args.timeout,
                                     seed=args.seed)
        plane.start()
        time.sleep(args.steady)
        figures['agent_rss'] = accounting.spread(fleet.agent_rss())
        figures['broker_rss'] = fleet.broker_rss()
        figures['queues'] = fleet.queue_counts()
        figures['connections'] = fleet.connections_by_node()

        plane.phase = 'restarts'
        outage = {}
        started = time.monotonic()
        fleet.rolling_restart(halfway=lambda: outage.update(
            zip(('thread', 'times'),
                fleet.broker_outage(args.node_down))), down=args.down)
        figures['rolling_restart_s'] = time.monotonic() - started
        outage['thread'].join(SETTLE_TIMEOUT)
        times = outage['times']
        figures['node_down_s'] = times['back'] - times['killed']
        figures['killed_node'] = {'connections': times['connections'],
                                  'quorum_leaders': times['leaders']}
        plane.phase = 'after'
        time.sleep(args.after)
        figures['unfinished_workers'] = plane.stop(SETTLE_TIMEOUT)
        figures['set_aside'] = plane.set_aside
        # A request that timed out may still be queued: let it run (or
        # not) before the records are read.
        polling.wait_for(lambda: fleet.queued_for_agents() == 0,
                         SETTLE_TIMEOUT, 'the agents\' queues empty')
        figures['queues_after'] = fleet.queue_counts()
        drains = list(fleet.drain_seconds.values())
        figures['drain_s'] = accounting.spread(drains)
        fleet.stop_agents()
        evidence = records.read_evidence(fleet.databases())
    requests = ledger.requests()
    verdict = accounting.judge(requests, evidence)
    figures.update(accounting.counts(requests))
    figures.update(
        refused=verdict.refused, lost=len(verdict.lost),
        executed_twice=len(verdict.executed_twice),
        lost_requests=[vars(r) for r in verdict.lost],
        twice_requests=[vars(r) for r in verdict.executed_twice],
        errors=report.error_types(requests),
        error_samples=report.error_samples(requests),
        latency_ms=accounting.latencies(requests),
        run_s=time.monotonic() - began,
        loadavg_after=os.getloadavg()[0])
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--agents', type=int, default=50,
                        help='agents in the fleet (default 50)')
    parser.add_argument('--scaling', action='store_true',
                        help='run 10, 25 and 50 agents in turn and print '
                             'one table')
    parser.add_argument('--concurrency', type=int, default=8,
                        help='requests under way at once (default 8)')
    parser.add_argument('--timeout', type=int, default=60,
                        help='reply timeout of each call, s (default 60)')
    parser.add_argument('--steady', type=float, default=30,
                        help='seconds of steady load before the restarts')
    parser.add_argument('--after', type=float, default=5,
                        help='seconds of load after the restarts')
    parser.add_argument('--node-down', type=float, default=15,
                        help='seconds the killed broker node stays down')
    parser.add_argument('--down', metavar='S', type=float, default=0,
                        help='seconds each agent stays stopped in the '
                             'rolling restart, as an upgrade\'s package '
                             'install keeps it (default 0)')
    parser.add_argument('--upgrade-level', metavar='VALUE', default=None,
                        help='the control plane\'s [upgrade_levels] '
                             'compute: a version, or auto (default: '
                             'unpinned)')
    parser.add_argument('--auto-cache', metavar='S', type=float,
                        help='how long auto keeps a host\'s version '
                             '(default: the client\'s, 300 s); shorter '
                             'makes a short run meet the expiries a '
                             'long-running control plane meets during a '
                             'rolling restart')
    parser.add_argument('--seed', type=int, default=None,
                        help='seed of the operations\' random choices')
    parser.add_argument('--json', metavar='PATH',
                        help='also write the figures as JSON')
    args = parser.parse_args()
    if args.auto_cache is not None:
        rpcapi_versions.AUTO_PIN_CACHE_SECONDS = args.auto_cache
    sizes = SCALING_SIZES if args.scaling else (args.agents,)
    runs = []
    for size in sizes:
        runs.append(run(args, size))
        print(f'{size} agents: done in {runs[-1]["run_s"]:.0f} s',
              file=sys.stderr)
    report.print_table(runs)
    if args.json:
        with open(args.json, 'w') as out:
            json.dump(runs if args.scaling else runs[0], out, indent=2,
                      default=str)
    return 1 if any(r['lost'] or r['executed_twice'] for r in runs) else 0


if __name__ == '__main__':
    sys.exit(main())
