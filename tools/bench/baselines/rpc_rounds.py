"""RPC throughput: the agent's get_service_status against the bare
server's, on the same broker, in interleaved rounds (agent, bare, agent,
bare, ...) so that the machine's load drifts over both alike."""

import concurrent.futures
import time

THREADS = 8


def _calls_per_second(client, calls, pool=None):
    started = time.perf_counter()
    if pool is None:
        for _ in range(calls):
            client.call('get_service_status')
    else:
        list(pool.map(lambda _: client.call('get_service_status'),
                      range(calls)))
    return calls / (time.perf_counter() - started)


def interleaved(clients, rounds, calls):
    """clients: {name: wire client}. Per name, the calls/s of each
    round, sequential ('sequential') and over THREADS client threads
    ('threads')."""
    figures = {name: {'sequential': [], 'threads': []} for name in clients}
    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        for client in clients.values():
            # Warm-up: every thread opens its connections outside the
            # figures.
            _calls_per_second(client, THREADS * 4, pool)
        for _ in range(rounds):
            for name, client in clients.items():
                figures[name]['sequential'].append(
                    _calls_per_second(client, calls))
                figures[name]['threads'].append(
                    _calls_per_second(client, calls, pool))
    return figures
