"""A libvirt domain as the power-off algorithm sees it (power.Guest)."""

import libvirt

from compute_agent.virt.libvirt import power

# libvirt errors that, for a power-off, mean the goal is reached already.
_ALREADY_OFF_ERRORS = frozenset([libvirt.VIR_ERR_OPERATION_INVALID,
                                 libvirt.VIR_ERR_NO_DOMAIN])


class DomainGuest(power.Guest):
    """Adapts a libvirt domain to the power-off algorithm."""

    def __init__(self, domain, test_driver):
        self._domain = domain
        self._test_driver = test_driver

    def is_off(self):
        try:
            state = self._domain.info()[0]
        except libvirt.libvirtError as error:
            if error.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return True
            raise
        return state in (libvirt.VIR_DOMAIN_SHUTOFF,
                         libvirt.VIR_DOMAIN_CRASHED)

    def request_shutdown(self, method):
        if self._test_driver:
            # The test driver takes no shutdown method flags.
            return unless_already_off(self._domain.shutdown)
        if method == power.GUEST_AGENT:
            try:
                return unless_already_off(lambda: self._domain.shutdownFlags(
                    libvirt.VIR_DOMAIN_SHUTDOWN_GUEST_AGENT))
            except libvirt.libvirtError as error:
                if error.get_error_code() in _AGENT_UNAVAILABLE_ERRORS:
                    raise power.GuestAgentUnavailable(
                        error.get_error_message())
                raise
        return unless_already_off(lambda: self._domain.shutdownFlags(
            libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN))

    def destroy(self):
        return unless_already_off(self._domain.destroy)


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
