"""Settling, at restart, a migration this host was the source of.

A migration's source holds the instance record and drives the hand-over
(the source of a cold migration answers resize_instance, but it is the
one that powers the guest off and hands it over). Killed in the middle,
its record of the instance says nothing true any more: the guest may
still run here, or already run at the destination, which may or may not
have taken the record over. So the restarted source asks the other end,
which kept running, and settles both to one owner:

* the guest still runs here (a live migration), or the destination has
  not taken the instance (a cold one): the instance stays here; a live
  migration's destination is told to roll its arrival back, a cold
  migration's original is restarted as it was;
* the guest left (a live migration) or the destination took the
  instance (a cold one): the destination owns it; a live migration's
  destination is asked to take it over if it has not yet, and the files
  left here are removed; a cold migration's original is kept powered off
  for confirm or revert, as after a hand-over.

A confirm or revert killed half-way is finished when its point of no
return had passed (the destination confirmed; the copy at the
destination was removed), and otherwise undone, so it can be sent again.
A cold migration's destination, which runs that flow, settles its own
part: completed once the instance arrived here, else failed with what
the copy left here removed.

When the other end cannot be reached, nothing is guessed: the migration
is error, and the instance settles from what libvirt says here.
"""

import logging
import time

import oslo_messaging

from compute_agent import exception
from compute_agent import migration_checks as checks
from compute_agent import peers
from compute_agent import rpcapi
from compute_agent.virt import driver as virt_driver
from compute_agent.vm_states import ACTIVE, ERROR, RESIZED, STOPPED

LOG = logging.getLogger(__name__)

# How long, in all, a restart may spend asking other agents before it
# serves (systemd's start timeout is 90 s by default); an agent that did
# not answer once is not asked again during the same restart.
PEER_BUDGET = 30.0


class Settled:
    """What the restart did about one migration: the migration's new
    status and message, and the values its instance record takes (None:
    leave the instance to the generic settling)."""

    def __init__(self, status, message, instance=None):
        self.status = status
        self.message = message
        self.instance = instance


def destination_owns(peers_api, ctxt, migration):
    """The destination's record of the instance, when it is its own."""
    dest, uuid = migration['dest_host'], migration['instance_uuid']
    try:
        with peers.calling(dest, f'describe instance {uuid}'):
            record = peers_api.get_instance(
                ctxt, dest, uuid, timeout=rpcapi.PEER_CHECK_TIMEOUT)
    except exception.MigrationError as error:
        if 'InstanceNotFound' in str(error):
            return None
        raise
    return record if record['host'] == dest else None


def take_over_at_destination(peers_api, ctxt, migration, record):
    """Have the destination of a live migration own the instance whose
    guest left this host; returns its record there. Asked first whether
    it already does (its answer to an earlier request may be lost)."""
    arrived = destination_owns(peers_api, ctxt, migration)
    if arrived is not None:
        return arrived
    dest = migration['dest_host']
    with peers.calling(dest, 'take the migrated instance over'):
        return peers_api.post_live_migration_at_destination(
            ctxt, dest, instance=record, migration=migration,
            destination_xml=migration['details'].get('destination_xml'))


class BudgetedPeers:
    """A ComputeAPI whose calls share one time budget, and skip a host
    that timed out once (they time out at once)."""

    def __init__(self, peers_api, budget, clock=time.monotonic):
        self._peers = peers_api
        self._clock = clock
        self._deadline = clock() + budget
        self._silent = set()

    def __getattr__(self, method):
        def call(ctxt, host, *args, timeout=None, **kwargs):
            left = self._deadline - self._clock()
            if host in self._silent or left <= 0:
                raise oslo_messaging.MessagingTimeout(
                    f'no time left at start to ask {host}')
            timeout = min(timeout or rpcapi.PEER_CHECK_TIMEOUT, left)
            try:
                return getattr(self._peers, method)(
                    ctxt, host, *args, timeout=timeout, **kwargs)
            except oslo_messaging.MessagingTimeout:
                self._silent.add(host)
                raise
        return call


class MigrationRecovery:
    def __init__(self, host, driver, database, peers_api):
        self._host = host
        self._driver = driver
        self._db = database
        self._peers = None if peers_api is None else \
            BudgetedPeers(peers_api, PEER_BUDGET)

    def settle(self, migration, interrupted):
        """A Settled for a migration of this host's, or None when this
        class leaves it to the generic settling (error). interrupted:
        what the migration's message says happened to it."""
        if self._peers is None:
            return None
        step = self._step(migration)
        if step is None:
            return None
        try:
            return step(rpcapi.new_context(), migration, interrupted)
        except exception.MigrationError as error:
            LOG.error('Migration %s: could not settle it with the other '
                      'end at restart: %s', migration['id'], error)
            return Settled('error', f'{interrupted}; at restart {error}; '
                                    f'check the instance on both hosts')

    def _step(self, migration):
        """The method that settles migration here, if any."""
        record = self._db.get_instance(migration['instance_uuid']) or {}
        task, status = record.get('task_state'), migration['status']
        mine = record.get('host') == self._host
        if migration['source_host'] == self._host:
            if migration['kind'] in checks.LIVE:
                return self._live if mine and task == 'migrating' else None
            return {'running': self._cold if mine and
                    task == 'resize_migrating' else None,
                    'confirming': self._confirming,
                    'reverting': self._reverting_at_source}.get(status)
        if migration['kind'] in checks.COLD:
            if status in checks.ARRIVING:
                return self._arriving
            if status == 'reverting':
                return self._reverting_at_destination
        return None

    # -- live migration -----------------------------------------------------

    def _live(self, ctxt, migration, interrupted):
        record = self._db.get_instance(migration['instance_uuid'])
        uuid, dest = record['uuid'], migration['dest_host']
        power_state = self._driver.get_power_state(uuid)
        if power_state == virt_driver.RUNNING:
            rolled_back = self._roll_back_destination(ctxt, migration,
                                                      interrupted)
            return Settled(
                'failed', f'{interrupted}; the guest still ran here, so it '
                          f'stays on {self._host}{rolled_back}',
                {'vm_state': ACTIVE, 'power_state': power_state})
        arrived = take_over_at_destination(self._peers, ctxt, migration,
                                           record)
        try:
            self._driver.cleanup_after_live_migration(
                uuid, migration['details'].get('destination_xml'))
        except exception.ComputeAgentError as error:
            LOG.warning('Live migration %s: could not remove the files the '
                        'instance left here: %s', migration['id'], error)
        LOG.warning('Live migration %s: the guest of instance %s had left '
                    'this host; %s owns it now', migration['id'], uuid, dest)
        return Settled(
            'completed', f'{interrupted}; the guest had left this host and '
                         f'{dest} owns it now',
            {'host': dest, 'vm_state': arrived['vm_state'],
             'power_state': arrived['power_state']})

    def _roll_back_destination(self, ctxt, migration, interrupted):
        if migration['status'] == 'queued':
            return ''   # nothing was asked of the destination yet
        dest = migration['dest_host']
        try:
            with peers.calling(dest, 'roll the migration back'):
                self._peers.rollback_live_migration_at_destination(
                    ctxt, dest, instance_uuid=migration['instance_uuid'],
                    migration_id=migration['id'], reason=interrupted)
        except exception.MigrationError as error:
            if 'knows no migration' in str(error):
                return ''   # killed before the destination heard of it
            raise
        return f'; {dest} rolled its part back'

    # -- cold migration and resize -------------------------------------------

    def _cold(self, ctxt, migration, interrupted):
        record = self._db.get_instance(migration['instance_uuid'])
        uuid, dest = record['uuid'], migration['dest_host']
        was_running = record['power_state'] == virt_driver.RUNNING
        if destination_owns(self._peers, ctxt, migration) is not None:
            # finish_resize ran there: the hand-over is done but for the
            # records here (see ResizeSource._hand_over).
            self._db.update_migration(
                migration['id'], details=dict(
                    migration['details'], power_on=was_running,
                    vm_state=record['vm_state']))
            return Settled(
                'completed', f'{interrupted}; {dest} had started the '
                             f'instance, so it is {RESIZED} there and the '
                             f'original is kept here for confirm or revert',
                {'host': dest, 'vm_state': RESIZED,
                 'power_state': virt_driver.SHUTDOWN})
        self._driver.finish_revert_migration(uuid, was_running)
        power_state = self._driver.get_power_state(uuid)
        vm_state = {virt_driver.RUNNING: ACTIVE,
                    virt_driver.SHUTDOWN: STOPPED}.get(power_state, ERROR)
        return Settled(
            'failed', f'{interrupted}; {dest} had not taken the instance, '
                      f'so the original is back here as it was',
            {'vm_state': vm_state, 'power_state': power_state})

    def _confirming(self, ctxt, migration, interrupted):
        """Confirm, on the source: the destination confirms first; the
        original goes once it has."""
        dest = migration['dest_host']
        if peer_status(self._peers, ctxt, dest, migration) != 'confirmed':
            return Settled('completed', f'{interrupted}; {dest} had not '
                                        f'confirmed it: confirm it again')
        self._driver.confirm_migration(
            migration['instance_uuid'],
            migration['details'].get('shared_storage', False))
        return Settled('confirmed', f'{interrupted}; {dest} had confirmed '
                                    f'it, so the original was removed here')

    def _reverting_at_source(self, ctxt, migration, interrupted):
        """finish_revert_resize, on the source: the destination removed
        its copy before it asked, so the original is the only one left:
        restart it (see ResizeSource.finish_revert_resize)."""
        uuid, details = migration['instance_uuid'], migration['details']
        self._driver.finish_revert_migration(uuid,
                                             details.get('power_on', True))
        old = details['old_flavor']
        return Settled(
            'reverted', f'{interrupted}; {migration["dest_host"]} had '
                        f'removed its copy, so the original was restarted '
                        f'here',
            {'host': self._host, 'vm_state': details.get('vm_state', ACTIVE),
             'power_state': self._driver.get_power_state(uuid),
             'vcpus': old['vcpus'], 'memory_mb': old['memory_mb']})

    # -- the destination of a cold migration or resize -----------------------

    def _arriving(self, ctxt, migration, interrupted):
        uuid = migration['instance_uuid']
        record = self._db.get_instance(uuid)
        if record is not None and record['host'] == self._host:
            return Settled('completed', f'{interrupted}; the instance had '
                                        f'arrived here: confirm or revert '
                                        f'it')
        shared = migration['details'].get('shared_storage')
        if shared is not None:
            # Only what finish_resize defined, or (not shared) the copy.
            self._driver.revert_migration_at_destination(uuid, shared)
        return Settled('failed', f'{interrupted}; the instance had not '
                                 f'arrived here, so it stays on '
                                 f'{migration["source_host"]}')

    def _reverting_at_destination(self, ctxt, migration, interrupted):
        """revert_resize, on the destination: it removes its copy, moves
        the record back and has the source restart the original."""
        uuid, source = migration['instance_uuid'], migration['source_host']
        record = self._db.get_instance(uuid)
        power_state = self._driver.get_power_state(uuid)
        if record['host'] == self._host and \
                power_state != virt_driver.NOSTATE:
            return Settled('completed', f'{interrupted}; the copy here was '
                                        f'still there: revert it again',
                           {'vm_state': RESIZED,
                            'power_state': power_state})
        self._driver.revert_migration_at_destination(
            uuid, migration['details'].get('shared_storage', False))
        if peer_status(self._peers, ctxt, source, migration) != 'reverted':
            with peers.calling(source, 'restart the original'):
                self._peers.finish_revert_resize(
                    ctxt, source, migration_id=migration['id'])
        return Settled('reverted', f'{interrupted}; the copy here was '
                                   f'removed and the original runs on '
                                   f'{source} again',
                       {'host': source})


def peer_status(peers_api, ctxt, host, migration):
    """The status of the migration in host's record of it."""
    with peers.calling(host, f'report migration {migration["id"]}'):
        return peers_api.get_migration(
            ctxt, host, migration['id'],
            timeout=rpcapi.PEER_CHECK_TIMEOUT)['status']


def peer_has_status(peers_api, ctxt, host, migration, status):
    """Whether host's record of the migration has status; False when
    host cannot say."""
    try:
        return peer_status(peers_api, ctxt, host, migration) == status
    except exception.MigrationError as error:
        LOG.warning('Migration %s: %s', migration['id'], error)
        return False
