"""The mark of an RPC method: only marked methods are reachable on the bus.

The endpoints mark their versioned methods with ``remotable``; the RPC
layer (compute_agent.rpc) asks ``is_remotable`` before it dispatches.
"""

import functools
import inspect

import oslo_messaging

from compute_agent import exception

_MARK = 'compute_agent_remotable'
_declare_expected = oslo_messaging.expected_exceptions(*exception.EXPECTED)


def mark(method):
    """Let the RPC servers dispatch method, as it is."""
    setattr(method, _MARK, True)
    return method


def is_remotable(method):
    return getattr(method, _MARK, False) is True


def remotable(method):
    """Mark an RPC method: arguments that do not fit its signature are
    refused with InvalidInput (not a TypeError traceback), and the
    contract's exceptions are declared so they are not logged as
    errors."""
    signature = inspect.signature(method)

    # No named parameters: a request may carry arguments named self or
    # ctxt, and those must reach signature.bind (which refuses them) rather
    # than clash with the wrapper's own parameters in a TypeError.
    @functools.wraps(method)
    def checked(*args, **kwargs):
        try:
            signature.bind(*args, **kwargs)
        except TypeError as error:
            raise exception.InvalidInput(
                reason=f'{method.__name__}: {error}') from None
        return method(*args, **kwargs)
    return mark(_declare_expected(checked))
