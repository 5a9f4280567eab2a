"""The fleet run's table: a row per figure, a column per fleet size."""

import collections

PHASES = ('steady', 'restarts', 'after')


def error_types(requests):
    """{'operation: error type (phase)': count} of the calls that got no
    answer."""
    seen = collections.Counter(
        f'{r.operation}: {r.error_type or r.outcome} ({r.phase})'
        for r in requests
        if r.outcome != 'answered')
    return dict(sorted(seen.items()))


def error_samples(requests):
    """{'operation: error type': the first such call's message}."""
    samples = {}
    for r in requests:
        if r.error_message:
            samples.setdefault(f'{r.operation}: {r.error_type}',
                               r.error_message)
    return samples


def _ms(value):
    return '-' if value is None else f'{value:.0f}'


def _spread(figure, digits):
    if figure['median'] is None:
        return '-'
    return f'{figure["median"]:.{digits}f} / {figure["max"]:.{digits}f}'


def _latency(run, operation, phase):
    figure = run['latency_ms'].get(operation, {}).get(phase)
    if not figure:
        return '-'
    return f'{_ms(figure["p50"])} / {_ms(figure["p99"])} ({figure["n"]})'


def _upgrade_level(run):
    if run['upgrade_level'] != 'auto':
        return run['upgrade_level'] or 'unpinned'
    return f'auto, kept {run["auto_cache_s"]:.0f} s'


def rows(runs):
    yield 'agents', [str(r['agents']) for r in runs]
    yield '[upgrade_levels] compute', [_upgrade_level(r) for r in runs]
    yield 'each agent down in the restart, s', [
        f'{r["agent_down_s"]:.0f}' for r in runs]
    for key in ('sent', 'answered', 'failed', 'refused', 'timed_out',
                'broken', 'lost', 'executed_twice', 'set_aside'):
        yield key.replace('_', ' '), [str(r[key]) for r in runs]
    operations = sorted({op for r in runs for op in r['latency_ms']})
    for phase in PHASES:
        for operation in operations:
            yield (f'{operation}, {phase}: p50 / p99 ms (n)',
                   [_latency(r, operation, phase) for r in runs])
    yield 'drain SIGTERM -> exit: median / max s', [
        _spread(r['drain_s'], 2) for r in runs]
    yield 'agent RSS: median / max MiB', [
        _spread(r['agent_rss'], 0) for r in runs]
    yield 'broker RSS per node, MiB', [
        ' '.join(f'{v:.0f}' for v in r['broker_rss'].values())
        for r in runs]
    yield 'connections per node', [
        ' '.join(str(n) for n in r['connections'].values()) for r in runs]
    yield 'killed node held: connections / quorum leaders', [
        f'{r["killed_node"]["connections"]} / '
        f'{r["killed_node"]["quorum_leaders"]}' for r in runs]
    yield 'queues on the broker (by type)', [
        ', '.join(f'{n} {kind}' for kind, n in sorted(r['queues'].items()))
        for r in runs]
    for key, label in (('cluster_start_s', 'cluster start, s'),
                       ('agents_start_s', 'all agents ready, s'),
                       ('rolling_restart_s', 'rolling restart, s'),
                       ('node_down_s', 'broker node down, s'),
                       ('run_s', 'whole run, s')):
        yield label, [f'{r[key]:.0f}' for r in runs]
    yield '1-min load average before / after', [
        f'{r["loadavg_before"]:.1f} / {r["loadavg_after"]:.1f}'
        for r in runs]


def print_table(runs):
    table = list(rows(runs))
    widths = [max(len(label) for label, _ in table)] + [
        max(len(cells[i]) for _, cells in table) for i in range(len(runs))]
    for label, cells in table:
        print('  '.join(f'{cell:<{width}}' for cell, width
                        in zip([label, *cells], widths)).rstrip())
    for run in runs:
        if run['errors']:
            print(f'{run["agents"]} agents, calls not answered: ' + ', '.join(
                f'{what} x{n}' for what, n in run['errors'].items()))
        for what, message in run['error_samples'].items():
            print(f'  e.g. {what}: {message}')
        for request in run['lost_requests'] + run['twice_requests']:
            print(f'  {request}')
