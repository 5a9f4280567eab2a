"""The crash matrix's two-host cases (tools/crash_matrix/migration_cases),
without a deployment: one per two-host failpoint, each armed on one end
and expecting the instance where its step leaves it."""

from compute_agent import failpoints
from tests.unit import base
from tools.crash_matrix import cases
from tools.crash_matrix import migration_cases

TWO_HOST_PREFIXES = ('live_migration.', 'resize.', 'confirm.', 'revert.')


class MigrationCasesTest(base.TestCase):
    def test_one_case_per_two_host_failpoint(self):
        named = [case.failpoint for case in migration_cases.CASES]
        self.assertEqual(len(named), len(set(named)))
        self.assertEqual(
            {name for name in failpoints.ALL
             if name.startswith(TWO_HOST_PREFIXES)}, set(named))

    def test_the_runner_picks_them_up(self):
        self.assertEqual(
            set(migration_cases.CASES),
            set(cases.all_cases()) - set(cases.CASES))

    def test_each_is_armed_on_the_end_its_failpoint_names(self):
        for case in migration_cases.CASES:
            end = case.failpoint.split('.')[1]
            self.assertEqual(
                {'source': 'source', 'dest': 'destination'}[end],
                case.armed_role, case.failpoint)
            self.assertTrue(case.needs_two_hosts)

    def test_home_after_the_step(self):
        source, destination = object(), object()
        homes = {case.failpoint: case(None, source, destination)
                 .expected_home() for case in migration_cases.CASES}
        for name in (failpoints.LIVE_SOURCE_STARTED,
                     failpoints.LIVE_DEST_PREPARED,
                     failpoints.LIVE_DEST_ROLLED_BACK,
                     failpoints.RESIZE_SOURCE_DISK_COPIED,
                     failpoints.RESIZE_DEST_DEFINED,
                     failpoints.REVERT_SOURCE_STARTED):
            self.assertIs(source, homes[name], name)
        for name in (failpoints.LIVE_SOURCE_MOVED,
                     failpoints.LIVE_DEST_DEFINED,
                     failpoints.RESIZE_SOURCE_DEST_FINISHED,
                     failpoints.RESIZE_DEST_HANDED_OVER,
                     failpoints.CONFIRM_SOURCE_STARTED,
                     failpoints.REVERT_DEST_STARTED):
            self.assertIs(destination, homes[name], name)
