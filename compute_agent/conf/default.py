"""[DEFAULT] options of the agent, plus oslo.service's shutdown timeout."""

import socket

from oslo_config import cfg
from oslo_service import _options as service_options

# The clean power-off of a guest may take up to shutdown_timeout; the drain
# must be able to cover it plus cleanup, so the agent's default is 180 s
# rather than oslo.service's 60 s.
GRACEFUL_SHUTDOWN_TIMEOUT_DEFAULT = 180

agent_opts = [
    cfg.StrOpt(
        'host',
        default=socket.gethostname(),
        sample_default='<hostname>',
        help='Name of this hypervisor host. RPC servers listen on topics '
             '"compute" and "compute-alt" with server=<host>, and instance '
             'records carry it. Must be unique among the agents sharing a '
             'message bus.'),
    cfg.StrOpt(
        'state_path',
        default='/var/lib/compute-agent',
        help='Directory holding the agent\'s local state: the SQLite '
             'database of instance records, per-instance disks and '
             'serial-console logs. Must be readable by the agent and, for '
             'disks and console logs, by the hypervisor.'),
    cfg.IntOpt(
        'shutdown_timeout',
        default=60,
        min=0,
        help='Seconds a guest is given to power off after a clean shutdown '
             'request (ACPI, or the guest agent) before it is destroyed. '
             'Used when neither the request nor the image property '
             'os_shutdown_timeout sets one. 0 means power off at once, '
             'without asking the guest.'),
]


# Applied at import so that the running agent and the generated sample
# agree on the value in force.
cfg.set_defaults(service_options.service_opts,
                 graceful_shutdown_timeout=GRACEFUL_SHUTDOWN_TIMEOUT_DEFAULT)


def list_opts():
    return agent_opts + service_options.service_opts


def register_opts(conf):
    conf.register_opts(list_opts())
