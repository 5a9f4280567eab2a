"""The hypervisor interface the manager depends on.

Drivers take plain values (no configuration object) and name guests by
instance uuid. Power states use the wire contract's words.
"""

import abc
import dataclasses

RUNNING = 'running'
SHUTDOWN = 'shutdown'
PAUSED = 'paused'
CRASHED = 'crashed'
NOSTATE = 'nostate'


def wants_guest_agent(image_properties):
    """The image says its guests run the QEMU guest agent: the guest gets
    the agent's channel, and power-offs ask the agent first."""
    value = (image_properties or {}).get('hw_qemu_guest_agent', '')
    return str(value).strip().lower() in ('yes', 'true', '1')


@dataclasses.dataclass(frozen=True)
class PowerOffResult:
    """What a power-off did: ``result`` is 'clean' when the guest went off
    by itself, 'forced' when it was destroyed; ``method`` says how the off
    state came about ('acpi', 'destroy' or 'already-off'); when a clean
    power-off waited for the guest, ``detected_by`` says what ended the
    wait: 'event' (the guest's lifecycle event) or 'poll' (the state poll,
    as when the event was lost). ``off_event_at``, when the event ended
    the wait, is the time.monotonic() at which it reached the agent: the
    start of the detection lag the metrics report, meaningless outside
    this process, so never in the record."""

    requested: str
    result: str
    method: str
    seconds: float
    timeout: int
    shutdown_requests: int = 0
    detected_by: str = None
    off_event_at: float = None

    def to_record(self):
        record = {'requested': self.requested, 'result': self.result,
                  'seconds': round(self.seconds, 3),
                  'timeout': self.timeout, 'method': self.method}
        if self.detected_by is not None:
            record['detected_by'] = self.detected_by
        return record


class ComputeDriver(abc.ABC):
    @abc.abstractmethod
    def init_host(self, host):
        """Connect to the hypervisor; called once before serving."""

    def health(self):
        """How the link to the hypervisor stands, for the service status:
        a JSON-serialisable dict, or None from a driver with nothing to
        report."""
        return None

    @abc.abstractmethod
    def check_image(self, image):
        """Raise InvalidInput when this host cannot boot the image."""

    @abc.abstractmethod
    def spawn(self, instance_uuid, name, vcpus, memory_mb, image):
        """Define the guest and start it."""

    @abc.abstractmethod
    def power_on(self, instance_uuid):
        """Start a defined guest that is off."""

    @abc.abstractmethod
    def power_off(self, instance_uuid, clean, timeout, retry_interval,
                  control=None, use_guest_agent=False):
        """Power the guest off; return a PowerOffResult.

        With clean=True the guest is asked to shut down (by its guest agent
        first when use_guest_agent, else ACPI), the request is re-sent every
        retry_interval seconds, and the guest is destroyed when it is still
        on after timeout seconds, or as soon as control.force() is called.
        With clean=False it is destroyed at once. control (a
        PowerOffControl) also reports progress while the guest is waited
        for.
        """

    @abc.abstractmethod
    def snapshot(self, instance_uuid, snapshot_path):
        """Copy the powered-off guest's disk to snapshot_path as a
        standalone image (no backing file); return its size in bytes, or
        None when the guest has no disk (nothing is written then)."""

    @abc.abstractmethod
    def rescue(self, instance_uuid, name, vcpus, memory_mb, image,
               rescue_image):
        """Boot the powered-off guest from rescue_image (an image spec as
        build takes it), its own disk attached as the second disk. Its own
        definition is kept, for unrescue() to restore."""

    @abc.abstractmethod
    def unrescue(self, instance_uuid):
        """Destroy the rescue guest, restore the guest's own definition
        and start it."""

    @abc.abstractmethod
    def get_console_output(self, instance_uuid, max_bytes):
        """The last max_bytes of the guest's serial console log, as text;
        empty when the guest has no console log (e.g. the test driver)."""

    @abc.abstractmethod
    def delete(self, instance_uuid):
        """Remove the (powered-off) guest's definition and files."""

    @abc.abstractmethod
    def get_power_state(self, instance_uuid):
        """One of the power-state words; NOSTATE when it is not defined."""

    # -- live migration -------------------------------------------------
    #
    # The source's manager drives a live migration; the driver calls run
    # on the host named in each docstring. ``target`` is what
    # migration_target() returned on the destination.

    @abc.abstractmethod
    def migration_target(self):
        """On the destination: what a source needs to migrate a guest
        here, as a JSON-serialisable dict (libvirt URI, data address)."""

    @abc.abstractmethod
    def get_migratable_xml(self, instance_uuid):
        """On the source: the running guest's definition as a
        destination needs it."""

    @abc.abstractmethod
    def pre_live_migration(self, instance_uuid, migratable_xml, image,
                           block_migration):
        """On the destination: prepare to receive the guest (its
        directory, for a block migration an empty overlay of its disk) and
        return the domain XML it is to run with here (this host's paths).
        Raises MigrationError when it cannot receive it."""

    @abc.abstractmethod
    def live_migration(self, instance_uuid, target, destination_xml,
                       block_migration, control):
        """On the source: move the running guest to target and block until
        it runs there; the source's definition is gone afterwards.
        Honours control (a MigrationControl): reports progress, aborts
        when asked or at its deadline, forces completion when asked. On
        failure or abort raises MigrationError with the guest still
        running here."""

    @abc.abstractmethod
    def post_live_migration_at_destination(self, instance_uuid,
                                           destination_xml):
        """On the destination: the guest runs here; make its definition
        persistent and resume it should it be paused."""

    @abc.abstractmethod
    def rollback_live_migration_at_destination(self, instance_uuid):
        """On the destination: remove whatever pre_live_migration or a
        failed migration left (a paused incoming domain, files)."""

    @abc.abstractmethod
    def cleanup_after_live_migration(self, instance_uuid,
                                     destination_xml=None):
        """On the source: remove the guest's files once it runs on the
        destination. destination_xml, the destination's definition, says
        which of them it goes on using when this process did not run the
        migration (it restarted since)."""

    # -- cold migration and resize --------------------------------------

    @abc.abstractmethod
    def instance_path(self, instance_uuid):
        """The directory holding the guest's files on this host."""

    @abc.abstractmethod
    def create_shared_storage_marker(self, instance_uuid):
        """On the destination: create a uniquely named file in the guest's
        directory and return its name, for
        check_shared_storage_marker() on the source."""

    @abc.abstractmethod
    def check_shared_storage_marker(self, instance_uuid, marker):
        """On the source: whether the marker file is in the guest's
        directory here, i.e. both hosts keep guests' files on one shared
        filesystem."""

    @abc.abstractmethod
    def remove_shared_storage_marker(self, instance_uuid, marker):
        """On the destination: remove the marker file again."""

    @abc.abstractmethod
    def migrate_disk(self, instance_uuid, destination_path, shared_storage,
                     target=None, control=None):
        """On the source, with the guest powered off: copy its own disk
        into destination_path (the destination's instance_path()), unless
        shared_storage; target is the destination's migration_target(),
        None from a destination too old to send it. A copy stops, leaving
        no partial file, when control (a MigrationControl) gives an abort
        reason. Returns {'disk': bool}: whether the guest has a disk of
        its own. The guest stays defined here for a revert."""

    @abc.abstractmethod
    def finish_migration(self, instance_uuid, name, vcpus, memory_mb, image,
                         has_disk, power_on):
        """On the destination: define the guest with this host's paths and
        the given flavor, using the disk migrate_disk() put here (or the
        shared one) when has_disk; start it when power_on."""

    @abc.abstractmethod
    def confirm_migration(self, instance_uuid, shared_storage):
        """On the source: undefine the powered-off original and remove its
        files (with shared_storage the files are the destination's now and
        are kept)."""

    @abc.abstractmethod
    def revert_migration_at_destination(self, instance_uuid,
                                        shared_storage):
        """On the destination: destroy and undefine the migrated guest and
        remove its files (kept with shared_storage: they are the
        original's)."""

    @abc.abstractmethod
    def finish_revert_migration(self, instance_uuid, power_on):
        """On the source: the original definition is still here; start it
        when power_on."""

    @abc.abstractmethod
    def get_serial_console(self, instance_uuid):
        """How to reach the running guest's serial console, from its live
        definition: {'type': 'file'|'pty'|'tcp'|..., plus 'path' or
        'host'/'port'}. Raises HypervisorError when it has none."""
