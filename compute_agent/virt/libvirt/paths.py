"""Where the agent keeps a guest's files on this host.

Each guest has a directory named by its instance uuid under
<state_path>/instances: its disk (a qcow2 overlay of its image's disk),
its serial console log, and what a rescue or a migration leaves there.
"""

import os

from compute_agent.virt.libvirt import config


class InstancePaths:
    def __init__(self, state_path):
        self.instances = os.path.join(state_path, 'instances')

    def instance_path(self, instance_uuid):
        return os.path.join(self.instances, instance_uuid)

    def console_log_path(self, instance_uuid):
        return os.path.join(self.instance_path(instance_uuid), 'console.log')

    def own_disk_path(self, instance_uuid):
        """The guest's overlay of its image's disk, when it has one."""
        return os.path.join(self.instance_path(instance_uuid), 'disk.qcow2')

    def own_disk(self, instance_uuid, domain_xml):
        """The guest's own disk, when the definition uses one (a guest
        booted from a kernel alone, or on the test driver, has none)."""
        disk = self.own_disk_path(instance_uuid)
        return disk if disk in config.disk_files(domain_xml) else None
