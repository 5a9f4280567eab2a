"""[compute] options: how guests are powered off and migrated."""

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
    cfg.IntOpt(
        'max_concurrent_live_migrations',
        default=1,
        min=1,
        help='Live migrations this host runs as the source at one time. '
             'More wait as "queued"; a queued migration is cancelled, '
             'leaving its instance untouched, when the agent is stopped '
             'before it starts.'),
    cfg.IntOpt(
        'max_concurrent_resizes',
        default=2,
        min=1,
        help='Cold migrations and resizes this host runs as the '
             'destination at one time. More wait as "queued" and are '
             'cancelled, instance untouched, when the agent is stopped '
             'before they start.'),
    cfg.IntOpt(
        'live_migration_completion_timeout',
        default=900,
        min=0,
        help='Seconds a live migration may run before it is aborted, '
             'leaving the guest running on the source (status cancelled). '
             'A guest that dirties memory faster than the network copies '
             'it would otherwise never converge. 0 means no limit. During '
             'a drain, a running live migration is also aborted shortly '
             'before graceful_shutdown_timeout runs out.'),
    cfg.IntOpt(
        'instance_event_timeout',
        default=300,
        min=0,
        help='Seconds a build or a live migration that was told to wait '
             'for external events (e.g. network-vif-plugged, sent with '
             'external_instance_event) waits for them.'),
    cfg.BoolOpt(
        'instance_event_timeout_is_fatal',
        default=True,
        help='Whether an operation fails when its external events do not '
             'arrive within instance_event_timeout (a build then ends in '
             'error with the guest removed). When false it logs a warning '
             'and goes on.'),
]


def register_opts(conf):
    conf.register_group(compute_group)
    conf.register_opts(compute_opts, group=compute_group)
