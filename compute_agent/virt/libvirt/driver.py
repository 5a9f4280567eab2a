"""The libvirt implementation of the compute driver."""

import json
import logging
import os
import shutil
import subprocess

import libvirt

from compute_agent import exception
from compute_agent.virt import driver
from compute_agent.virt.libvirt import config
from compute_agent.virt.libvirt import host as libvirt_host
from compute_agent.virt.libvirt import power

LOG = logging.getLogger(__name__)

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

# libvirt errors that, for a power-off, mean the goal is reached already.
_ALREADY_OFF_ERRORS = frozenset([libvirt.VIR_ERR_OPERATION_INVALID,
                                 libvirt.VIR_ERR_NO_DOMAIN])


class _DomainGuest(power.Guest):
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
            return _unless_already_off(self._domain.shutdown)
        if method == power.GUEST_AGENT:
            try:
                return _unless_already_off(lambda: self._domain.shutdownFlags(
                    libvirt.VIR_DOMAIN_SHUTDOWN_GUEST_AGENT))
            except libvirt.libvirtError as error:
                if error.get_error_code() in _AGENT_UNAVAILABLE_ERRORS:
                    raise power.GuestAgentUnavailable(
                        error.get_error_message())
                raise
        return _unless_already_off(lambda: self._domain.shutdownFlags(
            libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN))

    def destroy(self):
        return _unless_already_off(self._domain.destroy)


# libvirt errors that mean the guest agent cannot take a request now.
_AGENT_UNAVAILABLE_ERRORS = frozenset([
    libvirt.VIR_ERR_AGENT_UNRESPONSIVE,
    libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED,
    libvirt.VIR_ERR_OPERATION_UNSUPPORTED,
    libvirt.VIR_ERR_AGENT_UNSYNCED,
])


def _unless_already_off(operation):
    """Run operation; False when libvirt says the guest is off or gone."""
    try:
        operation()
    except libvirt.libvirtError as error:
        if error.get_error_code() in _ALREADY_OFF_ERRORS:
            return False
        raise
    return True


class LibvirtDriver(driver.ComputeDriver):
    def __init__(self, connection_uri, virt_type, state_path):
        self._host = libvirt_host.Host(connection_uri)
        self._virt_type = virt_type
        self._instances_path = os.path.join(state_path, 'instances')
        self._is_test_driver = False

    def init_host(self, host):
        connection = self._host.connect()
        self._is_test_driver = connection.getType().lower() == 'test'
        os.makedirs(self._instances_path, exist_ok=True)

    def _instance_dir(self, instance_uuid):
        return os.path.join(self._instances_path, instance_uuid)

    def console_log_path(self, instance_uuid):
        return os.path.join(self._instance_dir(instance_uuid), 'console.log')

    def _lookup(self, instance_uuid):
        try:
            return self._host.connection.lookupByUUIDString(instance_uuid)
        except libvirt.libvirtError as error:
            if error.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise

    def _fail(self, action, instance_uuid, error):
        return exception.HypervisorError(
            action=action, instance_uuid=instance_uuid,
            reason=error.get_error_message() if isinstance(
                error, libvirt.libvirtError) else str(error))

    def spawn(self, instance_uuid, name, vcpus, memory_mb, image):
        try:
            xml = self._domain_xml(instance_uuid, name, vcpus, memory_mb,
                                   image)
            domain = self._host.connection.defineXML(xml)
            domain.create()
        except (libvirt.libvirtError, OSError,
                subprocess.CalledProcessError) as error:
            self._cleanup_after_failed_spawn(instance_uuid)
            raise self._fail('spawn', instance_uuid, error)

    def check_image(self, image):
        if self._is_test_driver:
            return
        if 'kernel' not in image and 'disk' not in image:
            raise exception.InvalidInput(
                reason='a QEMU guest needs instance.image.kernel and '
                       'ramdisk, or instance.image.disk')
        for key in ('kernel', 'ramdisk', 'disk'):
            if key in image and not os.path.isfile(image[key]):
                raise exception.InvalidInput(
                    reason=f'instance.image.{key} {image[key]!r} is not a '
                           f'file on host')

    def _domain_xml(self, instance_uuid, name, vcpus, memory_mb, image):
        if self._is_test_driver:
            return config.test_domain_xml(instance_uuid, name, vcpus,
                                          memory_mb)
        instance_dir = self._instance_dir(instance_uuid)
        os.makedirs(instance_dir, exist_ok=True)
        disk = None
        if 'disk' in image:
            disk = os.path.join(instance_dir, 'disk.qcow2')
            _create_overlay(image['disk'], disk)
        return config.qemu_domain_xml(
            instance_uuid, name, vcpus, memory_mb, self._virt_type,
            console_log=self.console_log_path(instance_uuid),
            kernel=image.get('kernel'), ramdisk=image.get('ramdisk'),
            cmdline=image.get('cmdline'), disk=disk,
            guest_agent=driver.wants_guest_agent(image.get('properties')))

    def _cleanup_after_failed_spawn(self, instance_uuid):
        try:
            self.delete(instance_uuid)
        except exception.HypervisorError:
            LOG.exception('Could not clean up instance %s after its build '
                          'failed', instance_uuid)

    def power_on(self, instance_uuid):
        domain = self._lookup_or_fail('power on', instance_uuid)
        try:
            domain.create()
        except libvirt.libvirtError as error:
            raise self._fail('power on', instance_uuid, error)

    def _lookup_or_fail(self, action, instance_uuid):
        try:
            domain = self._lookup(instance_uuid)
        except libvirt.libvirtError as error:
            raise self._fail(action, instance_uuid, error)
        if domain is None:
            raise exception.HypervisorError(
                action=action, instance_uuid=instance_uuid,
                reason='no such domain on this host')
        return domain

    def power_off(self, instance_uuid, clean, timeout, retry_interval,
                  control=None, use_guest_agent=False):
        control = control or power.PowerOffControl()
        domain = self._lookup(instance_uuid)
        if domain is None:
            return driver.PowerOffResult(
                requested='clean' if clean else 'forced', result='clean',
                method='already-off', seconds=0.0, timeout=timeout)
        self._host.watch_power_off(instance_uuid, control)
        try:
            return power.power_off(
                _DomainGuest(domain, self._is_test_driver), control, clean,
                timeout, retry_interval, use_guest_agent=use_guest_agent)
        except libvirt.libvirtError as error:
            raise self._fail('power off', instance_uuid, error)
        finally:
            self._host.unwatch_power_off(instance_uuid, control)

    def delete(self, instance_uuid):
        try:
            domain = self._lookup(instance_uuid)
            if domain is not None:
                _unless_already_off(domain.destroy)
                _unless_already_off(lambda: domain.undefineFlags(
                    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
                    libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA))
        except libvirt.libvirtError as error:
            raise self._fail('delete', instance_uuid, error)
        shutil.rmtree(self._instance_dir(instance_uuid), ignore_errors=True)

    def get_power_state(self, instance_uuid):
        try:
            domain = self._lookup(instance_uuid)
            if domain is None:
                return driver.NOSTATE
            return _POWER_STATES.get(domain.info()[0], driver.NOSTATE)
        except libvirt.libvirtError as error:
            raise self._fail('read the power state of', instance_uuid,
                             error)


def _create_overlay(base, overlay):
    """A per-instance qcow2 overlay, so guests never write the base."""
    base_format = _image_format(base)
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2',
                    '-F', base_format, '-b', os.path.abspath(base), overlay],
                   check=True, capture_output=True)


def _image_format(path):
    result = subprocess.run(['qemu-img', 'info', '--output=json', path],
                            check=True, capture_output=True, text=True)
    return json.loads(result.stdout)['format']
