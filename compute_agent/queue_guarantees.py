"""What the broker settings promise for work queued for this host.

New work for a stopped or restarting agent waits in its queues on the
broker (compute.<host>, compute-alt.<host>). Whether it is still there
after a broker node restarts or is lost depends on settings of
oslo.messaging, not of this agent, and the operator guide's "Queued work
and the broker" explains them; the agent says at start, in one line,
which of those guarantees its settings give.
"""

import oslo_messaging

RABBIT_GROUP = 'oslo_messaging_rabbit'
_RABBIT_TRANSPORTS = ('rabbit', 'kombu')


def _nodes(count):
    return f'{count} broker node{"" if count == 1 else "s"}'


def describe(conf):
    """One line for the start log; conf has the transport's options
    registered (the transport was created)."""
    url = oslo_messaging.TransportURL.parse(conf)
    driver = url.transport.split('+')[0]
    if driver not in _RABBIT_TRANSPORTS:
        return (f'Queued work: transport {driver} gives no broker-side '
                f'guarantee for requests queued while this agent is down')
    nodes = max(len(url.hosts), 1)
    rabbit = conf[RABBIT_GROUP]
    if rabbit.rabbit_quorum_queue:
        if nodes == 1:
            return (f'Queued work: quorum queues on {_nodes(nodes)}: '
                    f'requests queued for this host are kept on that '
                    f'node\'s disk and wait while it is down (list every '
                    f'node of a cluster of three or more in transport_url '
                    f'for failover)')
        # A quorum queue keeps working while a majority of its nodes is up.
        tolerated = (nodes - 1) // 2
        if tolerated == 0:
            loss = 'no node loss (two nodes cannot outvote one)'
        elif tolerated == 1:
            loss = 'a rolling restart of the nodes and the loss of one node'
        else:
            loss = (f'a rolling restart of the nodes and the loss of '
                    f'{tolerated} nodes')
        return (f'Queued work: quorum queues on {_nodes(nodes)}: requests '
                f'queued for this host are replicated and survive {loss}')
    if rabbit.amqp_durable_queues:
        # Durable classic queues outlive their node's restart, but their
        # messages only if published persistent: not a promise to make.
        return (f'Queued work: durable classic queues on {_nodes(nodes)}: '
                f'requests queued for this host are unavailable while the '
                f'node holding them is down and are not proven to survive '
                f'its restart; [{RABBIT_GROUP}] rabbit_quorum_queue = true '
                f'on a three-node cluster keeps them')
    return (f'Queued work: classic queues on {_nodes(nodes)}: requests '
            f'queued for this host while its agent is down are lost when '
            f'the broker node holding them restarts; set [{RABBIT_GROUP}] '
            f'rabbit_quorum_queue = true (on a three-node cluster) to keep '
            f'them')
