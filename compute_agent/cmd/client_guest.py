"""compute-agent-client verbs for a guest's side channels (RPC API 1.4).

`event` hands the agent an external event, as the network or volume
service would when a port is plugged or a disk attached; operations that
wait for one (boot and live-migrate --wait-for-event) go on when it
arrives. `serial-console` says where to attach to the guest's console.
Both are sent to topic compute-alt, so they are answered while the agent
drains.
"""

import argparse
import json

from compute_agent.cmd import client_format

VERBS = ('event', 'serial-console')
# A boot's answer comes after its events: what the build may take besides
# the wait (defining and starting the guest).
BOOT_BESIDES_EVENTS = 60


def event_spec(text):
    """argparse type of --wait-for-event: NAME or NAME:TAG -> {"name",
    "tag"}, the shape the agent's wait_for_events takes."""
    name, sep, tag = text.partition(':')
    if not name or (sep and not tag):
        raise argparse.ArgumentTypeError(
            f'takes NAME or NAME:TAG, got {text!r}')
    return {'name': name, 'tag': tag or None}


def add_wait_for_event_option(sub, what):
    sub.add_argument('--wait-for-event', type=event_spec, action='append',
                     metavar='NAME[:TAG]', dest='wait_for_events',
                     help=f'An external event {what} waits for (send it '
                          'with the event verb); may be repeated.')


def boot_rpc_timeout(args, conf):
    """--rpc-timeout when given. A boot that waits for events answers only
    once they came or [compute] instance_event_timeout (as the config file
    the client reads sets it) ran out, which may be later than the RPC
    default: its reply is waited for that long and then some."""
    if args.rpc_timeout or not args.wait_for_events:
        return args.rpc_timeout
    return conf.compute.instance_event_timeout + BOOT_BESIDES_EVENTS


def add_verbs(verbs):
    event = verbs.add_parser(
        'event', help='Deliver an external event for an instance, e.g. '
                      'network-vif-plugged.')
    event.add_argument('uuid')
    event.add_argument('name')
    event.add_argument('--tag', help='Which one of its kind, e.g. the '
                                     'port id.')
    verbs.add_parser(
        'serial-console', help='Where the instance\'s serial console is '
                               'reached.').add_argument('uuid')


def run(api, args, ctxt):
    """Send the verb's request and print its answer; the exit status."""
    if args.verb == 'event':
        result = api.external_instance_event(
            ctxt, args.host, args.uuid, args.name, tag=args.tag,
            timeout=args.rpc_timeout)
        text = client_format.event_result(result)
    else:
        result = api.get_serial_console(ctxt, args.host, args.uuid,
                                        timeout=args.rpc_timeout)
        text = client_format.serial_console(result)
    print(json.dumps(result, indent=2, sort_keys=True) if args.json
          else text)
    return 0
