"""Endpoints for live migration, and for cold migration and resize."""

import oslo_messaging

from compute_agent import endpoints
from compute_agent.remotable import remotable
from compute_agent import validation


class LiveMigrationEndpoint:
    target = oslo_messaging.Target(version=endpoints.RPC_API_VERSION)

    def __init__(self, source, destination):
        """:param source: a LiveMigrationSource; destination: a
            LiveMigrationDestination."""
        self._source = source
        self._destination = destination

    # -- source -------------------------------------------------------------

    @remotable
    def live_migrate_instance(self, ctxt, instance_uuid, dest_host,
                              block_migration=False, wait_for_events=None):
        uuid = validation.instance_uuid(instance_uuid)
        dest = validation.host_name(dest_host, 'dest_host')
        block = validation.boolean(block_migration, 'block_migration')
        events = validation.event_list(wait_for_events)
        return self._source.live_migrate(ctxt, uuid, dest, block, events)

    @remotable
    def live_migration_abort(self, ctxt, migration_id):
        return self._source.abort(
            ctxt, validation.migration_id(migration_id))

    @remotable
    def live_migration_force_complete(self, ctxt, migration_id):
        return self._source.force_complete(
            ctxt, validation.migration_id(migration_id))

    # -- destination ----------------------------------------------------------

    @remotable
    def check_can_live_migrate_destination(self, ctxt, instance,
                                           block_migration=False):
        record = validation.peer_instance(instance)
        validation.boolean(block_migration, 'block_migration')
        return self._destination.check_can_take(record)

    @remotable
    def pre_live_migration(self, ctxt, instance, migration, migratable_xml,
                           block_migration=False):
        record = validation.peer_instance(instance)
        validation.short_text(migratable_xml, 'migratable_xml', 1 << 20)
        block = validation.boolean(block_migration, 'block_migration')
        # The migration record is checked against this host's records.
        return self._destination.prepare(ctxt, record, migration,
                                         migratable_xml, block)

    @remotable
    def post_live_migration_at_destination(self, ctxt, instance, migration,
                                           destination_xml):
        record = validation.peer_instance(instance)
        validation.short_text(destination_xml, 'destination_xml', 1 << 20)
        return self._destination.take_over(record, migration,
                                           destination_xml)

    @remotable
    def rollback_live_migration_at_destination(self, ctxt, instance_uuid,
                                               migration_id, reason=''):
        uuid = validation.instance_uuid(instance_uuid)
        migration_id = validation.migration_id(migration_id)
        validation.short_text(reason, 'reason')
        self._destination.roll_back(uuid, migration_id, reason)


class ResizeEndpoint:
    """Cold migration and resize."""

    target = oslo_messaging.Target(version=endpoints.RPC_API_VERSION)

    def __init__(self, source, destination, migrations):
        """:param source: a ResizeSource; destination: a
            ResizeDestination; migrations: the MigrationRegistry."""
        self._source = source
        self._destination = destination
        self._migrations = migrations

    # -- destination ----------------------------------------------------------

    @remotable
    def prep_resize(self, ctxt, instance_uuid, new_flavor, source_host,
                    clean_shutdown=True, shutdown_timeout=None):
        uuid, clean, timeout = validation.power_off_request(
            instance_uuid, clean_shutdown, shutdown_timeout)
        flavor = validation.flavor(new_flavor)
        source = validation.host_name(source_host, 'source_host')
        return self._destination.prep_resize(ctxt, uuid, flavor, source,
                                             clean, timeout)

    @remotable
    def finish_resize(self, ctxt, migration, instance, has_disk, power_on):
        record = validation.peer_instance(instance)
        validation.boolean(has_disk, 'has_disk')
        validation.boolean(power_on, 'power_on')
        return self._destination.finish_resize(ctxt, migration, record,
                                               has_disk, power_on)

    @remotable
    def finish_confirm_resize(self, ctxt, migration_id):
        return self._destination.finish_confirm_resize(
            ctxt, validation.migration_id(migration_id))

    @remotable
    def revert_resize(self, ctxt, migration_id):
        return self._destination.revert_resize(
            ctxt, validation.migration_id(migration_id))

    # -- source ---------------------------------------------------------------

    @remotable
    def check_instance_shared_storage(self, ctxt, instance_uuid, marker):
        uuid = validation.instance_uuid(instance_uuid)
        validation.file_name(marker, 'marker')
        return self._source.check_shared_storage(uuid, marker)

    @remotable
    def resize_instance(self, ctxt, migration, destination_path,
                        shared_storage, clean_shutdown=True,
                        shutdown_timeout=None, migration_target=None):
        migration = self._migrations.from_peer(migration, 'source_host')
        uuid, clean, timeout = validation.power_off_request(
            migration['instance_uuid'], clean_shutdown, shutdown_timeout)
        validation.absolute_path(destination_path, 'destination_path')
        shared = validation.boolean(shared_storage, 'shared_storage')
        target = validation.migration_target(migration_target)
        return self._source.resize_instance(
            ctxt, migration, clean, timeout, destination_path, shared,
            target)

    @remotable
    def confirm_resize(self, ctxt, migration_id):
        return self._source.confirm_resize(
            ctxt, validation.migration_id(migration_id))

    @remotable
    def finish_revert_resize(self, ctxt, migration_id):
        return self._source.finish_revert_resize(
            ctxt, validation.migration_id(migration_id))
