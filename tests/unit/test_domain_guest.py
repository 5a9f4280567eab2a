"""A libvirt domain as the power-off algorithm sees it: which libvirt
errors mean the guest agent cannot take a shutdown request."""

import libvirt

from compute_agent.virt.libvirt import domain_guest
from compute_agent.virt import power
from tests.unit import base


def libvirt_error(code, message):
    error = libvirt.libvirtError(message)
    error.err = (code, 0, message, 2, None, None, None, -1, -1)
    return error


class FakeConnection:
    def isAlive(self):
        return True


class FakeDomain:
    """Refuses a shutdown through the guest agent with shutdown_error."""

    def __init__(self, shutdown_error):
        self.shutdown_error = shutdown_error
        self.flags = []

    def connect(self):
        return FakeConnection()

    def shutdownFlags(self, flags):
        self.flags.append(flags)
        if flags == libvirt.VIR_DOMAIN_SHUTDOWN_GUEST_AGENT:
            raise self.shutdown_error


class RequestShutdownTest(base.TestCase):
    def test_agent_not_connected_is_unavailable_with_code_and_message(self):
        # What libvirt says before qemu-ga in the guest has opened its
        # channel (seen on a real guest).
        domain = FakeDomain(libvirt_error(
            libvirt.VIR_ERR_AGENT_UNRESPONSIVE,
            'Guest agent is not responding: QEMU guest agent is not '
            'connected'))
        guest = domain_guest.DomainGuest('uuid-1', domain, True)
        error = self.assertRaises(power.GuestAgentUnavailable,
                                  guest.request_shutdown, power.GUEST_AGENT)
        self.assertEqual(
            'libvirt error 86: Guest agent is not responding: QEMU guest '
            'agent is not connected', str(error))
        self.assertEqual('uuid-1', guest.name)

    def test_other_errors_are_not_a_reason_to_fall_back(self):
        domain = FakeDomain(libvirt_error(libvirt.VIR_ERR_INTERNAL_ERROR,
                                          'internal error'))
        guest = domain_guest.DomainGuest('uuid-1', domain, True)
        self.assertRaises(libvirt.libvirtError,
                          guest.request_shutdown, power.GUEST_AGENT)

    def test_acpi_request_uses_the_power_button(self):
        domain = FakeDomain(None)
        guest = domain_guest.DomainGuest('uuid-1', domain, True)
        self.assertTrue(guest.request_shutdown(power.ACPI))
        self.assertEqual([libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN],
                         domain.flags)
