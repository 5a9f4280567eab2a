"""ComputeManager: the agent's work on its host, put together.

It builds, once, the registries that own the mutable state (power-offs
that a forced request can cut short, migrations running through this
host, background work, instance events), the flows that get them through
their constructors, and, at init_host, the RPC endpoints over the flows.
The Service calls init_host and drain_started; the RPC servers dispatch
only the endpoints' remotable methods.

    cmd -> service -> endpoints -> flows and registries -> virt, db
"""

import dataclasses

from compute_agent import background
from compute_agent.endpoints import instances
from compute_agent.endpoints import migrations as migration_endpoints
from compute_agent.endpoints import rescue_shelve as rescue_shelve_endpoint
from compute_agent import events as instance_events
from compute_agent import lifecycle
from compute_agent import live_migration_destination
from compute_agent import live_migration_source
from compute_agent import migrations
from compute_agent import operations
from compute_agent import power_offs
from compute_agent import recovery
from compute_agent import rescue_shelve
from compute_agent import resize_destination
from compute_agent import resize_source
from compute_agent import telemetry as telemetry_module

ENDPOINT_CLASSES = (
    instances.ServiceEndpoint, instances.InstanceEndpoint,
    instances.PowerEndpoint, rescue_shelve_endpoint.RescueShelveEndpoint,
    migration_endpoints.LiveMigrationEndpoint,
    migration_endpoints.ResizeEndpoint)


@dataclasses.dataclass(frozen=True)
class MigrationSettings:
    """The [compute] options that shape migrations and event waits."""

    max_concurrent_live_migrations: int = 1
    max_concurrent_resizes: int = 2
    live_migration_completion_timeout: int = 900
    instance_event_timeout: int = 300
    instance_event_timeout_is_fatal: bool = True


class ComputeManager:
    def __init__(self, host, driver, database, image_store,
                 default_shutdown_timeout, shutdown_retry_interval,
                 peers=None, settings=MigrationSettings(),
                 telemetry=telemetry_module.Telemetry()):
        """:param peers: a compute_agent.rpcapi.ComputeAPI through which
            this agent asks other agents to do their part of a migration.
        :param telemetry: what operations and power-offs report to.
        """
        self._host = host
        self._driver = driver
        self._db = database
        self._peers = peers
        self.images = image_store
        self.power_offs = power_offs.PowerOffRegistry()
        self.migrations = migrations.MigrationRegistry(host, database)
        self.work = background.BackgroundWork()
        self.events = instance_events.InstanceEvents(
            settings.instance_event_timeout,
            settings.instance_event_timeout_is_fatal)
        self.operations = operations.Operations(
            host, driver, database, self.power_offs, power_offs.PowerOffs(
                driver, self.power_offs, default_shutdown_timeout,
                shutdown_retry_interval, telemetry), telemetry)
        self.lifecycle = lifecycle.Lifecycle(
            host, driver, database, image_store, self.events,
            self.operations)
        self.rescue_shelve = rescue_shelve.RescueShelve(
            host, driver, image_store, self.operations)
        self.live_source = live_migration_source.LiveMigrationSource(
            host, driver, database, peers, self.migrations, self.operations,
            self.work, self.events, settings)
        self.live_destination = \
            live_migration_destination.LiveMigrationDestination(
                host, driver, database, self.migrations, self.operations,
                self.work, settings.live_migration_completion_timeout)
        self.resize_source = resize_source.ResizeSource(
            host, driver, database, peers, self.migrations, self.operations)
        self.resize_destination = resize_destination.ResizeDestination(
            host, driver, database, peers, self.migrations, self.operations,
            self.work, settings.max_concurrent_resizes)

    def init_host(self, tracker, service_status):
        """Settle what an earlier run left half done, and return the
        endpoints for the RPC servers.

        :param tracker: the in-flight tracker background work reports to.
        :param service_status: returns what the service reports of itself
            (state, in_flight, graceful_shutdown_timeout).
        """
        self.work.attach(tracker)
        self._driver.init_host(self._host)
        recovery.RestartRecovery(self._host, self._driver, self._db,
                                 self.images, self._peers).settle()
        return [
            instances.ServiceEndpoint(self._host, self._driver,
                                      self.power_offs, service_status),
            instances.InstanceEndpoint(
                self._host, self._driver, self._db, self.operations,
                self.migrations, self.events, self.lifecycle),
            instances.PowerEndpoint(self.lifecycle),
            rescue_shelve_endpoint.RescueShelveEndpoint(self.rescue_shelve),
            migration_endpoints.LiveMigrationEndpoint(
                self.live_source, self.live_destination),
            migration_endpoints.ResizeEndpoint(
                self.resize_source, self.resize_destination,
                self.migrations),
        ]

    def drain_started(self, deadline):
        """The service stopped taking new work: cancel what has not
        started, and make live migrations and cold migrations' disk
        copies end before deadline (a time.monotonic() value, or None for
        no deadline)."""
        self.work.begin_drain()
        if deadline is not None:
            self.migrations.drain_started(deadline)
