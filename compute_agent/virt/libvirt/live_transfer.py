"""Moving a running guest: libvirt's live migration watched from the
calling thread, and its emulation on libvirt's test driver.

migration.py says what is real and what is emulated, and why the flags are
what they are.
"""

import logging
import threading
import time

import libvirt

from compute_agent import exception
from compute_agent.virt.libvirt import config
from compute_agent.virt.libvirt import domain_guest

LOG = logging.getLogger(__name__)

# How often a running live migration's statistics are read and reported.
POLL_INTERVAL = 0.25
# How long an emulated transfer takes when the bandwidth is unlimited,
# and how often it reports progress.
EMULATED_UNLIMITED_SECONDS = 1.0
EMULATED_STEP = 0.1
MIB = 1 << 20

_FLAGS = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER |
          libvirt.VIR_MIGRATE_PERSIST_DEST |
          libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)
UNDEFINE_FLAGS = (libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
                  libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
_RUNNING_JOB = (libvirt.VIR_DOMAIN_JOB_BOUNDED,
                libvirt.VIR_DOMAIN_JOB_UNBOUNDED)
_PROGRESS_FIGURES = ('memory_total', 'memory_processed', 'memory_remaining',
                     'disk_total', 'disk_processed', 'disk_remaining')


def migration_flags(block_migration, destination_xml):
    if block_migration:
        return _FLAGS | libvirt.VIR_MIGRATE_NON_SHARED_INC
    if config.disk_files(destination_xml):
        # The destination checked that it sees these very paths.
        return _FLAGS | libvirt.VIR_MIGRATE_UNSAFE
    return _FLAGS


def migration_params(target, destination_xml, bandwidth):
    params = {libvirt.VIR_MIGRATE_PARAM_DEST_XML: destination_xml,
              libvirt.VIR_MIGRATE_PARAM_PERSIST_XML: destination_xml}
    if bandwidth:
        params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = bandwidth
    if target.get('data_uri'):
        params[libvirt.VIR_MIGRATE_PARAM_URI] = target['data_uri']
    return params


def data_uri(inbound_addr):
    """QEMU's migration URI for an address; None leaves it to libvirt."""
    if not inbound_addr:
        return None
    if ':' in inbound_addr and not inbound_addr.startswith('['):
        inbound_addr = f'[{inbound_addr}]'   # IPv6
    return f'tcp://{inbound_addr}'


def job_progress(stats):
    """MigrationControl.report() arguments from libvirt's job statistics:
    its byte counts, and the percentage of memory and disk not left."""
    figures = {name: stats.get(name, 0) for name in _PROGRESS_FIGURES}
    total = figures['memory_total'] + figures['disk_total']
    remaining = figures['memory_remaining'] + figures['disk_remaining']
    figures['percent'] = (round(100.0 * (total - remaining) / total, 1)
                          if total else 0.0)
    return figures


class _Transfer(threading.Thread):
    """migrateToURI3, which blocks until the migration has ended."""

    def __init__(self, domain, uri, params, flags):
        super().__init__(name=f'live-migration-{domain.UUIDString()}',
                         daemon=True)
        self._call = (domain.migrateToURI3, uri, params, flags)
        self.error = None
        self.finished = threading.Event()

    def run(self):
        migrate, *args = self._call
        try:
            migrate(*args)
        except Exception as error:   # any failure must reach the watcher
            self.error = error
        finally:
            self.finished.set()


def live_migrate(domain, target, destination_xml, block_migration, control,
                 bandwidth, poll_interval=POLL_INTERVAL):
    """Move the running guest with libvirt; see the module docstring."""
    uri = target['libvirt_uri']
    transfer = _Transfer(domain, uri,
                         migration_params(target, destination_xml, bandwidth),
                         migration_flags(block_migration, destination_xml))
    transfer.start()
    abort_reason, suspended = None, False
    while not transfer.finished.is_set():
        if abort_reason is None:
            abort_reason = control.abort_reason()
            if abort_reason is not None:
                _abort(domain, abort_reason)
            elif control.take_force_complete() and not suspended:
                suspended = _suspend(domain)
        _report(domain, control)
        if abort_reason is None:
            control.wait(poll_interval)   # wakes early on a request
        else:
            transfer.finished.wait(poll_interval)
    if transfer.error is None:
        if abort_reason is not None:
            LOG.info('Live migration of %s finished before the abort took '
                     'effect', domain.UUIDString())
        return
    raise _failure(domain, uri, transfer.error, abort_reason, suspended)


def _report(domain, control):
    try:
        stats = domain.jobStats()
    except libvirt.libvirtError as error:
        # Typically the job ended a moment ago and the guest left.
        LOG.debug('No job statistics for %s: %s', domain.UUIDString(),
                  error.get_error_message())
        return
    # Only a running job's figures: those of a cancelled or failed one
    # are zeros that would hide how far it got.
    if stats.get('type') in _RUNNING_JOB:
        control.report(**job_progress(stats))


def _abort(domain, reason):
    LOG.info('Aborting the live migration of %s: %s', domain.UUIDString(),
             reason)
    try:
        domain.abortJob()
    except libvirt.libvirtError as error:
        # Most likely the job ended meanwhile; its outcome tells.
        LOG.warning('Could not abort the live migration of %s: %s',
                    domain.UUIDString(), error.get_error_message())


def _suspend(domain):
    try:
        domain.suspend()
    except libvirt.libvirtError as error:
        LOG.warning('Could not pause %s to force its live migration to '
                    'complete: %s', domain.UUIDString(),
                    error.get_error_message())
        return False
    LOG.info('Paused %s so that its live migration completes',
             domain.UUIDString())
    return True


def _failure(domain, uri, error, abort_reason, suspended):
    """The MigrationError for a failed transfer, once the guest is running
    on this host again (paused only when it was paused for the move)."""
    detail = _message(error)
    if not _resumed_here(domain, suspended):
        return exception.MigrationError(
            reason=f'libvirt failed to move the guest to {uri}: {detail}; '
                   f'the guest is not running on this host any more: find '
                   f'out where it runs (virsh list --all on both hosts) '
                   f'before anything else')
    if abort_reason is not None:
        return exception.MigrationError(
            reason=f'aborted: {abort_reason}; the guest still runs on this '
                   f'host')
    return exception.MigrationError(
        reason=f'libvirt could not move the guest to {uri}: {detail}; the '
               f'guest still runs on this host')


def _resumed_here(domain, suspended):
    try:
        state, reason = domain.state()
        if state == libvirt.VIR_DOMAIN_PAUSED and (
                suspended or reason == libvirt.VIR_DOMAIN_PAUSED_MIGRATION):
            domain.resume()
        return bool(domain.isActive())
    except libvirt.libvirtError as error:
        LOG.error('After its failed live migration, %s: %s',
                  domain.UUIDString(), error.get_error_message())
        return False


def _message(error):
    if isinstance(error, libvirt.libvirtError):
        return error.get_error_message()
    return str(error)


def failed(step, instance_uuid, error):
    """The MigrationError for a migration step that libvirt, qemu-img or
    the filesystem failed."""
    return exception.MigrationError(
        reason=f'could not {step} instance {instance_uuid} on this host: '
               f'{_message(error)}')


def emulate_live_migration(domain, control, bandwidth, step=EMULATED_STEP,
                           clock=time.monotonic):
    """The test driver's stand-in for a transfer; see the module
    docstring. Removes the source's domain at the end."""
    memory = domain.info()[2] * 1024
    duration = (memory / (bandwidth * MIB) if bandwidth
                else EMULATED_UNLIMITED_SECONDS)
    started = clock()
    while True:
        done = min((clock() - started) / duration, 1.0) if duration else 1.0
        reason = control.abort_reason()
        if reason is not None and done < 1.0:
            raise exception.MigrationError(
                reason=f'aborted: {reason}; the guest still runs on this '
                       f'host')
        if done < 1.0 and control.take_force_complete():
            done = 1.0
        processed = int(memory * done)
        control.report(memory_total=memory, memory_processed=processed,
                       memory_remaining=memory - processed, disk_total=0,
                       disk_processed=0, disk_remaining=0,
                       percent=round(100.0 * done, 1))
        if done >= 1.0:
            break
        control.wait(min(step, duration * (1.0 - done)))
    try:
        domain_guest.unless_already_off(domain.destroy)
        domain.undefineFlags(UNDEFINE_FLAGS)
    except libvirt.libvirtError as error:
        raise exception.MigrationError(
            reason=f'the emulated migration could not remove the guest from '
                   f'this host: {error.get_error_message()}') from error
