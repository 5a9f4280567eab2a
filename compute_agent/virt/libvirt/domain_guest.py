"""A libvirt domain as the power-off algorithm sees it (power.Guest)."""

import libvirt

from compute_agent.virt import power

# libvirt errors that, for a power-off, mean the goal is reached already.
_ALREADY_OFF_ERRORS = frozenset([libvirt.VIR_ERR_OPERATION_INVALID,
                                 libvirt.VIR_ERR_NO_DOMAIN])


class DomainGuest(power.Guest):
    """Adapts a libvirt domain to the power-off algorithm.

    A domain object dies with its connection. When libvirtd restarts
    under a power-off, the guest is found again through find_domain()
    (on the host's new connection); while there is none, the guest is
    unreachable (power.GuestUnreachable).

    :param name: the instance's uuid, for log lines.
    :param shutdown_methods: whether a shutdown request can name its
        method (hypervisor.py); libvirt's test driver takes none.
    """

    def __init__(self, name, domain, shutdown_methods, find_domain=None):
        self.name = name
        self._domain = domain
        self._shutdown_methods = shutdown_methods
        self._find_domain = find_domain

    def _call(self, operation):
        """operation(domain), on a live connection."""
        if self._find_domain is not None and \
                not _alive(self._domain.connect()):
            try:
                self._domain = self._find_domain()
            except libvirt.libvirtError as error:
                if error.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    raise
                raise power.GuestUnreachable(
                    error.get_error_message()) from error
        try:
            return operation(self._domain)
        except libvirt.libvirtError as error:
            if _alive(self._domain.connect()):
                raise
            raise power.GuestUnreachable(
                error.get_error_message()) from error

    def is_off(self):
        try:
            state = self._call(lambda domain: domain.info())[0]
        except libvirt.libvirtError as error:
            if error.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return True
            raise
        return state in (libvirt.VIR_DOMAIN_SHUTOFF,
                         libvirt.VIR_DOMAIN_CRASHED)

    def request_shutdown(self, method):
        if not self._shutdown_methods:
            return unless_already_off(
                lambda: self._call(lambda domain: domain.shutdown()))
        if method == power.GUEST_AGENT:
            try:
                return unless_already_off(lambda: self._call(
                    lambda domain: domain.shutdownFlags(
                        libvirt.VIR_DOMAIN_SHUTDOWN_GUEST_AGENT)))
            except libvirt.libvirtError as error:
                code = error.get_error_code()
                if code in _AGENT_UNAVAILABLE_ERRORS:
                    raise power.GuestAgentUnavailable(
                        f'libvirt error {code}: '
                        f'{error.get_error_message()}') from error
                raise
        return unless_already_off(lambda: self._call(
            lambda domain: domain.shutdownFlags(
                libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)))

    def destroy(self):
        return unless_already_off(
            lambda: self._call(lambda domain: domain.destroy()))


def _alive(connection):
    try:
        return connection.isAlive()
    except libvirt.libvirtError:
        return False   # closed already


# libvirt errors that mean the guest agent cannot take a request now.
_AGENT_UNAVAILABLE_ERRORS = frozenset([
    libvirt.VIR_ERR_AGENT_UNRESPONSIVE,
    libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED,
    libvirt.VIR_ERR_OPERATION_UNSUPPORTED,
    libvirt.VIR_ERR_AGENT_UNSYNCED,
])


def unless_already_off(operation):
    """Run operation; False when libvirt says the guest is off or gone."""
    try:
        operation()
    except libvirt.libvirtError as error:
        if error.get_error_code() in _ALREADY_OFF_ERRORS:
            return False
        raise
    return True
