"""Human-readable output of compute-agent-client (--json prints raw).

Pure functions from the wire contract's records to text, so that each
can be tested without a bus or a terminal.
"""

import datetime

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
    for op in status['in_flight']:
        line = (f'  {op["method"]} {op["instance_uuid"] or "-"} '
                f'{op["request_id"] or "-"} for {op["elapsed"]:.1f} s')
        if op.get('power_off'):
            line += (', waiting for power-off: '
                     + waiting_power_off(op['power_off']))
        lines.append(line)
    return '\n'.join(lines)


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


def _timestamp(text):
    """ISO 8601 UTC from the agent as '2026-11-23 12:00:01Z'; anything
    unparsable as it came."""
    if not text:
        return '-'
    try:
        moment = datetime.datetime.fromisoformat(
            text[:-1] + '+00:00' if text.endswith('Z') else text)
    except ValueError:
        return text
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.timezone.utc)
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
    lines = [f'{"STARTED":<20}  {"ACTION":<16} {"RESULT":<8} '
             f'{"POWER-OFF":<28} {"REQUEST":<40} MESSAGE']
    for a in records:
        lines.append(f'{_timestamp(a["start_time"]):<20}  '
                     f'{a["action"]:<16} {a["result"]:<8} '
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
