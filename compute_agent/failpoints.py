"""Named failpoints: places where a crash test kills the agent.

A failpoint is a name passed to reach() at one step of a multi-step
operation. When that name is armed, the process logs one line and kills
itself with SIGKILL on the spot, as a power loss or an OOM kill would, so
a test can see what each step leaves behind and what the restart's
recovery (recovery.RestartRecovery) makes of it.

The switch is for tests only and is deliberately not a configuration
option: a configuration file cannot set it. It is read once, at start,
from two environment variables, and is honoured only when both are set:

* ``COMPUTE_AGENT_TEST_FAILPOINTS=name[,name...]``, the armed names;
* ``COMPUTE_AGENT_TEST_FAILPOINTS_I_AM_A_TEST=yes``, the acknowledgement.

Armed names without the acknowledgement, or an unknown name, stop the
agent from starting. Disarmed, reach() costs one frozenset lookup.
"""

import logging
import os
import signal
import sys

LOG = logging.getLogger(__name__)

ENV_ARMED = 'COMPUTE_AGENT_TEST_FAILPOINTS'
ENV_ACKNOWLEDGED = 'COMPUTE_AGENT_TEST_FAILPOINTS_I_AM_A_TEST'
ACKNOWLEDGEMENT = 'yes'

# -- lifecycle.py: Lifecycle -----------------------------------------------
# build: the record exists (spawning), before the driver spawns the guest
BUILD_RECORDED = 'build.recorded'
# build: the guest is spawned, before waiting for its external events
BUILD_SPAWNED = 'build.spawned'
# build: the events came, before the outcome is committed
BUILD_EVENTS_RECEIVED = 'build.events_received'
# start: claimed (powering_on), before the driver powers the guest on
START_CLAIMED = 'start.claimed'
# start: the guest is on, before the outcome is committed
START_POWERED_ON = 'start.powered_on'
# stop: claimed (powering_off), before the power-off starts
STOP_CLAIMED = 'stop.claimed'
# stop: the guest is off (after the destroy if one was needed), before
# the outcome is committed
STOP_POWERED_OFF = 'stop.powered_off'
# reboot: claimed (rebooting or rebooting_hard), before the power-off
REBOOT_CLAIMED = 'reboot.claimed'
# reboot: the guest is off, before it is powered on again
REBOOT_POWERED_OFF = 'reboot.powered_off'
# reboot: the guest is on again, before the outcome is committed
REBOOT_POWERED_ON = 'reboot.powered_on'

# -- rescue_shelve.py: RescueShelve ----------------------------------------
# rescue: claimed (rescuing), before the power-off
RESCUE_CLAIMED = 'rescue.claimed'
# rescue: the guest is off, before the rescue definition boots
RESCUE_POWERED_OFF = 'rescue.powered_off'
# rescue: the rescue guest runs, before the outcome is committed
RESCUE_BOOTED = 'rescue.booted'
# unrescue: claimed (unrescuing), before the driver unrescues
UNRESCUE_CLAIMED = 'unrescue.claimed'
# unrescue: the guest's own definition runs, before the commit
UNRESCUE_RESTORED = 'unrescue.restored'
# shelve: claimed (shelving), before the power-off
SHELVE_CLAIMED = 'shelve.claimed'
# shelve: the guest is off, before the snapshot
SHELVE_POWERED_OFF = 'shelve.powered_off'
# shelve: the snapshot is recorded, before the outcome is committed
SHELVE_SNAPSHOTTED = 'shelve.snapshotted'
# shelve-offload: claimed (shelving_offloading), before power-off/snapshot
OFFLOAD_CLAIMED = 'offload.claimed'
# shelve-offload: the guest is off and its disk kept, before the delete
OFFLOAD_SNAPSHOTTED = 'offload.snapshotted'
# shelve-offload: the guest is deleted, before the outcome is committed
OFFLOAD_DELETED = 'offload.deleted'
# unshelve: claimed (unshelving), before the guest is powered on/spawned
UNSHELVE_CLAIMED = 'unshelve.claimed'
# unshelve: the guest runs, before its snapshot is deleted
UNSHELVE_BOOTED = 'unshelve.booted'
# unshelve: the snapshot is deleted, before the outcome is committed
UNSHELVE_SNAPSHOT_DELETED = 'unshelve.snapshot_deleted'

# -- live_migration_source.py: LiveMigrationSource -------------------------
# source: the migration record is running, before the destination prepares
LIVE_SOURCE_STARTED = 'live_migration.source.started'
# source: the destination is prepared, before the guest is moved
LIVE_SOURCE_DEST_PREPARED = 'live_migration.source.dest_prepared'
# source: the guest runs on the destination, before the destination
# takes the record over
LIVE_SOURCE_MOVED = 'live_migration.source.moved'
# source: the destination took over, before the source cleans up
LIVE_SOURCE_DEST_FINISHED = 'live_migration.source.dest_finished'
# source: the source is cleaned up, before the outcome is committed
LIVE_SOURCE_CLEANED_UP = 'live_migration.source.cleaned_up'

# -- live_migration_destination.py: LiveMigrationDestination ---------------
# destination: prepared (the incoming hold taken), before answering
LIVE_DEST_PREPARED = 'live_migration.dest.prepared'
# destination: the guest's definition is kept here, before the record
LIVE_DEST_DEFINED = 'live_migration.dest.defined'
# destination: the record moved here, before the finish is answered
LIVE_DEST_FINISHED = 'live_migration.dest.finished'
# destination: rollback, the arrival is destroyed, before the record
LIVE_DEST_ROLLED_BACK = 'live_migration.dest.rolled_back'

# -- resize_destination.py: ResizeDestination ------------------------------
# destination: the migration record is running, before the source is asked
# to power the guest off and copy its disk
RESIZE_DEST_STARTED = 'resize.dest.started'
# destination: finish_resize came (the disk is copied), before the guest
# is defined here
RESIZE_DEST_DISK_COPIED = 'resize.dest.disk_copied'
# destination: the guest is defined here, before its record is written
RESIZE_DEST_DEFINED = 'resize.dest.defined'
# destination: the source handed over, before the migration is completed
RESIZE_DEST_HANDED_OVER = 'resize.dest.handed_over'
# destination: confirm, the migration claimed, before the commit
CONFIRM_DEST_CLAIMED = 'confirm.dest.claimed'
# destination: revert, the migration claimed, before the guest is removed
REVERT_DEST_STARTED = 'revert.dest.started'
# destination: revert, the guest is removed here, before the record moves
# back to the source
REVERT_DEST_REMOVED = 'revert.dest.removed'
# destination: revert, the record is the source's, before the source
# restarts the original
REVERT_DEST_RECORD_MOVED = 'revert.dest.record_moved'
# destination: revert, the original runs again, before the commit
REVERT_DEST_SOURCE_RESTARTED = 'revert.dest.source_restarted'

# -- resize_source.py: ResizeSource ----------------------------------------
# source: claimed for the migration, before the power-off
RESIZE_SOURCE_CLAIMED = 'resize.source.claimed'
# source: the guest is off, before its disk is copied
RESIZE_SOURCE_POWERED_OFF = 'resize.source.powered_off'
# source: the disk is copied, before the destination starts the guest
RESIZE_SOURCE_DISK_COPIED = 'resize.source.disk_copied'
# source: the destination started the guest, before the commit here
RESIZE_SOURCE_DEST_FINISHED = 'resize.source.dest_finished'
# source: confirm, the migration claimed, before the destination confirms
CONFIRM_SOURCE_STARTED = 'confirm.source.started'
# source: confirm, the destination confirmed, before the original is
# removed here
CONFIRM_SOURCE_DEST_CONFIRMED = 'confirm.source.dest_confirmed'
# source: confirm, the original is removed, before the commit
CONFIRM_SOURCE_REMOVED = 'confirm.source.removed'
# source: revert, the migration claimed, before the original restarts
REVERT_SOURCE_STARTED = 'revert.source.started'
# source: revert, the original runs here, before the record is committed
REVERT_SOURCE_RESTARTED = 'revert.source.restarted'

# -- virt/power.py: power_off, inside any operation's power-off ------------
# the first clean shutdown request is sent, the wait for the guest begins
POWER_OFF_REQUESTED = 'power_off.requested'
# the wait is over (timeout or forced request), before the destroy
POWER_OFF_DESTROYING = 'power_off.destroying'

ALL = frozenset(value for name, value in list(globals().items())
                if name.isupper() and name not in (
                    'ENV_ARMED', 'ENV_ACKNOWLEDGED', 'ACKNOWLEDGEMENT',
                    'LOG') and isinstance(value, str))

# The armed names; set once at start by arm_from_environment().
_armed = frozenset()


class FailpointError(Exception):
    """The switch was set wrongly; the agent must not start."""


def parse(environ):
    """The failpoints environ arms, or raise FailpointError."""
    listed = environ.get(ENV_ARMED, '')
    names = frozenset(name.strip() for name in listed.split(',')
                      if name.strip())
    if not names:
        return frozenset()
    if environ.get(ENV_ACKNOWLEDGED) != ACKNOWLEDGEMENT:
        raise FailpointError(
            f'{ENV_ARMED} is set but {ENV_ACKNOWLEDGED} is not '
            f'{ACKNOWLEDGEMENT!r}: failpoints kill the agent and are for '
            f'crash tests only; unset {ENV_ARMED}')
    unknown = sorted(names - ALL)
    if unknown:
        raise FailpointError(
            f'{ENV_ARMED} names unknown failpoints: {", ".join(unknown)}')
    return names


def arm_from_environment(environ=None):
    """Read the switch once, at start; warn loudly when it arms any."""
    global _armed
    _armed = parse(os.environ if environ is None else environ)
    if _armed:
        LOG.warning('TEST FAILPOINTS ARMED: this agent kills itself with '
                    'SIGKILL on reaching %s. This is for crash tests only; '
                    'never run a production agent with %s set.',
                    ', '.join(sorted(_armed)), ENV_ARMED)
    return _armed


def reach(name):
    """One step of an operation; dies here if name is armed."""
    if name in _armed:
        _die(name)


def _die(name):
    LOG.critical('Failpoint %s reached: killing this agent (pid %d) with '
                 'SIGKILL', name, os.getpid())
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)
