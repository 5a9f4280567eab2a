"""compute-agent-client: the operator's CLI over the compute RPC API.

Exit status: 0 success, 1 the agent refused or failed the request (for
host-stop-all: any instance; for a migration followed to its end: it did
not complete), 2 bad usage (including a command that [upgrade_levels]
compute is pinned too low for), 3 the agent could not be reached, 130
Ctrl-C while following a migration (which goes on).
"""

import argparse
import contextlib
import json
import sys
import time
import uuid

import oslo_messaging
from oslo_config import cfg

from compute_agent import conf as agent_conf
from compute_agent import rpc
from compute_agent import rpcapi
from compute_agent.cmd import client_format
from compute_agent.cmd import client_guest
from compute_agent.cmd import client_host
from compute_agent.cmd import client_migrate
from compute_agent.cmd import client_progress

EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 1, 2, 3
# Connection attempts per request: an operator at a shell wants a clear
# error soon, not a client that retries the bus forever.
CONNECTION_RETRIES = 3
# Verbs whose call may wait out a clean power-off: progress is shown.
POWER_OFF_VERBS = ('stop', 'delete', 'rescue', 'shelve', 'shelve-offload',
                   'reboot', 'host-stop-all')
# The RPC method of each verb that takes clean_shutdown/shutdown_timeout.
POWER_OFF_METHODS = {'stop': 'stop_instance', 'delete': 'terminate_instance',
                     'rescue': 'rescue_instance', 'shelve': 'shelve_instance',
                     'shelve-offload': 'shelve_offload_instance'}
# Modules that register verbs of their own and carry them out: each has
# VERBS, add_verbs(subparsers) and run(api, args, ctxt) -> exit status.
VERB_MODULES = (client_migrate, client_guest)


def _parser():
    parser = argparse.ArgumentParser(
        prog='compute-agent-client',
        description='Drive a compute-agent over RPC.')
    parser.add_argument('--config-file', action='append', default=[],
                        help='Config file with transport_url (and host); '
                             'may be repeated.')
    parser.add_argument('--transport-url',
                        help='Message bus URL, overriding the config file.')
    parser.add_argument('--host', help='Agent to talk to (default: [DEFAULT] '
                                       'host of the config file).')
    parser.add_argument('--json', action='store_true',
                        help='Print results as JSON, for scripts.')
    parser.add_argument('--rpc-timeout', type=int, metavar='SECONDS',
                        help='How long to wait for the agent\'s answer.')
    parser.add_argument('--progress', action='store_true',
                        help='Show a waiting clean power-off or a '
                             'migration being followed on stderr even when '
                             'it is not a terminal (never with --json).')
    verbs = parser.add_subparsers(dest='verb', required=True,
                                  metavar='VERB')

    verbs.add_parser('list', help='List the instances of the host.')
    status = verbs.add_parser('status', help='Service state and in-flight '
                                             'operations.')
    status.add_argument('--alt', action='store_true',
                        help='Ask on topic compute-alt (answers while the '
                             'agent drains).')
    for verb, text in (('show', 'Show one instance.'),
                       ('start', 'Power an instance on.')):
        verbs.add_parser(verb, help=text).add_argument('uuid')

    console = verbs.add_parser(
        'console-log', help='The tail of an instance\'s serial console '
                            'log (answered while the agent drains).')
    console.add_argument('uuid')
    console.add_argument('--bytes', type=int, metavar='N',
                         help='How much of the end of the log to show '
                              '(default 64 KiB, at most 1 MiB).')

    boot = verbs.add_parser('boot', help='Build and start an instance.')
    boot.add_argument('name')
    boot.add_argument('--uuid', default=None,
                      help='Instance uuid (default: a new one).')
    boot.add_argument('--vcpus', type=int, default=1)
    boot.add_argument('--memory-mb', type=int, default=128)
    boot.add_argument('--image-id', default='none')
    boot.add_argument('--property', action='append', default=[],
                      metavar='KEY=VALUE',
                      help='Image property, e.g. os_shutdown_timeout=30.')
    boot.add_argument('--kernel', help='Direct-boot kernel path on the host.')
    boot.add_argument('--ramdisk', help='Initramfs path on the host.')
    boot.add_argument('--cmdline', help='Kernel command line.')
    boot.add_argument('--disk', help='Base disk image path on the host.')
    client_guest.add_wait_for_event_option(boot, 'the boot')

    reboot = verbs.add_parser('reboot', help='Reboot an instance.')
    reboot.add_argument('uuid')
    reboot.add_argument('--hard', action='store_true',
                        help='Power-cycle instead of a clean restart.')
    for verb, text in (('stop', 'Power an instance off, clean then '
                                'forced.'),
                       ('delete', 'Power off and delete an instance.'),
                       ('rescue', 'Power off, then boot from a rescue image '
                                  'with the instance\'s disk attached.'),
                       ('shelve', 'Power off and snapshot the disk into the '
                                  'agent\'s image store.'),
                       ('shelve-offload', 'Power off if needed and free the '
                                          'host, keeping the snapshot.')):
        _add_power_off_options(verbs.add_parser(verb, help=text))
    rescue = verbs.choices['rescue']
    rescue.add_argument('--rescue-image-id', '--image', metavar='ID',
                        help='Rescue from this snapshot of the agent\'s '
                             'image store (default: the instance\'s own '
                             'image).')
    rescue.add_argument('--kernel', help='Rescue image: direct-boot kernel '
                                         'path on the host.')
    rescue.add_argument('--ramdisk', help='Rescue image: initramfs path.')
    rescue.add_argument('--cmdline', help='Rescue image: kernel command '
                                          'line.')
    rescue.add_argument('--disk', help='Rescue image: base disk image path '
                                       'on the host.')
    for verb, text in (
            ('unrescue', 'Leave rescue: boot the instance\'s own disk.'),
            ('unshelve', 'Boot a shelved instance from its snapshot.'),
            ('actions', 'The operations recorded for an instance.')):
        verbs.add_parser(verb, help=text).add_argument('uuid')

    stop_all = verbs.add_parser(
        'host-stop-all', help='Stop every running instance of the host, '
                              'clean then forced, a few at a time.')
    stop_all.add_argument('--parallel', type=_positive_int, metavar='N',
                          help='Instances stopped at once (default: '
                               f'{client_host.DEFAULT_PARALLEL}, or fewer '
                               'when there are fewer).')
    _add_power_off_options(stop_all, instance=False)
    for module in VERB_MODULES:
        module.add_verbs(verbs)
    return parser


def _add_power_off_options(sub, instance=True):
    if instance:
        sub.add_argument('uuid')
    sub.add_argument('--force', action='store_true',
                     help='Destroy at once instead of asking the guest.')
    sub.add_argument('--timeout', type=int, metavar='SECONDS',
                     help='Seconds the guest gets to power off (default: '
                          'the image\'s os_shutdown_timeout, else the '
                          'agent\'s shutdown_timeout).')


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f'takes a whole number of at least 1, got {text!r}')
    return value


def _boot_spec(args):
    properties = {}
    for item in args.property:
        key, sep, value = item.partition('=')
        if not sep or not key:
            raise ValueError(f'--property takes KEY=VALUE, got {item!r}')
        properties[key] = value
    image = {'id': args.image_id, 'properties': properties}
    for key in ('kernel', 'ramdisk', 'cmdline', 'disk'):
        if getattr(args, key):
            image[key] = getattr(args, key)
    spec = {'uuid': args.uuid or str(uuid.uuid4()), 'name': args.name,
            'vcpus': args.vcpus, 'memory_mb': args.memory_mb,
            'image': image}
    # Only when asked: an agent older than RPC 1.4 refuses the field.
    if args.wait_for_events:
        spec['wait_for_events'] = args.wait_for_events
    return spec


def _rescue_image(args):
    """None (the instance's own image), a snapshot id, or an image spec
    shaped like boot's."""
    spec = {key: getattr(args, key)
            for key in ('kernel', 'ramdisk', 'cmdline', 'disk')
            if getattr(args, key)}
    if args.rescue_image_id and spec:
        raise ValueError('rescue takes either --rescue-image-id or an image '
                         'spec (--kernel/--ramdisk/--cmdline or --disk), '
                         'not both')
    if spec:
        return dict(spec, id='rescue', properties={})
    return args.rescue_image_id


def _run(api, args, ctxt):
    host, timeout = args.host, args.rpc_timeout
    if args.verb == 'list':
        return api.list_instances(ctxt, host)
    if args.verb == 'status':
        return api.get_service_status(ctxt, host, alt=args.alt)
    if args.verb == 'show':
        return api.get_instance(ctxt, host, args.uuid)
    if args.verb == 'console-log':
        return api.get_console_output(ctxt, host, args.uuid,
                                      max_bytes=args.bytes)
    if args.verb == 'actions':
        return api.get_instance_actions(ctxt, host, args.uuid)
    if args.verb == 'boot':
        return api.build_and_run_instance(
            ctxt, host, _boot_spec(args),
            timeout=client_guest.boot_rpc_timeout(args, agent_conf.CONF))
    if args.verb == 'start':
        return api.start_instance(ctxt, host, args.uuid)
    if args.verb == 'unrescue':
        return api.unrescue_instance(ctxt, host, args.uuid, timeout=timeout)
    if args.verb == 'unshelve':
        return api.unshelve_instance(ctxt, host, args.uuid, timeout=timeout)
    if args.verb == 'reboot':
        return api.reboot_instance(ctxt, host, args.uuid,
                                   'HARD' if args.hard else 'SOFT',
                                   timeout=timeout)
    extra = ({'rescue_image': _rescue_image(args)}
             if args.verb == 'rescue' else {})
    operation = getattr(api, POWER_OFF_METHODS[args.verb])
    return operation(ctxt, host, args.uuid, **extra,
                     clean_shutdown=not args.force,
                     shutdown_timeout=args.timeout, timeout=timeout)


def _progress(api, args):
    """A PowerOffProgress (it polls while entered) when the verb may wait
    out a clean power-off and stderr is a terminal or --progress is given;
    else a null context."""
    wanted = (args.verb in POWER_OFF_VERBS and not args.json
              and not (args.verb == 'reboot' and args.hard)
              and (args.progress or sys.stderr.isatty()))
    if not wanted:
        return contextlib.nullcontext()
    return client_progress.PowerOffProgress(
        api, args.host, client_progress.StatusLine(sys.stderr))


def _this_power_off(api, args, ctxt, record):
    """This request's power-off. shelve-offload skips it for a guest that
    is off already, so the record's last_power_off may be an earlier
    operation's: the action record of this request says."""
    if args.verb != 'shelve-offload':
        return record['last_power_off']
    try:
        actions = api.get_instance_actions(rpcapi.new_context(), args.host,
                                           args.uuid)
    except oslo_messaging.MessagingException:
        return record['last_power_off']
    for action in actions:
        if action['request_id'] == ctxt['request_id']:
            return action['power_off']
    return record['last_power_off']


def _host_stop_all(api, args, ctxt, progress):
    """Stop the host's running guests; print a row per guest as it
    finishes and a summary. Exit status 1 when any guest failed."""
    started = time.monotonic()
    # Lines printed while the progress line may be up go above it.
    emit = progress.print_above if progress else print
    guests = client_host.running_guests(api, args.host, ctxt)
    if not guests and not args.json:
        emit(f'no running instances on host {args.host}')
    elif not args.json:
        emit(client_format.guest_stop_header())

    def report(result):
        emit(client_format.guest_stop_row(
            result['name'], result['uuid'], result['outcome'],
            result['seconds'], result['detail']))
    results = client_host.stop_guests(
        api, args.host, guests, parallel=args.parallel,
        clean=not args.force, shutdown_timeout=args.timeout,
        rpc_timeout=args.rpc_timeout, progress=progress,
        report=None if args.json else report)
    if args.json:
        print(json.dumps(results, indent=2, sort_keys=True))
    elif guests:
        emit(client_format.host_stop_summary(
            [result['outcome'] for result in results],
            time.monotonic() - started))
    failed = any(result['outcome'] == 'error' for result in results)
    return EXIT_REFUSED if failed else 0


def _print_result(verb, result, as_json):
    if as_json:
        print(json.dumps(result, indent=2, sort_keys=True))
    elif verb == 'console-log':
        # The log as it is, ending in a line break when it has text.
        sys.stdout.write(result if not result or result.endswith('\n')
                         else result + '\n')
    elif verb == 'list':
        print(client_format.instance_list(result))
    elif verb == 'status':
        print(client_format.status(result))
    elif verb == 'actions':
        print(client_format.actions(result))
    else:
        print(client_format.instance(result))


def main(argv=None):
    args = _parser().parse_args(argv)
    conf = agent_conf.CONF
    rpc.set_defaults()
    try:
        conf(['--config-file=' + path for path in args.config_file],
             project='compute-agent', default_config_files=[])
        transport = oslo_messaging.get_rpc_transport(
            conf, url=args.transport_url)
    except (cfg.Error, oslo_messaging.InvalidTransportURL) as error:
        print(f'error: {error}', file=sys.stderr)
        return EXIT_USAGE
    args.host = args.host or conf.host
    api = rpcapi.ComputeAPI(transport, conf.upgrade_levels.compute,
                            retry=CONNECTION_RETRIES)
    ctxt = rpcapi.new_context()
    try:
        for module in VERB_MODULES:
            if args.verb in module.VERBS:
                return module.run(api, args, ctxt)
        # The progress line is gone before any error or result prints.
        with _progress(api, args) as progress:
            if args.verb == 'host-stop-all':
                return _host_stop_all(api, args, ctxt, progress)
            if progress:
                progress.watch(ctxt['request_id'])
            result = _run(api, args, ctxt)
        if args.verb in client_format.PAST_TENSE and not args.json:
            tried = progress.tried_method(ctxt['request_id']) \
                if progress else None
            print(client_format.outcome_line(
                args.verb, result, _this_power_off(api, args, ctxt, result),
                tried))
    except ValueError as error:
        print(f'error: {error}', file=sys.stderr)
        return EXIT_USAGE
    except oslo_messaging.RemoteError as error:
        print(f'error: {error.exc_type}: {error.value} '
              f'({ctxt["request_id"]})', file=sys.stderr)
        return EXIT_REFUSED
    except oslo_messaging.RPCVersionCapError as error:
        print(f'error: {error}; [upgrade_levels] compute is pinned too low '
              f'for this command', file=sys.stderr)
        return EXIT_USAGE
    except oslo_messaging.MessageUndeliverable:
        print(f'error: no compute-agent has ever listened as host '
              f'{args.host} on this message bus ({ctxt["request_id"]})',
              file=sys.stderr)
        return EXIT_UNREACHABLE
    except oslo_messaging.MessagingTimeout:
        print(f'error: no answer from host {args.host} '
              f'({ctxt["request_id"]}); is its compute-agent running?',
              file=sys.stderr)
        return EXIT_UNREACHABLE
    except oslo_messaging.MessagingException as error:
        print(f'error: cannot reach host {args.host}: {error}',
              file=sys.stderr)
        return EXIT_UNREACHABLE
    finally:
        transport.cleanup()
    _print_result(args.verb, result, args.json)
    return 0


if __name__ == '__main__':
    sys.exit(main())
