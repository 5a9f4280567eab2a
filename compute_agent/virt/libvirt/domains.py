"""What every step on one of the agent's domains needs: finding it or
failing, requiring it off, its power state in the wire contract's words,
and the HypervisorError of a step that libvirt or the filesystem failed."""

import libvirt

from compute_agent import exception
from compute_agent.virt import driver

_POWER_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: driver.NOSTATE,
    libvirt.VIR_DOMAIN_RUNNING: driver.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: driver.RUNNING,
    libvirt.VIR_DOMAIN_PAUSED: driver.PAUSED,
    # Shutting down: still running until the guest finishes.
    libvirt.VIR_DOMAIN_SHUTDOWN: driver.RUNNING,
    libvirt.VIR_DOMAIN_SHUTOFF: driver.SHUTDOWN,
    libvirt.VIR_DOMAIN_CRASHED: driver.CRASHED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: driver.PAUSED,
}


def power_state(libvirt_state):
    """The wire contract's word for a libvirt domain state."""
    return _POWER_STATES.get(libvirt_state, driver.NOSTATE)


def hypervisor_error(action, instance_uuid, error):
    """What libvirt, qemu-img or the filesystem raised, as the
    HypervisorError of action on the guest."""
    return exception.HypervisorError(
        action=action, instance_uuid=instance_uuid,
        reason=error.get_error_message() if isinstance(
            error, libvirt.libvirtError) else str(error))


def lookup_or_fail(host, action, instance_uuid):
    """The guest's domain on host; HypervisorError when it is not
    defined there or libvirt cannot be asked."""
    try:
        domain = host.lookup(instance_uuid)
    except libvirt.libvirtError as error:
        raise hypervisor_error(action, instance_uuid, error)
    if domain is None:
        raise exception.HypervisorError(
            action=action, instance_uuid=instance_uuid,
            reason='no such domain on this host')
    return domain


def require_off(domain, action, instance_uuid):
    """HypervisorError unless the guest is shut off."""
    # Not even a crashed guest whose QEMU is kept: it holds the disks.
    state = domain.info()[0]
    if state != libvirt.VIR_DOMAIN_SHUTOFF:
        raise exception.HypervisorError(
            action=action, instance_uuid=instance_uuid,
            reason=f'the guest is {_POWER_STATES.get(state, state)}; '
                   f'power it off first')
