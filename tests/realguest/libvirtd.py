"""Private libvirtd instances and a tiny guest for the real-QEMU tests.

``PrivateLibvirtd`` runs a libvirtd of its own, as one simulated hypervisor
host. It runs in a private mount namespace where its own directories are
bind-mounted over /etc/libvirt, /run/libvirt, /var/lib/libvirt,
/var/cache/libvirt and /var/log/libvirt, so several can run side by side
(e.g. as the two ends of a live migration) and none touches the host's own
libvirt configuration or state. QEMU processes it starts inherit that
namespace, which is also how cleanup finds them.

Its guests run under TCG (domain type 'qemu'): KVM is not usable on the
machines this was written for. ``guest_images()`` provides a kernel,
initramfs images that do and do not honour the ACPI power button, one
that runs the QEMU guest agent (and ignores the button), and a small
qcow2 base image, built from Debian packages by
tools/guest/build-guest-image.sh.

Run as a script, this module is the small process that libvirtd runs
under (see ``run_as_subreaper``).
"""

import ctypes
import functools
import grp
import itertools
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid

import fixtures
import libvirt

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
BUILD_SCRIPT = os.path.join(REPO_ROOT, 'tools', 'guest',
                            'build-guest-image.sh')

# The guests' kernel command line: console=ttyS0 sends the console to the
# serial port the tests log to a file, panic=-1 turns a panic into an
# immediate reboot instead of a silent hang, quiet shortens the boot log.
GUEST_CMDLINE = 'console=ttyS0 panic=-1 quiet'
# What the guests print on ttyS0 once their userspace is up (and, for the
# ACPI guest, once acpid listens for the power button).
GUEST_READY_LINE = 'COMPUTE-AGENT-GUEST READY'
# What they print instead when their setup failed, followed by the reason.
GUEST_FAILED_LINE = 'COMPUTE-AGENT-GUEST FAILED'
# What the guest-agent guest prints when its agent powers it off (from the
# /sbin/shutdown that qemu-ga runs): only that path prints it.
GUEST_AGENT_POWER_OFF_LINE = 'COMPUTE-AGENT-GUEST POWER-OFF BY GUEST AGENT'
# What the ACPI guest prints at each power button press, followed by
# "<n> OF <needed>": it powers off at the first press, or at the Nth when
# booted with GUEST_CMDLINE + ' acpi_presses=N'.
GUEST_ACPI_PRESS_LINE = 'COMPUTE-AGENT-GUEST ACPI POWER BUTTON PRESS'

# libvirtd accepts connections ~0.2 s after it starts, but probes QEMU's
# capabilities (~8 s under TCG) on first use and caches the result under
# /var/cache/libvirt. Every instance has its own, so the probe results are
# kept here and copied into each new instance: libvirt checks them against
# the QEMU and libvirt binaries and probes again when they are stale.
CAPABILITIES_CACHE = os.path.join(
    os.path.expanduser('~'), '.cache', 'compute-agent', 'qemu-capabilities')
START_TIMEOUT = 60
# A guest's boot to its READY line under TCG takes ~8 s; a loaded machine
# running several at once takes longer.
BOOT_TIMEOUT = 120
STOP_TIMEOUT = 5
LOG_TAIL_LINES = 30

# Each instance gets its own QEMU migration port range. libvirt skips
# ports that are already bound, so distinct ranges within one test run
# are enough.
MIGRATION_PORT_BASE = 49152
MIGRATION_PORT_SPAN = 16
MIGRATION_PORT_RANGES = 64
_instance_numbers = itertools.count()

# The system directories each instance replaces with its own.
PRIVATE_DIRS = {
    'etc': '/etc/libvirt',
    'run': '/run/libvirt',
    'lib': '/var/lib/libvirt',
    'cache': '/var/cache/libvirt',
    'log': '/var/log/libvirt',
}

# libvirt's QEMU driver resolves its compiled-in default user and group
# when it loads, and fails to load when they do not exist, even though
# qemu.conf below runs QEMU as root.
QEMU_USER = QEMU_GROUP = 'libvirt-qemu'

PR_SET_CHILD_SUBREAPER = 36

# Debian installs libvirtd in /usr/sbin, which a test runner's PATH may
# lack.
_SEARCH_PATH = os.pathsep.join(
    [os.environ.get('PATH', os.defpath), '/usr/sbin', '/sbin'])


def wait_until_guest_ready(console_log, timeout=BOOT_TIMEOUT):
    """Wait for the guest's READY line in its serial console log: its
    userspace (and, for the ACPI guest, acpid) is up, so a power button
    press is not lost to a half-booted guest. Fails (AssertionError) at
    once on the guest's FAILED line, or after timeout seconds.

    (A loop of its own: this module also runs as a script, where the
    tests' polling helper cannot be imported.)"""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(console_log, errors='replace') as log:
                text = log.read()
        except FileNotFoundError:
            text = ''
        if GUEST_FAILED_LINE in text:
            raise AssertionError(f'the guest failed to set up: '
                                 f'{text[-500:]}')
        if GUEST_READY_LINE in text:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f'no {GUEST_READY_LINE!r} in {console_log} '
                                 f'within {timeout} s')
        time.sleep(0.1)


def destroy_running_domains(uri):
    """Destroy every running domain of the libvirtd at uri."""
    conn = libvirt.open(uri)
    try:
        for domain in conn.listAllDomains(
                libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
            try:
                domain.destroy()
            except libvirt.libvirtError:
                pass  # stopped on its own meanwhile
    finally:
        conn.close()


def _which(program):
    return shutil.which(program, path=_SEARCH_PATH)


def realguest_available():
    """Whether this machine can run real guests, as (bool, reason).

    Only the components are checked: when they are present but broken the
    tests should fail, not skip.
    """
    if os.geteuid() != 0:
        return False, 'real guests need root (private libvirtd, mounts)'
    for program in ('libvirtd', 'qemu-system-x86_64', 'unshare'):
        if _which(program) is None:
            return False, f'{program} is not installed'
    return True, 'libvirtd and qemu-system-x86_64 are available'


@functools.lru_cache(maxsize=None)
def _built_images():
    """Run the build script once per process; it caches across runs."""
    result = subprocess.run(['bash', BUILD_SCRIPT], capture_output=True,
                            text=True)
    if result.returncode != 0:
        raise RuntimeError(
            f'{BUILD_SCRIPT} failed with status {result.returncode}:\n'
            f'{result.stderr[-4000:]}')
    return tuple(result.stdout.split())


def guest_images():
    """Paths of the guest kernel, the three initramfs images and the disk.

    Keys: 'kernel', 'initramfs_acpi' (powers off on the ACPI power
    button, see GUEST_ACPI_PRESS_LINE), 'initramfs_noacpi' (ignores it),
    'initramfs_guest_agent' (ignores it too, runs qemu-ga on the
    org.qemu.guest_agent.0 channel and prints GUEST_AGENT_POWER_OFF_LINE
    when the agent powers it off; READY once qemu-ga holds the channel)
    and 'disk' (a qcow2 base image; overlay it rather than writing to
    it).
    """
    by_name = {os.path.basename(path): path for path in _built_images()}
    return {
        'kernel': by_name['vmlinuz'],
        'initramfs_acpi': by_name['initramfs-acpi.img'],
        'initramfs_noacpi': by_name['initramfs-noacpi.img'],
        'initramfs_guest_agent': by_name['initramfs-agent.img'],
        'disk': by_name['disk.qcow2'],
    }


def run_as_subreaper(argv):
    """Run argv, reaping every orphan it leaves behind, until it exits.
    SIGHUP stops argv (SIGTERM) and runs it again (PrivateLibvirtd.restart).

    libvirt daemonises QEMU, so a QEMU process is nobody's child: when it
    exits, its zombie waits for whatever reaps orphans, and libvirt only
    reports the guest stopped once the zombie is gone. In a container
    whose PID 1 reaps lazily that adds ~2 s to every shutdown and destroy.
    As the orphans' subreaper this process reaps them at once, as systemd
    does on a real host.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno),
                      'prctl(PR_SET_CHILD_SUBREAPER)')
    child = {'pid': os.posix_spawnp(argv[0], argv, os.environ),
             'restart': False}

    def restart(_signum, _frame):
        child['restart'] = True
        os.kill(child['pid'], signal.SIGTERM)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda signum, _: os.kill(child['pid'], signum))
    signal.signal(signal.SIGHUP, restart)
    while True:
        pid, status = os.wait()
        if pid == child['pid']:
            if not child['restart']:
                return os.waitstatus_to_exitcode(status)
            # Again in this mount namespace, where the orphans (QEMU)
            # stay this process's to reap. The bind mounts are made once
            # more, on top of the same directories.
            child.update(pid=os.posix_spawnp(argv[0], argv, os.environ),
                         restart=False)


def _ensure_qemu_user():
    try:
        grp.getgrnam(QEMU_GROUP)
    except KeyError:
        subprocess.run(['groupadd', '--system', QEMU_GROUP], check=True)
    try:
        pwd.getpwnam(QEMU_USER)
    except KeyError:
        subprocess.run(
            ['useradd', '--system', '--gid', QEMU_GROUP, '--no-create-home',
             '--home-dir', '/var/lib/libvirt', '--shell', '/usr/sbin/nologin',
             QEMU_USER], check=True)


def _copy_files(source_dir, dest_dir):
    """Copy the files of source_dir, each replaced atomically."""
    if not os.path.isdir(source_dir):
        return
    os.makedirs(dest_dir, exist_ok=True)
    for name in os.listdir(source_dir):
        temporary = os.path.join(dest_dir, f'.{name}.{os.getpid()}')
        shutil.copyfile(os.path.join(source_dir, name), temporary)
        os.replace(temporary, os.path.join(dest_dir, name))


def _tail(path, lines=LOG_TAIL_LINES):
    try:
        with open(path, errors='replace') as log:
            return ''.join(log.readlines()[-lines:])
    except OSError as exc:
        return f'(no log at {path}: {exc.strerror})'


def _mount_namespace(pid):
    return os.readlink(f'/proc/{pid}/ns/mnt')


def _pids_in_mount_namespace(namespace):
    """Live processes in a mount namespace (zombies have left it)."""
    pids = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            if _mount_namespace(entry) == namespace:
                pids.append(int(entry))
        except OSError:
            pass  # exited, a zombie, or a kernel thread
    return pids


def _conf_string(value):
    return '"' + value.replace('\\', '\\\\').replace('"', '\\"') + '"'


class PrivateLibvirtd(fixtures.Fixture):
    """A libvirtd of its own: one simulated hypervisor host.

    ``uri`` is what libvirt.open() takes; ``pid`` is libvirtd's process id;
    ``base_dir`` (``<base_dir argument>/<name>``) holds everything the
    instance writes, including ``log_file`` (libvirtd's warnings and
    errors) and log/qemu/<domain>.log (QEMU's command line and output).

    On cleanup, guests still running are destroyed, libvirtd is stopped,
    and any process left in its namespace (QEMU, should libvirtd have
    died) is killed. Domain definitions stay in base_dir.
    """

    def __init__(self, name, base_dir=None, host_uuid=None,
                 migration_port_min=None):
        super().__init__()
        self.name = name
        self._parent_dir = base_dir
        # Migration refuses to run between two hosts with the same uuid.
        self.host_uuid = host_uuid or str(uuid.uuid4())
        if migration_port_min is None:
            slot = next(_instance_numbers) % MIGRATION_PORT_RANGES
            migration_port_min = (MIGRATION_PORT_BASE
                                  + slot * MIGRATION_PORT_SPAN)
        self.migration_port_min = migration_port_min
        self.migration_port_max = migration_port_min + MIGRATION_PORT_SPAN - 1
        self.base_dir = None
        self.pid = None
        self._supervisor = None
        self._namespace = None

    @property
    def socket_path(self):
        return os.path.join(self.base_dir, 'sock', 'libvirt-sock')

    @property
    def uri(self):
        return f'qemu+unix:///system?socket={self.socket_path}'

    @property
    def log_file(self):
        return os.path.join(self.base_dir, 'log', 'libvirtd.log')

    @property
    def _pid_file(self):
        return os.path.join(self.base_dir, 'libvirtd.pid')

    @property
    def _capabilities_dir(self):
        return os.path.join(self.base_dir, 'cache', 'qemu', 'capabilities')

    def _setUp(self):
        parent = (self._parent_dir
                  or self.useFixture(fixtures.TempDir()).path)
        self.base_dir = os.path.join(parent, self.name)
        for private in PRIVATE_DIRS:
            os.makedirs(os.path.join(self.base_dir, private))
        os.makedirs(os.path.dirname(self.socket_path))
        self._write_config()
        _ensure_qemu_user()
        _copy_files(CAPABILITIES_CACHE, self._capabilities_dir)
        self._start()
        self._wait_until_ready()
        with open(self._pid_file) as pid_file:
            self.pid = int(pid_file.read())
        self.addCleanup(self._destroy_domains)
        _copy_files(self._capabilities_dir, CAPABILITIES_CACHE)

    def _write_config(self):
        etc = os.path.join(self.base_dir, 'etc')
        with open(os.path.join(etc, 'libvirtd.conf'), 'w') as conf:
            conf.write(
                f'host_uuid = "{self.host_uuid}"\n'
                'listen_tcp = 0\n'
                'listen_tls = 0\n'
                f'unix_sock_dir = '
                f'{_conf_string(os.path.dirname(self.socket_path))}\n'
                # Tests connect as root; there is no polkit to ask.
                'auth_unix_ro = "none"\n'
                'auth_unix_rw = "none"\n'
                # Warnings and errors go to stderr, which is log_file.
                'log_outputs = "3:stderr"\n')
        with open(os.path.join(etc, 'qemu.conf'), 'w') as conf:
            conf.write(
                # No separate QEMU user, no SELinux/AppArmor labelling and
                # no chown of images: everything stays root-owned.
                'user = "root"\n'
                'group = "root"\n'
                'security_driver = "none"\n'
                'dynamic_ownership = 0\n'
                # QEMU's output goes straight to a file: no virtlogd.
                'stdio_handler = "file"\n'
                # No cgroup delegation in a container without systemd, and
                # no private /dev per guest.
                'cgroup_controllers = [ ]\n'
                'namespaces = [ ]\n'
                f'migration_port_min = {self.migration_port_min}\n'
                f'migration_port_max = {self.migration_port_max}\n')

    def _start(self):
        mounts = []
        for private, system_dir in PRIVATE_DIRS.items():
            # A bind mount needs its mount point, which a host without
            # libvirt-daemon-system may lack; an empty directory is all
            # that is left behind on the host.
            os.makedirs(system_dir, exist_ok=True)
            source = os.path.join(self.base_dir, private)
            mounts.append(f'mount --bind {shlex.quote(source)} '
                          f'{shlex.quote(system_dir)}')
        # Without --pid-file libvirtd would lock /run/libvirtd.pid, which
        # is outside the private directories and shared by all instances.
        script = ' && '.join(mounts + [
            f'exec {shlex.quote(_which("libvirtd"))} '
            f'--pid-file {shlex.quote(self._pid_file)}'])
        with open(self.log_file, 'ab') as log:
            # A session of its own keeps a Ctrl-C of the test run from
            # killing libvirtd before cleanup has destroyed the guests.
            self._supervisor = subprocess.Popen(
                ['unshare', '--mount', '--propagation', 'private',
                 sys.executable, os.path.abspath(__file__),
                 'sh', '-c', script],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True)
        self.addCleanup(self._stop)

    def restart(self):
        """Stop libvirtd and start it again, as a package upgrade or
        `systemctl restart libvirtd` does. Running guests stay up (QEMU is
        not libvirtd's child) and the new libvirtd reattaches to them."""
        old_pid = self.pid
        self._supervisor.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + STOP_TIMEOUT
        while os.path.exists(f'/proc/{old_pid}'):
            if time.monotonic() > deadline:
                self._fail(f'libvirtd {old_pid} did not stop within '
                           f'{STOP_TIMEOUT} s of a restart')
            time.sleep(0.05)
        self._wait_until_ready()
        with open(self._pid_file) as pid_file:
            self.pid = int(pid_file.read())

    def _wait_until_ready(self):
        deadline = time.monotonic() + START_TIMEOUT
        last_error = None
        while True:
            if self._supervisor.poll() is not None:
                self._fail(
                    f'exited with status {self._supervisor.returncode}')
            if self._namespace is None:
                # Still ours until unshare has run.
                namespace = _mount_namespace(self._supervisor.pid)
                if namespace != _mount_namespace('self'):
                    self._namespace = namespace
            if os.path.exists(self.socket_path):
                try:
                    conn = libvirt.open(self.uri)
                except libvirt.libvirtError as exc:
                    last_error = exc
                else:
                    # Probe now rather than in the first test's create().
                    try:
                        conn.getCapabilities()
                    finally:
                        conn.close()
                    return
            if time.monotonic() > deadline:
                self._fail(f'did not accept a connection within '
                           f'{START_TIMEOUT} s (last error: {last_error})')
            time.sleep(0.1)

    def _fail(self, what):
        raise RuntimeError(
            f'private libvirtd {self.name!r} {what}\n'
            f'--- tail of {self.log_file} ---\n{_tail(self.log_file)}')

    def _destroy_domains(self):
        if self._supervisor.poll() is not None:
            return  # libvirtd died or was killed: _stop kills any QEMU
        destroy_running_domains(self.uri)

    def _stop(self):
        # The supervisor passes SIGTERM on to libvirtd and exits with it.
        self._supervisor.send_signal(signal.SIGTERM)
        try:
            self._supervisor.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            # libvirtd itself is then killed with the leftovers below.
            self._supervisor.kill()
            self._supervisor.wait()
        self._kill_leftovers()

    def _kill_leftovers(self):
        """Kill every process still in libvirtd's namespace.

        libvirtd leaves its guests running when it exits, and QEMU is not
        its child, but QEMU lives in libvirtd's private mount namespace.
        """
        if self._namespace is None:
            return
        leftovers = _pids_in_mount_namespace(self._namespace)
        for pid in leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + STOP_TIMEOUT
        while (_pids_in_mount_namespace(self._namespace)
               and time.monotonic() < deadline):
            time.sleep(0.05)


if __name__ == '__main__':
    sys.exit(run_as_subreaper(sys.argv[1:]))
