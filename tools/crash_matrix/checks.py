"""What a crash left, looked at on both hosts once the agent is back.

``look`` gathers each host's view: the agent's records, actions and
migration records (over RPC, as a client sees them), libvirt's domains
(virsh against the host's private libvirtd, as an operator looks), the
files under state_path (instances/<uuid>/ per guest, images/<id>.qcow2
per snapshot) and the snapshot records (the agent's database, read
only: no RPC lists them). The checks are pure functions of those views:

* no record of the case's guests has a task state;
* each of those records agrees with libvirt: its power_state is the
  domain's (nostate when none is defined) and its vm_state allows it;
* the instance is held by exactly one host (the case's expected home,
  when it names one) and defined in libvirt nowhere else;
* no orphan: no domain, instance directory or snapshot file that no
  record names, no snapshot record of an instance the host does not
  hold or whose file is gone;
* the interrupted requests' action records are closed with a message,
  and no action of the instance is left open.
"""

import dataclasses
import os
import sqlite3
import subprocess

import oslo_messaging

from compute_agent import state_files

# virsh domstate's words, as the agent's power states.
POWER_STATES = {'running': 'running', 'shut off': 'shutdown',
                'paused': 'paused', 'crashed': 'crashed',
                'idle': 'running', 'in shutdown': 'running',
                'pmsuspended': 'paused'}
NOSTATE = 'nostate'
# The power states each vm_state allows (error: any).
ALLOWED_POWER = {
    'active': {'running'}, 'stopped': {'shutdown'},
    'rescued': {'running'}, 'shelved': {'shutdown'},
    'shelved_offloaded': {NOSTATE}, 'resized': {'running', 'shutdown'},
}
# A cold migration or resize waiting for confirm or revert keeps the
# original guest on the source, under a record that is no longer the
# source's: its domain and directory are not orphans.
AWAITING_CONFIRM = 'completed'


@dataclasses.dataclass
class HostView:
    name: str
    records: dict  # uuid -> record of each instance the host holds
    actions: dict  # uuid -> its action records (instances of interest)
    migrations: list  # records of the instances of interest
    domains: dict  # uuid -> power state as libvirt reports it
    instance_dirs: set  # uuids under state_path/instances
    image_files: set  # paths under state_path/images
    snapshots: list  # {'id', 'instance_uuid', 'path'}


def _virsh(host, *args):
    return subprocess.run(['virsh', '-c', host.libvirtd.uri, *args],
                          capture_output=True, text=True,
                          check=True).stdout


def _domains(host):
    domains = {}
    for uuid in _virsh(host, 'list', '--all', '--uuid').split():
        state = _virsh(host, 'domstate', uuid).strip()
        domains[uuid] = POWER_STATES.get(state, state)
    return domains


def _listdir(path):
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def _snapshots(state_path):
    path = os.path.join(state_path, state_files.DATABASE)
    with sqlite3.connect(f'file:{path}?mode=ro', uri=True) as db:
        return [{'id': row[0], 'instance_uuid': row[1], 'path': row[2]}
                for row in db.execute(
                    'SELECT id, instance_uuid, path FROM snapshots')]


def _actions(host, instance_uuid):
    try:
        return host.rpc.call('get_instance_actions',
                             instance_uuid=instance_uuid)
    except oslo_messaging.RemoteError as error:
        if error.exc_type == 'InstanceNotFound':
            return None
        raise


def look(deployment, instance_uuids):
    """Each host's view, by name; instance_uuids are those whose actions
    and migration records are fetched."""
    views = {}
    for host in deployment.hosts.values():
        actions = {}
        migrations = []
        for uuid in instance_uuids:
            found = _actions(host, uuid)
            if found is not None:
                actions[uuid] = found
            migrations += host.rpc.call('list_migrations',
                                        instance_uuid=uuid)
        images = os.path.join(host.state_path, 'images')
        views[host.name] = HostView(
            name=host.name,
            records={record['uuid']: record
                     for record in host.rpc.call('list_instances')},
            actions=actions, migrations=migrations,
            domains=_domains(host),
            instance_dirs=set(_listdir(os.path.join(host.state_path,
                                                    'instances'))),
            image_files={os.path.join(images, name)
                         for name in _listdir(images)},
            snapshots=_snapshots(host.state_path))
    return views


# -- the checks: lists of what failed --------------------------------------

def _held(view, uuids):
    """The view's records of uuids (of every instance, for None)."""
    return [(uuid, record) for uuid, record in view.records.items()
            if uuids is None or uuid in uuids]


def task_states(views, uuids=None):
    return [f'{view.name}: {uuid} left with task_state '
            f'{record["task_state"]}'
            for view in views.values()
            for uuid, record in _held(view, uuids)
            if record['task_state'] is not None]


def agree_with_libvirt(views, uuids=None):
    failed = []
    for view in views.values():
        for uuid, record in _held(view, uuids):
            real = view.domains.get(uuid, NOSTATE)
            if record['power_state'] != real:
                failed.append(f'{view.name}: {uuid} recorded '
                              f'{record["power_state"]}, libvirt says '
                              f'{real}')
            allowed = ALLOWED_POWER.get(record['vm_state'])
            if allowed is not None and real not in allowed:
                failed.append(f'{view.name}: {uuid} is '
                              f'{record["vm_state"]} but its guest is '
                              f'{real}')
    return failed


def one_home(views, instance_uuid, expected_home=None):
    """Held by exactly one host (expected_home, if named); its domain
    defined on no other host."""
    holders = [view.name for view in views.values()
               if instance_uuid in view.records]
    if len(holders) != 1:
        return [f'{instance_uuid} held by {len(holders)} hosts '
                f'({", ".join(holders) or "none"})']
    failed = []
    if expected_home is not None and holders != [expected_home]:
        failed.append(f'{instance_uuid} held by {holders[0]}, expected '
                      f'{expected_home}')
    for view in views.values():
        if view.name not in holders and instance_uuid in view.domains and \
                instance_uuid not in _kept_for_confirm(view):
            failed.append(f'{view.name}: {instance_uuid} defined in '
                          f'libvirt, but {holders[0]} holds it')
    return failed


def _kept_for_confirm(view):
    return {migration['instance_uuid'] for migration in view.migrations
            if migration['kind'] != 'live'
            and migration['status'] == AWAITING_CONFIRM
            and migration['source_host'] == view.name}


def orphans(views):
    failed = []
    for view in views.values():
        named = set(view.records) | _kept_for_confirm(view)
        failed += [f'{view.name}: orphan domain {uuid}'
                   for uuid in sorted(set(view.domains) - named)]
        failed += [f'{view.name}: orphan instance directory {uuid}'
                   for uuid in sorted(view.instance_dirs - named)]
        recorded_paths = {snapshot['path'] for snapshot in view.snapshots}
        failed += [f'{view.name}: orphan snapshot file {path}'
                   for path in sorted(view.image_files - recorded_paths)]
        for snapshot in view.snapshots:
            if snapshot['instance_uuid'] not in view.records:
                failed.append(f'{view.name}: snapshot {snapshot["id"]} of '
                              f'{snapshot["instance_uuid"]}, which the '
                              f'host does not hold')
            if snapshot['path'] and snapshot['path'] not in view.image_files:
                failed.append(f'{view.name}: snapshot {snapshot["id"]} '
                              f'names {snapshot["path"]}, which is gone')
    return failed


def actions_closed(views, instance_uuid, request_ids):
    failed = []
    interrupted = []
    for view in views.values():
        for action in view.actions.get(instance_uuid, []):
            if action['finish_time'] is None:
                failed.append(f'{view.name}: action {action["action"]} '
                              f'({action["request_id"]}) left open')
            if action['request_id'] in request_ids:
                interrupted.append((view.name, action))
    if request_ids and not interrupted:
        failed.append(f'no action record of the interrupted request '
                      f'{", ".join(request_ids)} on any host')
    failed += [f'{name}: action {action["action"]} closed '
               f'{action["result"]} without a message'
               for name, action in interrupted if not action['message']]
    return failed


def after_recovery(views, case):
    """Every check of the list above, for the case's instance. Records
    and libvirt are checked for the case's guests only: a guest that an
    earlier case failed to settle is that case's finding, not this one's.
    Orphans are looked for everywhere."""
    home = case.expected_home()
    return (task_states(views, case.instance_uuids)
            + agree_with_libvirt(views, case.instance_uuids)
            + one_home(views, case.instance_uuid,
                       home.name if home is not None else None)
            + orphans(views)
            + actions_closed(views, case.instance_uuid, case.request_ids)
            + case.extra_checks(views))


def after_cleanup(views, uuids):
    """Once every guest of the case (uuids) is deleted: none is held any
    more, and nothing is left anywhere."""
    return [f'{view.name}: {uuid} still held after its delete'
            for view in views.values() for uuid, _ in _held(view, uuids)
            ] + orphans(views)


def state_left(views, instance_uuid, request_ids, name_hosts=False):
    """One line: the instance's state (on each host that holds it, named
    with name_hosts) and how its interrupted action was closed, e.g.
    'stopped/shutdown; action interrupted'."""
    states = '; '.join(
        f'{view.records[instance_uuid]["vm_state"]}/'
        f'{view.records[instance_uuid]["power_state"]}'
        + (f' on {view.name}' if name_hosts else '')
        for view in views.values()
        if instance_uuid in view.records) or 'no record'
    results = sorted({action['result'] for view in views.values()
                      for action in view.actions.get(instance_uuid, [])
                      if action['request_id'] in request_ids})
    return f'{states}; action {"/".join(results) or "none"}'
