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
    state came about ('acpi', 'destroy' or 'already-off')."""

    requested: str
    result: str
    method: str
    seconds: float
    timeout: int
    shutdown_requests: int = 0

    def to_record(self):
        return {'requested': self.requested, 'result': self.result,
                'seconds': round(self.seconds, 3), 'timeout': self.timeout,
                'method': self.method}


class ComputeDriver(abc.ABC):
    @abc.abstractmethod
    def init_host(self, host):
        """Connect to the hypervisor; called once before serving."""

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
