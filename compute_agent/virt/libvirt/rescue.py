"""What a rescue keeps in the instance directory.

A rescued guest keeps its libvirt identity (uuid and name), so lookups,
lifecycle events and delete keep finding it: its own definition is saved
to original.xml and the same domain is redefined to boot the rescue image,
from rescue.qcow2 when the rescue image is a disk. unrescue defines the
saved definition again and removes both files.

Rescue definitions carry a marker in their metadata. A rescue repeated
after a crash (or over an earlier rescue) therefore keeps the saved
definition instead of saving the rescue definition over it.
"""

import os

from compute_agent.virt.libvirt import config
from compute_agent.virt.libvirt import images

ORIGINAL_XML = 'original.xml'
RESCUE_DISK = 'rescue.qcow2'


class RescueError(Exception):
    """The rescue files do not match the guest's definition."""


class RescueFiles:
    def __init__(self, instance_dir):
        self.original_xml = os.path.join(instance_dir, ORIGINAL_XML)
        self.rescue_disk = os.path.join(instance_dir, RESCUE_DISK)

    def save_original(self, current_xml):
        """Keep the guest's own definition, given its current (inactive)
        one, and return the guest's own definition."""
        if config.is_rescue_definition(current_xml):
            saved = self.saved_original()
            if saved is None:
                raise RescueError(
                    f'the guest is defined for a rescue but its own '
                    f'definition is not saved ({self.original_xml} is '
                    f'missing)')
            return saved
        with images.replaced_atomically(self.original_xml) as partial:
            with open(partial, 'w') as saved:
                saved.write(current_xml)
        return current_xml

    def saved_original(self):
        """The saved definition, or None when there is none."""
        try:
            with open(self.original_xml) as saved:
                return saved.read()
        except FileNotFoundError:
            return None

    def remove(self):
        """Forget the rescue: the guest's own definition is back."""
        for path in (self.rescue_disk, self.original_xml):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
