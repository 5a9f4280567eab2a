"""Exceptions that cross RPC.

The class name is the ``exc_type`` a client sees in ``RemoteError``, so the
names are part of the wire contract. Every message says what was wrong and,
where it helps, what to do instead.
"""


class ComputeAgentError(Exception):
    msg_fmt = 'An unknown error occurred.'

    def __init__(self, message=None, **kwargs):
        self.kwargs = kwargs
        if message is None:
            message = self.msg_fmt % kwargs
        super().__init__(message)

    @property
    def message(self):
        return self.args[0]


class InstanceNotFound(ComputeAgentError):
    msg_fmt = 'Instance %(instance_uuid)s is not known on host %(host)s.'


class InstanceInvalidState(ComputeAgentError):
    msg_fmt = ('Cannot %(action)s instance %(instance_uuid)s while it is '
               '%(state)s; allowed when %(allowed)s.')


class InvalidInput(ComputeAgentError):
    msg_fmt = 'Invalid input: %(reason)s'


class MigrationError(ComputeAgentError):
    msg_fmt = 'Migration failed: %(reason)s'


class HypervisorError(ComputeAgentError):
    """libvirt refused or failed an operation the request needed."""

    msg_fmt = ('The hypervisor failed to %(action)s instance '
               '%(instance_uuid)s: %(reason)s')


# Raised on purpose to callers; oslo.messaging logs them at debug level
# instead of as tracebacks.
EXPECTED = (InstanceNotFound, InstanceInvalidState, InvalidInput,
            MigrationError, HypervisorError)
