"""compute-agent-client verbs for live and cold migration and resize.

They drive the flows the way a conductor would. The agent answers a
request to migrate at once with a migration record; the client then
follows it with get_migration on the host that runs the flow (the source
of a live migration, the destination of a cold one), on topic compute-alt
so that it keeps answering while that host drains, until the flow ends.
Ctrl-C stops the following only: the migration goes on, and the client
says how to look at it later.
"""

import json
import sys
import time

import oslo_messaging

from compute_agent import rpcapi
from compute_agent.cmd import client_format
from compute_agent.cmd import client_guest
from compute_agent.cmd import client_progress

VERBS = ('live-migrate', 'migrate', 'resize', 'resize-confirm',
         'resize-revert', 'migration-show', 'migration-list',
         'live-migration-abort', 'live-migration-force-complete')
# The version that brought migrations: checked before anything is sent,
# since the client looks the instance's name up first.
MIGRATION_RPC_VERSION = '1.4'
EXIT_REFUSED, EXIT_UNREACHABLE = 1, 3
# The shell's status for a command ended by SIGINT.
EXIT_INTERRUPTED = 130
POLL_INTERVAL = 0.5
POLL_RPC_TIMEOUT = 10
# A host that stops answering polls for this long is given up on: the
# operator is told how to look later instead of being kept waiting.
UNANSWERED_LIMIT = 120
# Statuses after which the migration no longer moves by itself. A cold
# migration waits at 'completed' for confirm or revert; another client
# may already have moved it on when a poll comes.
WAIT_OVER = frozenset(['completed', 'failed', 'cancelled', 'error',
                       'confirming', 'confirmed', 'reverting', 'reverted'])
SUCCEEDED = WAIT_OVER - {'failed', 'cancelled', 'error'}
# The verbs that call one method on --host with the migration id, and
# what the agent has been asked when that method answers (None: nothing).
BY_ID = {'migration-show': ('get_migration', None),
         'live-migration-abort': ('live_migration_abort', 'abort'),
         'live-migration-force-complete': ('live_migration_force_complete',
                                           'forced completion')}


def add_verbs(verbs):
    live = verbs.add_parser(
        'live-migrate', help='Move a running instance from --host to DEST '
                             'without stopping it.')
    live.add_argument('uuid')
    live.add_argument('dest', metavar='DEST')
    live.add_argument('--block-migration', action='store_true',
                      help='Copy the disks too (no shared storage).')
    client_guest.add_wait_for_event_option(live, 'the destination')
    _add_no_wait_option(live)

    migrate = verbs.add_parser(
        'migrate', help='Cold-migrate an instance from --host to DEST, '
                        'keeping its flavor: clean power-off, copy, boot '
                        'on DEST if it was running; then confirm or '
                        'revert.')
    resize = verbs.add_parser(
        'resize', help='Like migrate, with a new flavor.')
    resize.add_argument('--vcpus', type=int, required=True,
                        help='vCPUs of the new flavor.')
    resize.add_argument('--memory-mb', type=int, required=True,
                        help='Memory of the new flavor, in MiB.')
    for sub in (migrate, resize):
        sub.add_argument('uuid')
        sub.add_argument('--to', required=True, metavar='DEST', dest='dest',
                         help='The destination host.')
        sub.add_argument('--force', action='store_true',
                         help='Destroy the guest at once instead of asking '
                              'it to power off.')
        sub.add_argument('--shutdown-timeout', '--timeout', type=int,
                         metavar='SECONDS', dest='shutdown_timeout',
                         help='Seconds the guest gets to power off '
                              '(default: the image\'s os_shutdown_timeout, '
                              'else the agent\'s shutdown_timeout).')
        _add_no_wait_option(sub)

    for verb, text in (
            ('resize-confirm', 'Keep a migrated or resized instance on its '
                               'destination and free the source.'),
            ('resize-revert', 'Move a migrated or resized instance back to '
                              'its source, with its old flavor.'),
            ('migration-show', 'Show one migration.'),
            ('live-migration-abort', 'Stop a live migration; the instance '
                                     'stays on its source.'),
            ('live-migration-force-complete',
             'Pause the guest so that a live migration that cannot catch '
             'up finishes.')):
        verbs.add_parser(verb, help=text).add_argument(
            'migration_id', metavar='MIGRATION_ID')
    listing = verbs.add_parser('migration-list',
                               help='The migrations --host knows of.')
    listing.add_argument('--instance', metavar='UUID',
                         help='Only those of this instance.')


def _add_no_wait_option(sub):
    sub.add_argument('--no-wait', action='store_true',
                     help='Print the new migration and return instead of '
                          'following it to its end.')


def run(api, args, ctxt):
    """Carry out the verb and print its result; the exit status."""
    if args.verb in ('live-migrate', 'migrate', 'resize'):
        return _start_and_follow(api, args, ctxt)
    if args.verb == 'migration-list':
        records = api.list_migrations(ctxt, args.host,
                                      instance_uuid=args.instance,
                                      timeout=args.rpc_timeout)
        _print(args, records, lambda: client_format.migration_list(records))
        return 0
    if args.verb in BY_ID:
        method, asked = BY_ID[args.verb]
        record = getattr(api, method)(ctxt, args.host, args.migration_id,
                                      timeout=args.rpc_timeout)
        _print(args, record, lambda: (
            _requested_text(record, asked, args.host) if asked else
            client_format.migration(record)))
        return 0
    return _confirm_or_revert(api, args, ctxt)


def _print(args, result, text):
    """result as JSON with --json, else text() (formatted only when it is
    wanted: a record --json would print as it came need not fit it)."""
    print(json.dumps(result, indent=2, sort_keys=True) if args.json
          else text())


def _versions(text):
    return tuple(int(part) for part in text.split('.'))


def _check_version(api, host):
    cap = api.version_cap(host, MIGRATION_RPC_VERSION)
    if _versions(MIGRATION_RPC_VERSION) > _versions(cap):
        raise oslo_messaging.RPCVersionCapError(
            version=MIGRATION_RPC_VERSION, version_cap=cap)


def _instance_name(api, host, instance_uuid):
    """For the lines people read; the uuid when the host cannot say (it
    then refuses the migration itself, with its own words)."""
    try:
        return api.get_instance(rpcapi.new_context(), host, instance_uuid,
                                timeout=POLL_RPC_TIMEOUT)['name']
    except oslo_messaging.MessagingException:
        return instance_uuid


def _start_and_follow(api, args, ctxt):
    """live-migrate, migrate, resize: ask the host that runs the flow,
    then follow the migration on it (unless --no-wait)."""
    source = args.host
    if args.dest == source:
        raise ValueError(f'{args.verb} needs a destination other than the '
                         f'host the instance is on ({source})')
    runner = source if args.verb == 'live-migrate' else args.dest
    _check_version(api, runner)
    name = args.uuid if args.json else _instance_name(api, source,
                                                      args.uuid)
    if args.verb == 'live-migrate':
        record = api.live_migrate_instance(
            ctxt, source, args.uuid, args.dest,
            block_migration=args.block_migration,
            wait_for_events=args.wait_for_events, timeout=args.rpc_timeout)
    else:
        flavor = None if args.verb == 'migrate' else {
            'vcpus': args.vcpus, 'memory_mb': args.memory_mb}
        record = api.prep_resize(
            ctxt, args.dest, args.uuid, flavor, source,
            clean_shutdown=not args.force,
            shutdown_timeout=args.shutdown_timeout, timeout=args.rpc_timeout)
    if args.no_wait:
        _print(args, record, lambda: (
            client_format.migration(record) +
            f'\nfollow it with: {_show_command(record, runner)}'))
        return 0
    try:
        record = _follow_showing_progress(api, args, runner, record, name)
    except KeyboardInterrupt:
        _stopped_following(record, runner, 'stopped waiting')
        return EXIT_INTERRUPTED
    except (oslo_messaging.RemoteError, oslo_messaging.RPCVersionCapError):
        raise
    except oslo_messaging.MessagingException as error:
        reason = (f'no answer from host {runner} for {UNANSWERED_LIMIT} s'
                  if isinstance(error, oslo_messaging.MessagingTimeout)
                  else f'cannot reach host {runner}: {error}')
        print(f'error: {reason}', file=sys.stderr)
        _stopped_following(record, runner, 'stopped following')
        return EXIT_UNREACHABLE
    _print(args, record, lambda: _final_text(record, name))
    return 0 if record['status'] in SUCCEEDED else EXIT_REFUSED


def _final_text(record, name):
    lines = [client_format.migration_outcome(record, name)]
    if record['status'] == 'completed' and \
            record['kind'] != 'live-migration':
        lines.append(_resized_next_steps(record, name))
    lines.append(client_format.migration(record))
    return '\n'.join(lines)


def _follow_showing_progress(api, args, host, record, name):
    """follow(), with a status line on stderr when it is a terminal or
    --progress asks (never with --json). The line is gone before this
    returns or raises, so that what is printed next starts on its own."""
    if args.json or not (args.progress or sys.stderr.isatty()):
        return follow(api, host, record)
    line = client_progress.StatusLine(sys.stderr)

    def show(current, elapsed):
        line.show(client_format.migration_waiting(current, name, elapsed))
    try:
        return follow(api, host, record, show)
    finally:
        line.close()


def follow(api, host, migration, on_poll=None, clock=time.monotonic,
           sleep=time.sleep):
    """Poll host about migration every POLL_INTERVAL until its status is
    in WAIT_OVER; returns that last record.

    :param on_poll: called with each record seen (the first one too) and
        the seconds since following began.
    :raises: the last MessagingException of the polls once the host has
        answered none for UNANSWERED_LIMIT seconds; a RemoteError or
        version cap error at once.
    """
    started = last_answer = clock()
    record = migration
    while True:
        if on_poll:
            on_poll(record, clock() - started)
        if record['status'] in WAIT_OVER:
            return record
        sleep(POLL_INTERVAL)
        try:
            record = api.get_migration(rpcapi.new_context(), host,
                                       migration['id'],
                                       timeout=POLL_RPC_TIMEOUT)
        except (oslo_messaging.RemoteError,
                oslo_messaging.RPCVersionCapError):
            raise
        except oslo_messaging.MessagingException:
            # A busy host or a bus hiccup: the migration goes on, so
            # keep asking for a while.
            if clock() - last_answer >= UNANSWERED_LIMIT:
                raise
            continue
        last_answer = clock()


def _show_command(record, host):
    return f'compute-agent-client --host {host} migration-show {record["id"]}'


def _stopped_following(record, host, what):
    """Tell the operator, on stderr, that the migration goes on without
    this client, and how to find it again."""
    noun = client_format.migration_words(record['kind'])[2]
    text = (f'{what}; the {noun} {record["id"]} goes on.\n'
            f'follow it with: {_show_command(record, host)}')
    if record['kind'] == 'live-migration':
        text += (f'\nstop it with: compute-agent-client --host {host} '
                 f'live-migration-abort {record["id"]}')
    print(text, file=sys.stderr)


def _requested_text(record, asked, host):
    """The agent answers an abort or a forced completion once it has
    passed it on to the migration, which ends a little later."""
    return (f'{asked} of live migration {record["id"]} requested; it is '
            f'{record["status"]} now.\n'
            f'see how it ends: {_show_command(record, host)}\n'
            + client_format.migration(record))


def _resized_next_steps(record, name):
    command = f'compute-agent-client --host {record["dest_host"]}'
    return (f'{name} is now on {record["dest_host"]} as \'resized\' until '
            f'confirmed or reverted:\n'
            f'  keep it there: {command} resize-confirm {record["id"]}\n'
            f'  go back to {record["source_host"]}: {command} resize-revert '
            f'{record["id"]}')


def _confirm_or_revert(api, args, ctxt):
    """Either end knows the migration; confirm goes to its source (which
    drops the old copy), revert to its destination (which hands the
    instance back)."""
    record = api.get_migration(ctxt, args.host, args.migration_id,
                               timeout=args.rpc_timeout)
    if args.verb == 'resize-confirm':
        result = api.confirm_resize(ctxt, record['source_host'], record['id'],
                                    timeout=args.rpc_timeout)
        text = (lambda: f'confirmed migration {record["id"]}: '
                f'{record["instance_uuid"]} stays on {record["dest_host"]}\n'
                + client_format.migration(result))
    else:
        result = api.revert_resize(ctxt, record['dest_host'], record['id'],
                                   timeout=args.rpc_timeout)
        text = (lambda: f'reverted migration {record["id"]}: '
                f'{result["name"]} is back on {record["source_host"]}\n' +
                client_format.instance(result))
    _print(args, result, text)
    return 0
