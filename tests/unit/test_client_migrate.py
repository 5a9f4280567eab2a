"""compute-agent-client verbs of RPC API 1.4: live and cold migration,
resize, confirm/revert, migration queries, external events, the serial
console, boot --wait-for-event.

The RPC client class and the transport are mocked as in test_client: no
broker is needed.
"""

import io
import json
import re
from unittest import mock

import fixtures
import oslo_messaging

from compute_agent.cmd import client
from compute_agent.cmd import client_format
from compute_agent.cmd import client_migrate
from compute_agent.cmd import client_progress
from tests.unit import base
from tests.unit import test_client

HOST = test_client.HOST
DEST = 'hv-2'
UUID = test_client.UUID
MIGRATION_ID = '3c0e8f52-7d1a-4b6e-9a2f-5e8d7c6b1a04'
GiB = 1024 ** 3
LIVE_PROGRESS = {'percent': 42, 'memory_total': 4 * GiB,
                 'memory_processed': GiB, 'memory_remaining': 3 * GiB}


def migration(**changes):
    """A live migration record from hv-1 to hv-2, queued."""
    record = {
        'id': MIGRATION_ID, 'kind': 'live-migration', 'instance_uuid': UUID,
        'source_host': HOST, 'dest_host': DEST, 'status': 'queued',
        'request_id': 'req-start', 'details': {}, 'progress': None,
        'message': None, 'created_at': '2026-11-23T12:00:00Z',
        'updated_at': '2026-11-23T12:00:00Z', 'finished_at': None}
    record.update(changes)
    return record


def finished(status, **changes):
    return migration(status=status, finished_at='2026-11-23T12:00:03.2Z',
                     updated_at='2026-11-23T12:00:03.2Z', **changes)


def cold(**changes):
    return migration(kind='migration', **changes)


class MigrateTestCase(test_client.ClientTestCase):
    def setUp(self):
        super().setUp()
        self.api.version_cap.return_value = '1.4'
        self.api.get_instance.return_value = test_client.RECORD
        self.useFixture(fixtures.MonkeyPatch(
            'compute_agent.cmd.client_migrate.POLL_INTERVAL', 0))

    def out_lines(self):
        return self.stdout.getvalue().splitlines()

    def use_tty(self):
        self.stderr = test_client.TTYStream()
        self.useFixture(fixtures.MonkeyPatch('sys.stderr', self.stderr))


class TestLiveMigrate(MigrateTestCase):
    def test_asks_the_source_then_follows_it_until_completed(self):
        self.api.live_migrate_instance.return_value = migration()
        self.api.get_migration.side_effect = [
            migration(status='running', progress=LIVE_PROGRESS),
            finished('completed')]
        self.assertEqual(0, self.run_client('live-migrate', UUID, DEST))
        self.api.live_migrate_instance.assert_called_once_with(
            mock.ANY, HOST, UUID, DEST, block_migration=False,
            wait_for_events=None, timeout=None)
        # Every poll goes to the source, which runs a live migration.
        self.assertEqual(
            [mock.call(mock.ANY, HOST, MIGRATION_ID,
                       timeout=client_migrate.POLL_RPC_TIMEOUT)] * 2,
            self.api.get_migration.call_args_list)
        self.api.version_cap.assert_called_once_with(
            HOST, client_migrate.MIGRATION_RPC_VERSION)
        lines = self.out_lines()
        self.assertEqual('live-migrated web-1 hv-1 -> hv-2 in 3.2 s',
                         lines[0])
        self.assertIn(f'id              {MIGRATION_ID}', lines)
        self.assertIn('status          completed', lines)
        self.assertEqual('', self.stderr.getvalue())

    def test_block_migration_events_and_rpc_timeout_are_sent(self):
        self.api.live_migrate_instance.return_value = finished('completed')
        self.assertEqual(0, self.run_client(
            '--rpc-timeout', '90', 'live-migrate', UUID, DEST,
            '--block-migration', '--wait-for-event',
            'network-vif-plugged:port-1', '--wait-for-event', 'volume-ready'))
        self.api.live_migrate_instance.assert_called_once_with(
            mock.ANY, HOST, UUID, DEST, block_migration=True,
            wait_for_events=[{'name': 'network-vif-plugged', 'tag': 'port-1'},
                             {'name': 'volume-ready', 'tag': None}],
            timeout=90)
        # Already over when it answered: nothing to poll.
        self.api.get_migration.assert_not_called()

    def test_a_malformed_event_is_a_usage_error(self):
        for value in (':port-1', 'network-vif-plugged:', ''):
            error = self.assertRaises(
                SystemExit, self.run_client, 'live-migrate', UUID, DEST,
                '--wait-for-event', value)
            self.assertEqual(2, error.code)
            self.assertIn('takes NAME or NAME:TAG', self.stderr.getvalue())
        self.api_class.assert_not_called()

    def test_each_unsuccessful_end_is_exit_1_with_its_reason(self):
        for status, message, expected in (
                ('cancelled', 'aborted by the operator',
                 'live migration of web-1 hv-1 -> hv-2 cancelled: aborted '
                 'by the operator'),
                ('failed', 'hv-2: cannot reach hv-1 over TCP 49152',
                 'live migration of web-1 hv-1 -> hv-2 failed: hv-2: cannot '
                 'reach hv-1 over TCP 49152'),
                ('error', None, 'live migration of web-1 hv-1 -> hv-2 '
                                'error')):
            self.stdout.seek(0)
            self.stdout.truncate()
            self.api.live_migrate_instance.return_value = migration()
            self.api.get_migration.side_effect = [
                finished(status, message=message)]
            self.assertEqual(1, self.run_client('live-migrate', UUID, DEST))
            self.assertEqual(expected, self.out_lines()[0])

    def test_no_wait_prints_the_record_and_how_to_follow_it(self):
        self.api.live_migrate_instance.return_value = migration()
        self.assertEqual(0, self.run_client('live-migrate', UUID, DEST,
                                            '--no-wait'))
        self.api.get_migration.assert_not_called()
        lines = self.out_lines()
        self.assertIn('status          queued', lines)
        self.assertEqual(f'follow it with: compute-agent-client --host hv-1 '
                         f'migration-show {MIGRATION_ID}', lines[-1])

    def test_json_prints_only_the_final_record(self):
        self.api.live_migrate_instance.return_value = migration()
        self.api.get_migration.side_effect = [finished('completed')]
        self.assertEqual(0, self.run_client('--json', 'live-migrate', UUID,
                                            DEST))
        self.assertEqual(finished('completed'),
                         json.loads(self.stdout.getvalue()))
        # The name only serves the lines people read.
        self.api.get_instance.assert_not_called()

    def test_json_no_wait_and_json_failure(self):
        self.api.live_migrate_instance.return_value = migration()
        self.assertEqual(0, self.run_client('--json', 'live-migrate', UUID,
                                            DEST, '--no-wait'))
        self.assertEqual(migration(), json.loads(self.stdout.getvalue()))
        self.stdout.seek(0)
        self.stdout.truncate()
        self.api.get_migration.side_effect = [finished('failed')]
        self.assertEqual(1, self.run_client('--json', 'live-migrate', UUID,
                                            DEST))
        self.assertEqual('failed',
                         json.loads(self.stdout.getvalue())['status'])

    def test_name_falls_back_to_the_uuid(self):
        self.api.get_instance.side_effect = oslo_messaging.RemoteError(
            'InstanceNotFound', 'not here')
        self.api.live_migrate_instance.return_value = finished('completed')
        self.assertEqual(0, self.run_client('live-migrate', UUID, DEST))
        self.assertEqual(f'live-migrated {UUID} hv-1 -> hv-2 in 3.2 s',
                         self.out_lines()[0])

    def test_refused_request_is_one_line_and_exit_1(self):
        self.api.live_migrate_instance.side_effect = (
            oslo_messaging.RemoteError(
                'MigrationError', 'hv-2 has no room for 2 vCPU'))
        self.assertEqual(1, self.run_client('live-migrate', UUID, DEST))
        [line] = self.stderr_lines()
        self.assertRegex(line, r'^error: MigrationError: hv-2 has no room '
                               r'for 2 vCPU \(req-[0-9a-f-]+\)$')
        self.assertEqual('', self.stdout.getvalue())

    def test_a_poll_refused_by_the_agent_is_exit_1(self):
        self.api.live_migrate_instance.return_value = migration()
        self.api.get_migration.side_effect = oslo_messaging.RemoteError(
            'InvalidInput', f'No migration {MIGRATION_ID} on hv-1.')
        self.assertEqual(1, self.run_client('live-migrate', UUID, DEST))
        self.assertIn('error: InvalidInput: No migration',
                      self.stderr.getvalue())

    def test_unanswered_polls_are_asked_again(self):
        self.api.live_migrate_instance.return_value = migration()
        self.api.get_migration.side_effect = [
            oslo_messaging.MessagingTimeout('busy'),
            migration(status='running'), finished('completed')]
        self.assertEqual(0, self.run_client('live-migrate', UUID, DEST))
        self.assertEqual(3, self.api.get_migration.call_count)

    def test_a_host_that_stops_answering_is_given_up_with_a_hint(self):
        self.useFixture(fixtures.MonkeyPatch(
            'compute_agent.cmd.client_migrate.UNANSWERED_LIMIT', 0))
        self.api.live_migrate_instance.return_value = migration()
        self.api.get_migration.side_effect = (
            oslo_messaging.MessagingTimeout('gone'))
        self.assertEqual(3, self.run_client('live-migrate', UUID, DEST))
        lines = self.stderr_lines()
        self.assertEqual('error: no answer from host hv-1 for 0 s', lines[0])
        self.assertEqual(
            f'stopped following; the live migration {MIGRATION_ID} goes '
            f'on.', lines[1])
        self.assertIn(f'--host hv-1 migration-show {MIGRATION_ID}', lines[2])

    def test_ctrl_c_stops_waiting_and_leaves_the_migration_alone(self):
        self.api.live_migrate_instance.return_value = migration()
        self.api.get_migration.side_effect = KeyboardInterrupt
        self.assertEqual(130, self.run_client('live-migrate', UUID, DEST))
        self.assertEqual(
            [f'stopped waiting; the live migration {MIGRATION_ID} goes on.',
             f'follow it with: compute-agent-client --host hv-1 '
             f'migration-show {MIGRATION_ID}',
             f'stop it with: compute-agent-client --host hv-1 '
             f'live-migration-abort {MIGRATION_ID}'],
            self.stderr_lines())
        self.api.live_migration_abort.assert_not_called()
        self.assertEqual('', self.stdout.getvalue())
        self.transport.cleanup.assert_called_once_with()

    def test_to_its_own_host_is_a_usage_error_before_any_request(self):
        for argv in (['live-migrate', UUID, HOST],
                     ['migrate', UUID, '--to', HOST],
                     ['resize', UUID, '--to', HOST, '--vcpus', '2',
                      '--memory-mb', '512']):
            self.stderr.seek(0)
            self.stderr.truncate()
            self.assertEqual(2, self.run_client(*argv))
            [line] = self.stderr_lines()
            self.assertEqual(
                f'error: {argv[0]} needs a destination other than the host '
                f'the instance is on (hv-1)', line)
        self.assertEqual([], self.api.method_calls)


class TestFollowProgressLine(MigrateTestCase):
    def polls(self):
        self.api.live_migrate_instance.return_value = migration()
        self.api.get_migration.side_effect = [
            migration(status='running', progress=LIVE_PROGRESS),
            finished('completed')]

    def test_a_terminal_sees_the_progress_then_the_outcome(self):
        self.use_tty()
        # Wide enough for the whole line: cutting it is StatusLine's part.
        self.useFixture(fixtures.MonkeyPatch(
            'compute_agent.cmd.client_progress.DEFAULT_COLUMNS', 200))
        self.polls()
        self.assertEqual(0, self.run_client('live-migrate', UUID, DEST))
        err = self.stderr.getvalue()
        self.assertRegex(
            err, re.escape('\rlive-migrating web-1 to hv-2 (') +
            r'[0-9.]+ s\): running, 42%, memory 1\.0 GiB of 4\.0 GiB '
            r'\(3\.0 GiB left\)\x1b\[K')
        self.assertTrue(err.endswith(client_progress.ERASE_LINE), err)
        self.assertEqual('live-migrated web-1 hv-1 -> hv-2 in 3.2 s',
                         self.out_lines()[0])

    def test_shown_only_on_a_terminal_or_asked_and_never_with_json(self):
        for tty, argv, shown in ((False, [], False),
                                 (False, ['--progress'], True),
                                 (True, ['--json'], False),
                                 (True, ['--json', '--progress'], False)):
            if tty:
                self.use_tty()
            else:
                self.stderr = io.StringIO()
                self.useFixture(fixtures.MonkeyPatch('sys.stderr',
                                                     self.stderr))
            self.polls()
            self.assertEqual(0, self.run_client(*argv, 'live-migrate', UUID,
                                                DEST))
            self.assertEqual(shown, 'live-migrating' in self.stderr.getvalue(),
                             (tty, argv))

    def test_ctrl_c_clears_the_line_before_saying_so(self):
        self.use_tty()
        self.api.live_migrate_instance.return_value = migration()
        self.api.get_migration.side_effect = [
            migration(status='running'), KeyboardInterrupt]
        self.assertEqual(130, self.run_client('live-migrate', UUID, DEST))
        err = self.stderr.getvalue()
        line_gone = err.index(client_progress.ERASE_LINE)
        self.assertLess(err.index('live-migrating'), line_gone)
        self.assertEqual(line_gone + len(client_progress.ERASE_LINE),
                         err.index('stopped waiting'))


class TestColdMigrateAndResize(MigrateTestCase):
    def test_migrate_asks_the_destination_and_follows_it_there(self):
        self.api.prep_resize.return_value = cold()
        self.api.get_migration.side_effect = [
            cold(status='running', progress={'step': 'copying disk'}),
            finished('completed', kind='migration')]
        self.assertEqual(0, self.run_client('migrate', UUID, '--to', DEST))
        self.api.prep_resize.assert_called_once_with(
            mock.ANY, DEST, UUID, None, HOST, clean_shutdown=True,
            shutdown_timeout=None, timeout=None)
        self.assertEqual({DEST}, {c.args[1] for c in
                                  self.api.get_migration.call_args_list})
        self.api.version_cap.assert_called_once_with(
            DEST, client_migrate.MIGRATION_RPC_VERSION)
        # The instance is still on the source when the request goes out.
        self.api.get_instance.assert_called_once_with(
            mock.ANY, HOST, UUID, timeout=client_migrate.POLL_RPC_TIMEOUT)
        lines = self.out_lines()
        self.assertEqual(
            ['migrated web-1 hv-1 -> hv-2 in 3.2 s',
             "web-1 is now on hv-2 as 'resized' until confirmed or "
             "reverted:",
             f'  keep it there: compute-agent-client --host hv-2 '
             f'resize-confirm {MIGRATION_ID}',
             f'  go back to hv-1: compute-agent-client --host hv-2 '
             f'resize-revert {MIGRATION_ID}'], lines[:4])
        self.assertEqual(f'id              {MIGRATION_ID}', lines[4])

    def test_resize_sends_the_new_flavor_and_the_power_off_options(self):
        self.api.prep_resize.return_value = finished('completed',
                                                     kind='resize')
        for timeout_option in ('--shutdown-timeout', '--timeout'):
            self.api.prep_resize.reset_mock()
            self.assertEqual(0, self.run_client(
                '--rpc-timeout', '600', 'resize', UUID, '--to', DEST,
                '--vcpus', '4', '--memory-mb', '2048', '--force',
                timeout_option, '30'))
            self.api.prep_resize.assert_called_once_with(
                mock.ANY, DEST, UUID, {'vcpus': 4, 'memory_mb': 2048}, HOST,
                clean_shutdown=False, shutdown_timeout=30, timeout=600)
        self.assertIn('resized web-1 hv-1 -> hv-2 in 3.2 s',
                      self.out_lines())

    def test_resize_needs_the_whole_flavor_and_a_destination(self):
        for argv in (['resize', UUID, '--to', DEST, '--vcpus', '2'],
                     ['resize', UUID, '--to', DEST, '--memory-mb', '512'],
                     ['migrate', UUID]):
            error = self.assertRaises(SystemExit, self.run_client, *argv)
            self.assertEqual(2, error.code)
        self.api_class.assert_not_called()

    def test_a_failed_migration_offers_no_confirm(self):
        self.api.prep_resize.return_value = cold()
        self.api.get_migration.side_effect = [finished(
            'failed', kind='migration', message='hv-1: disk copy failed: '
                                                'no space left on hv-2')]
        self.assertEqual(1, self.run_client('migrate', UUID, '--to', DEST))
        self.assertEqual('migration of web-1 hv-1 -> hv-2 failed: hv-1: '
                         'disk copy failed: no space left on hv-2',
                         self.out_lines()[0])
        self.assertNotIn('resize-confirm', self.stdout.getvalue())

    def test_moved_on_by_someone_else_while_followed_is_success(self):
        self.api.prep_resize.return_value = cold()
        self.api.get_migration.side_effect = [finished('confirmed',
                                                       kind='migration')]
        self.assertEqual(0, self.run_client('migrate', UUID, '--to', DEST))
        self.assertEqual('migration of web-1 hv-1 -> hv-2 confirmed',
                         self.out_lines()[0])
        self.assertNotIn('resize-confirm', self.stdout.getvalue())

    def test_ctrl_c_points_at_the_destination_and_offers_no_abort(self):
        self.api.prep_resize.return_value = cold()
        self.api.get_migration.side_effect = KeyboardInterrupt
        self.assertEqual(130, self.run_client('migrate', UUID, '--to', DEST))
        self.assertEqual(
            [f'stopped waiting; the migration {MIGRATION_ID} goes on.',
             f'follow it with: compute-agent-client --host hv-2 '
             f'migration-show {MIGRATION_ID}'], self.stderr_lines())

    def test_no_wait(self):
        self.api.prep_resize.return_value = cold()
        self.assertEqual(0, self.run_client('migrate', UUID, '--to', DEST,
                                            '--no-wait'))
        self.api.get_migration.assert_not_called()
        self.assertIn(f'--host hv-2 migration-show {MIGRATION_ID}',
                      self.out_lines()[-1])


class TestConfirmAndRevert(MigrateTestCase):
    def test_confirm_goes_to_the_source_of_the_migration(self):
        # Asked of the destination: either end knows the migration.
        self.api.get_migration.return_value = finished('completed',
                                                       kind='resize')
        self.api.confirm_resize.return_value = finished('confirmed',
                                                        kind='resize')
        self.assertEqual(0, client.main(['--host', DEST, 'resize-confirm',
                                         MIGRATION_ID]))
        self.api.get_migration.assert_called_once_with(
            mock.ANY, DEST, MIGRATION_ID, timeout=None)
        self.api.confirm_resize.assert_called_once_with(
            mock.ANY, HOST, MIGRATION_ID, timeout=None)
        self.api.revert_resize.assert_not_called()
        lines = self.out_lines()
        self.assertEqual(f'confirmed migration {MIGRATION_ID}: {UUID} stays '
                         f'on hv-2', lines[0])
        self.assertIn('status          confirmed', lines)

    def test_revert_goes_to_the_destination_and_shows_the_instance(self):
        self.api.get_migration.return_value = finished('completed',
                                                       kind='migration')
        self.api.revert_resize.return_value = test_client.a_record(
            vm_state='active', power_state='running')
        self.assertEqual(0, self.run_client('--rpc-timeout', '400',
                                            'resize-revert', MIGRATION_ID))
        self.api.revert_resize.assert_called_once_with(
            mock.ANY, DEST, MIGRATION_ID, timeout=400)
        lines = self.out_lines()
        self.assertEqual(f'reverted migration {MIGRATION_ID}: web-1 is back '
                         f'on hv-1', lines[0])
        self.assertEqual(f'uuid            {UUID}', lines[1])

    def test_json_prints_what_the_agent_returned(self):
        self.api.get_migration.return_value = finished('completed',
                                                       kind='migration')
        self.api.revert_resize.return_value = test_client.RECORD
        self.assertEqual(0, self.run_client('--json', 'resize-revert',
                                            MIGRATION_ID))
        self.assertEqual(test_client.RECORD,
                         json.loads(self.stdout.getvalue()))

    def test_refused_confirm_is_exit_1(self):
        self.api.get_migration.return_value = finished('failed',
                                                       kind='migration')
        self.api.confirm_resize.side_effect = oslo_messaging.RemoteError(
            'MigrationError', 'Migration is failed, not completed.')
        self.assertEqual(1, self.run_client('resize-confirm', MIGRATION_ID))
        self.assertIn('error: MigrationError: Migration is failed',
                      self.stderr.getvalue())
        self.assertEqual('', self.stdout.getvalue())


class TestMigrationQueries(MigrateTestCase):
    def test_show(self):
        self.api.get_migration.return_value = migration(
            status='running', progress=dict(LIVE_PROGRESS, disk_total=GiB,
                                            disk_processed=GiB // 2),
            details={'block_migration': True, 'note': 'post-copy'},
            created_at='2026-11-23T13:00:00+01:00')
        self.assertEqual(0, self.run_client('migration-show', MIGRATION_ID))
        self.api.get_migration.assert_called_once_with(
            mock.ANY, HOST, MIGRATION_ID, timeout=None)
        out = self.stdout.getvalue()
        for row in (f'instance        {UUID}', 'source          hv-1',
                    'destination     hv-2', 'kind            live-migration',
                    'progress        42%, memory 1.0 GiB of 4.0 GiB (3.0 '
                    'GiB left), disk 512.0 MiB of 1.0 GiB',
                    'message         -', 'request         req-start',
                    'created         2026-11-23 12:00:00Z',
                    'finished        -', 'block_migration true',
                    'note            post-copy'):
            self.assertIn(row + '\n', out)

    def test_show_aligns_on_the_longest_detail(self):
        self.api.get_migration.return_value = cold(details={
            'shutdown_timeout': None, 'new_flavor': {'vcpus': 2,
                                                     'memory_mb': 96}})
        self.assertEqual(0, self.run_client('migration-show', MIGRATION_ID))
        lines = self.out_lines()
        self.assertIn('status           queued', lines)
        self.assertIn('new_flavor       {"memory_mb": 96, "vcpus": 2}', lines)
        self.assertEqual('shutdown_timeout null', lines[-1])

    def test_list_and_list_of_one_instance(self):
        records = [finished('completed'),
                   cold(id='m-2', status='running')]
        self.api.list_migrations.return_value = records
        self.assertEqual(0, self.run_client('migration-list'))
        self.assertEqual(0, self.run_client('migration-list', '--instance',
                                            UUID))
        self.assertEqual(
            [mock.call(mock.ANY, HOST, instance_uuid=None, timeout=None),
             mock.call(mock.ANY, HOST, instance_uuid=UUID, timeout=None)],
            self.api.list_migrations.call_args_list)
        header, first, second = self.out_lines()[:3]
        self.assertEqual(['ID', 'KIND', 'STATUS', 'INSTANCE', 'SOURCE', '->',
                          'DEST', 'CREATED'], header.split())
        self.assertEqual([MIGRATION_ID, 'live-migration', 'completed', UUID,
                          'hv-1', '->', 'hv-2', '2026-11-23', '12:00:00Z'],
                         first.split())
        self.assertEqual(['m-2', 'migration', 'running'],
                         second.split()[:3])

    def test_empty_list_and_json(self):
        self.api.list_migrations.return_value = []
        self.assertEqual(0, self.run_client('migration-list'))
        self.assertEqual('no migrations\n', self.stdout.getvalue())
        self.stdout.seek(0)
        self.stdout.truncate()
        self.api.list_migrations.return_value = [migration()]
        self.assertEqual(0, self.run_client('--json', 'migration-list'))
        self.assertEqual([migration()], json.loads(self.stdout.getvalue()))

    def test_abort_and_force_complete_go_to_the_host(self):
        for verb, method, asked in (
                ('live-migration-abort', self.api.live_migration_abort,
                 'abort'),
                ('live-migration-force-complete',
                 self.api.live_migration_force_complete,
                 'forced completion')):
            self.stdout.seek(0)
            self.stdout.truncate()
            method.return_value = migration(status='running')
            self.assertEqual(0, self.run_client('--rpc-timeout', '20', verb,
                                                MIGRATION_ID))
            method.assert_called_once_with(mock.ANY, HOST, MIGRATION_ID,
                                           timeout=20)
            # The migration has only been asked: it ends a little later.
            lines = self.out_lines()
            self.assertEqual(
                [f'{asked} of live migration {MIGRATION_ID} requested; it '
                 f'is running now.',
                 f'see how it ends: compute-agent-client --host hv-1 '
                 f'migration-show {MIGRATION_ID}'], lines[:2])
            self.assertIn('status          running', lines)

    def test_abort_json_is_the_record(self):
        self.api.live_migration_abort.return_value = migration(
            status='running')
        self.assertEqual(0, self.run_client('--json', 'live-migration-abort',
                                            MIGRATION_ID))
        self.assertEqual(migration(status='running'),
                         json.loads(self.stdout.getvalue()))


class TestEventsAndConsole(MigrateTestCase):
    def test_event_with_and_without_tag(self):
        self.api.external_instance_event.return_value = {
            'instance_uuid': UUID, 'name': 'network-vif-plugged',
            'tag': 'port-1', 'delivered': True}
        self.assertEqual(0, self.run_client('event', UUID,
                                            'network-vif-plugged', '--tag',
                                            'port-1'))
        self.api.external_instance_event.return_value = {
            'instance_uuid': UUID, 'name': 'volume-ready', 'tag': None,
            'delivered': False}
        self.assertEqual(0, self.run_client('event', UUID, 'volume-ready'))
        self.assertEqual(
            [mock.call(mock.ANY, HOST, UUID, 'network-vif-plugged',
                       tag='port-1', timeout=None),
             mock.call(mock.ANY, HOST, UUID, 'volume-ready', tag=None,
                       timeout=None)],
            self.api.external_instance_event.call_args_list)
        self.assertEqual(
            [f'network-vif-plugged:port-1 for {UUID}: delivered to the '
             f'operation waiting for it',
             f'volume-ready for {UUID}: kept, nothing waits for it yet (an '
             f'operation that starts waiting for it soon will take it)'],
            self.out_lines())

    def test_serial_console(self):
        for console, expected in (
                ({'type': 'tcp', 'host': '192.0.2.10', 'port': 10000},
                 'tcp 192.0.2.10:10000'),
                ({'type': 'file', 'path': '/var/lib/compute-agent/c.log'},
                 'file /var/lib/compute-agent/c.log'),
                ({'type': 'pty', 'path': '/dev/pts/4', 'mode': 'rw'},
                 'pty mode=rw path=/dev/pts/4')):
            self.stdout.seek(0)
            self.stdout.truncate()
            self.api.get_serial_console.return_value = console
            self.assertEqual(0, self.run_client('serial-console', UUID))
            self.assertEqual(expected + '\n', self.stdout.getvalue())
        self.api.get_serial_console.assert_called_with(mock.ANY, HOST, UUID,
                                                       timeout=None)

    def test_json(self):
        console = {'type': 'tcp', 'host': '192.0.2.10', 'port': 10000}
        self.api.get_serial_console.return_value = console
        self.assertEqual(0, self.run_client('--json', 'serial-console',
                                            UUID))
        self.assertEqual(console, json.loads(self.stdout.getvalue()))

    def test_boot_waits_for_the_events_given(self):
        self.api.build_and_run_instance.return_value = test_client.RECORD
        self.assertEqual(0, self.run_client(
            'boot', 'web-1', '--wait-for-event', 'network-vif-plugged:p-1',
            '--wait-for-event', 'network-vif-plugged:p-2'))
        spec = self.api.build_and_run_instance.call_args.args[2]
        self.assertEqual([{'name': 'network-vif-plugged', 'tag': 'p-1'},
                          {'name': 'network-vif-plugged', 'tag': 'p-2'}],
                         spec['wait_for_events'])

    def test_boot_that_waits_for_events_waits_as_long_for_its_reply(self):
        # The agent answers once the events came or its
        # instance_event_timeout (300 s unless configured) ran out.
        self.api.build_and_run_instance.return_value = test_client.RECORD
        events = ('--wait-for-event', 'network-vif-plugged')
        path = test_client.write_config(
            self, '[compute]\ninstance_event_timeout = 20\n')
        for argv, timeout in (
                (['boot', 'web-1', *events], 300 + 60),
                (['--config-file', path, 'boot', 'web-1', *events], 20 + 60),
                (['--rpc-timeout', '30', 'boot', 'web-1', *events], 30),
                (['boot', 'web-1'], None)):
            self.api.build_and_run_instance.reset_mock()
            self.assertEqual(0, self.run_client(*argv))
            self.assertEqual(
                timeout,
                self.api.build_and_run_instance.call_args.kwargs['timeout'],
                argv)


class TestVersionPinnedBelowMigrationVerbs(test_client.ClientTestCase):
    """The real ComputeAPI pinned to 1.3: the 1.4 verbs are refused in the
    client, before anything is sent, as a usage error."""

    mock_api = False

    def test_each_verb_is_exit_2_and_sends_nothing(self):
        path = test_client.write_config(
            self, '[upgrade_levels]\ncompute = 1.3\n')
        get_client = self.useFixture(fixtures.MockPatchObject(
            oslo_messaging, 'get_rpc_client')).mock
        for verb in (['live-migrate', UUID, DEST],
                     ['migrate', UUID, '--to', DEST],
                     ['resize', UUID, '--to', DEST, '--vcpus', '1',
                      '--memory-mb', '256'],
                     ['resize-confirm', MIGRATION_ID],
                     ['resize-revert', MIGRATION_ID],
                     ['migration-show', MIGRATION_ID], ['migration-list'],
                     ['live-migration-abort', MIGRATION_ID],
                     ['live-migration-force-complete', MIGRATION_ID],
                     ['event', UUID, 'network-vif-plugged'],
                     ['serial-console', UUID]):
            self.stderr.seek(0)
            self.stderr.truncate()
            self.assertEqual(2, client.main(['--config-file', path,
                                             '--host', HOST, *verb]))
            [line] = self.stderr_lines()
            self.assertIn('version, 1.4 is incompatible', line)
            self.assertIn('version cap 1.3', line)
            self.assertIn('pinned too low', line)
        get_client.assert_not_called()
        self.assertEqual('', self.stdout.getvalue())


class FakeTime:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self):
        self.now = 0.0

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


class TestFollow(base.TestCase):
    def setUp(self):
        super().setUp()
        self.api = mock.create_autospec(client_migrate.rpcapi.ComputeAPI,
                                        instance=True)
        self.time = FakeTime()

    def follow(self, **kwargs):
        return client_migrate.follow(self.api, HOST, migration(),
                                     clock=self.time.clock,
                                     sleep=self.time.sleep, **kwargs)

    def test_gives_up_once_nothing_answered_for_the_limit(self):
        self.api.get_migration.side_effect = (
            oslo_messaging.MessagingTimeout('gone'))
        self.assertRaises(oslo_messaging.MessagingTimeout, self.follow)
        self.assertEqual(client_migrate.UNANSWERED_LIMIT, self.time.now)
        self.assertEqual(client_migrate.UNANSWERED_LIMIT /
                         client_migrate.POLL_INTERVAL,
                         self.api.get_migration.call_count)

    def test_an_answer_starts_the_limit_again(self):
        # Two silences of most of the limit each, one answer between.
        silence = [oslo_messaging.MessagingTimeout('busy')] * int(
            0.9 * client_migrate.UNANSWERED_LIMIT /
            client_migrate.POLL_INTERVAL)
        self.api.get_migration.side_effect = (
            silence + [migration(status='running')] + silence +
            [finished('completed')])
        self.assertEqual(finished('completed'), self.follow())

    def test_reports_each_record_seen_with_the_time_waited(self):
        seen = []
        self.api.get_migration.side_effect = [
            migration(status='preparing'), finished('cancelled')]
        self.follow(on_poll=lambda record, elapsed: seen.append(
            (record['status'], elapsed)))
        self.assertEqual(
            [('queued', 0.0), ('preparing', client_migrate.POLL_INTERVAL),
             ('cancelled', 2 * client_migrate.POLL_INTERVAL)], seen)

    def test_a_remote_error_is_not_waited_out(self):
        self.api.get_migration.side_effect = oslo_messaging.RemoteError(
            'InvalidInput', 'no such migration')
        self.assertRaises(oslo_messaging.RemoteError, self.follow)
        self.assertEqual(1, self.api.get_migration.call_count)


class TestMigrationFormatting(base.TestCase):
    def test_size(self):
        for count, expected in ((0, '0 B'), (1023, '1023 B'),
                                (1536, '1.5 KiB'), (5 * GiB, '5.0 GiB'),
                                (3 * 1024 ** 5, '3072.0 TiB')):
            self.assertEqual(expected, client_format.size(count))

    def test_progress_of_each_kind(self):
        for progress, expected in (
                (None, None), ({}, None),
                ({'percent': 99.6}, '100%'),
                ({'memory_total': 4 * GiB}, 'memory 0 B of 4.0 GiB'),
                ({'step': 'copying disk'}, 'copying disk')):
            self.assertEqual(expected,
                             client_format.migration_progress(progress))

    def test_outcome_without_an_end_time_gives_no_duration(self):
        self.assertEqual(
            'resized web-1 hv-1 -> hv-2',
            client_format.migration_outcome(
                migration(kind='resize', status='completed'), 'web-1'))

    def test_kind_from_a_newer_agent_is_named_as_it_came(self):
        self.assertEqual(
            'evacuation of web-1 hv-1 -> hv-2 failed: host down',
            client_format.migration_outcome(
                finished('failed', kind='evacuation', message='host down'),
                'web-1'))

    def test_waiting_line_of_a_cold_migration(self):
        self.assertEqual(
            'migrating web-1 to hv-2 (7.5 s): running, powering off',
            client_format.migration_waiting(
                cold(status='running', progress={'step': 'powering off'}),
                'web-1', 7.5))
