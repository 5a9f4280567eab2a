"""What differs between the two kinds of libvirt host the agent drives.

A QEMU/KVM host runs real guests: they boot from files on this host (a
kernel and initramfs, or a disk of which the guest owns an overlay), log
their serial console to a file, are asked to power off by the ACPI button
or their guest agent, and libvirt moves them live to another host.
libvirt's test driver (test:///default, used by the functional tests and
the quick start) keeps domains in libvirtd's memory: they have no devices
(no disk, console, ACPI or guest agent) and read no file, a shutdown
request takes no method, and they cannot migrate (migration.py emulates
the transfer).

The driver picks the kind once, when it connects (for_connection()), and
hands it to the steps that differ; nothing else asks which libvirt driver
it runs on. A kind says what its guests can do (guest_files,
shutdown_methods, live_migration) and builds their definitions
(check_image(), new_definition(), definition(), rescue_definition()).
"""

import os

from compute_agent import exception
from compute_agent.virt import driver
from compute_agent.virt.libvirt import config
from compute_agent.virt.libvirt import images


def for_connection(connection, virt_type, paths):
    """The kind of host that connection reaches.

    :param virt_type: 'qemu' or 'kvm', for a QEMU/KVM host.
    :param paths: the InstancePaths of this host.
    """
    if connection.getType().lower() == 'test':
        return TestDriver()
    return Qemu(virt_type, paths)


def _rescue_image_id(rescue_image):
    return str(rescue_image.get('id', ''))


class Qemu:
    """QEMU/KVM guests."""

    # Guests boot from files on this host and keep files of their own in
    # their instance directory (a disk overlay, the console log).
    guest_files = True
    # A shutdown request names its method: the ACPI button or the guest
    # agent.
    shutdown_methods = True
    # libvirt moves a running guest to another host.
    live_migration = True

    def __init__(self, virt_type, paths):
        self._virt_type = virt_type
        self._paths = paths

    def check_image(self, image):
        # Build and rescue images alike: everything that can be known
        # about booting one is checked here, before a guest is changed.
        label = f'image {image.get("id")!r}'
        if 'kernel' not in image and 'disk' not in image:
            raise exception.InvalidInput(
                reason=f'{label}: a QEMU guest needs kernel and ramdisk, '
                       f'or disk')
        for key in ('kernel', 'ramdisk', 'disk'):
            if key not in image:
                continue
            # libvirtd opens the kernel and initramfs itself, from a
            # working directory other than the agent's.
            if not os.path.isabs(image[key]):
                raise exception.InvalidInput(
                    reason=f'{label}: {key} {image[key]!r} must be an '
                           f'absolute path')
            if not os.path.isfile(image[key]):
                raise exception.InvalidInput(
                    reason=f'{label}: {key} {image[key]!r} is not a file '
                           f'on this host')

    def new_definition(self, instance_uuid, name, vcpus, memory_mb, image):
        """A new guest's definition, with a new overlay of the image's
        disk when it has one."""
        disk = None
        if 'disk' in image:
            disk = self._paths.own_disk_path(instance_uuid)
            os.makedirs(self._paths.instance_path(instance_uuid),
                        exist_ok=True)
            images.create_overlay(image['disk'], disk)
        return self.definition(instance_uuid, name, vcpus, memory_mb, image,
                               disk)

    def definition(self, instance_uuid, name, vcpus, memory_mb, image, disk):
        """The guest's definition with disk (a path, or None) as its
        own disk."""
        os.makedirs(self._paths.instance_path(instance_uuid), exist_ok=True)
        return self._xml(instance_uuid, name, vcpus, memory_mb, image, disk)

    def rescue_definition(self, instance_uuid, name, vcpus, memory_mb,
                          rescue_image, original_xml, files):
        """The definition that boots rescue_image (from a new overlay of
        its disk, files.rescue_disk, when it has one), with the own disk
        of original_xml, the guest's own definition, as its second
        disk."""
        boot_disk = None
        if 'disk' in rescue_image:
            boot_disk = files.rescue_disk
            images.create_overlay(rescue_image['disk'], boot_disk)
        own_disk = self._paths.own_disk(instance_uuid, original_xml)
        return self._xml(
            instance_uuid, name, vcpus, memory_mb, rescue_image, boot_disk,
            extra_disks=[('vdb', own_disk)] if own_disk else (),
            rescue_image_id=_rescue_image_id(rescue_image))

    def _xml(self, instance_uuid, name, vcpus, memory_mb, boot_image, disk,
             **options):
        return config.qemu_domain_xml(
            instance_uuid, name, vcpus, memory_mb, self._virt_type,
            console_log=self._paths.console_log_path(instance_uuid),
            kernel=boot_image.get('kernel'),
            ramdisk=boot_image.get('ramdisk'),
            cmdline=boot_image.get('cmdline'), disk=disk,
            guest_agent=driver.wants_guest_agent(
                boot_image.get('properties')),
            **options)


class TestDriver:
    """Domains of libvirt's test driver: no devices, no files."""

    guest_files = False
    shutdown_methods = False
    live_migration = False

    def check_image(self, image):
        """Any image boots: a test domain reads no file."""

    def new_definition(self, instance_uuid, name, vcpus, memory_mb, image):
        return config.test_domain_xml(instance_uuid, name, vcpus, memory_mb)

    def definition(self, instance_uuid, name, vcpus, memory_mb, image, disk):
        return config.test_domain_xml(instance_uuid, name, vcpus, memory_mb)

    def rescue_definition(self, instance_uuid, name, vcpus, memory_mb,
                          rescue_image, original_xml, files):
        return config.test_domain_xml(
            instance_uuid, name, vcpus, memory_mb,
            rescue_image_id=_rescue_image_id(rescue_image))
