"""host-stop-all: stop every running guest of a host, N at a time.

Each guest goes through the ordinary stop_instance call, so it gets the
agent's clean-then-forced power-off with its own image or configured
timeout (or the operator's --timeout), and its own request id.
"""

import concurrent.futures
import time

import oslo_messaging

from compute_agent import rpcapi
from compute_agent.cmd import client_format

DEFAULT_PARALLEL = 8


def running_guests(api, host, ctxt):
    """The host's instances that are up: the ones to stop."""
    return [record for record in api.list_instances(ctxt, host)
            if record['vm_state'] == 'active'
            and record['power_state'] == 'running']


def _error_text(error):
    if isinstance(error, oslo_messaging.RemoteError):
        return f'{error.exc_type}: {error.value}'
    if isinstance(error, oslo_messaging.MessagingTimeout):
        return 'no answer from the agent within the RPC timeout'
    return f'{type(error).__name__}: {error}'


def _stop_one(api, host, guest, clean, shutdown_timeout, rpc_timeout,
              progress, clock):
    ctxt = rpcapi.new_context()
    result = {'uuid': guest['uuid'], 'name': guest['name'],
              'request_id': ctxt['request_id'], 'record': None}
    if progress:
        progress.watch(ctxt['request_id'], guest['name'])
    started = clock()
    try:
        record = api.stop_instance(ctxt, host, guest['uuid'],
                                   clean_shutdown=clean,
                                   shutdown_timeout=shutdown_timeout,
                                   timeout=rpc_timeout)
    except oslo_messaging.MessagingException as error:
        # One guest's failure is reported with the others; it does not
        # stop the rest of the host.
        return dict(result, outcome='error', seconds=clock() - started,
                    detail=_error_text(error))
    finally:
        if progress:
            progress.forget(ctxt['request_id'])
    power_off = record['last_power_off']
    tried = progress.tried_method(ctxt['request_id']) if progress else None
    if power_off['method'] == 'already-off':
        outcome, detail = 'already-off', None
    else:
        outcome = power_off['result']
        detail = client_format.power_off_reason(power_off, tried)
    return dict(result, outcome=outcome, seconds=power_off['seconds'],
                detail=detail, record=record)


def stop_guests(api, host, guests, parallel=None, clean=True,
                shutdown_timeout=None, rpc_timeout=None, progress=None,
                report=None, clock=time.monotonic):
    """Stop guests, at most parallel (default min(8, count)) at a time.

    :param report: called with each guest's result as it finishes, on the
        calling thread.
    :returns: one result per guest, in the order of guests: {"uuid",
        "name", "request_id", "outcome" (clean, forced, already-off or
        error), "seconds" (of the power-off, or until the error), "detail"
        (why, or the error), "record" (the stopped record, or None)}.
    """
    if not guests:
        return []
    workers = parallel or min(DEFAULT_PARALLEL, len(guests))
    pool = concurrent.futures.ThreadPoolExecutor(
        max_workers=workers, thread_name_prefix='host-stop-all')
    try:
        futures = [pool.submit(_stop_one, api, host, guest, clean,
                               shutdown_timeout, rpc_timeout, progress,
                               clock)
                   for guest in guests]
        for future in concurrent.futures.as_completed(futures):
            if report:
                report(future.result())
    finally:
        # After Ctrl-C no further guest is asked to stop; the stops
        # already sent run to their end on the agent.
        pool.shutdown(wait=False, cancel_futures=True)
    return [future.result() for future in futures]
