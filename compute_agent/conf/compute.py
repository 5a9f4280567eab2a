"""[compute] options: how guests are powered off."""

from oslo_config import cfg

compute_group = cfg.OptGroup(
    'compute', title='Guest operations',
    help='How the agent powers guests off and runs guest operations.')

compute_opts = [
    cfg.IntOpt(
        'shutdown_retry_interval',
        default=10,
        min=1,
        help='Seconds between re-sent clean shutdown requests while a guest '
             'is given the chance to power off. Some guests miss the first '
             'ACPI event (still booting, or busy), so it is sent again at '
             'this interval until the guest is off or the shutdown timeout '
             'runs out.'),
]


def register_opts(conf):
    conf.register_group(compute_group)
    conf.register_opts(compute_opts, group=compute_group)
