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
]


def register_opts(conf):
    conf.register_group(libvirt_group)
    conf.register_opts(libvirt_opts, group=libvirt_group)
