"""[metrics] options: the Prometheus endpoint (compute_agent/metrics.py)."""

from oslo_config import cfg

metrics_group = cfg.OptGroup(
    'metrics', title='Prometheus metrics',
    help='An HTTP endpoint, /metrics, serving what the agent does in the '
         'Prometheus text format: power-offs, RPC requests, operations in '
         'flight, the drain, the libvirt link and the service version.')

metrics_opts = [
    cfg.BoolOpt(
        'enabled', default=False,
        help='Serve /metrics on [metrics] host and port. The agent does '
             'not start when that port cannot be bound.'),
    cfg.HostAddressOpt(
        'host', default='127.0.0.1',
        help='Address the /metrics endpoint listens on. The endpoint has '
             'no authentication and no TLS, so the default keeps it on '
             'loopback; listen on another address only where the network '
             'restricts who can reach it (the Prometheus server alone).'),
    cfg.PortOpt(
        'port', default=9178,
        help='TCP port of the /metrics endpoint. 9178 sits next to the '
             'libvirt exporter\'s 9177 in the Prometheus exporters\' port '
             'list, where it belongs to an exporter rarely found on a '
             'hypervisor host; change it if something there uses it.'),
]


def register_opts(conf):
    conf.register_group(metrics_group)
    conf.register_opts(metrics_opts, group=metrics_group)
