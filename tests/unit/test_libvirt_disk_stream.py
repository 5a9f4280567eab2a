"""A cold migration's disk streamed through the destination's libvirtd:
when the source chooses it ([libvirt] cold_migration_disk_transfer), and
what disk_stream leaves behind when a step fails. The stream itself runs
against real libvirtds in tests/realguest/test_migration_driver.py."""

import os
from unittest import mock

import fixtures
import libvirt

from compute_agent import exception
from compute_agent.virt import migration as virt_migration
from compute_agent.virt.libvirt import cold_migration
from compute_agent.virt.libvirt import disk_stream
from tests.unit import base
from tests.unit import fake_libvirt

UUID = fake_libvirt.UUID
TARGET = {'libvirt_uri': 'qemu+tls://host-b/system', 'data_uri': None}


class TransferChoiceTest(fake_libvirt.TwoQemuHostsTestCase):
    def setUp(self):
        super().setUp()
        self.make_disk(self.dir_a)
        self.conn_a.add(UUID, fake_libvirt.guest_xml(self.dir_a, disk=True),
                        state=libvirt.VIR_DOMAIN_SHUTOFF)
        patcher = mock.patch.object(disk_stream, 'upload',
                                    return_value=(7, 0.01))
        self.upload = patcher.start()
        self.addCleanup(patcher.stop)

    def source(self, transfer):
        source, connection = fake_libvirt.qemu_driver(
            self.state_a, host='host-a',
            cold_migration_disk_transfer=transfer)
        connection.domains = self.conn_a.domains
        return source

    def assertStreamed(self, destination_path):
        self.upload.assert_called_once()
        self.assertEqual((TARGET['libvirt_uri'], destination_path,
                          os.path.join(self.dir_a, 'disk.qcow2'),
                          disk_stream.POOL_PREFIX + UUID),
                         self.upload.call_args.args[:4])

    def test_auto_streams_to_a_directory_this_host_does_not_see(self):
        path = '/var/lib/elsewhere/instances/' + UUID
        self.assertEqual({'disk': True},
                         self.a.migrate_disk(UUID, path, False, TARGET))
        self.assertStreamed(path)

    def test_auto_streams_when_the_path_is_this_hosts_own(self):
        # The common case: both hosts keep instances under the same path
        # on local disks.
        self.a.migrate_disk(UUID, self.dir_a, False, TARGET)
        self.assertStreamed(self.dir_a)

    def test_auto_copies_through_a_directory_it_sees(self):
        self.a.migrate_disk(UUID, self.dir_b, False, TARGET)
        self.upload.assert_not_called()
        self.assertEqual(['disk.qcow2'], os.listdir(self.dir_b))

    def test_stream_is_used_even_for_a_directory_it_sees(self):
        self.source(cold_migration.STREAM).migrate_disk(
            UUID, self.dir_b, False, TARGET)
        self.assertStreamed(self.dir_b)
        self.assertFalse(os.path.exists(self.dir_b))

    def test_stream_without_a_uri_names_the_old_destination(self):
        error = self.assertRaises(
            exception.MigrationError,
            self.source(cold_migration.STREAM).migrate_disk, UUID,
            self.dir_b, False, None)
        self.assertIn('older than RPC 1.5', str(error))
        self.upload.assert_not_called()

    def test_filesystem_refuses_an_unseen_directory_and_names_the_option(
            self):
        error = self.assertRaises(
            exception.MigrationError,
            self.source(cold_migration.FILESYSTEM).migrate_disk, UUID,
            '/nowhere/' + UUID, False, TARGET)
        self.assertIn('cold_migration_disk_transfer to auto', str(error))
        self.upload.assert_not_called()

    def test_shared_storage_copies_nothing_whatever_the_choice(self):
        for transfer in (cold_migration.AUTO, cold_migration.STREAM):
            self.source(transfer).migrate_disk(UUID, '/nowhere/' + UUID,
                                               True, TARGET)
        self.upload.assert_not_called()

    def test_a_failed_stream_is_a_migration_error_and_keeps_the_guest(self):
        self.upload.side_effect = disk_stream.StreamError(
            'could not connect to qemu+tls://host-b/system: no route')
        error = self.assertRaises(exception.MigrationError,
                                  self.a.migrate_disk, UUID,
                                  '/nowhere/' + UUID, False, TARGET)
        self.assertIn('could not stream the disk to qemu+tls://host-b/system '
                      f'for instance {UUID}', str(error))
        self.assertIn('no route', str(error))
        self.assertIn(UUID, self.conn_a.domains)

    def test_a_stopped_copy_leaves_no_partial_file_and_keeps_the_guest(
            self):
        control = virt_migration.MigrationControl()
        control.request_abort('the agent is shutting down')
        for source in (self.a, self.source(cold_migration.STREAM)):
            self.upload.side_effect = disk_stream.CopyStopped(
                'the agent is shutting down')
            error = self.assertRaises(exception.MigrationError,
                                      source.migrate_disk, UUID, self.dir_b,
                                      False, TARGET, control)
            self.assertIn(f'the disk copy of instance {UUID} was stopped, '
                          f'the instance stays on this host: the agent is '
                          f'shutting down', str(error))
            self.assertEqual([], os.listdir(self.dir_b))
            self.assertIn(UUID, self.conn_a.domains)


class UploadFailureTest(base.TestCase):
    """What disk_stream leaves on the destination when a step fails: no
    partial file, no pool; the error names the step."""

    def setUp(self):
        super().setUp()
        self.path = os.path.join(
            self.useFixture(fixtures.TempDir()).path, 'disk.qcow2')
        with open(self.path, 'wb') as disk:
            disk.write(b'x' * 100)
        self.connection = mock.Mock(name='connection')
        self.connection.storagePoolLookupByName.side_effect = (
            fake_libvirt.libvirt_error(libvirt.VIR_ERR_NO_STORAGE_POOL,
                                       'no pool'))
        self.pool = self.connection.storagePoolCreateXML.return_value
        self.pool.storageVolLookupByName.side_effect = (
            fake_libvirt.libvirt_error(libvirt.VIR_ERR_NO_STORAGE_VOL,
                                       'no volume'))
        self.volume = self.pool.createXML.return_value
        self.stream = self.connection.newStream.return_value
        patcher = mock.patch.object(libvirt, 'open',
                                    return_value=self.connection)
        patcher.start()
        self.addCleanup(patcher.stop)

    def upload(self):
        return disk_stream.upload('qemu+tls://b/system', '/dest/' + UUID,
                                  self.path, 'pool-1')

    def test_a_whole_upload_sends_every_byte_and_drops_the_pool(self):
        sent = []

        def send_all(handler, opaque):
            while chunk := handler(self.stream, 64, opaque):
                sent.append(chunk)
        self.stream.sendAll.side_effect = send_all
        self.assertEqual(100, self.upload()[0])
        self.assertEqual(b'x' * 100, b''.join(sent))
        self.volume.upload.assert_called_once_with(self.stream, 0, 100, 0)
        self.stream.finish.assert_called_once_with()
        self.pool.destroy.assert_called_once_with()
        self.connection.close.assert_called_once_with()

    def test_a_broken_stream_removes_the_partial_copy(self):
        self.stream.sendAll.side_effect = fake_libvirt.libvirt_error(
            libvirt.VIR_ERR_RPC, 'connection reset')
        error = self.assertRaises(disk_stream.StreamError, self.upload)
        self.assertEqual(f'could not send 100 bytes to /dest/{UUID} there: '
                         f'connection reset', str(error))
        self.stream.abort.assert_called_once_with()
        self.volume.delete.assert_called_once_with(0)
        self.pool.destroy.assert_called_once_with()
        self.connection.close.assert_called_once_with()

    def test_should_stop_ends_the_upload_and_removes_the_copy(self):
        reasons = iter([None, 'shutting down'])
        sent = []

        def send_all(handler, opaque):
            while chunk := handler(self.stream, 64, opaque):
                sent.append(chunk)
        self.stream.sendAll.side_effect = send_all
        error = self.assertRaises(
            disk_stream.CopyStopped, disk_stream.upload,
            'qemu+tls://b/system', '/dest/' + UUID, self.path, 'pool-1',
            lambda: next(reasons))
        self.assertEqual('shutting down', str(error))
        self.assertEqual([b'x' * 64], sent)
        self.stream.finish.assert_not_called()
        self.volume.delete.assert_called_once_with(0)
        self.pool.destroy.assert_called_once_with()

    def test_copy_file_checks_before_each_chunk(self):
        copy = self.path + '.copy'
        calls = []
        disk_stream.copy_file(self.path, copy, lambda: calls.append(1))
        with open(copy, 'rb') as copied:
            self.assertEqual(b'x' * 100, copied.read())
        # One check per chunk, and one before the read that finds the end.
        self.assertEqual(2, len(calls))
        self.assertRaises(disk_stream.CopyStopped, disk_stream.copy_file,
                          self.path, copy, lambda: 'stop')

    def test_a_stale_copy_and_pool_are_replaced(self):
        stale_pool = mock.Mock(name='stale_pool')
        self.connection.storagePoolLookupByName.side_effect = None
        self.connection.storagePoolLookupByName.return_value = stale_pool
        stale_copy = mock.Mock(name='stale_copy')
        self.pool.storageVolLookupByName.side_effect = None
        self.pool.storageVolLookupByName.return_value = stale_copy
        self.upload()
        stale_pool.destroy.assert_called_once_with()
        stale_copy.delete.assert_called_once_with(0)
        self.assertIn('<path>/dest/' + UUID + '</path>',
                      self.connection.storagePoolCreateXML.call_args.args[0])

    def test_an_unreachable_destination_changes_nothing(self):
        libvirt.open.side_effect = fake_libvirt.libvirt_error(
            libvirt.VIR_ERR_SYSTEM_ERROR, 'Connection refused')
        error = self.assertRaises(disk_stream.StreamError, self.upload)
        self.assertEqual('could not connect to qemu+tls://b/system: '
                         'Connection refused', str(error))
