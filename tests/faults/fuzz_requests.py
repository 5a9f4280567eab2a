"""Bad requests for every RPC method, as hypothesis strategies.

A method's model gives a strategy of argument sets it accepts (naming
what the seeded host holds), and for each argument a strategy of values
it must refuse. From those, ``cases`` draws requests that each break the
contract in one way:

* ``bad <arg>``: one argument holds a value it must refuse;
* ``missing <arg>``: a required argument is left out;
* ``extra``: an argument the method does not take is added;
* ``foreign``: every argument is well formed, but the request names
  something this host does not have or does not play that role in (an
  unknown instance or migration, a migration whose other end this is).

``cases`` gives one strategy per kind, so that each kind of each method
gets its share of the examples.

Every case must be answered with a contract error and change nothing.
"""

import dataclasses

from hypothesis import strategies as st

from tests.faults import fuzz_values as values


@dataclasses.dataclass(frozen=True)
class HostView:
    """What the seeded host holds, for building requests that name it."""

    host: str
    peer: str               # a host name no agent listens as
    instances: dict         # vm_state -> uuid of an instance here
    source_migration: str   # id of a migration this host is the source of
    dest_migration: str     # id of one this host is the destination of
    scratch_path: str       # a directory a stray write may land in

    @property
    def instance_uuids(self):
        return sorted(self.instances.values())


@dataclasses.dataclass(frozen=True)
class Case:
    method: str
    kind: str
    args: dict


@dataclasses.dataclass(frozen=True)
class Model:
    valid: object       # view -> strategy of accepted argument dicts
    invalid: dict       # argument name -> (view -> strategy of bad values)
    foreign: object = None   # view -> strategy of foreign argument dicts


def _flavors():
    return st.fixed_dictionaries({
        'vcpus': st.integers(1, 4), 'memory_mb': st.integers(16, 512)})


def _image():
    return {'id': 'fuzz-image', 'properties': {}}


def _build_spec(instance_uuid):
    return {'uuid': instance_uuid, 'name': 'fuzz', 'vcpus': 1,
            'memory_mb': 64, 'image': _image()}


def _peer_instance(instance_uuid, host):
    return {'uuid': instance_uuid, 'name': 'fuzz-incoming', 'host': host,
            'vm_state': 'active', 'task_state': None,
            'power_state': 'running',
            'flavor': {'vcpus': 1, 'memory_mb': 64}, 'image': _image(),
            'last_power_off': None}


def _peer_migration(migration_id, instance_uuid, source, dest):
    flavor = {'vcpus': 1, 'memory_mb': 64}
    return {'id': migration_id, 'kind': 'migration',
            'instance_uuid': instance_uuid, 'source_host': source,
            'dest_host': dest, 'status': 'running', 'request_id': 'req-fuzz',
            'details': {'old_flavor': flavor, 'new_flavor': flavor}}


# -- bad values of each kind of argument --------------------------------

def _bad_uuid(view):
    return values.not_uuids()


def _bad_optional_uuid(view):
    return values.not_uuids(allow_none=True)


def _bad_bool(view):
    return values.non_booleans()


def _bad_timeout(view):
    return values.bad_timeouts()


def _bad_host(view):
    return values.bad_hosts()


def _bad_reboot_type(view):
    return st.one_of(
        st.sampled_from(('soft', 'hard', 'Soft', 'SOFT ', 'HARD\x00', '')),
        values.junk().filter(lambda value: value not in ('SOFT', 'HARD')))


def _bad_max_bytes(view):
    return st.one_of(
        st.integers(max_value=0), st.integers(min_value=(1 << 20) + 1),
        st.floats(), st.booleans(), values.hostile_strings(),
        values.containers())


def _bad_event_name(view):
    return st.one_of(values.non_strings(), st.just(''),
                     st.just('e' * 256))


def _bad_event_tag(view):
    return _bad_event_name(view).filter(lambda value: value is not None)


def _bad_events(view):
    entry = {'name': 'network-vif-plugged', 'tag': None}
    return st.one_of(
        values.junk().filter(
            lambda value: value is not None and not isinstance(value, list)),
        st.just([entry] * 65),
        st.lists(values.junk().filter(
            lambda value: not isinstance(value, dict)), min_size=1,
            max_size=3),
        _bad_event_name(view).map(lambda name: [{'name': name}]),
        values.junk().map(lambda extra: [dict(entry, extra=extra)]),
        st.just([{'tag': 'x'}]))


def _bad_marker(view):
    return st.one_of(
        values.non_strings(), values.huge_strings(),
        st.sampled_from(('../../etc/passwd', '/etc/passwd', '..', '..x',
                         'a/b', 'nul\x00byte', '/')))


def _bad_flavor(view):
    good = {'vcpus': 1, 'memory_mb': 64}
    return st.one_of(
        values.junk().filter(
            lambda value: value is not None and not isinstance(value, dict)),
        st.just({}), st.just({'vcpus': 1}),
        values.junk().map(lambda extra: dict(good, extra=extra)),
        values.bad_positive_ints().map(lambda bad: dict(good, vcpus=bad)),
        values.bad_positive_ints(16).map(
            lambda bad: dict(good, memory_mb=bad)))


def _bad_xml(view):
    return st.one_of(values.non_strings(),
                     st.just('<domain>' + 'A' * (1 << 20) + '</domain>'),
                     st.sampled_from(values.XML_BREAKERS))


def _bad_path(view):
    return st.one_of(
        values.non_strings(), st.just('/' + 'p' * 4097),
        st.sampled_from(('../../etc/passwd', '..', 'a/../../b', 'relative',
                         '/tmp/nul\x00byte', '')))


def _bad_migration_target(view):
    return st.one_of(
        values.junk().filter(
            lambda value: value is not None and not isinstance(value, dict)),
        st.just({f'k{index}': 'v' for index in range(17)}),
        values.non_strings().filter(lambda value: value is not None).map(
            lambda bad: {'libvirt_uri': bad}),
        st.just({'k' * 65: 'v'}), st.just({'libvirt_uri': 'u' * 4097}))


def _bad_image(view):
    image = _image()
    return st.one_of(
        values.junk().filter(lambda value: not isinstance(value, dict)),
        st.just({'properties': {}}),
        values.junk().map(lambda extra: dict(image, extra=extra)),
        st.one_of(values.non_strings(), st.just('')).map(
            lambda bad: dict(image, id=bad)),
        values.junk().filter(lambda value: not isinstance(value, dict)).map(
            lambda bad: dict(image, properties=bad)),
        values.non_strings().map(lambda bad: dict(image, kernel=bad,
                                                  ramdisk='/r')),
        st.sampled_from(values.PATHS).map(lambda path: dict(image,
                                                            kernel=path)),
        st.just(dict(image, cmdline='console=ttyS0')))


def _bad_rescue_image(view):
    return st.one_of(
        values.hostile_strings(), values.random_uuids(),
        values.junk().filter(lambda value: value is not None and not
                             isinstance(value, (dict, str))),
        _bad_image(view).filter(lambda value: isinstance(value, dict)))


def _bad_reason(view):
    return st.one_of(values.non_strings(), st.just('r' * 4097))


def _mutated(valid_dict, fields):
    """A copy of valid_dict with one field broken, dropped, or an unknown
    one added; or something that is not an object at all.

    :param fields: name -> strategy of bad values for that field
    """
    def drop(name):
        return {key: value for key, value in valid_dict.items()
                if key != name}
    choices = [
        values.junk().filter(lambda value: not isinstance(value, dict)),
        st.sampled_from(sorted(fields)).map(drop)]
    for name, bad in fields.items():
        choices.append(bad.map(
            lambda value, name=name: dict(valid_dict, **{name: value})))
    return st.one_of(choices)


def _bad_build_spec(view):
    spec = _build_spec('7d3b8c52-0d5e-4f6e-9a43-4a8f1d2b9c10')
    return st.one_of(
        _mutated(spec, {
            'uuid': values.not_uuids(), 'name': values.bad_names(),
            'vcpus': values.bad_positive_ints(),
            'memory_mb': values.bad_positive_ints(16),
            'image': _bad_image(view)}),
        _bad_events(view).map(lambda bad: dict(spec, wait_for_events=bad)),
        values.junk().map(lambda extra: dict(spec, extra_field=extra)))


def _bad_peer_instance(view):
    record = _peer_instance('1e0f3a6c-5b7d-4c2e-8f91-3d6a2b4c8e07',
                            view.peer)
    return _mutated(record, {
        'uuid': values.not_uuids(), 'name': values.bad_names(),
        'flavor': st.one_of(st.none(), _bad_flavor(view)),
        'image': _bad_image(view)})


def _bad_peer_migration(role, with_flavors=False):
    def strategy(view):
        source, dest = (view.host, view.peer) if role == 'source_host' \
            else (view.peer, view.host)
        record = _peer_migration('5c2a9e1f-7b3d-4a6c-9e8f-2d1b4c6a8e30',
                                 view.instances['active'], source, dest)
        fields = {
            'id': values.not_uuids(), 'instance_uuid': values.not_uuids(),
            'source_host': values.bad_hosts(),
            'dest_host': values.bad_hosts(),
            'details': values.junk().filter(
                lambda value: not isinstance(value, dict)),
            'kind': st.just(None), 'status': st.just(None),
            'request_id': st.just(None)}
        mutations = [_mutated(record, fields)]
        if with_flavors:
            mutations.append(st.one_of(st.just({}), _bad_flavor(view).map(
                lambda bad: {'new_flavor': bad})).map(
                lambda details: dict(record, details=details)))
        return st.one_of(mutations)
    return strategy


# -- accepted argument sets ----------------------------------------------

def _on_instance(**others):
    """Arguments naming one of the seeded instances, plus others."""
    def valid(view):
        return st.fixed_dictionaries(dict(
            instance_uuid=st.sampled_from(view.instance_uuids),
            **{name: make(view) for name, make in others.items()}))
    return valid


def _on_migration(view):
    return st.fixed_dictionaries({'migration_id': st.sampled_from(
        (view.source_migration, view.dest_migration))})


def _power_args():
    return {'clean_shutdown': lambda view: st.booleans(),
            'shutdown_timeout': lambda view: st.none() | st.integers(0, 3)}


_POWER_INVALID = {'instance_uuid': _bad_uuid, 'clean_shutdown': _bad_bool,
                  'shutdown_timeout': _bad_timeout}


def _unknown_instance(valid):
    """valid's arguments with an instance uuid this host never saw."""
    def foreign(view):
        return st.tuples(valid(view), values.random_uuids()).map(
            lambda pair: dict(pair[0], instance_uuid=pair[1]))
    return foreign


def _foreign_migration(role):
    """A migration id this host does not know, or one of a migration in
    which it plays the other role than role."""
    def foreign(view):
        other = view.dest_migration if role == 'source_host' \
            else view.source_migration
        return st.one_of(values.random_uuids(), st.just(other)).map(
            lambda migration_id: {'migration_id': migration_id})
    return foreign


def _simple_instance_method(**extra_invalid):
    valid_others = {name: spec[0] for name, spec in extra_invalid.items()}
    valid = _on_instance(**valid_others)
    invalid = dict({'instance_uuid': _bad_uuid},
                   **{name: spec[1] for name, spec in extra_invalid.items()})
    return Model(valid, invalid, _unknown_instance(valid))


def _power_method(**extra):
    valid = _on_instance(**dict(_power_args(), **{
        name: spec[0] for name, spec in extra.items()}))
    invalid = dict(_POWER_INVALID,
                   **{name: spec[1] for name, spec in extra.items()})
    return Model(valid, invalid, _unknown_instance(valid))


def _migration_method(role):
    invalid = {'migration_id': _bad_uuid}
    return Model(_on_migration, invalid,
                 _foreign_migration(role) if role else
                 lambda view: values.random_uuids().map(
                     lambda migration_id: {'migration_id': migration_id}))


def _no_arguments():
    return Model(lambda view: st.just({}), {})


def _live_migrate_valid(view):
    return st.fixed_dictionaries({
        'instance_uuid': st.sampled_from(view.instance_uuids),
        'dest_host': st.just(view.peer), 'block_migration': st.booleans(),
        'wait_for_events': st.none()})


def _live_migrate_foreign(view):
    return st.one_of(
        _unknown_instance(_live_migrate_valid)(view),
        _live_migrate_valid(view).map(
            lambda args: dict(args, dest_host=view.host)))


def _new_uuid_build(view):
    return values.random_uuids().map(
        lambda instance_uuid: {'instance': _build_spec(instance_uuid)})


def _existing_uuid_build(view):
    return st.sampled_from(view.instance_uuids).map(
        lambda instance_uuid: {'instance': _build_spec(instance_uuid)})


def _check_destination_valid(view):
    return st.fixed_dictionaries({
        'instance': values.random_uuids().map(
            lambda instance_uuid: _peer_instance(instance_uuid, view.peer)),
        'block_migration': st.booleans()})


def _check_destination_foreign(view):
    return st.tuples(_check_destination_valid(view),
                     st.sampled_from(view.instance_uuids)).map(
        lambda pair: dict(pair[0], instance=dict(pair[0]['instance'],
                                                 uuid=pair[1])))


def _incoming(view, **others):
    """An instance arriving here by a migration from the peer."""
    def build(instance_uuid):
        return dict(
            instance=_peer_instance(instance_uuid, view.peer),
            migration=_peer_migration(
                '9a4c6e2b-1d3f-4b5a-8c7e-6f2a1b3d5c49', instance_uuid,
                view.peer, view.host), **others)
    return values.random_uuids().map(build)


def _incoming_foreign(view, **others):
    """An incoming migration that names another host as destination,
    this host as source, an instance already here, or a migration this
    host never took part in."""
    def wrong(args, how, here):
        migration = dict(args['migration'])
        instance = dict(args['instance'])
        if how == 'dest elsewhere':
            migration['dest_host'] = view.peer + '-other'
        elif how == 'this is the source':
            migration['source_host'], migration['dest_host'] = \
                view.host, view.peer
        else:
            instance['uuid'] = migration['instance_uuid'] = here
        return dict(args, migration=migration, instance=instance)
    return st.tuples(
        _incoming(view, **others),
        st.sampled_from(('dest elsewhere', 'this is the source',
                         'instance already here')),
        st.sampled_from(view.instance_uuids)).map(lambda t: wrong(*t))


def _pre_live_valid(view):
    return _incoming(view, migratable_xml='<domain type="test"/>',
                     block_migration=False)


def _post_live_valid(view):
    return _incoming(view, destination_xml='<domain type="test"/>')


def _finish_resize_valid(view):
    return _incoming(view, has_disk=False, power_on=True)


def _resize_instance_args(view, instance_uuid, source, dest):
    return {
        'migration': _peer_migration('3f8e1a5c-2b7d-4e9a-b1c3-5d7f9e2a4b68',
                                     instance_uuid, source, dest),
        'destination_path': view.scratch_path, 'shared_storage': False,
        'clean_shutdown': True, 'shutdown_timeout': 0,
        'migration_target': None}


def _resize_instance_valid(view):
    return st.sampled_from(view.instance_uuids).map(
        lambda instance_uuid: _resize_instance_args(
            view, instance_uuid, view.host, view.peer))


def _resize_instance_foreign(view):
    return st.one_of(
        values.random_uuids().map(lambda instance_uuid: _resize_instance_args(
            view, instance_uuid, view.host, view.peer)),
        st.sampled_from(view.instance_uuids).map(
            lambda instance_uuid: _resize_instance_args(
                view, instance_uuid, view.peer, view.host)))


def _prep_resize_valid(view):
    return st.fixed_dictionaries({
        'instance_uuid': values.random_uuids(),
        'new_flavor': st.none() | _flavors(),
        'source_host': st.just(view.peer), 'clean_shutdown': st.booleans(),
        'shutdown_timeout': st.none()})


def _prep_resize_foreign(view):
    return st.one_of(
        st.tuples(_prep_resize_valid(view),
                  st.sampled_from(view.instance_uuids)).map(
            lambda pair: dict(pair[0], instance_uuid=pair[1])),
        _prep_resize_valid(view).map(
            lambda args: dict(args, source_host=view.host)))


def _rollback_valid(view):
    return st.fixed_dictionaries({
        'instance_uuid': st.sampled_from(view.instance_uuids),
        'migration_id': st.just(view.dest_migration),
        'reason': st.text(max_size=20)})


def _rollback_foreign(view):
    return st.tuples(_rollback_valid(view), st.one_of(
        values.random_uuids(), st.just(view.source_migration))).map(
        lambda pair: dict(pair[0], migration_id=pair[1]))


def _events_valid(view):
    return st.none() | st.lists(st.fixed_dictionaries({
        'name': st.just('network-vif-plugged'),
        'tag': st.none() | st.just('port-1')}), max_size=2)


MODELS = {
    'get_service_status': _no_arguments(),
    'list_instances': _no_arguments(),
    'get_instance': _simple_instance_method(),
    'get_instance_actions': _simple_instance_method(),
    'get_serial_console': _simple_instance_method(),
    'get_console_output': _simple_instance_method(
        max_bytes=(lambda view: st.none() | st.integers(1, 1 << 20),
                   _bad_max_bytes)),
    'list_migrations': Model(
        lambda view: st.fixed_dictionaries({'instance_uuid': st.none() |
                                            st.sampled_from(
                                                view.instance_uuids)}),
        {'instance_uuid': _bad_optional_uuid}),
    'get_migration': _migration_method(None),
    'external_instance_event': Model(
        _on_instance(name=lambda view: st.just('network-vif-plugged'),
                     tag=lambda view: st.none() | st.just('port-1')),
        {'instance_uuid': _bad_uuid, 'name': _bad_event_name,
         'tag': _bad_event_tag}),
    'build_and_run_instance': Model(
        _new_uuid_build, {'instance': _bad_build_spec},
        _existing_uuid_build),
    'start_instance': _simple_instance_method(),
    'stop_instance': _power_method(),
    'terminate_instance': _power_method(),
    'shelve_instance': _power_method(),
    'shelve_offload_instance': _power_method(),
    'rescue_instance': _power_method(
        rescue_image=(lambda view: st.none() | st.just(_image()),
                      _bad_rescue_image)),
    'reboot_instance': _simple_instance_method(
        reboot_type=(lambda view: st.sampled_from(('SOFT', 'HARD')),
                     _bad_reboot_type)),
    'unrescue_instance': _simple_instance_method(),
    'unshelve_instance': _simple_instance_method(),
    'live_migrate_instance': Model(
        _live_migrate_valid,
        {'instance_uuid': _bad_uuid, 'dest_host': _bad_host,
         'block_migration': _bad_bool, 'wait_for_events': _bad_events},
        _live_migrate_foreign),
    'live_migration_abort': _migration_method('source_host'),
    'live_migration_force_complete': _migration_method('source_host'),
    'check_can_live_migrate_destination': Model(
        _check_destination_valid,
        {'instance': _bad_peer_instance, 'block_migration': _bad_bool},
        _check_destination_foreign),
    'pre_live_migration': Model(
        _pre_live_valid,
        {'instance': _bad_peer_instance,
         'migration': _bad_peer_migration('dest_host'),
         'migratable_xml': _bad_xml, 'block_migration': _bad_bool},
        lambda view: _incoming_foreign(
            view, migratable_xml='<domain type="test"/>',
            block_migration=False)),
    'post_live_migration_at_destination': Model(
        _post_live_valid,
        {'instance': _bad_peer_instance,
         'migration': _bad_peer_migration('dest_host'),
         'destination_xml': _bad_xml},
        lambda view: _incoming_foreign(
            view, destination_xml='<domain type="test"/>')),
    'rollback_live_migration_at_destination': Model(
        _rollback_valid,
        {'instance_uuid': _bad_uuid, 'migration_id': _bad_uuid,
         'reason': _bad_reason},
        _rollback_foreign),
    'prep_resize': Model(
        _prep_resize_valid,
        dict(_POWER_INVALID, new_flavor=_bad_flavor, source_host=_bad_host),
        _prep_resize_foreign),
    'check_instance_shared_storage': Model(
        _on_instance(marker=lambda view: st.just('marker-1')),
        {'instance_uuid': _bad_uuid, 'marker': _bad_marker}),
    'resize_instance': Model(
        _resize_instance_valid,
        {'migration': _bad_peer_migration('source_host'),
         'destination_path': _bad_path, 'shared_storage': _bad_bool,
         'clean_shutdown': _bad_bool, 'shutdown_timeout': _bad_timeout,
         'migration_target': _bad_migration_target},
        _resize_instance_foreign),
    'finish_resize': Model(
        _finish_resize_valid,
        {'migration': _bad_peer_migration('dest_host', with_flavors=True),
         'instance': _bad_peer_instance, 'has_disk': _bad_bool,
         'power_on': _bad_bool},
        lambda view: _incoming_foreign(view, has_disk=False,
                                       power_on=True)),
    'confirm_resize': _migration_method('source_host'),
    'finish_confirm_resize': _migration_method('dest_host'),
    'revert_resize': _migration_method('dest_host'),
    'finish_revert_resize': _migration_method('source_host'),
}


def _extra_names(signature):
    names = st.one_of(
        st.sampled_from(('self', 'ctxt', 'context', 'kwargs', '__class__',
                         'instance_uuid', 'host', 'force', 'debug')),
        st.text(min_size=1, max_size=12), st.sampled_from(values.HOSTILE))
    return names.filter(lambda name: name not in signature.params)


def cases(method, signature, view):
    """{kind: strategy of bad requests (Case) of that kind} for method."""
    model = MODELS[method]
    valid = model.valid(view)
    kinds = {'extra': st.tuples(
        valid, _extra_names(signature), values.junk()).map(
        lambda t: Case(method, 'extra', dict(t[0], **{t[1]: t[2]})))}
    for name in signature.params:
        kinds[f'bad {name}'] = st.tuples(
            valid, model.invalid[name](view)).map(
            lambda pair, name=name: Case(method, f'bad {name}',
                                         dict(pair[0], **{name: pair[1]})))
    for name in sorted(signature.required):
        kinds[f'missing {name}'] = valid.map(lambda args, name=name: Case(
            method, f'missing {name}',
            {key: value for key, value in args.items() if key != name}))
    if model.foreign is not None:
        kinds['foreign'] = model.foreign(view).map(
            lambda args: Case(method, 'foreign', args))
    return kinds
