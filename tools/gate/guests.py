"""Real QEMU guests on the gate's hosts, and libvirt's view of them.

libvirt's view is taken with virsh against each host's private libvirtd,
as an operator would look, independently of the agent's own libvirt
connection.
"""

import subprocess
import uuid

from tests.realguest import libvirtd
from tools.gate.failure import expect
from tools.gate.failure import GateFailure

# virsh domstate's words for the power states the scenarios expect.
RUNNING = 'running'
SHUT_OFF = 'shut off'


def instance_spec(images, name, honours_acpi=True, with_disk=False,
                  properties=None, with_guest_agent=False):
    """A build_and_run_instance argument for the gate's small guest; with
    a guest agent, it ignores ACPI (libvirtd.guest_images())."""
    properties = dict(properties or {})
    if with_guest_agent:
        ramdisk = 'initramfs_guest_agent'
        properties['hw_qemu_guest_agent'] = 'yes'
    else:
        ramdisk = 'initramfs_acpi' if honours_acpi else 'initramfs_noacpi'
    image = {'id': 'gate-busybox', 'properties': properties,
             'kernel': images['kernel'], 'ramdisk': images[ramdisk],
             'cmdline': libvirtd.GUEST_CMDLINE}
    if with_disk:
        image['disk'] = images['disk']
    return {'uuid': str(uuid.uuid4()), 'name': name, 'vcpus': 1,
            'memory_mb': 128, 'image': image}


def wait_until_ready(host, instance_uuid, timeout=libvirtd.BOOT_TIMEOUT):
    """Wait for the guest's READY line on its serial console: from then on
    an ACPI power button press is not lost to a half-booted guest."""
    try:
        libvirtd.wait_until_guest_ready(host.console_log(instance_uuid),
                                        timeout)
    except AssertionError as error:
        raise GateFailure(f'guest {instance_uuid} on {host.name}: '
                          f'{error}') from None


def _virsh(host, *args):
    result = subprocess.run(['virsh', '-c', host.libvirtd.uri, *args],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise GateFailure(f'virsh {" ".join(args)} on {host.name} failed: '
                          f'{result.stderr.strip()}')
    return result.stdout.strip()


def domain_state(host, instance_uuid):
    """virsh domstate of the guest on host, or None when not defined."""
    if instance_uuid not in _virsh(host, 'list', '--all',
                                   '--uuid').split():
        return None
    return _virsh(host, 'domstate', instance_uuid)


def expect_domain_only_on(deployment, host, instance_uuid, state):
    """libvirt agrees with the agent's record: the domain is defined on
    host, in state, and on no other host."""
    seen = domain_state(host, instance_uuid)
    expect(seen == state, f'virsh on {host.name}: domain {instance_uuid} '
                          f'is {seen!r}, the record says {state!r}')
    for other in deployment.other_hosts(host):
        elsewhere = domain_state(other, instance_uuid)
        expect(elsewhere is None,
               f'virsh on {other.name}: domain {instance_uuid} is defined '
               f'there too ({elsewhere!r})')


def expect_record(record, host, vm_state, power_state):
    expect((record['host'], record['vm_state'], record['power_state'],
            record['task_state']) == (host.name, vm_state, power_state, None),
           f'record of {record["uuid"]}: host {record["host"]}, vm_state '
           f'{record["vm_state"]}, power_state {record["power_state"]}, '
           f'task_state {record["task_state"]}; expected {host.name}, '
           f'{vm_state}, {power_state}, no task')


def remove(deployment, host, instance_uuid):
    """Delete a guest the gate booted, through the agent (forced), and make
    sure libvirt has let go of it on every host."""
    try:
        host.rpc.call('terminate_instance', instance_uuid=instance_uuid,
                      clean_shutdown=False)
    finally:
        for each in deployment.hosts.values():
            if domain_state(each, instance_uuid) is not None:
                subprocess.run(['virsh', '-c', each.libvirtd.uri, 'destroy',
                                instance_uuid], capture_output=True)
                subprocess.run(['virsh', '-c', each.libvirtd.uri,
                                'undefine', instance_uuid],
                               capture_output=True)
