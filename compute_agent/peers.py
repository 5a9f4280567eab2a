"""Calls from this agent to another one during a migration.

A peer's failure reaches the operator as one MigrationError naming the
peer, the step and what went wrong there, whatever form the failure took
on the bus.
"""

import contextlib

import oslo_messaging

from compute_agent import exception
from compute_agent import rpcapi


@contextlib.contextmanager
def calling(host, step):
    """Translate what can go wrong asking host to do step."""
    try:
        yield
    except oslo_messaging.RemoteError as error:
        raise exception.MigrationError(
            reason=f'host {host} could not {step}: '
                   f'{_remote_reason(error)}') from None
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
