"""[upgrade_levels] options: RPC version caps during rolling upgrades."""

from oslo_config import cfg

upgrade_group = cfg.OptGroup(
    'upgrade_levels', title='RPC version caps',
    help='Caps on the RPC API versions this node sends, so that a newer '
         'client keeps working with older agents during a rolling upgrade.')

upgrade_opts = [
    cfg.StrOpt(
        'compute',
        help='Highest compute RPC API version to send to agents, e.g. "1.0". '
             '"auto" asks each agent which version it runs and uses that. '
             'Unset sends the newest version this code knows. Pinned below '
             '1.1, every request goes to topic "compute" because older '
             'agents do not listen on "compute-alt".'),
]


def register_opts(conf):
    conf.register_group(upgrade_group)
    conf.register_opts(upgrade_opts, group=upgrade_group)
