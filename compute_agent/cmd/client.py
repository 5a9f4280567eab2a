"""compute-agent-client: the operator's CLI over the compute RPC API.

Exit status: 0 success, 1 the agent refused or failed the request,
2 bad usage, 3 the agent could not be reached.
"""

import argparse
import json
import sys
import uuid

import oslo_messaging
from oslo_config import cfg

from compute_agent import conf as agent_conf
from compute_agent import rpc
from compute_agent import rpcapi

EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 1, 2, 3
# Connection attempts per request: an operator at a shell wants a clear
# error soon, not a client that retries the bus forever.
CONNECTION_RETRIES = 3


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

    for verb, text in (('stop', 'Power an instance off, clean then '
                                'forced.'),
                       ('delete', 'Power off and delete an instance.')):
        sub = verbs.add_parser(verb, help=text)
        sub.add_argument('uuid')
        sub.add_argument('--force', action='store_true',
                         help='Destroy at once instead of asking the guest.')
        sub.add_argument('--timeout', type=int, metavar='SECONDS',
                         help='Seconds the guest gets to power off (default:'
                              ' the image\'s os_shutdown_timeout, else the '
                              'agent\'s shutdown_timeout).')
    reboot = verbs.add_parser('reboot', help='Reboot an instance.')
    reboot.add_argument('uuid')
    reboot.add_argument('--hard', action='store_true',
                        help='Power-cycle instead of a clean restart.')
    return parser


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
    return {'uuid': args.uuid or str(uuid.uuid4()), 'name': args.name,
            'vcpus': args.vcpus, 'memory_mb': args.memory_mb,
            'image': image}


def _run(api, args, ctxt):
    host, timeout = args.host, args.rpc_timeout
    if args.verb == 'list':
        return api.list_instances(ctxt, host)
    if args.verb == 'status':
        return api.get_service_status(ctxt, host, alt=args.alt)
    if args.verb == 'show':
        return api.get_instance(ctxt, host, args.uuid)
    if args.verb == 'boot':
        return api.build_and_run_instance(ctxt, host, _boot_spec(args),
                                          timeout=timeout)
    if args.verb == 'start':
        return api.start_instance(ctxt, host, args.uuid)
    if args.verb == 'reboot':
        return api.reboot_instance(ctxt, host, args.uuid,
                                   'HARD' if args.hard else 'SOFT',
                                   timeout=timeout)
    operation = (api.stop_instance if args.verb == 'stop'
                 else api.terminate_instance)
    return operation(ctxt, host, args.uuid, clean_shutdown=not args.force,
                     shutdown_timeout=args.timeout, timeout=timeout)


def _format_power_off(last):
    if not last:
        return '-'
    text = (f'{last["result"]} (requested {last["requested"]}) in '
            f'{last["seconds"]:.2f} s, timeout {last["timeout"]} s')
    if last.get('method'):
        text += f', by {last["method"]}'
    return text


def _format_instance(record):
    flavor = record['flavor']
    rows = [('uuid', record['uuid']), ('name', record['name']),
            ('host', record['host']), ('vm_state', record['vm_state']),
            ('power_state', record['power_state']),
            ('task_state', record['task_state'] or '-'),
            ('flavor', f'{flavor["vcpus"]} vCPU, {flavor["memory_mb"]} MiB'),
            ('image', record['image'].get('id', '-')),
            ('last power-off', _format_power_off(record['last_power_off']))]
    return '\n'.join(f'{key:<15} {value}' for key, value in rows)


def _format_list(records):
    lines = [f'{"UUID":<36}  {"NAME":<20} {"VM_STATE":<10} {"POWER":<9} '
             'TASK']
    for r in records:
        lines.append(f'{r["uuid"]:<36}  {r["name"][:20]:<20} '
                     f'{r["vm_state"]:<10} {r["power_state"]:<9} '
                     f'{r["task_state"] or "-"}')
    return '\n'.join(lines) if records else 'no instances'


def _format_status(status):
    lines = [f'host            {status["host"]}',
             f'state           {status["state"]}',
             f'service version {status["service_version"]} (RPC '
             f'{status["rpc_api_version"]})',
             f'graceful_shutdown_timeout {status["graceful_shutdown_timeout"]}'
             f' s',
             f'in flight       {len(status["in_flight"])}']
    for op in status['in_flight']:
        lines.append(f'  {op["method"]} {op["instance_uuid"] or "-"} '
                     f'{op["request_id"] or "-"} for {op["elapsed"]:.1f} s')
    return '\n'.join(lines)


def _print_result(verb, result, as_json):
    if as_json:
        print(json.dumps(result, indent=2, sort_keys=True))
    elif verb == 'list':
        print(_format_list(result))
    elif verb == 'status':
        print(_format_status(result))
    else:
        print(_format_instance(result))


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
        result = _run(api, args, ctxt)
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
