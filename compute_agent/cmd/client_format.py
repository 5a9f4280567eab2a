"""Human-readable output of compute-agent-client (--json prints raw).

Pure functions from the wire contract's records to text, so that each
can be tested without a bus or a terminal.
"""

import datetime
import json

# What the one-line outcome calls each verb that powers a guest off.
PAST_TENSE = {'stop': 'stopped', 'delete': 'deleted', 'rescue': 'rescued',
              'shelve': 'shelved', 'shelve-offload': 'offloaded',
              'reboot': 'rebooted'}


def power_off_summary(last):
    if not last:
        return '-'
    text = (f'{last["result"]} (requested {last["requested"]}) in '
            f'{last["seconds"]:.2f} s, timeout {last["timeout"]} s')
    if last.get('method'):
        text += f', by {last["method"]}'
    return text


def instance(record):
    flavor = record['flavor']
    rows = [('uuid', record['uuid']), ('name', record['name']),
            ('host', record['host']), ('vm_state', record['vm_state']),
            ('power_state', record['power_state']),
            ('task_state', record['task_state'] or '-'),
            ('flavor', f'{flavor["vcpus"]} vCPU, {flavor["memory_mb"]} MiB'),
            ('image', record['image'].get('id', '-'))]
    if record.get('snapshot_id'):
        rows.append(('snapshot', record['snapshot_id']))
    rows.append(('last power-off',
                 power_off_summary(record['last_power_off'])))
    return '\n'.join(f'{key:<15} {value}' for key, value in rows)


def instance_list(records):
    lines = [f'{"UUID":<36}  {"NAME":<20} {"VM_STATE":<10} {"POWER":<9} '
             'TASK']
    for r in records:
        lines.append(f'{r["uuid"]:<36}  {r["name"][:20]:<20} '
                     f'{r["vm_state"]:<10} {r["power_state"]:<9} '
                     f'{r["task_state"] or "-"}')
    return '\n'.join(lines) if records else 'no instances'


def _requests(count):
    return f'{count} request' + ('' if count == 1 else 's')


def waiting_power_off(power_off):
    """'12.3 s of 60 s (acpi, 2 requests)' from an in_flight power_off
    (whose method is None until the first request has gone out)."""
    how = [power_off['method']] if power_off['method'] else []
    how.append(_requests(power_off['requests']))
    return (f'{power_off["elapsed"]:.1f} s of {power_off["timeout"]} s '
            f'({", ".join(how)})')


def status(status):
    lines = [f'host            {status["host"]}',
             f'state           {status["state"]}',
             f'service version {status["service_version"]} (RPC '
             f'{status["rpc_api_version"]})',
             f'graceful_shutdown_timeout {status["graceful_shutdown_timeout"]}'
             f' s',
             f'in flight       {len(status["in_flight"])}']
    if status.get('concurrency'):   # an agent older than the key: none
        lines.insert(-1, f'concurrency     {status["concurrency"]}')
    if status.get('hypervisor'):
        lines.insert(-1, hypervisor(status['hypervisor']))
    for op in status['in_flight']:
        line = (f'  {op["method"]} {op["instance_uuid"] or "-"} '
                f'{op["request_id"] or "-"} for {op["elapsed"]:.1f} s')
        if op.get('power_off'):
            line += (', waiting for power-off: '
                     + waiting_power_off(op['power_off']))
        lines.append(line)
    return '\n'.join(lines)


def hypervisor(health):
    """The status line for the agent's link to its hypervisor."""
    restarts = health['event_loop_restarts'] + health['dispatcher_restarts']
    line = (f'hypervisor      {health["driver"]} {health["uri"]}: '
            f'{"connected" if health["connected"] else "NOT CONNECTED"}, '
            f'event loop {health["event_loop"]}, dispatcher '
            f'{health["dispatcher"]}, {health["reconnects"]} reconnects, '
            f'{restarts} thread restarts')
    if health['last_error']:
        line += f'; last error: {health["last_error"]}'
    return line


def progress(waiting):
    """The status line while clean power-offs wait for their guests.

    :param waiting: (name, in_flight power_off) pairs; empty when nothing
        is waiting, which gives ''.
    """
    if len(waiting) == 1:
        [(name, power_off)] = waiting
        return (f'waiting for {name} to power off: '
                f'{waiting_power_off(power_off)}')
    if not waiting:
        return ''
    longest_first = sorted(waiting, key=lambda item: -item[1]['elapsed'])
    return (f'waiting for {len(waiting)} guests to power off: ' +
            '; '.join(f'{name} {waiting_power_off(power_off)}'
                      for name, power_off in longest_first))


def power_off_reason(power_off, tried_method=None):
    """Why the power-off ended as it did: the clean method that worked,
    'as requested', 'guest ignored acpi', ...; None when unknown.

    :param tried_method: the clean method seen waiting in progress polls,
        which the record no longer names once the guest was destroyed.
    """
    timeout = power_off['timeout']
    if power_off['result'] == 'clean':
        return power_off.get('method')
    if power_off['requested'] == 'forced':
        return 'as requested'
    if power_off['seconds'] < timeout:
        # Destroyed before its timeout although asked clean: a forced
        # request overrode it, or the guest could not take a shutdown
        # request (paused).
        return f'clean power-off cut short before its {timeout} s timeout'
    if tried_method:
        return f'guest ignored {tried_method}'
    return f'guest did not power off in {timeout} s'


def power_off_outcome(power_off, tried_method=None):
    """'clean in 1.42 s (acpi)', 'forced after 60.00 s (guest ignored
    acpi)', ...: how this request's power-off went (None: it had none).
    """
    if power_off is None:
        return 'no power-off of its own, the guest was off'
    if power_off.get('method') == 'already-off':
        return 'already off'
    seconds = power_off['seconds']
    if power_off['result'] == 'clean':
        text = f'clean in {seconds:.2f} s'
    elif power_off['requested'] == 'forced':
        text = f'forced in {seconds:.2f} s'
    else:
        text = f'forced after {seconds:.2f} s'
    reason = power_off_reason(power_off, tried_method)
    return text + (f' ({reason})' if reason else '')


def outcome_line(verb, record, power_off, tried_method=None):
    """'stopped web-1: clean in 1.42 s (acpi)'."""
    return (f'{PAST_TENSE[verb]} {record["name"]}: '
            f'{power_off_outcome(power_off, tried_method)}')


def _moment(text):
    """An ISO 8601 time from the agent as a naive UTC datetime (one without
    a zone is taken as UTC); None when it is missing or unparsable."""
    if not text:
        return None
    try:
        moment = datetime.datetime.fromisoformat(
            text[:-1] + '+00:00' if text.endswith('Z') else text)
    except ValueError:
        return None
    if moment.tzinfo is not None:
        # Naive UTC, so that any two of them can be subtracted.
        moment = moment.astimezone(datetime.timezone.utc).replace(
            tzinfo=None)
    return moment


def _timestamp(text):
    """ISO 8601 UTC from the agent as '2026-11-23 12:00:01Z'; anything
    unparsable as it came."""
    moment = _moment(text)
    if moment is None:
        return text or '-'
    return moment.strftime('%Y-%m-%d %H:%M:%SZ')


def _action_power_off(power_off):
    if not power_off:
        return '-'
    text = f'{power_off["result"]} {power_off["seconds"]:.2f} s'
    if power_off['requested'] != power_off['result']:
        text += f' (asked {power_off["requested"]})'
    return text


def actions(records):
    if not records:
        return 'no actions'
    # RESULT is as wide as its longest value, "interrupted" (an action a
    # crash cut short, closed at the agent's next start).
    lines = [f'{"STARTED":<20}  {"ACTION":<16} {"RESULT":<11} '
             f'{"POWER-OFF":<28} {"REQUEST":<40} MESSAGE']
    for a in records:
        lines.append(f'{_timestamp(a["start_time"]):<20}  '
                     f'{a["action"]:<16} {a["result"]:<11} '
                     f'{_action_power_off(a["power_off"]):<28} '
                     f'{a["request_id"] or "-":<40} {a["message"] or "-"}')
    return '\n'.join(lines)


def guest_stop_row(name, instance_uuid, outcome, seconds, detail):
    """One line of host-stop-all's report."""
    return (f'{name[:20]:<20} {instance_uuid:<36} {outcome:<11} '
            f'{seconds:>8.2f} s  {detail or "-"}')


def guest_stop_header():
    return (f'{"NAME":<20} {"UUID":<36} {"OUTCOME":<11} {"SECONDS":>10}  '
            'DETAIL')


def host_stop_summary(outcomes, seconds):
    """'4 guests in 61.20 s: 2 clean, 1 forced, 0 already-off, 1 error'."""
    counts = {kind: outcomes.count(kind)
              for kind in ('clean', 'forced', 'already-off', 'error')}
    guests = f'{len(outcomes)} guest' + ('' if len(outcomes) == 1 else 's')
    return (f'{guests} in {seconds:.2f} s: ' +
            ', '.join(f'{count} {kind}' for kind, count in counts.items()))


# -- migrations, events, consoles (RPC API 1.4) ------------------------

# How each kind of migration is named: while it runs, once it is done,
# and as a noun.
MIGRATION_WORDS = {
    'live-migration': ('live-migrating', 'live-migrated', 'live migration'),
    'migration': ('migrating', 'migrated', 'migration'),
    'resize': ('resizing', 'resized', 'resize'),
}
_SIZE_UNITS = ('KiB', 'MiB', 'GiB', 'TiB')


def migration_words(kind):
    # A kind from a newer agent is named as it came.
    return MIGRATION_WORDS.get(kind, (kind, kind, kind))


def size(count):
    """A byte count as people read it: '512 B', '1.5 GiB'."""
    if count < 1024:
        return f'{count} B'
    value = float(count)
    for unit in _SIZE_UNITS:
        value /= 1024
        if value < 1024 or unit == _SIZE_UNITS[-1]:
            return f'{value:.1f} {unit}'


def migration_progress(progress):
    """'42%, memory 1.2 GiB of 4.0 GiB (2.8 GiB left), disk ...' for a
    live migration, the step of a cold one; None when it has none yet."""
    if not progress:
        return None
    parts = []
    if progress.get('percent') is not None:
        parts.append(f'{progress["percent"]:.0f}%')
    for what in ('memory', 'disk'):
        total = progress.get(f'{what}_total')
        if not total:
            continue
        text = (f'{what} {size(progress.get(f"{what}_processed") or 0)} '
                f'of {size(total)}')
        if progress.get(f'{what}_remaining') is not None:
            text += f' ({size(progress[f"{what}_remaining"])} left)'
        parts.append(text)
    if progress.get('step'):
        parts.append(progress['step'])
    return ', '.join(parts) or None


def _route(record):
    return f'{record["source_host"]} -> {record["dest_host"]}'


def migration_waiting(record, name, elapsed):
    """The status line while the CLI follows a migration: 'live-migrating
    web-1 to host-b (12.3 s): running, 42%, memory ...'. The source is the
    host the operator named, so it is left out of this line."""
    text = (f'{migration_words(record["kind"])[0]} {name} to '
            f'{record["dest_host"]} ({elapsed:.1f} s): {record["status"]}')
    progress = migration_progress(record['progress'])
    return text + (f', {progress}' if progress else '')


def migration_seconds(record):
    """How long the migration took, by the agent's clock; None when it
    has not ended or a time is missing."""
    created = _moment(record['created_at'])
    finished = _moment(record['finished_at'])
    if created is None or finished is None:
        return None
    return (finished - created).total_seconds()


def migration_outcome(record, name):
    """'live-migrated web-1 host-a -> host-b in 3.2 s', or 'live migration
    of web-1 host-a -> host-b cancelled: <why>'."""
    _, past, noun = migration_words(record['kind'])
    if record['status'] == 'completed':
        seconds = migration_seconds(record)
        return (f'{past} {name} {_route(record)}' +
                (f' in {seconds:.1f} s' if seconds is not None else ''))
    text = f'{noun} of {name} {_route(record)} {record["status"]}'
    return text + (f': {record["message"]}' if record['message'] else '')


def _detail_value(value):
    return value if isinstance(value, str) else json.dumps(value,
                                                           sort_keys=True)


def migration(record):
    rows = [('id', record['id']), ('kind', record['kind']),
            ('instance', record['instance_uuid']),
            ('source', record['source_host']),
            ('destination', record['dest_host']),
            ('status', record['status']),
            ('progress', migration_progress(record['progress']) or '-'),
            ('message', record['message'] or '-'),
            ('request', record['request_id'] or '-'),
            ('created', _timestamp(record['created_at'])),
            ('updated', _timestamp(record['updated_at'])),
            ('finished', _timestamp(record['finished_at']))]
    for key, value in sorted((record['details'] or {}).items()):
        rows.append((key, _detail_value(value)))
    # The details' keys are the agent's, and may be longer than ours.
    width = max(15, *(len(key) for key, _ in rows))
    return '\n'.join(f'{key:<{width}} {value}' for key, value in rows)


def migration_list(records):
    if not records:
        return 'no migrations'
    lines = [f'{"ID":<36}  {"KIND":<14} {"STATUS":<10} {"INSTANCE":<36}  '
             f'{"SOURCE -> DEST":<30} CREATED']
    for m in records:
        lines.append(f'{m["id"]:<36}  {m["kind"]:<14} {m["status"]:<10} '
                     f'{m["instance_uuid"]:<36}  {_route(m):<30} '
                     f'{_timestamp(m["created_at"])}')
    return '\n'.join(lines)


def event_result(result):
    """'network-vif-plugged:port-1 for UUID: delivered ...'. An event
    that nothing waits for is kept by the agent: it may come before the
    operation that waits for it."""
    event = result['name'] + (f':{result["tag"]}' if result['tag'] else '')
    outcome = ('delivered to the operation waiting for it'
               if result['delivered'] else
               'kept, nothing waits for it yet (an operation that starts '
               'waiting for it soon will take it)')
    return f'{event} for {result["instance_uuid"]}: {outcome}'


def serial_console(console):
    """'tcp 192.0.2.10:10000', 'file /var/lib/.../console.log', or the
    type and its fields for a kind this client does not know."""
    if console['type'] == 'tcp':
        return f'tcp {console["host"]}:{console["port"]}'
    if console['type'] == 'file':
        return f'file {console["path"]}'
    return ' '.join([console['type']] + [
        f'{key}={value}' for key, value in sorted(console.items())
        if key != 'type'])
