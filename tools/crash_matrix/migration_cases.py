"""The crash matrix's two-host cases: live migration, cold migration and
resize, confirm and revert, each killed at one of its failpoints on the
source or the destination (cases.py has the interface and the runner's
order of calls).

Where the instance must end up follows from the step: a live migration
killed before its guest moved stays on the source, after it belongs to
the destination; a resize killed before the destination started the
guest stays on the source, after it is resized at the destination; a
confirm ends on the destination and a revert on the source.

Which requests' action records checks.py must find closed with a
message: the interrupted request's, on the host where it was open when
the kill came. A step killed after its action had ended (a live
migration's take-over, a resize's last bookkeeping), or whose action
lives on the instance's other host, or an operation that keeps no action
record (confirm), registers no request: extra_checks then requires only
that no action of the instance is left open, which checks.py does too.
"""

import subprocess
import tempfile
import time

import oslo_messaging

from compute_agent import failpoints
from tests.fixtures import rpc
from tools.crash_matrix import cases

# The flavor a resize moves to (the guest boots with 1 vCPU, 128 MiB).
NEW_FLAVOR = {'vcpus': 1, 'memory_mb': 160}
POLL = 0.5
MIGRATION_ENDS = ('completed', 'failed', 'cancelled', 'error', 'confirmed',
                  'reverted')
# The destination's stand-in for LiveRollbackCase.
STAND_IN_XML = """<domain type='qemu'>
  <name>stand-in-{uuid}</name><uuid>{uuid}</uuid>
  <memory unit='MiB'>16</memory>
  <os><type arch='x86_64'>hvm</type></os>
</domain>"""
# How long the host that was not killed may take to notice that its peer
# lost the request it was waiting on (peers.call_watched: a few status
# polls once the peer is back) and to end its part.
SETTLE_TIMEOUT = 120


class MigrationCase(cases.Case):
    needs_two_hosts = True
    # Whether the interrupted request's action is open on the armed host
    # when the kill comes (see the module docstring).
    action_open_at_kill = True

    def send_interrupted(self, host, method, **kwargs):
        if self.action_open_at_kill:
            return self.send(host, method, **kwargs)
        call = host.rpc.call_in_background(
            method, timeout=cases.DOOMED_TIMEOUT, **kwargs)
        self.pending.append(call)
        return call

    # -- where things are -----------------------------------------------

    def hosts(self):
        return (self.source, self.destination)

    def owner(self):
        """The host whose own record the instance is, or None."""
        owners = [host for host in self.hosts()
                  if any(record['uuid'] == self.instance_uuid
                         for record in host.rpc.call('list_instances'))]
        if len(owners) != 1:
            raise cases.CaseFailure(
                f'instance {self.instance_uuid} is held by '
                f'{", ".join(h.name for h in owners) or "no host"}')
        return owners[0]

    def other(self, host):
        return self.destination if host is self.source else self.source

    def migration(self, host, migration_id):
        return host.rpc.call('get_migration', topic=rpc.ALT_TOPIC,
                             migration_id=migration_id)

    def latest_migration(self, host):
        found = host.rpc.call('list_migrations',
                              instance_uuid=self.instance_uuid)
        if not found:
            raise cases.CaseFailure(f'{host.name} has no migration of '
                                    f'{self.instance_uuid}')
        return found[-1]

    def wait_migration(self, host, migration_id, ends=MIGRATION_ENDS):
        deadline = time.monotonic() + cases.STEP_TIMEOUT
        while time.monotonic() < deadline:
            migration = self.migration(host, migration_id)
            if migration['status'] in ends:
                return migration
            time.sleep(POLL)
        raise cases.CaseFailure(f'migration {migration_id} not over on '
                                f'{host.name} within {cases.STEP_TIMEOUT} s')

    def expect_migration(self, migration, status):
        if migration['status'] != status:
            raise cases.CaseFailure(
                f'migration {migration["id"]} is {migration["status"]}, '
                f'expected {status}: {migration["message"]}')
        return migration

    # -- steps ----------------------------------------------------------

    def live_migrate(self, source, block=False):
        """Live-migrate the instance from source to the other host."""
        dest = self.other(source)
        migration = source.rpc.call(
            'live_migrate_instance', timeout=cases.STEP_TIMEOUT,
            instance_uuid=self.instance_uuid, dest_host=dest.name,
            block_migration=block)
        self.expect_migration(self.wait_migration(source, migration['id']),
                              'completed')
        self.expect_state(self.record(dest), 'active')
        return f'live-migrated it to {dest.name}: active/running'

    def resize(self):
        """Resize the instance from source to destination; the migration
        as the destination recorded it, completed."""
        migration = self.destination.rpc.call(
            'prep_resize', timeout=cases.STEP_TIMEOUT,
            instance_uuid=self.instance_uuid, new_flavor=NEW_FLAVOR,
            source_host=self.source.name)
        return self.expect_migration(
            self.wait_migration(self.destination, migration['id']),
            'completed')

    def confirm(self, migration_id):
        self.source.rpc.call('confirm_resize', timeout=cases.STEP_TIMEOUT,
                             migration_id=migration_id)
        record = self.expect_state(self.record(self.destination), 'active')
        return f'confirmed: {self.state_of(record)} on {self.destination.name}'

    def revert(self, migration_id):
        self.destination.rpc.call('revert_resize',
                                  timeout=cases.STEP_TIMEOUT,
                                  migration_id=migration_id)
        record = self.expect_state(self.record(self.source), 'active')
        return f'reverted: {self.state_of(record)} on {self.source.name}'

    def wait_settled(self):
        """Wait until neither host is busy with the instance: no task
        state, no migration of it in progress, no action of it open. The
        host that was not killed may be waiting on a request its peer lost
        when the runner's checks begin; returns whether it settled."""
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while time.monotonic() < deadline:
            if not any(self._busy(host) for host in self.hosts()):
                return True
            time.sleep(POLL)
        return False

    def _busy(self, host):
        if any(record['uuid'] == self.instance_uuid and
               record['task_state'] is not None
               for record in host.rpc.call('list_instances')):
            return True
        if any(migration['status'] not in MIGRATION_ENDS
               for migration in host.rpc.call(
                   'list_migrations', instance_uuid=self.instance_uuid)):
            return True
        try:
            actions = host.rpc.call('get_instance_actions',
                                    instance_uuid=self.instance_uuid)
        except oslo_messaging.RemoteError:
            return False   # not this host's instance
        return any(action['finish_time'] is None for action in actions)

    def extra_checks(self, views):
        return [f'{name}: action {action["action"]} of '
                f'{self.instance_uuid} left open'
                for name, view in views.items()
                for action in view.actions.get(self.instance_uuid, [])
                if action['finish_time'] is None]


# -- live migration ----------------------------------------------------------

class LiveMigrationCase(MigrationCase):
    operation = 'live-migration'
    # Whether the guest runs at the destination once the failpoint is
    # reached.
    moved = False

    def prepare(self):
        self.instance_uuid = self.boot(self.source, with_disk=False)

    def trigger(self):
        self.send_interrupted(self.source, 'live_migrate_instance',
                              instance_uuid=self.instance_uuid,
                              dest_host=self.destination.name)

    def expected_home(self):
        return self.destination if self.moved else self.source

    def resume(self):
        owner = self.owner()
        settled = self.latest_migration(self.source)
        return (f'migration {settled["status"]}; '
                + self.live_migrate(owner))


class LiveRollbackCase(LiveMigrationCase):
    """The destination's rollback, which only a failed migration reaches:
    a stand-in domain of the instance's uuid, running paused and transient
    at the destination as an incoming guest left behind does, makes its
    pre_live_migration refuse; the source then asks it to roll back, which
    destroys the stand-in before the failpoint. (A persistent stand-in
    would be refused: libvirt persists only a guest that has arrived.)"""

    def prepare(self):
        super().prepare()
        with tempfile.NamedTemporaryFile('w', suffix='.xml') as xml:
            xml.write(STAND_IN_XML.format(uuid=self.instance_uuid))
            xml.flush()
            subprocess.run(['virsh', '-c', self.destination.libvirtd.uri,
                            'create', '--paused', xml.name], check=True,
                           capture_output=True)


# -- cold migration and resize -----------------------------------------------

class ResizeCase(MigrationCase):
    operation = 'resize'
    # Whether the destination started the guest before the failpoint.
    arrived = False

    def prepare(self):
        self.instance_uuid = self.boot(self.source, with_disk=True)

    def trigger(self):
        self.send_interrupted(self.destination, 'prep_resize',
                              instance_uuid=self.instance_uuid,
                              new_flavor=NEW_FLAVOR,
                              source_host=self.source.name)

    def expected_home(self):
        return self.destination if self.arrived else self.source

    def resume(self):
        settled = self.latest_migration(self.destination)
        if self.owner() is self.destination:
            self.expect_migration(settled, 'completed')
            return (f'migration completed, resized on '
                    f'{self.destination.name}; '
                    + self.confirm(settled['id']))
        migration = self.resize()
        return (f'migration {settled["status"]}; resized again, then '
                + self.confirm(migration['id']))


# -- confirm and revert ------------------------------------------------------

class ConfirmCase(MigrationCase):
    """Confirm keeps no action record: nothing to find closed."""

    operation = 'resize-confirm'
    action_open_at_kill = False

    def prepare(self):
        self.instance_uuid = self.boot(self.source, with_disk=True)
        self.migration_id = self.resize()['id']

    def trigger(self):
        self.send_interrupted(self.source, 'confirm_resize',
                              migration_id=self.migration_id)

    def expected_home(self):
        return self.destination

    def resume(self):
        status = self.migration(self.source, self.migration_id)['status']
        if status == 'confirmed':
            record = self.expect_state(self.record(self.destination),
                                       'active')
            return (f'already confirmed: {self.state_of(record)} on '
                    f'{self.destination.name}')
        return f'migration {status}; ' + self.confirm(self.migration_id)


class RevertCase(ConfirmCase):
    operation = 'resize-revert'
    action_open_at_kill = True
    # Whether the restart undoes the revert (killed before the copy at the
    # destination was removed): the instance stays resized there.
    undone = False

    def trigger(self):
        self.send_interrupted(self.destination, 'revert_resize',
                              migration_id=self.migration_id)

    def expected_home(self):
        return self.destination if self.undone else self.source

    def resume(self):
        status = self.migration(self.destination,
                                self.migration_id)['status']
        if status == 'reverted':
            record = self.expect_state(self.record(self.source), 'active')
            return (f'already reverted: {self.state_of(record)} on '
                    f'{self.source.name}')
        return f'migration {status}; ' + self.revert(self.migration_id)


def _case(failpoint, base, armed_role, **attributes):
    name = ''.join(part.title() for part in
                   failpoint.replace('.', '_').split('_')) + 'Case'
    return type(name, (base,), dict(attributes, failpoint=failpoint,
                                    armed_role=armed_role))


F = failpoints
SOURCE, DEST = 'source', 'destination'
CASES = [
    # live migration, run by the source
    _case(F.LIVE_SOURCE_STARTED, LiveMigrationCase, SOURCE),
    _case(F.LIVE_SOURCE_DEST_PREPARED, LiveMigrationCase, SOURCE),
    # Its action is closed at the restart, but with the instance gone to
    # the destination the source no longer shows it.
    _case(F.LIVE_SOURCE_MOVED, LiveMigrationCase, SOURCE, moved=True,
          action_open_at_kill=False),
    # The action ended when the guest had moved, before these.
    _case(F.LIVE_SOURCE_DEST_FINISHED, LiveMigrationCase, SOURCE,
          moved=True, action_open_at_kill=False),
    _case(F.LIVE_SOURCE_CLEANED_UP, LiveMigrationCase, SOURCE, moved=True,
          action_open_at_kill=False),
    # The destination's kill ends the source's action: error (with its
    # message) before the move, success after it.
    _case(F.LIVE_DEST_PREPARED, LiveMigrationCase, DEST),
    _case(F.LIVE_DEST_DEFINED, LiveMigrationCase, DEST, moved=True,
          action_open_at_kill=False),
    _case(F.LIVE_DEST_FINISHED, LiveMigrationCase, DEST, moved=True,
          action_open_at_kill=False),
    _case(F.LIVE_DEST_ROLLED_BACK, LiveRollbackCase, DEST),
    # cold migration and resize, run by the destination; the action is
    # the source's
    _case(F.RESIZE_DEST_STARTED, ResizeCase, DEST,
          action_open_at_kill=False),
    _case(F.RESIZE_SOURCE_CLAIMED, ResizeCase, SOURCE),
    _case(F.RESIZE_SOURCE_POWERED_OFF, ResizeCase, SOURCE),
    _case(F.RESIZE_SOURCE_DISK_COPIED, ResizeCase, SOURCE),
    _case(F.RESIZE_DEST_DISK_COPIED, ResizeCase, DEST),
    _case(F.RESIZE_DEST_DEFINED, ResizeCase, DEST),
    # The source's action is closed, but with the instance handed over
    # the source no longer shows it (get_instance_actions).
    _case(F.RESIZE_SOURCE_DEST_FINISHED, ResizeCase, SOURCE, arrived=True,
          action_open_at_kill=False),
    _case(F.RESIZE_DEST_HANDED_OVER, ResizeCase, DEST, arrived=True,
          action_open_at_kill=False),
    # confirm, sent to the source
    _case(F.CONFIRM_SOURCE_STARTED, ConfirmCase, SOURCE),
    _case(F.CONFIRM_DEST_CLAIMED, ConfirmCase, DEST),
    _case(F.CONFIRM_SOURCE_DEST_CONFIRMED, ConfirmCase, SOURCE),
    _case(F.CONFIRM_SOURCE_REMOVED, ConfirmCase, SOURCE),
    # revert, sent to the destination, whose action is no longer shown
    # once its record of the instance moved back to the source (which the
    # restart finishes once the copy there is gone)
    _case(F.REVERT_DEST_STARTED, RevertCase, DEST, undone=True),
    _case(F.REVERT_DEST_REMOVED, RevertCase, DEST,
          action_open_at_kill=False),
    _case(F.REVERT_DEST_RECORD_MOVED, RevertCase, DEST,
          action_open_at_kill=False),
    _case(F.REVERT_SOURCE_STARTED, RevertCase, SOURCE,
          action_open_at_kill=False),
    _case(F.REVERT_SOURCE_RESTARTED, RevertCase, SOURCE,
          action_open_at_kill=False),
    _case(F.REVERT_DEST_SOURCE_RESTARTED, RevertCase, DEST,
          action_open_at_kill=False),
]
