"""Calls from this agent to another one during a migration.

A peer's failure reaches the operator as one MigrationError naming the
peer, the step and what went wrong there, whatever form the failure took
on the bus.
"""

import contextlib

import oslo_messaging

from compute_agent import exception


@contextlib.contextmanager
def calling(host, step):
    """Translate what can go wrong asking host to do step."""
    try:
        yield
    except oslo_messaging.RemoteError as error:
        raise exception.MigrationError(
            reason=f'host {host} could not {step}: {error.exc_type}: '
                   f'{error.value}') from None
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
            reason=f'host {host} runs an agent too old to {step} '
                   f'({error})') from None
    except exception.ComputeAgentError:
        raise
    except oslo_messaging.MessagingException as error:
        raise exception.MigrationError(
            reason=f'could not reach host {host} to {step}: '
                   f'{error}') from None
