"""Checks on request arguments. Each raises InvalidInput with a message
that names the argument, what was given and what is accepted."""

import os
import uuid as uuidlib

from compute_agent import exception
from compute_agent import log_safety

REBOOT_TYPES = ('SOFT', 'HARD')
_BUILD_KEYS = {'uuid', 'name', 'vcpus', 'memory_mb', 'image'}
_BUILD_OPTIONAL_KEYS = {'wait_for_events'}
_IMAGE_KEYS = {'id', 'properties', 'kernel', 'ramdisk', 'cmdline', 'disk'}
MAX_NAME_LENGTH = 255
MIN_MEMORY_MB = 16


def _invalid(reason):
    return exception.InvalidInput(reason=reason)


def _shown(value, limit=80):
    """value as a message may quote it: escaped, and cut short."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + '...'


def instance_uuid(value, argument='instance_uuid'):
    if not isinstance(value, str):
        raise _invalid(f'{argument} must be a UUID string, got '
                       f'{type(value).__name__} {_shown(value)}')
    try:
        parsed = uuidlib.UUID(value)
    except ValueError:
        raise _invalid(f'{argument} {_shown(value)} is not a UUID')
    return str(parsed)


def boolean(value, argument):
    if not isinstance(value, bool):
        raise _invalid(f'{argument} must be true or false, got '
                       f'{_shown(value)}')
    return value


def optional_timeout(value, argument='shutdown_timeout'):
    """None (use the image or config value) or a whole number of seconds."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(f'{argument} must be a whole number of seconds, got '
                       f'{_shown(value)}')
    if value < 0:
        raise _invalid(f'{argument} must be 0 or more seconds, got {value}')
    return value


def power_off_request(instance_uuid_value, clean_shutdown, shutdown_timeout):
    """The arguments every guest-stopping operation takes:
    (instance uuid, clean or not, timeout or None)."""
    return (instance_uuid(instance_uuid_value),
            boolean(clean_shutdown, 'clean_shutdown'),
            optional_timeout(shutdown_timeout))


MAX_CONSOLE_BYTES = 1024 * 1024
DEFAULT_CONSOLE_BYTES = 64 * 1024


def console_bytes(value):
    """None (a default tail) or a whole number of bytes up to 1 MiB."""
    if value is None:
        return DEFAULT_CONSOLE_BYTES
    if isinstance(value, bool) or not isinstance(value, int) or \
            not 1 <= value <= MAX_CONSOLE_BYTES:
        raise _invalid(f'max_bytes must be a whole number from 1 to '
                       f'{MAX_CONSOLE_BYTES}, got {_shown(value)}')
    return value


def reboot_type(value):
    if value not in REBOOT_TYPES:
        raise _invalid(f'reboot_type must be one of {", ".join(REBOOT_TYPES)}'
                       f', got {_shown(value)}')
    return value


def instance_name(value, argument='instance.name'):
    """A name fit for logs, XML and terminals: printable text, not blank,
    at most MAX_NAME_LENGTH characters."""
    if not isinstance(value, str) or not value.strip() or \
            len(value) > MAX_NAME_LENGTH or \
            log_safety.has_unsafe(value):
        raise _invalid(f'{argument} must be a non-empty string of at most '
                       f'{MAX_NAME_LENGTH} characters without control '
                       f'characters, got {_shown(value)}')
    return value


def _positive_int(spec, key, argument='instance'):
    value = spec.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _invalid(f'{argument}.{key} must be a positive integer, got '
                       f'{_shown(value)}')
    return value


def build_request(spec):
    """Validate build_and_run_instance's instance argument; return a copy
    with defaults filled in."""
    if not isinstance(spec, dict):
        raise _invalid(f'instance must be an object, got '
                       f'{type(spec).__name__}')
    accepted = _BUILD_KEYS | _BUILD_OPTIONAL_KEYS
    unknown = {str(key) for key in spec} - accepted
    missing = _BUILD_KEYS - set(spec)
    if unknown:
        raise _invalid(f'instance has unknown field(s) '
                       f'{", ".join(sorted(unknown))}; accepted: '
                       f'{", ".join(sorted(accepted))}')
    if missing:
        raise _invalid(f'instance lacks field(s) '
                       f'{", ".join(sorted(missing))}')
    name = instance_name(spec['name'], 'instance.name')
    memory_mb = _positive_int(spec, 'memory_mb')
    if memory_mb < MIN_MEMORY_MB:
        raise _invalid(f'instance.memory_mb must be at least {MIN_MEMORY_MB}'
                       f', got {memory_mb}')
    return {
        'uuid': instance_uuid(spec['uuid'], 'instance.uuid'),
        'name': name,
        'vcpus': _positive_int(spec, 'vcpus'),
        'memory_mb': memory_mb,
        'image': image_spec(spec['image'], 'instance.image'),
        'wait_for_events': event_list(spec.get('wait_for_events'),
                                      'instance.wait_for_events'),
    }


def image_spec(image, argument):
    """Validate an image spec (build's instance.image, a rescue image)."""
    if not isinstance(image, dict):
        raise _invalid(f'{argument} must be an object with "id" and '
                       f'"properties"')
    unknown = {str(key) for key in image} - _IMAGE_KEYS
    if unknown:
        raise _invalid(f'{argument} has unknown field(s) '
                       f'{", ".join(sorted(unknown))}; accepted: '
                       f'{", ".join(sorted(_IMAGE_KEYS))}')
    if not isinstance(image.get('id'), str) or not image['id']:
        raise _invalid(f'{argument}.id must be a non-empty string')
    properties = image.get('properties', {})
    if not isinstance(properties, dict) or not all(
            isinstance(key, str) for key in properties):
        raise _invalid(f'{argument}.properties must be an object')
    for key in ('kernel', 'ramdisk', 'cmdline', 'disk'):
        if key in image and not isinstance(image[key], str):
            raise _invalid(f'{argument}.{key} must be a string')
    if ('kernel' in image) != ('ramdisk' in image):
        raise _invalid(f'{argument}.kernel and {argument}.ramdisk go '
                       f'together')
    if 'cmdline' in image and 'kernel' not in image:
        raise _invalid(f'{argument}.cmdline needs kernel and ramdisk')
    return dict(image, properties=dict(properties))


MAX_HOST_LENGTH = 255


def host_name(value, argument):
    if not isinstance(value, str) or not value.strip() or \
            len(value) > MAX_HOST_LENGTH or value != value.strip():
        raise _invalid(f'{argument} must be the name of an agent\'s host '
                       f'(a non-empty string without surrounding spaces), '
                       f'got {_shown(value)}')
    return value


def flavor(value, argument='new_flavor'):
    """None (keep the flavor: a plain cold migration) or
    {"vcpus": int, "memory_mb": int}."""
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {'vcpus', 'memory_mb'}:
        raise _invalid(f'{argument} must be null or an object with exactly '
                       f'"vcpus" and "memory_mb", got {_shown(value)}')
    checked = {'vcpus': _positive_int(value, 'vcpus', argument),
               'memory_mb': _positive_int(value, 'memory_mb', argument)}
    if checked['memory_mb'] < MIN_MEMORY_MB:
        raise _invalid(f'{argument}.memory_mb must be at least '
                       f'{MIN_MEMORY_MB}, got {checked["memory_mb"]}')
    return checked


def event_name(value, argument='name'):
    if not isinstance(value, str) or not value or len(value) > 255:
        raise _invalid(f'{argument} must be a non-empty string of at most '
                       f'255 characters, got {_shown(value)}')
    return value


def event_tag(value, argument='tag'):
    if value is None:
        return None
    return event_name(value, argument)


def event_list(value, argument='wait_for_events'):
    """None or [{"name": str, "tag": str or null}, ...] -> [(name, tag)]."""
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > 64:
        raise _invalid(f'{argument} must be a list of at most 64 '
                       f'{{"name", "tag"}} objects, got {_shown(value)}')
    events = []
    for index, entry in enumerate(value):
        where = f'{argument}[{index}]'
        if not isinstance(entry, dict) or not {'name'} <= set(entry) <= \
                {'name', 'tag'}:
            raise _invalid(f'{where} must be an object with "name" and '
                           f'optionally "tag", got {_shown(entry)}')
        events.append((event_name(entry['name'], f'{where}.name'),
                       event_tag(entry.get('tag'), f'{where}.tag')))
    return events


_PEER_INSTANCE_KEYS = {'uuid', 'name', 'flavor', 'image'}


def peer_instance(value, argument='instance'):
    """An instance record as another agent sends it in a migration: the
    fields this host needs to run the guest are checked."""
    if not isinstance(value, dict) or not _PEER_INSTANCE_KEYS <= set(value):
        raise _invalid(f'{argument} must be an instance record with '
                       f'{", ".join(sorted(_PEER_INSTANCE_KEYS))}')
    instance_name(value['name'], f'{argument}.name')
    return dict(value, uuid=instance_uuid(value['uuid'], f'{argument}.uuid'),
                flavor=flavor(value['flavor'], f'{argument}.flavor'),
                image=image_spec(value['image'], f'{argument}.image'))


def migration_id(value):
    return instance_uuid(value, 'migration_id')


def short_text(value, argument, limit=4096):
    if not isinstance(value, str) or len(value) > limit:
        raise _invalid(f'{argument} must be a string of at most {limit} '
                       f'characters')
    return value


def migration_target(value, argument='migration_target'):
    """A destination's migration_target() as another agent sends it:
    None, or an object of short strings (its libvirt URI, ...)."""
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) > 16 or not all(
            isinstance(key, str) and (item is None or isinstance(item, str))
            and len(key) <= 64 and len(item or '') <= 4096
            for key, item in value.items()):
        raise _invalid(f'{argument} must be an object of at most 16 short '
                       f'strings, got {_shown(value)}')
    return dict(value)


def absolute_path(value, argument):
    """A path another agent sends: absolute, normalised (no '.' or '..'
    steps, no doubled slashes) and printable, so that it names exactly
    the file it appears to."""
    text = short_text(value, argument)
    if not text.startswith('/') or os.path.normpath(text) != text or \
            text.startswith('//') or \
            log_safety.has_unsafe(text):
        raise _invalid(f'{argument} must be an absolute, normalised path '
                       f'without control characters, got {_shown(value)}')
    return text


def file_name(value, argument):
    """A plain file name: no directory part, not '.' or '..', printable."""
    text = short_text(value, argument, MAX_NAME_LENGTH)
    if not text or '/' in text or text in ('.', '..') or \
            log_safety.has_unsafe(text):
        raise _invalid(f'{argument} must be a plain file name, got '
                       f'{_shown(value)}')
    return text
