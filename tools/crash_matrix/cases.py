"""The crash matrix's cases: one per failpoint.

The interface (binding for this module and migration_cases.py): a case
class names its ``failpoint``, the ``operation`` it interrupts (a short
verb for the report), ``armed_role`` (whose agent is armed: 'host' on one
host, or 'source' / 'destination') and ``needs_two_hosts``. The runner
(matrix.py), for each case::

    deployment.recover(); case.prepare()      # boot guests, set
                                              # instance_uuid
    arm the armed host; case.trigger()        # send what reaches it
    wait for the SIGKILL there and systemd's restart
    checks.py on both hosts; case.resume()    # retry or revert
    case.cleanup()                            # every guest, wherever

``prepare`` boots through ``boot`` (which registers the guest for
cleanup) and sets ``instance_uuid``; ``trigger`` sends the doomed
requests through ``send`` (short timeout, in the background), which
records their request ids: the action records of those requests are the
ones checks.py requires closed with a message. ``resume`` returns one
line saying what it did, or raises CaseFailure when nothing can be done
from the state left. ``expected_home`` names the host that must own the
instance after recovery (a Host), or None: either host, as its migration
record says. ``extra_checks(views)`` may add failures (strings) to
checks.py's, given each host's checks.HostView by name.

Beyond the brief's interface: the runner calls ``wait_settled`` after
the restart, before its checks (a two-host case waits there for the
host that was not killed to notice what its peer lost, and returns
False if it did not in time); ``resume`` should raise CaseFailure (not
let a RemoteError through) when the agent refuses the retry;
``cleanup`` deletes each guest of ``instance_uuids`` (forced) through
the host whose list_instances holds it, so override it when a delete
needs a step first (e.g. a confirm); ``scrub`` then removes what the
deletes left in libvirt and under instances/ after checks.py has
reported it. The report row's ``outcome`` is checks.state_left (the
state on each host, named for two-host cases) then ``resume``'s line.
checks.py does not count as orphans the domain and directory that a
cold migration's source keeps while its migration record is
``completed`` (awaiting a confirm or a revert).

Single-host cases run on ``source`` (host-a); ``destination`` (host-b)
is the other host, which must be left untouched.
"""

import importlib
import importlib.util
import os
import re
import shutil
import subprocess

import oslo_messaging

from compute_agent import failpoints
from tools.gate import guests

# A request that reaches an armed failpoint is never answered.
DOOMED_TIMEOUT = 60
# Steps of prepare and resume: boots, power-offs, snapshots.
STEP_TIMEOUT = 180
# The ACPI-ignoring guest's clean stop for the power-off failpoints:
# short, so that the forced path (power_off.destroying) comes soon.
SHORT_STOP_TIMEOUT = 3
FORCED = {'clean_shutdown': False}


class CaseFailure(Exception):
    """The case could not do its part; the message says why."""


class Case:
    failpoint = None
    operation = None
    armed_role = 'host'
    needs_two_hosts = False

    def __init__(self, deployment, source, destination):
        self.deployment = deployment
        self.source = source
        self.destination = destination
        self.instance_uuid = None
        self.instance_uuids = []  # every guest booted, removed at cleanup
        self.request_ids = []  # requests of the interrupted operation
        self.pending = []  # their PendingCalls

    @classmethod
    def name(cls):
        return cls.failpoint

    def armed_host(self):
        return {'host': self.source, 'source': self.source,
                'destination': self.destination}[self.armed_role]

    # -- the interface --------------------------------------------------

    def prepare(self):
        raise NotImplementedError

    def trigger(self):
        raise NotImplementedError

    def resume(self):
        raise NotImplementedError

    def expected_home(self):
        return None if self.needs_two_hosts else self.source

    def extra_checks(self, views):
        return []

    def wait_settled(self):
        """Wait, after the restart, until the hosts are done with the
        instance; whether they are. One host needs no wait: the
        restarted agent settles everything before it serves a request."""
        return True

    # -- helpers --------------------------------------------------------

    def boot(self, host, honours_acpi=True, with_disk=True, ready=True):
        """Build a guest on host (registered for cleanup); its uuid. With
        ready, wait for its READY line: an ACPI press is not lost."""
        spec = guests.instance_spec(
            self.deployment.images, f'crash-{self.failpoint}',
            honours_acpi=honours_acpi, with_disk=with_disk)
        self.instance_uuids.append(spec['uuid'])
        record = host.rpc.call('build_and_run_instance', instance=spec,
                               timeout=STEP_TIMEOUT)
        self.expect_state(record, 'active')
        if ready:
            guests.wait_until_ready(host, spec['uuid'])
        return spec['uuid']

    def send(self, host, method, **kwargs):
        """A request that the failpoint will cut short: sent in the
        background, with a short timeout."""
        call = host.rpc.call_in_background(method, timeout=DOOMED_TIMEOUT,
                                           **kwargs)
        self.request_ids.append(call.request_id)
        self.pending.append(call)
        return call

    def call(self, method, host=None, **kwargs):
        host = host or self.source
        return host.rpc.call(method, timeout=STEP_TIMEOUT,
                             instance_uuid=self.instance_uuid, **kwargs)

    def record(self, host=None):
        return (host or self.source).rpc.call(
            'get_instance', instance_uuid=self.instance_uuid)

    @staticmethod
    def expect_state(record, vm_state):
        if record['vm_state'] != vm_state or record['task_state']:
            raise CaseFailure(
                f'instance {record["uuid"]} is {record["vm_state"]} '
                f'(task {record["task_state"]}), expected {vm_state}')
        return record

    @staticmethod
    def state_of(record):
        return f'{record["vm_state"]}/{record["power_state"]}'

    def cleanup(self):
        """Delete every guest the case booted through the agent of
        whichever host holds it (forced: nothing left to wait for)."""
        for instance_uuid in self.instance_uuids:
            for host in self.deployment.hosts.values():
                if any(record['uuid'] == instance_uuid
                       for record in host.rpc.call('list_instances')):
                    host.rpc.call('terminate_instance', timeout=STEP_TIMEOUT,
                                  instance_uuid=instance_uuid, **FORCED)

    def scrub(self):
        """What the agents' deletes left of the case's guests (domains,
        directories; already reported as orphans), removed so that the
        next case starts clean."""
        for instance_uuid in self.instance_uuids:
            for host in self.deployment.hosts.values():
                if guests.domain_state(host, instance_uuid) is not None:
                    for command in ('destroy', 'undefine'):
                        subprocess.run(['virsh', '-c', host.libvirtd.uri,
                                        command, instance_uuid],
                                       capture_output=True)
                shutil.rmtree(os.path.join(host.state_path, 'instances',
                                           instance_uuid),
                              ignore_errors=True)


class SingleHostCase(Case):
    """An operation on one guest of one host, retried after the crash.

    ``setup`` are the requests (method, arguments) that bring the guest
    to where the operation starts; ``method``/``arguments`` the
    operation; ``target`` the vm_state it ends in. ``retry_from`` maps a
    vm_state recovery may leave to the requests that take the instance
    from there to ``target``; by default the operation itself.
    """

    honours_acpi = True
    setup = ()
    method = None
    arguments = {}
    target = None
    retry_from = {}
    # Run again even when recovery left the target state (which may be
    # the state the operation started from).
    always_retry = False

    def prepare(self):
        self.instance_uuid = self.boot(self.source,
                                       honours_acpi=self.honours_acpi)
        for method, arguments in self.setup:
            self.call(method, **arguments)

    def trigger(self):
        self.send(self.source, self.method, instance_uuid=self.instance_uuid,
                  **self.arguments)

    def resume(self):
        record = self.record()
        if record['vm_state'] == self.target and not self.always_retry:
            return f'already {self.state_of(record)}, nothing to retry'
        steps = self.retry_from.get(record['vm_state'],
                                    ((self.method, self.arguments),))
        if not steps:
            raise CaseFailure(f'nothing takes {self.state_of(record)} to '
                              f'{self.target}')
        for method, arguments in steps:
            try:
                record = self.call(method, **arguments)
            except oslo_messaging.RemoteError as error:
                raise CaseFailure(
                    f'{method} from {self.state_of(record)}: '
                    f'{error.exc_type}: {error.value}') from None
        self.expect_state(record, self.target)
        ran = ', then '.join(
            ' '.join([method] + [f'{name}={value}'
                                 for name, value in arguments.items()])
            for method, arguments in steps)
        return f'ran {ran}: {self.state_of(record)}'


class BuildCase(Case):
    """A build cannot be retried under the same uuid: an instance it
    left behind is deleted and a new one built in its place."""

    operation = 'build'

    def prepare(self):
        self.spec = guests.instance_spec(
            self.deployment.images, f'crash-{self.failpoint}',
            with_disk=True)
        self.instance_uuid = self.spec['uuid']
        self.instance_uuids.append(self.instance_uuid)

    def trigger(self):
        self.send(self.source, 'build_and_run_instance', instance=self.spec)

    def resume(self):
        record = self.record()
        if record['vm_state'] == 'active':
            return f'already {self.state_of(record)}'
        self.call('terminate_instance', **FORCED)
        self.boot(self.source, ready=False)
        return (f'deleted the {record["vm_state"]} instance, built '
                f'another: active')


class StartCase(SingleHostCase):
    operation = 'start'
    setup = (('stop_instance', FORCED),)
    method = 'start_instance'
    target = 'active'


class StopCase(SingleHostCase):
    operation = 'stop'
    method = 'stop_instance'
    target = 'stopped'


class PowerOffCase(StopCase):
    """Inside the waiting power-off of a clean stop of a guest that
    ignores ACPI: only the forced path ends it."""

    honours_acpi = False
    arguments = {'shutdown_timeout': SHORT_STOP_TIMEOUT}
    retry_from = {'active': (('stop_instance', FORCED),)}


class RebootCase(SingleHostCase):
    """Retried as a hard reboot, which needs no ready guest (the soft
    one's ACPI press would be lost on a guest still booting) and also
    takes a stopped one."""

    operation = 'soft-reboot'
    method = 'reboot_instance'
    target = 'active'
    always_retry = True
    retry_from = {'active': (('reboot_instance', {'reboot_type': 'HARD'}),),
                  'stopped': (('reboot_instance',
                               {'reboot_type': 'HARD'}),)}


class RescueCase(SingleHostCase):
    operation = 'rescue'
    method = 'rescue_instance'
    target = 'rescued'


class UnrescueCase(SingleHostCase):
    """From error (half way between the two definitions) the guest is
    rescued again, which keeps its saved definition, then unrescued."""

    operation = 'unrescue'
    setup = (('rescue_instance', FORCED),)
    method = 'unrescue_instance'
    target = 'active'
    retry_from = {'error': (('rescue_instance', FORCED),
                            ('unrescue_instance', {}))}


class ShelveCase(SingleHostCase):
    operation = 'shelve'
    method = 'shelve_instance'
    target = 'shelved'


class OffloadCase(SingleHostCase):
    operation = 'shelve-offload'
    method = 'shelve_offload_instance'
    target = 'shelved_offloaded'


class UnshelveCase(SingleHostCase):
    """Unshelve of an offloaded guest: spawned again from its snapshot."""

    operation = 'unshelve'
    setup = (('shelve_instance', FORCED),
             ('shelve_offload_instance', FORCED))
    method = 'unshelve_instance'
    target = 'active'


# The case class of each failpoint prefix (build, start, ...).
_BY_PREFIX = {
    'build': BuildCase, 'start': StartCase, 'stop': StopCase,
    'reboot': RebootCase, 'rescue': RescueCase, 'unrescue': UnrescueCase,
    'shelve': ShelveCase, 'offload': OffloadCase, 'unshelve': UnshelveCase,
    'power_off': PowerOffCase,
}


def _case_for(failpoint):
    base = _BY_PREFIX[failpoint.split('.')[0]]
    class_name = ''.join(part.title() for part in
                         re.split(r'[._]', failpoint)) + 'Case'
    return type(class_name, (base,), {'failpoint': failpoint})


# In the order failpoints.py defines them: by operation, step by step.
DEFINED = [value for value in vars(failpoints).values()
           if isinstance(value, str) and value in failpoints.ALL]
CASES = [_case_for(name) for name in DEFINED
         if name.split('.')[0] in _BY_PREFIX]


def all_cases():
    """Every case the matrix knows, single-host ones first, then those
    of migration_cases.py (when that module exists)."""
    name = 'tools.crash_matrix.migration_cases'
    if importlib.util.find_spec(name) is None:
        return list(CASES)
    return list(CASES) + list(importlib.import_module(name).CASES)
