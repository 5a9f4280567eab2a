"""[libvirt] options: the hypervisor connection."""

from oslo_config import cfg

libvirt_group = cfg.OptGroup(
    'libvirt', title='libvirt hypervisor driver',
    help='Connection to the host\'s libvirt and how guests are defined.')

libvirt_opts = [
    cfg.StrOpt(
        'connection_uri',
        default='qemu:///system',
        help='libvirt connection URI. "qemu:///system" drives the host\'s '
             'QEMU/KVM guests; "test:///default" is libvirt\'s embedded test '
             'driver (no daemon, no real guests), used by the quick start '
             'and the functional tests.'),
    cfg.StrOpt(
        'virt_type',
        default='kvm',
        choices=[('kvm', 'hardware-accelerated QEMU guests'),
                 ('qemu', 'QEMU guests under software emulation (TCG), '
                          'for hosts without usable KVM')],
        help='Domain type of the QEMU guests the agent defines. Ignored on '
             'the test driver.'),
    cfg.StrOpt(
        'live_migration_uri',
        help='libvirt URI at which the libvirtd of a source host reaches '
             'this host\'s libvirtd to live-migrate a guest here. Live '
             'migrations run peer to peer: the source\'s libvirtd opens '
             'this URI itself, so it must work from the other host, e.g. '
             '"qemu+tls://%s/system". "%s" is replaced by this host\'s '
             '[DEFAULT] host name. Unset: [libvirt] connection_uri, which '
             'works only where a source\'s libvirtd reaches this daemon by '
             'it (a URI naming this host, or a socket path when both '
             'daemons run on one machine); with "qemu:///system" the '
             'source\'s libvirtd would find itself and refuse to migrate '
             'to the same host.'),
    cfg.StrOpt(
        'live_migration_inbound_addr',
        help='Address (IP address or host name) of this host that a '
             'source\'s QEMU sends the memory and disk data of a live '
             'migration to, e.g. an address on a dedicated migration '
             'network. Unset: libvirt\'s choice, this host\'s name as the '
             'source resolves it.'),
    cfg.IntOpt(
        'live_migration_bandwidth',
        default=0, min=0,
        help='Most bandwidth one live migration from this host may use, in '
             'MiB/s; 0 means unlimited. On libvirt\'s test driver, where '
             'live migration is emulated, it sets how long the emulated '
             'transfer takes: guest memory / bandwidth (1 s when '
             'unlimited).'),
    cfg.StrOpt(
        'cold_migration_disk_transfer',
        default='auto',
        choices=[('auto', 'through the filesystem when this host sees the '
                          'destination\'s instance directory under the '
                          'same path (mounted here), else streamed'),
                 ('filesystem', 'only through the filesystem; a '
                                'destination this host does not see is '
                                'refused'),
                 ('stream', 'always streamed through the destination\'s '
                            'libvirtd')],
        help='How a cold migration or resize from this host copies the '
             'guest\'s disk to a destination that does not share its '
             'instance storage (with shared storage nothing is copied). A '
             'stream goes through the destination\'s libvirtd at the URI '
             'it offers for live migration ([libvirt] live_migration_uri '
             'there), opened by this agent itself: it needs the same '
             'client credentials (e.g. TLS certificates) as this host\'s '
             'libvirtd uses for live migration, and a destination running '
             'compute-agent RPC 1.5 or newer, which sends that URI.'),
]


def register_opts(conf):
    conf.register_group(libvirt_group)
    conf.register_opts(libvirt_opts, group=libvirt_group)
