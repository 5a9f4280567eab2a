"""Each gate host's libvirtd, as libvirtd.service of the host's systemd.

Configured as tests/realguest/libvirtd.py's PrivateLibvirtd configures
it (a host UUID, socket and migration ports of its own, its own
directories over /etc/libvirt, /run/libvirt, /var/lib/libvirt,
/var/cache/libvirt and /var/log/libvirt), but started as a unit of the
simulated host's systemd, as a distribution's libvirtd.service is on a
real host: compute-agent.service's After=libvirtd.service then orders
the two, so that a host shutdown stops the agent first, and its
Wants=libvirtd.service starts libvirtd with it.

The unit stands for the distribution's:

* Type=notify: libvirtd sends READY=1 once its sockets listen;
* KillMode=process: a stop or restart of libvirtd leaves the guests'
  QEMU running. Without cgroup delegation to libvirt here, QEMU stays in
  the unit's control group, where a real host's machined gives each guest
  a scope of its own; either way no stop of libvirtd kills a guest;
* BindPaths= puts the private directories in place, in the unit's own
  mount namespace (PrivateLibvirtd does it with unshare and mount).

systemd, PID 1 of the host, reaps QEMU's orphaned processes, which is
what PrivateLibvirtd's run_as_subreaper does in its stead. ``pid`` is
libvirtd's pid as the host's PID namespace numbers it.
"""

import os
import shutil
import textwrap

import libvirt

from tests.realguest import libvirtd

UNIT = 'libvirtd.service'
STOPPED = ('inactive', 'failed')
# Debian installs libvirtd in /usr/sbin, which a runner's PATH may lack.
_SEARCH_PATH = os.pathsep.join([os.defpath, '/usr/sbin', '/sbin'])
_UNIT_TEXT = textwrap.dedent('''\
    [Unit]
    Description=libvirt daemon of the simulated host {host}

    [Service]
    Type=notify
    ExecStart={libvirtd} --pid-file {pid_file}
    ExecReload=/bin/kill -HUP $MAINPID
    KillMode=process
    BindPaths={bind_paths}
    StandardOutput=append:{log_file}
    StandardError=append:{log_file}
    ''')


class LibvirtdUnit(libvirtd.PrivateLibvirtd):
    """PrivateLibvirtd, run as libvirtd.service of host_systemd (a
    tests.fixtures.systemd.PrivateSystemd that is up)."""

    def __init__(self, name, host_systemd, base_dir):
        super().__init__(name, base_dir=base_dir)
        self.systemd = host_systemd
        self.unit = UNIT

    # -- PrivateLibvirtd's hooks: how libvirtd starts, is waited for and
    # stops --------------------------------------------------------------

    def _start(self):
        self.systemd.write_unit(UNIT, self._unit_text())
        self.systemd.enable(UNIT)
        self.systemd.daemon_reload()
        self.start()
        self.addCleanup(self.stop)

    def _wait_until_ready(self):
        # systemctl start returned after READY=1. libvirt probes QEMU's
        # capabilities on first use: now, rather than in the first build.
        conn = libvirt.open(self.uri)
        try:
            conn.getCapabilities()
        finally:
            conn.close()

    def _destroy_domains(self):
        if self.state() in STOPPED:
            return  # the host's systemd kills QEMU at its teardown
        libvirtd.destroy_running_domains(self.uri)

    def restart(self):
        self.systemd.systemctl('restart', UNIT)
        self._wait_until_ready()

    # -- the unit -------------------------------------------------------

    def _unit_text(self):
        pairs = [(os.path.join(self.base_dir, private), system_dir)
                 for private, system_dir in libvirtd.PRIVATE_DIRS.items()]
        for path in [self.base_dir, self.log_file]:
            if any(character.isspace() for character in path):
                raise ValueError(f'{path}: a unit file path without '
                                 f'whitespace is needed')
        return _UNIT_TEXT.format(
            host=self.name,
            libvirtd=shutil.which('libvirtd', path=_SEARCH_PATH),
            pid_file=os.path.join(self.base_dir, 'libvirtd.pid'),
            bind_paths=' '.join(f'{source}:{target}'
                                for source, target in pairs),
            log_file=self.log_file)

    def state(self):
        return self.systemd.show(UNIT, 'ActiveState')['ActiveState']

    def start(self):
        """systemctl start: returns once libvirtd has sent READY=1."""
        self.systemd.systemctl('start', UNIT)

    def stop(self):
        self.systemd.systemctl('stop', UNIT, check=False)

    def recover(self):
        """Running again, whatever a failed run left (e.g. a host
        shutdown that did not come back up)."""
        if self.state() == 'active':
            return
        self.systemd.systemctl('reset-failed', UNIT, check=False)
        self.start()
        self._wait_until_ready()
