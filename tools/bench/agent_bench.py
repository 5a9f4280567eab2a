"""Benchmark compute-agent against a private RabbitMQ and test:///default.

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


def timed_ms(call, *args, **kwargs):
    started = time.perf_counter()
    call(*args, **kwargs)
    return (time.perf_counter() - started) * 1000


def rss_mib(pid):
    with open(f'/proc/{pid}/status') as status:
        for line in status:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024   # /proc says kB
    raise LookupError(f'no VmRSS in /proc/{pid}/status')


def new_instance():
    instance_uuid = str(uuid.uuid4())
    return {'uuid': instance_uuid, 'name': f'bench-{instance_uuid[:8]}',
            'vcpus': 1, 'memory_mb': 64,
            'image': {'id': 'bench-image', 'properties': {}}}


class Bench(fixtures.Fixture):
    """A private broker; the agents and clients started on it."""

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
        agent = self.useFixture(agent_fixture.AgentProcess(self.url))
        agent.wait_ready()
        ready = [n.received for n in agent.notifications
                 if n.fields.get('READY') == '1']
        self.ready_seconds.append(ready[-1] - started)
        return agent, self.useFixture(rpc.AgentRPCClient(self.url,
                                                         agent.host))

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
        for _ in range(cycles):
            instance = new_instance()
            for op, method, kwargs in LIFECYCLE:
                named = ({'instance': instance} if op == 'boot' else
                         {'instance_uuid': instance['uuid']})
                samples[op].append(timed_ms(client.call, method,
                                            **named, **kwargs))
        return {op: stats(values) for op, values in samples.items()}

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


def run(args):
    figures = {'loadavg_before': os.getloadavg()[0]}
    with Bench() as bench:
        figures['broker_start_s'] = bench.broker.start_seconds
        agent, client = bench.start_agent()
        figures['rss_start'] = rss_mib(agent.pid)
        figures['rpc'] = bench.rpc_round_trip(client, args.calls)
        figures['ops'] = bench.instance_operations(client, args.calls)
        figures['rss_after'] = rss_mib(agent.pid)
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


def spread(s, unit, digits, p95=True):
    hung = f'{s["hung"]} hung (killed after {HUNG_AFTER} s)'
    if s['hung'] == s['n']:
        return hung
    p95 = f', p95 {s["p95"]:.{digits}f}' if p95 else ''
    return (f'median {s["median"]:.{digits}f} {unit}{p95}, '
            f'max {s["max"]:.{digits}f}' + (', ' + hung if s['hung'] else ''))


def report(figures, args):
    rows = []

    def row(label, value, target='', ok=None):
        verdict = '' if ok is None else ('PASS' if ok else 'MISS')
        rows.append((label, value, target, verdict))

    for topic, s in figures['rpc'].items():
        row(f'get_service_status on {topic} (x{s["n"]})',
            spread(s, 'ms', 2), 'median < 10 ms', s['median'] < 10)
        row('', f'{s["calls_per_s"]:.0f} calls/s (sequential)')
    for op, s in figures['ops'].items():
        row(f'{op} (x{s["n"]})', spread(s, 'ms', 2), 'median < 50 ms',
            s['median'] < 50)
    for key, label, limit in (
            ('idle_exit', f'idle {args.idle:g} s, SIGTERM -> exit', 2),
            ('busy_lag', 'busy: last reply -> exit', 1),
            ('busy_exit', 'busy: SIGTERM -> exit', None)):
        s = figures[key]
        row(f'{label} (x{s["n"]})', spread(s, 's', 3, p95=False),
            f'max < {limit} s' if limit else '',
            limit and not s['hung'] and s['max'] < limit)
    busy = figures['busy']
    row('', f'answered {busy["answered"]} of {BURST} per run, '
        f'{busy["after_sigterm"]} after SIGTERM')
    for key, label in (('rss_start', 'RSS after start'),
                       ('rss_after', 'RSS after workload')):
        row(label, f'{figures[key]:.1f} MiB', '< 150 MiB',
            figures[key] < 150)
    row(f'start -> READY=1 (x{figures["ready"]["n"]})',
        spread(figures['ready'], 's', 2, p95=False))
    row('private RabbitMQ start', f'{figures["broker_start_s"]:.1f} s')
    row('1-min load average', f'{figures["loadavg_before"]:.2f} before, '
        f'{figures["loadavg_after"]:.2f} after')

    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for label, value, target, verdict in rows:
        print(f'{label:<{widths[0]}}  {value:<{widths[1]}}  '
              f'{target:<{widths[2]}}  {verdict}'.rstrip())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--calls', type=int, default=200,
                        help='RPC calls per topic, and lifecycle cycles')
    parser.add_argument('--repeat', type=int, default=3,
                        help='agent starts per drain measurement')
    parser.add_argument('--idle', type=float, default=8.0,
                        help='seconds idle before the idle SIGTERM')
    parser.add_argument('--json', metavar='PATH',
                        help='also write the raw figures here')
    args = parser.parse_args()
    figures = run(args)
    report(figures, args)
    if args.json:
        with open(args.json, 'w') as out:
            json.dump(figures, out, indent=2)
    if figures['hung']:
        sys.exit(f'{figures["hung"]} agent(s) still running {HUNG_AFTER} s '
                 f'after SIGTERM were killed: the drain hung')


if __name__ == '__main__':
    main()
