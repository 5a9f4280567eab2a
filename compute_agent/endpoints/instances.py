"""Endpoints for the service, the instances and their power."""

import logging

import oslo_messaging

from compute_agent import endpoints
from compute_agent import events as instance_events
from compute_agent.remotable import remotable
from compute_agent import validation

LOG = logging.getLogger(__name__)


class ServiceEndpoint:
    target = oslo_messaging.Target(version=endpoints.RPC_API_VERSION)

    def __init__(self, host, driver, power_off_registry, service_status):
        """:param service_status: returns what the service reports of
            itself: state, in_flight, graceful_shutdown_timeout."""
        self._host = host
        self._driver = driver
        self._power_offs = power_off_registry
        self._service_status = service_status

    @remotable
    def get_service_status(self, ctxt):
        status = {'host': self._host,
                  'service_version': endpoints.SERVICE_VERSION,
                  'rpc_api_version': endpoints.RPC_API_VERSION}
        status.update(self._service_status())
        status['hypervisor'] = self._driver.health()
        progress = self._power_offs.progress()
        for operation in status['in_flight']:
            if operation['request_id'] in progress:
                operation['power_off'] = progress[operation['request_id']]
        return status


class InstanceEndpoint:
    """Reads, build, delete and external events."""

    target = oslo_messaging.Target(version=endpoints.RPC_API_VERSION)

    def __init__(self, host, driver, database, operations, migrations,
                 events, lifecycle):
        self._host = host
        self._driver = driver
        self._db = database
        self._ops = operations
        self._migrations = migrations
        self._events = events
        self._lifecycle = lifecycle

    @remotable
    def list_instances(self, ctxt):
        return self._db.list_instances(self._host)

    @remotable
    def get_instance(self, ctxt, instance_uuid):
        return self._ops.get(validation.instance_uuid(instance_uuid))

    @remotable
    def get_instance_actions(self, ctxt, instance_uuid):
        uuid = validation.instance_uuid(instance_uuid)
        self._ops.get(uuid)
        return self._db.list_actions(uuid)

    @remotable
    def get_console_output(self, ctxt, instance_uuid, max_bytes=None):
        uuid = validation.instance_uuid(instance_uuid)
        limit = validation.console_bytes(max_bytes)
        self._ops.get(uuid)
        return self._driver.get_console_output(uuid, limit)

    @remotable
    def get_serial_console(self, ctxt, instance_uuid):
        uuid = validation.instance_uuid(instance_uuid)
        self._ops.get(uuid)
        return self._driver.get_serial_console(uuid)

    @remotable
    def get_migration(self, ctxt, migration_id):
        return self._migrations.with_live_progress(
            self._migrations.known(
                validation.migration_id(migration_id)))

    @remotable
    def list_migrations(self, ctxt, instance_uuid=None):
        if instance_uuid is not None:
            instance_uuid = validation.instance_uuid(instance_uuid)
        return [self._migrations.with_live_progress(migration)
                for migration in self._db.list_migrations(instance_uuid)]

    @remotable
    def external_instance_event(self, ctxt, instance_uuid, name, tag=None):
        uuid = validation.instance_uuid(instance_uuid)
        name = validation.event_name(name)
        tag = validation.event_tag(tag)
        delivered = self._events.deliver(uuid, name, tag)
        LOG.info('Event %s for instance %s %s', instance_events.event_key(
            name, tag), uuid, 'woke an operation waiting for it'
            if delivered else 'kept: nothing waits for it yet')
        return {'instance_uuid': uuid, 'name': name, 'tag': tag,
                'delivered': delivered}

    @remotable
    def build_and_run_instance(self, ctxt, instance):
        return self._lifecycle.build(ctxt, validation.build_request(instance))

    @remotable
    def terminate_instance(self, ctxt, instance_uuid, clean_shutdown=True,
                           shutdown_timeout=None):
        return self._lifecycle.delete(ctxt, *validation.power_off_request(
            instance_uuid, clean_shutdown, shutdown_timeout))


class PowerEndpoint:
    target = oslo_messaging.Target(version=endpoints.RPC_API_VERSION)

    def __init__(self, lifecycle):
        self._lifecycle = lifecycle

    @remotable
    def start_instance(self, ctxt, instance_uuid):
        return self._lifecycle.start(ctxt,
                                     validation.instance_uuid(instance_uuid))

    @remotable
    def stop_instance(self, ctxt, instance_uuid, clean_shutdown=True,
                      shutdown_timeout=None):
        return self._lifecycle.stop(ctxt, *validation.power_off_request(
            instance_uuid, clean_shutdown, shutdown_timeout))

    @remotable
    def reboot_instance(self, ctxt, instance_uuid, reboot_type='SOFT'):
        uuid = validation.instance_uuid(instance_uuid)
        return self._lifecycle.reboot(ctxt, uuid,
                                      validation.reboot_type(reboot_type))
