"""A libvirt connection and domains held in memory, standing in for a QEMU
host (getType() 'QEMU'), for the driver paths the test driver cannot take:
real live migration, disks and serial consoles.

Tests build a LibvirtDriver on it with ``qemu_driver()``, or two of them
(two hosts) with ``TwoQemuHostsTestCase``. A domain's
migrateToURI3 blocks until the test calls ``finish_migration()``, or until
abortJob(), so that a test acts while the transfer runs.
"""

import itertools
import os
import shutil
import tempfile
import threading
from unittest import mock
from xml.etree import ElementTree as ET

import libvirt

from compute_agent.virt.libvirt import config
from compute_agent.virt.libvirt import driver as libvirt_driver
from tests.unit import base

UUID = 'c0ffee00-0000-4000-8000-0000000000b1'
IMAGE = {'id': 'img', 'properties': {}, 'kernel': '/img/vmlinuz',
         'ramdisk': '/img/initrd', 'disk': '/img/base.qcow2'}


def libvirt_error(code, message):
    """A libvirtError as libvirt raises it, with a code and a message."""
    error = libvirt.libvirtError(message)
    error.err = (code, 0, message, 0, '', '', '', 0, 0)
    return error


class FakeDomain:
    def __init__(self, connection, instance_uuid, xml,
                 state=libvirt.VIR_DOMAIN_SHUTOFF, persistent=True):
        self._connection = connection
        self.uuid = instance_uuid
        self.xml = xml
        self.state_value = state
        self.state_reason = 0
        self.persistent = persistent
        self.memory_kib = 131072
        self.job_stats = {'type': libvirt.VIR_DOMAIN_JOB_NONE}
        self.migrations = []      # (uri, params, flags) per call
        self.migration_error = None
        self.abort_error = None
        self.calls = []
        self.migrating = threading.Event()
        self._migration_done = threading.Event()
        self._aborted = False

    # -- state ------------------------------------------------------------

    def UUIDString(self):
        return self.uuid

    def connect(self):
        return self._connection

    def _require_connection(self):
        if not self._connection.isAlive():
            raise libvirt_error(libvirt.VIR_ERR_INTERNAL_ERROR,
                                'client socket is closed')

    def isActive(self):
        return self.state_value not in (libvirt.VIR_DOMAIN_SHUTOFF,
                                        libvirt.VIR_DOMAIN_CRASHED)

    def isPersistent(self):
        return self.persistent

    def state(self):
        return [self.state_value, self.state_reason]

    def info(self):
        self._require_connection()
        return [self.state_value, self.memory_kib, self.memory_kib, 1, 0]

    def XMLDesc(self, flags=0):
        self.calls.append(('XMLDesc', flags))
        return self.xml

    # -- operations -------------------------------------------------------

    def create(self):
        self.calls.append('create')
        self.state_value = libvirt.VIR_DOMAIN_RUNNING

    def shutdownFlags(self, flags):
        self._require_connection()
        self.calls.append(('shutdownFlags', flags))
        if not self.isActive():
            raise libvirt_error(libvirt.VIR_ERR_OPERATION_INVALID,
                                'domain is not running')

    def destroy(self):
        self._require_connection()
        self.calls.append('destroy')
        if not self.isActive():
            raise libvirt_error(libvirt.VIR_ERR_OPERATION_INVALID,
                                'domain is not running')
        self.state_value = libvirt.VIR_DOMAIN_SHUTOFF
        if not self.persistent:
            self._connection.domains.pop(self.uuid, None)

    def undefineFlags(self, flags):
        self.calls.append(('undefineFlags', flags))
        self.persistent = False
        if not self.isActive():
            self._connection.domains.pop(self.uuid, None)

    def suspend(self):
        self.calls.append('suspend')
        self.state_value = libvirt.VIR_DOMAIN_PAUSED
        self.state_reason = libvirt.VIR_DOMAIN_PAUSED_USER

    def resume(self):
        self.calls.append('resume')
        self.state_value = libvirt.VIR_DOMAIN_RUNNING

    # -- migration --------------------------------------------------------

    def migrateToURI3(self, uri, params, flags):
        self.migrations.append((uri, params, flags))
        self.migrating.set()
        self._migration_done.wait(10)
        if self._aborted:
            raise libvirt_error(
                libvirt.VIR_ERR_OPERATION_ABORTED,
                "operation aborted: job 'migration out' canceled by client")
        if self.migration_error is not None:
            raise self.migration_error
        # Gone from this host, as with UNDEFINE_SOURCE.
        self.state_value = libvirt.VIR_DOMAIN_SHUTOFF
        self._connection.domains.pop(self.uuid, None)

    def finish_migration(self):
        """Let a blocked migrateToURI3 return (as migration_error says)."""
        self._migration_done.set()

    def jobStats(self):
        if not self.isActive():
            raise libvirt_error(libvirt.VIR_ERR_OPERATION_INVALID,
                                'domain is not running')
        return dict(self.job_stats)

    def abortJob(self):
        self.calls.append('abortJob')
        if self.abort_error is not None:
            raise self.abort_error
        self._aborted = True
        self._migration_done.set()


class FakeConnection:
    """Keeps the callbacks registered on it, so that a test can deliver
    lifecycle events (emit()) and drop the connection as a libvirtd
    restart does (lose())."""

    def __init__(self):
        self.domains = {}
        self.defined = []
        self.alive = True
        self.closed = False
        self.lifecycle_callbacks = {}   # callback id -> callback
        self.deregistered = []          # callback ids
        self.close_callback = None
        self._callback_ids = itertools.count(1)

    def getType(self):
        return 'QEMU'

    def isAlive(self):
        return self.alive and not self.closed

    def domainEventRegisterAny(self, domain, event_id, callback, opaque):
        callback_id = next(self._callback_ids)
        self.lifecycle_callbacks[callback_id] = callback
        return callback_id

    def domainEventDeregisterAny(self, callback_id):
        self.deregistered.append(callback_id)
        self.lifecycle_callbacks.pop(callback_id)
        if not self.alive:
            # libvirt drops the callback locally, then fails to tell the
            # daemon that is gone.
            raise libvirt_error(libvirt.VIR_ERR_INTERNAL_ERROR,
                                'client socket is closed')

    def registerCloseCallback(self, callback, opaque):
        self.close_callback = callback
        return 0

    def unregisterCloseCallback(self):
        self.close_callback = None

    def close(self):
        self.closed = True
        return 0

    def emit(self, domain, event, detail=0):
        """Deliver a lifecycle event, as libvirt's event loop does."""
        for callback in list(self.lifecycle_callbacks.values()):
            callback(self, domain, event, detail, None)

    def lose(self):
        """The daemon went away: the connection is dead, and its close
        callback runs (on the event-loop thread, in libvirt)."""
        self.alive = False
        if self.close_callback is not None:
            self.close_callback(self, libvirt.VIR_CONNECT_CLOSE_REASON_EOF,
                                None)

    def lookupByUUIDString(self, instance_uuid):
        try:
            return self.domains[instance_uuid]
        except KeyError:
            raise libvirt_error(libvirt.VIR_ERR_NO_DOMAIN,
                                'Domain not found') from None

    def add(self, instance_uuid, xml, state=libvirt.VIR_DOMAIN_RUNNING,
            persistent=True):
        domain = FakeDomain(self, instance_uuid, xml, state, persistent)
        self.domains[instance_uuid] = domain
        return domain

    def defineXML(self, xml):
        instance_uuid = ET.fromstring(xml).findtext('uuid')
        self.defined.append(xml)
        domain = self.domains.get(instance_uuid)
        if domain is None:
            return self.add(instance_uuid, xml, libvirt.VIR_DOMAIN_SHUTOFF)
        domain.xml, domain.persistent = xml, True
        return domain


def qemu_driver(state_path, host='host-b', **options):
    """A LibvirtDriver whose libvirt is a FakeConnection; returns
    (driver, connection). The driver keeps the connection it opened."""
    connection = FakeConnection()
    driver = libvirt_driver.LibvirtDriver(
        f'qemu+tcp://{host}/system', 'qemu', state_path, **options)
    with mock.patch.object(libvirt, 'open', return_value=connection):
        driver.init_host(host)
    return driver, connection


def guest_xml(instance_dir, disk=False):
    """Instance UUID booting a kernel, its files in instance_dir."""
    return config.qemu_domain_xml(
        UUID, 'vm', 1, 128, 'qemu',
        console_log=os.path.join(instance_dir, 'console.log'),
        kernel='/img/vmlinuz', ramdisk='/img/initrd',
        disk=os.path.join(instance_dir, 'disk.qcow2') if disk else None)


class TwoQemuHostsTestCase(base.TestCase):
    """Two drivers on fake QEMU connections: A the source, B the
    destination, with separate state paths (no shared storage)."""

    def setUp(self):
        super().setUp()
        self.state_a = self.tempdir()
        self.state_b = self.tempdir()
        self.a, self.conn_a = qemu_driver(self.state_a, host='host-a')
        self.b, self.conn_b = qemu_driver(self.state_b)
        self.dir_a = self.a.instance_path(UUID)
        self.dir_b = self.b.instance_path(UUID)

    def tempdir(self):
        path = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, path, True)
        return path

    def make_disk(self, directory):
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, 'disk.qcow2'), 'wb') as disk:
            disk.write(b'overlay')
