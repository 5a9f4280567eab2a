"""Option listing for oslo-config-generator (namespace compute_agent)."""

from compute_agent.conf import compute
from compute_agent.conf import default
from compute_agent.conf import libvirt
from compute_agent.conf import metrics
from compute_agent.conf import upgrade_levels


def list_opts():
    return [
        ('DEFAULT', default.list_opts()),
        (compute.compute_group, compute.compute_opts),
        (libvirt.libvirt_group, libvirt.libvirt_opts),
        (metrics.metrics_group, metrics.metrics_opts),
        (upgrade_levels.upgrade_group, upgrade_levels.upgrade_opts),
    ]
