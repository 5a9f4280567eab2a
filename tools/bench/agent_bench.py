"""Benchmark compute-agent against a private RabbitMQ and test:///default.

Every figure is taken in each concurrency mode (the agents get
COMPUTE_AGENT_CONCURRENCY), one mode after the other, and printed side
by side.

Speed and memory targets are checked here, never by timed assertions in
tests: a missed target prints MISS and the run still exits 0. Only a
broken run (an error, an agent that ignores SIGTERM) exits non-zero.
Run from the repository root; --help lists the options.
"""

import argparse
import concurrent.futures
import json
import logging
import math
import os
import statistics
import sys
import time
import uuid

import fixtures

# The table is the output: hide the warning about the burst's many reply
# waiters; errors still show.
logging.basicConfig(level=logging.ERROR)

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))

# tests/__init__ selects the concurrency mode (and oslo.service's
# backend), which must happen before anything imports oslo_messaging.
from tests.fixtures import agent as agent_fixture  # noqa: E402
from tests.fixtures import rabbitmq  # noqa: E402
from tests.fixtures import rpc  # noqa: E402

from compute_agent import concurrency  # noqa: E402
from tools.bench import procfs  # noqa: E402
import oslo_messaging  # noqa: E402

BURST = 20  # concurrent requests in flight when SIGTERM is sent
# An agent still running this long after SIGTERM counts as hung and is
# killed: far above every target, below graceful_shutdown_timeout (60 s).
HUNG_AFTER = 15
# What each benchmarked instance goes through, in order:
# (label, RPC method, arguments besides the instance).
LIFECYCLE = (('boot', 'build_and_run_instance', {}),
             ('stop clean', 'stop_instance', {}),
             ('start', 'start_instance', {}),
             ('stop forced', 'stop_instance', {'clean_shutdown': False}),
             ('delete', 'terminate_instance', {}))


def stats(samples):
    """n, median, p95 and max; None marks a hung run, counted apart."""
    done = sorted(value for value in samples if value is not None)
    figures = {'n': len(samples), 'hung': len(samples) - len(done)}
    if done:   # nearest-rank p95: an observed value, not interpolated
        figures.update(median=statistics.median(done), max=done[-1],
                       p95=done[math.ceil(0.95 * len(done)) - 1])
    return figures


def detection(power_offs):
    """From the clean stops' records: how long each waited for the guest
    to be seen off (the test driver's guest goes off at once, so this is
    the lifecycle event's way through libvirt's loop to the waiting
    operation), and what saw it ('event' or the safety net's 'poll')."""
    seen_by = [power_off.get('detected_by') for power_off in power_offs]
    return dict(stats([power_off['seconds'] * 1000
                       for power_off in power_offs]),
                by_event=seen_by.count('event'), by_poll=seen_by.count('poll'))


def timed_ms(call, *args, **kwargs):
    started = time.perf_counter()
    call(*args, **kwargs)
    return (time.perf_counter() - started) * 1000


def new_instance():
    instance_uuid = str(uuid.uuid4())
    return {'uuid': instance_uuid, 'name': f'bench-{instance_uuid[:8]}',
            'vcpus': 1, 'memory_mb': 64,
            'image': {'id': 'bench-image', 'properties': {}}}


class Bench(fixtures.Fixture):
    """A private broker; the agents (all in one concurrency mode) and
    clients started on it."""

    def __init__(self, mode):
        super().__init__()
        self.mode = mode

    def _setUp(self):
        self.broker = rabbitmq.RabbitMQBroker()
        self.broker.start()
        self.addCleanup(self.broker.stop)
        self.url = self.broker.transport_url
        self.ready_seconds = []
        self.hung = 0

    def start_agent(self):
        """A fresh agent, ready, and a wire client for it."""
        started = time.monotonic()
        agent = self.useFixture(agent_fixture.AgentProcess(
            self.url,
            environment={concurrency.ENVIRONMENT_VARIABLE: self.mode}))
        agent.wait_ready()
        ready = [n.received for n in agent.notifications
                 if n.fields.get('READY') == '1']
        self.ready_seconds.append(ready[-1] - started)
        client = self.useFixture(rpc.AgentRPCClient(self.url, agent.host))
        running = client.call('get_service_status')['concurrency']
        if running != self.mode:
            raise RuntimeError(f'agent {agent.host} runs in {running} '
                               f'mode, not {self.mode}')
        return agent, client

    def rpc_round_trip(self, client, calls):
        figures = {}
        for topic in (rpc.TOPIC, rpc.ALT_TOPIC):
            client.call('get_service_status', topic=topic)  # warm-up
            started = time.perf_counter()
            samples = [timed_ms(client.call, 'get_service_status',
                                topic=topic) for _ in range(calls)]
            figures[topic] = dict(stats(samples), calls_per_s=calls / (
                time.perf_counter() - started))
        return figures

    def instance_operations(self, client, cycles):
        # One instance per cycle, deleted at its end, so the host holds
        # one guest at a time and later cycles are not slowed by a pile.
        samples = {op: [] for op, _, _ in LIFECYCLE}
        detections = []   # each clean stop's power-off record
        for _ in range(cycles):
            instance = new_instance()
            for op, method, kwargs in LIFECYCLE:
                named = ({'instance': instance} if op == 'boot' else
                         {'instance_uuid': instance['uuid']})
                started = time.perf_counter()
                record = client.call(method, **named, **kwargs)
                samples[op].append((time.perf_counter() - started) * 1000)
                if op == 'stop clean':
                    detections.append(record['last_power_off'])
        figures = {op: stats(values) for op, values in samples.items()}
        return figures, detection(detections)

    def wait_exit(self, agent):
        """Seconds from SIGTERM to exit, or None when the agent hung."""
        try:
            code = agent.wait_exit(HUNG_AFTER)
        except agent_fixture.AgentError:
            agent.process.kill()
            self.hung += 1
            return None
        if code != 0:
            raise RuntimeError(f'agent {agent.host} exited with {code}')
        return agent.exit_time - agent.signal_time

    def idle_drain(self, idle):
        agent, _ = self.start_agent()
        time.sleep(idle)   # past the listeners' longest (5 s) broker poll
        agent.sigterm()
        return self.wait_exit(agent)

    def busy_drain(self):
        """SIGTERM while BURST stop calls on compute-alt are in flight.

        The test driver has no slow operation, so the lag is measured
        from the last reply to the exit rather than from the signal.
        """
        agent, client = self.start_agent()
        uuids = [client.call('build_and_run_instance',
                             instance=new_instance())['uuid']
                 for _ in range(BURST)]
        replies = []   # arrival times; list.append is thread-safe

        def stop(instance_uuid):
            try:
                client.call('stop_instance', topic=rpc.ALT_TOPIC,
                            timeout=10, instance_uuid=instance_uuid)
            except oslo_messaging.MessagingTimeout:
                # Not taken before compute-alt stopped: it waits on the
                # broker for the next start. Counted, not fatal; any
                # other error is a broken run and propagates.
                return
            replies.append(time.monotonic())

        with concurrent.futures.ThreadPoolExecutor(BURST) as pool:
            # Open the sender connections first, so the burst is not
            # spread out by AMQP handshakes.
            list(pool.map(lambda _: client.call('get_service_status',
                                                topic=rpc.ALT_TOPIC),
                          range(BURST)))
            futures = [pool.submit(stop, u) for u in uuids]
            time.sleep(0.01)   # let the calls reach the broker
            agent.sigterm()
            for future in futures:
                future.result()
        exited = self.wait_exit(agent)
        lag = exited and agent.exit_time - max(replies, default=math.nan)
        return {'exit': exited, 'lag': lag, 'answered': len(replies),
                'after_sigterm': sum(t > agent.signal_time for t in replies)}


def run(args, mode):
    figures = {'loadavg_before': os.getloadavg()[0]}
    with Bench(mode) as bench:
        figures['broker_start_s'] = bench.broker.start_seconds
        agent, client = bench.start_agent()
        figures['rss_start'] = procfs.rss_mib(agent.pid)
        figures['rpc'] = bench.rpc_round_trip(client, args.calls)
        figures['ops'], figures['detection'] = bench.instance_operations(
            client, args.calls)
        figures['rss_after'] = procfs.rss_mib(agent.pid)
        agent.sigterm()
        bench.wait_exit(agent)

        figures['idle_exit'] = stats(
            [bench.idle_drain(args.idle) for _ in range(args.repeat)])
        busy = [bench.busy_drain() for _ in range(args.repeat)]
        figures['busy'] = {key: [one[key] for one in busy]
                           for key in busy[0]}
        figures['busy_lag'] = stats(figures['busy']['lag'])
        figures['busy_exit'] = stats(figures['busy']['exit'])
        figures['ready'] = stats(bench.ready_seconds)
        figures['hung'] = bench.hung
    figures['loadavg_after'] = os.getloadavg()[0]
    return figures


def spread(s, digits, p95=True):
    """'median / p95 / max' (or 'median / max'), and how many hung."""
    hung = f'{s["hung"]} hung'
    if s['hung'] == s['n']:
        return hung
    keys = ('median', 'p95', 'max') if p95 else ('median', 'max')
    return (' / '.join(f'{s[key]:.{digits}f}' for key in keys)
            + (', ' + hung if s['hung'] else ''))


class Table:
    """A row per figure, a column per mode, then the target and whether
    every mode met it (else the modes that missed)."""

    def __init__(self, modes):
        self.modes = modes
        self.rows = [('', *modes, 'target', ''),
                     ('', *('-' * len(mode) for mode in modes), '', '')]

    def row(self, label, value, target='', ok=None):
        """value(figures) -> the cell; ok(figures) -> met the target."""
        cells = [value(figures) for figures in self.modes.values()]
        verdict = ''
        if ok is not None:
            missed = [mode for mode, figures in self.modes.items()
                      if not ok(figures)]
            verdict = 'MISS ' + ', '.join(missed) if missed else 'PASS'
        self.rows.append((label, *cells, target, verdict))

    def print(self):
        widths = [max(len(row[i]) for row in self.rows)
                  for i in range(len(self.rows[0]))]
        for row in self.rows:
            print('  '.join(f'{cell:<{width}}' for cell, width
                            in zip(row, widths)).rstrip())


def report(by_mode, args):
    table = Table(by_mode)
    row = table.row
    for topic in (rpc.TOPIC, rpc.ALT_TOPIC):
        n = args.calls
        row(f'get_service_status on {topic} (x{n}), ms',
            lambda f: spread(f['rpc'][topic], 2), 'median < 10 ms',
            lambda f: f['rpc'][topic]['median'] < 10)
        row('  sequential calls/s',
            lambda f: f'{f["rpc"][topic]["calls_per_s"]:.0f}')
    for op, _, _ in LIFECYCLE:
        row(f'{op} (x{args.calls}), ms', lambda f: spread(f['ops'][op], 2),
            'median < 50 ms', lambda f: f['ops'][op]['median'] < 50)
    row(f'clean stop: guest off -> seen (x{args.calls}), ms',
        lambda f: spread(f['detection'], 0))
    row('  seen by event / by poll',
        lambda f: f'{f["detection"]["by_event"]} / '
                  f'{f["detection"]["by_poll"]}')
    for key, label, limit in (
            ('idle_exit', f'idle {args.idle:g} s, SIGTERM -> exit', 2),
            ('busy_lag', 'busy: last reply -> exit', 1),
            ('busy_exit', 'busy: SIGTERM -> exit', None)):
        row(f'{label} (x{args.repeat}), s',
            lambda f: spread(f[key], 3, p95=False),
            f'max < {limit} s' if limit else '',
            limit and (lambda f: not f[key]['hung'] and f[key]['max'] < limit))
    row(f'  busy: answered / after SIGTERM, of {BURST}',
        lambda f: ','.join(map(str, f['busy']['answered'])) + ' / '
        + ','.join(map(str, f['busy']['after_sigterm'])))
    for key, label in (('rss_start', 'RSS idle after start, MiB'),
                       ('rss_after', 'RSS after workload, MiB')):
        row(label, lambda f: f'{f[key]:.1f}', '< 150 MiB',
            lambda f: f[key] < 150)
    row('start -> READY=1, s', lambda f: spread(f['ready'], 2, p95=False))
    row('private RabbitMQ start, s', lambda f: f'{f["broker_start_s"]:.1f}')
    row('1-min load average before / after',
        lambda f: f'{f["loadavg_before"]:.2f} / {f["loadavg_after"]:.2f}')
    print('figures: median / p95 / max, or median / max')
    table.print()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--calls', type=int, default=200,
                        help='RPC calls per topic, and lifecycle cycles')
    parser.add_argument('--repeat', type=int, default=3,
                        help='agent starts per drain measurement')
    parser.add_argument('--idle', type=float, default=8.0,
                        help='seconds idle before the idle SIGTERM')
    parser.add_argument('--mode', action='append',
                        choices=concurrency.MODES,
                        help='measure only this concurrency mode '
                             '(repeatable; default: all, side by side)')
    parser.add_argument('--json', metavar='PATH',
                        help='also write the raw figures here, per mode')
    args = parser.parse_args()
    modes = list(dict.fromkeys(args.mode or concurrency.MODES))
    by_mode = {mode: run(args, mode) for mode in modes}
    report(by_mode, args)
    if args.json:
        with open(args.json, 'w') as out:
            json.dump(by_mode, out, indent=2)
    hung = sum(figures['hung'] for figures in by_mode.values())
    if hung:
        sys.exit(f'{hung} agent(s) still running {HUNG_AFTER} s after '
                 f'SIGTERM were killed: the drain hung')


if __name__ == '__main__':
    main()
