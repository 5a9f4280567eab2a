"""Power-off detection against the 1 s poller, and the mass power-off.

Lags run from the STOPPED event the bench sees on its own connection
(lifecycle.StoppedEvents): to the agent's reply to the clean stop, and to
the poller's read that saw the guest off. Each round, the poller starts
polling as the stop request is sent, so both watch the same power-off.
"""

import concurrent.futures
import statistics

from tools.bench.baselines import bench_host
from tools.bench.baselines import poller


def detection_rounds(host, rounds):
    """rounds clean stops of one guest, each watched by the poller too.

    Returns the guest's uuid (left stopped) and a dict per round:
    agent_lag, poller_lag, stop (request to reply), off (request to
    STOPPED) in seconds, the
    poller's reads and the agent's detected_by.
    """
    instance_uuid = host.boot()
    results = []
    for number in range(rounds):
        if number:
            host.start(instance_uuid)
        host.wait_ready(instance_uuid)
        watcher = poller.PollerThread(host.hypervisor.uri, instance_uuid,
                                      bench_host.STOP_TIMEOUT)
        watcher.start()
        requested, replied, record = host.stop(instance_uuid)
        noticed = watcher.join()
        stopped = host.events.wait(instance_uuid, requested,
                                   bench_host.STOP_TIMEOUT)
        results.append({'agent_lag': replied - stopped,
                        'poller_lag': noticed - stopped,
                        'stop': replied - requested,
                        'off': stopped - requested,
                        'poller_reads': watcher.reads,
                        'detected_by': record.get('detected_by'),
                        'result': record['result']})
    return instance_uuid, results


def _ready_guests(host, count):
    """Boot count guests at once; those READY within the boot timeout
    (the others are destroyed by the libvirtd fixture at the end)."""
    uuids = [host.boot() for _ in range(count)]
    ready = []
    for instance_uuid in uuids:
        try:
            host.wait_ready(instance_uuid)
        except AssertionError:
            continue
        ready.append(instance_uuid)
    return ready


def mass_rounds(host, count, rounds):
    """count guests stopped by count concurrent clean stops, rounds times.

    Returns the number of guests that booted (the N measured, at most
    count) and a dict per round, in seconds: all (first request to last
    reply), all_off (first request to last STOPPED: the guests' part),
    worst_lag and median_lag (of the STOPPED-to-reply lags), and how
    many were forced.
    """
    guests = _ready_guests(host, count)
    results = []
    with concurrent.futures.ThreadPoolExecutor(max(len(guests), 1)) as pool:
        # Each thread's first call opens connections: not in the figure.
        list(pool.map(lambda _: host.agent_rpc.call('get_service_status'),
                      guests))
        for number in range(rounds):
            if number:
                for instance_uuid in guests:
                    host.start(instance_uuid)
                for instance_uuid in guests:
                    host.wait_ready(instance_uuid)
            stops = list(pool.map(host.stop, guests))
            stopped = [host.events.wait(instance_uuid, requested,
                                        bench_host.STOP_TIMEOUT)
                       for instance_uuid, (requested, _, _)
                       in zip(guests, stops)]
            lags = [replied - off
                    for (_, replied, _), off in zip(stops, stopped)]
            first_request = min(requested for requested, _, _ in stops)
            results.append({
                'all': max(replied for _, replied, _ in stops)
                - first_request,
                'all_off': max(stopped) - first_request,
                'worst_lag': max(lags),
                'median_lag': statistics.median(lags),
                'forced': sum(record['result'] != 'clean'
                              for _, _, record in stops)})
    return len(guests), results
