"""Domain XML for the agent's guests.

Guests are named ``instance-<uuid>`` and carry the instance uuid as their
libvirt uuid, so either finds them with virsh. Built with ElementTree so
that names and paths from requests are escaped.
"""

from xml.etree import ElementTree as ET

METADATA_NS = 'https://compute-agent.invalid/xmlns/instance/1'
_INSTANCE = f'{{{METADATA_NS}}}instance'
# Marks a rescue definition (<agent:rescue image="ID"/> inside the
# instance element), so that it is never mistaken for the guest's own.
_RESCUE = f'{{{METADATA_NS}}}rescue'
# Registered once for the whole process: XML that libvirt returns and the
# agent rewrites (relocated()) keeps the prefix instead of becoming ns0.
ET.register_namespace('agent', METADATA_NS)


def domain_name(instance_uuid):
    return f'instance-{instance_uuid}'


def _sub(parent, tag, text=None, **attrib):
    element = ET.SubElement(parent, tag, attrib)
    if text is not None:
        element.text = str(text)
    return element


def _common(domain_type, instance_uuid, name, vcpus, memory_mb,
            rescue_image_id):
    domain = ET.Element('domain', type=domain_type)
    _sub(domain, 'name', domain_name(instance_uuid))
    _sub(domain, 'uuid', instance_uuid)
    metadata = _sub(domain, 'metadata')
    instance = _sub(metadata, _INSTANCE, name=name)
    if rescue_image_id is not None:
        _sub(instance, _RESCUE, image=rescue_image_id)
    _sub(domain, 'memory', memory_mb, unit='MiB')
    _sub(domain, 'vcpu', vcpus)
    return domain


def test_domain_xml(instance_uuid, name, vcpus, memory_mb,
                    rescue_image_id=None):
    """A domain for libvirt's test driver: no devices to speak of."""
    domain = _common('test', instance_uuid, name, vcpus, memory_mb,
                     rescue_image_id)
    os_element = _sub(domain, 'os')
    _sub(os_element, 'type', 'hvm')
    return ET.tostring(domain, encoding='unicode')


GUEST_AGENT_CHANNEL = 'org.qemu.guest_agent.0'


def qemu_domain_xml(instance_uuid, name, vcpus, memory_mb, virt_type,
                    console_log, kernel=None, ramdisk=None, cmdline=None,
                    disk=None, guest_agent=False, extra_disks=(),
                    rescue_image_id=None):
    """A QEMU/KVM guest with ACPI, booting either a kernel+initramfs
    directly or from a qcow2 disk (vda), its serial console logged to a
    file, and with the QEMU guest agent's channel when guest_agent is true.

    :param extra_disks: (target device, qcow2 path) pairs attached after
        the boot disk, e.g. a rescued guest's own disk as 'vdb'.
    :param rescue_image_id: marks the definition as a rescue of the guest.
    """
    domain = _common(virt_type, instance_uuid, name, vcpus, memory_mb,
                     rescue_image_id)
    os_element = _sub(domain, 'os')
    _sub(os_element, 'type', 'hvm', arch='x86_64', machine='pc')
    if kernel:
        _sub(os_element, 'kernel', kernel)
        _sub(os_element, 'initrd', ramdisk)
        if cmdline:
            _sub(os_element, 'cmdline', cmdline)
    else:
        _sub(os_element, 'boot', dev='hd')
    features = _sub(domain, 'features')
    _sub(features, 'acpi')
    if virt_type == 'qemu':
        # Under TCG the host CPU cannot be passed through; a generic
        # model keeps the guest portable and migratable.
        cpu = _sub(domain, 'cpu', mode='custom', match='exact')
        _sub(cpu, 'model', 'qemu64', fallback='allow')
    else:
        _sub(domain, 'cpu', mode='host-model')
    _sub(domain, 'on_poweroff', 'destroy')
    _sub(domain, 'on_reboot', 'restart')
    _sub(domain, 'on_crash', 'destroy')
    devices = _sub(domain, 'devices')
    if disk:
        _qcow2_disk(devices, disk, 'vda')
    for target, path in extra_disks:
        _qcow2_disk(devices, path, target)
    serial = _sub(devices, 'serial', type='file')
    _sub(serial, 'source', path=console_log)
    _sub(serial, 'target', port='0')
    console = _sub(devices, 'console', type='file')
    _sub(console, 'source', path=console_log)
    _sub(console, 'target', type='serial', port='0')
    if guest_agent:
        # libvirt picks the socket path; the channel is what lets
        # shutdownFlags(GUEST_AGENT) reach the agent inside the guest.
        channel = _sub(devices, 'channel', type='unix')
        _sub(channel, 'target', type='virtio', name=GUEST_AGENT_CHANNEL)
    _sub(devices, 'memballoon', model='none')
    return ET.tostring(domain, encoding='unicode')


def _qcow2_disk(devices, path, target):
    disk = _sub(devices, 'disk', type='file', device='disk')
    _sub(disk, 'driver', name='qemu', type='qcow2')
    _sub(disk, 'source', file=path)
    _sub(disk, 'target', dev=target, bus='virtio')


def is_rescue_definition(xml):
    """Whether domain XML is a rescue definition written by the agent."""
    return ET.fromstring(xml).find(
        f'metadata/{_INSTANCE}/{_RESCUE}') is not None


def disk_files(xml):
    """The files behind the disks (not CD-ROMs) of domain XML."""
    return {source.get('file')
            for source in ET.fromstring(xml).iterfind(
                "devices/disk[@device='disk']/source[@file]")}


# The elements whose source attribute names a file of the guest's: its
# console log (serial and console point at the same file) and its disks.
_FILE_SOURCES = (('devices/serial/source', 'path'),
                 ('devices/console/source', 'path'),
                 ("devices/disk[@device='disk']/source", 'file'))


def guest_files(xml):
    """Every file path the serial, console and disk devices of domain
    XML name."""
    domain = ET.fromstring(xml)
    return {source.get(attribute)
            for path, attribute in _FILE_SOURCES
            for source in domain.iterfind(path)
            if source.get(attribute)}


def relocated(xml, moves):
    """Domain XML with the device files in moves (old path -> new path)
    renamed; everything else as it was."""
    domain = ET.fromstring(xml)
    for path, attribute in _FILE_SOURCES:
        for source in domain.iterfind(path):
            if source.get(attribute) in moves:
                source.set(attribute, moves[source.get(attribute)])
    return ET.tostring(domain, encoding='unicode')


def serial_console(xml):
    """How to reach the first serial device of live domain XML:
    {'type', 'path'} for a file, pty or unix socket, {'type', 'host',
    'port'} for TCP; None when the guest has no serial device."""
    serial = ET.fromstring(xml).find('devices/serial')
    if serial is None:
        return None
    kind = serial.get('type')
    source = serial.find('source')
    attributes = source.attrib if source is not None else {}
    if kind == 'tcp':
        port = attributes.get('service')
        return {'type': kind, 'host': attributes.get('host'),
                'port': int(port) if port and port.isdigit() else port}
    return {'type': kind, 'path': attributes.get('path')}
