"""Calls from this agent to another one during a migration.

A peer's failure reaches the operator as one MigrationError naming the
peer, the step and what went wrong there, whatever form the failure took
on the bus.
"""

import contextlib
import threading

import oslo_messaging

from compute_agent import exception
from compute_agent import rpcapi

# How often a step waiting on another agent asks whether that agent still
# works on it, and how many answers in a row that it does not make the
# request lost. The request is taken off the broker before a status
# request sent after it, so one such answer means it was answered or
# lost; the second, an interval later with still no answer, that it was
# lost (the agent restarted since it took it).
WATCH_INTERVAL = 5.0
WATCH_MISSES = 2


class RequestLost(oslo_messaging.MessagingTimeout):
    """The other agent no longer has the request (its process died)."""


@contextlib.contextmanager
def calling(host, step):
    """Translate what can go wrong asking host to do step."""
    try:
        yield
    except oslo_messaging.RemoteError as error:
        raise exception.MigrationError(
            reason=f'host {host} could not {step}: '
                   f'{_remote_reason(error)}') from None
    except RequestLost:
        raise exception.MigrationError(
            reason=f'host {host} restarted before it answered (asked to '
                   f'{step}); its restart settles its part') from None
    except oslo_messaging.MessagingTimeout:
        raise exception.MigrationError(
            reason=f'host {host} did not answer in time to {step}; is its '
                   f'agent running?') from None
    except oslo_messaging.MessageUndeliverable:
        raise exception.MigrationError(
            reason=f'no agent named {host} listens on this message bus '
                   f'(asked to {step})') from None
    except oslo_messaging.RPCVersionCapError as error:
        raise exception.MigrationError(
            reason=f'host {host} cannot be asked to {step}: that needs RPC '
                   f'{error.version}, above the cap of {error.version_cap} '
                   f'for it ([upgrade_levels] compute on this host, or the '
                   f'version its agent runs)') from None
    except exception.ComputeAgentError:
        raise
    except oslo_messaging.MessagingException as error:
        raise exception.MigrationError(
            reason=f'could not reach host {host} to {step}: '
                   f'{error}') from None


def _remote_reason(error):
    """What the peer said, without repeating 'Migration failed' when its
    own failure came from a further peer."""
    prefix = exception.MigrationError.msg_fmt.split('%')[0]
    if error.exc_type == 'MigrationError' and \
            error.value.startswith(prefix):
        return error.value[len(prefix):]
    return f'{error.exc_type}: {error.value}'


def require_running(peers_api, ctxt, host, role):
    """A new migration starts only while the other end takes new work;
    its state is asked on compute-alt, which answers while it drains."""
    with calling(host, 'report its state'):
        status = peers_api.get_service_status(
            ctxt, host, alt=True, timeout=rpcapi.PEER_CHECK_TIMEOUT)
    if status.get('state') != 'running':
        raise exception.MigrationError(
            reason=f'{role} {host} is shutting down and takes no new '
                   f'migrations')


def call_watched(peers_api, ctxt, host, method, call,
                 interval=WATCH_INTERVAL):
    """call(), a request for method sent to host with ctxt, given up with
    RequestLost once host shows it no longer works on it: an agent
    killed mid-step never answers, and the reply timeout of a migration
    step is minutes. While host cannot be asked, call's own timeout
    stands."""
    done = threading.Event()
    outcome = {}

    def run():
        try:
            outcome['result'] = call()
        except Exception as error:
            outcome['error'] = error
        finally:
            done.set()
    threading.Thread(target=run, name=f'{method} at {host}',
                     daemon=True).start()
    misses = 0
    while not done.wait(interval):
        misses = 0 if _works_on(peers_api, ctxt, host, method, interval) \
            else misses + 1
        if misses >= WATCH_MISSES and not done.is_set():
            raise RequestLost(f'{host} no longer works on {method}')
    if 'error' in outcome:
        raise outcome['error']
    return outcome['result']


def _works_on(peers_api, ctxt, host, method, timeout):
    """Whether host has the request in flight; True when it cannot say."""
    try:
        status = peers_api.get_service_status(ctxt, host, alt=True,
                                              timeout=timeout)
    except oslo_messaging.MessagingException:
        return True
    request_id = (ctxt or {}).get('request_id')
    return any(operation['method'] == method and
               operation['request_id'] == request_id
               for operation in status.get('in_flight', ()))
