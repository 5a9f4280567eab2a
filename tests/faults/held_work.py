"""Requests that stay in flight until the test lets them finish.

On libvirt's test:///default driver every operation is instant. A build
told to wait for an external event stays in flight until that event
arrives on topic compute-alt (external_instance_event): enough to hold a
drain open, or to keep work in flight while the agent is signalled.
"""

import uuid

import oslo_messaging

from tests.fixtures import rpc

EVENT = 'network-vif-plugged'
BUILD = 'build_and_run_instance'


def held_instance():
    """A build request that waits for EVENT (tagged with its uuid)."""
    instance_uuid = str(uuid.uuid4())
    return {
        'uuid': instance_uuid,
        'name': f'held-{instance_uuid[:8]}',
        'vcpus': 1,
        'memory_mb': 128,
        'image': {'id': str(uuid.uuid4()), 'properties': {}},
        'wait_for_events': [{'name': EVENT, 'tag': instance_uuid}],
    }


def release(client, instance_uuid, timeout=None):
    """Send the event the held build of instance_uuid waits for; True
    when it woke the build."""
    return client.call('external_instance_event', topic=rpc.ALT_TOPIC,
                       timeout=timeout, instance_uuid=instance_uuid,
                       name=EVENT, tag=instance_uuid)['delivered']


def builds_in_flight(client, topic=rpc.TOPIC):
    """The uuids of the builds the agent reports in flight."""
    status = client.call('get_service_status', topic=topic)
    return sorted(op['instance_uuid'] for op in status['in_flight']
                  if op['method'] == BUILD)


def builds_recorded(client, topic=rpc.TOPIC):
    """The uuids of the builds in flight whose build action the agent
    has recorded: a build is in flight from the moment its request
    arrives, a little before its records are written."""
    return [instance_uuid for instance_uuid in builds_in_flight(client,
                                                                topic)
            if any(entry['action'] == 'build'
                   for entry in _unless_not_found(
                       [], client, 'get_instance_actions', topic=topic,
                       instance_uuid=instance_uuid))]


def instance_or_none(client, instance_uuid):
    return _unless_not_found(None, client, 'get_instance',
                             instance_uuid=instance_uuid)


def _unless_not_found(absent, client, method, **kwargs):
    """client.call(method, ...), or absent when the agent has no record
    of the instance (yet, or any more)."""
    try:
        return client.call(method, **kwargs)
    except oslo_messaging.RemoteError as error:
        if error.exc_type == 'InstanceNotFound':
            return absent
        raise
