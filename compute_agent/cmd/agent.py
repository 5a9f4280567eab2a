"""compute-agent: the daemon. Run by systemd as ``compute-agent
--config-file /etc/compute-agent/compute-agent.conf``.

Signals (recorded by compute_agent.signals, acted on by the Service):
  SIGTERM  drain: stop taking new work, finish work in flight, exit 0; at
           any moment, during the start too (a start that has not started
           its RPC servers yet stops before them). A second SIGTERM is
           ignored.
  SIGHUP   re-read the config files' mutable options (debug,
           default_log_levels, log_config_append) and reopen the log files,
           without a restart: work in flight and the RPC servers go on.
           Ignored during a drain.
  SIGINT   exit at once with status 1, without draining. Guests keep
           running; operations cut short are reconciled at the next start.
"""

import functools
import logging as logging_module
import os
import sys

from oslo_log import log as logging

from compute_agent import concurrency
from compute_agent import conf as agent_conf
from compute_agent.conf import reload
from compute_agent import db
from compute_agent import failpoints
from compute_agent import image_store
from compute_agent import log_safety
from compute_agent import manager
from compute_agent import metrics
from compute_agent import notifications
from compute_agent import queue_guarantees
from compute_agent import rpc
from compute_agent import rpcapi
from compute_agent import service
from compute_agent import signals
from compute_agent import state_files
from compute_agent import telemetry
from compute_agent import tracker
from compute_agent.virt.libvirt import driver as libvirt_driver

LOG = logging.getLogger(__name__)
CONF = agent_conf.CONF


def build_telemetry(conf, driver):
    """The Telemetry the workers report to, with every observer the
    configuration turns on (each from_config returns None when off).
    The metrics endpoint listens from here on, on a daemon thread, until
    the process exits (MetricsError when it cannot)."""
    metrics_observer, _metrics_server = metrics.from_config(conf,
                                                            driver.health)
    observers = [notifications.from_config(conf), metrics_observer]
    return telemetry.Telemetry(
        observer for observer in observers if observer is not None)


def build_service(conf, signal_inbox):
    state_files.prepare(conf.state_path)
    driver = libvirt_driver.LibvirtDriver(
        conf.libvirt.connection_uri, conf.libvirt.virt_type,
        conf.state_path,
        live_migration_uri=conf.libvirt.live_migration_uri,
        live_migration_inbound_addr=conf.libvirt.live_migration_inbound_addr,
        live_migration_bandwidth=conf.libvirt.live_migration_bandwidth,
        cold_migration_disk_transfer=(
            conf.libvirt.cold_migration_disk_transfer))
    LOG.info("compute-agent starting as host %s on %s (concurrency: %s)",
             conf.host, conf.libvirt.connection_uri, concurrency.mode())
    # SQLite blocks in C: off the green threads' hub in eventlet mode.
    database = concurrency.serial_proxy(
        db.Database(os.path.join(conf.state_path, 'agent.sqlite')))
    transport = rpc.get_transport(conf)
    LOG.info('%s', queue_guarantees.describe(conf))
    reporting = build_telemetry(conf, driver)
    compute_manager = manager.ComputeManager(
        host=conf.host, driver=driver, database=database,
        image_store=image_store.ImageStore(
            os.path.join(conf.state_path, 'images'), database),
        default_shutdown_timeout=conf.shutdown_timeout,
        shutdown_retry_interval=conf.compute.shutdown_retry_interval,
        peers=rpcapi.ComputeAPI(transport,
                                version_pin=conf.upgrade_levels.compute),
        settings=manager.MigrationSettings(
            max_concurrent_live_migrations=(
                conf.compute.max_concurrent_live_migrations),
            max_concurrent_resizes=conf.compute.max_concurrent_resizes,
            live_migration_completion_timeout=(
                conf.compute.live_migration_completion_timeout),
            instance_event_timeout=conf.compute.instance_event_timeout,
            instance_event_timeout_is_fatal=(
                conf.compute.instance_event_timeout_is_fatal)),
        telemetry=reporting)
    return service.Service(
        conf, compute_manager, transport, tracker.InFlightTracker(),
        signals=signal_inbox,
        reload_config=functools.partial(reload.reload_config, conf),
        telemetry=reporting)


def main(argv=None):
    logging.register_options(CONF)
    rpc.set_defaults()
    CONF(sys.argv[1:] if argv is None else argv, project='compute-agent')
    logging.setup(CONF, 'compute-agent')
    log_safety.install()
    try:
        failpoints.arm_from_environment()
    except failpoints.FailpointError as error:
        LOG.error('compute-agent cannot start: %s', error)
        return 1
    reload.register_hooks(CONF)
    # From here a SIGTERM is recorded, and honoured once start() runs.
    signal_inbox = signals.SignalInbox(CONF.graceful_shutdown_timeout)
    signal_inbox.install()
    try:
        agent = build_service(CONF, signal_inbox)
        # Runs start() and then wait(), which returns once SIGTERM's drain
        # is done (SIGINT and the drain's hard backstop exit from within).
        concurrency.launch(CONF, agent)
    except metrics.MetricsError as error:
        LOG.error('compute-agent cannot start: %s', error)
        return 1
    except Exception as error:
        LOG.exception('compute-agent cannot start: %s', error)
        return 1
    _exit_now(0)


def _exit_now(status):
    """Exit without waiting for threads, as the launcher itself would
    after a drain: a worker still stuck past the drain deadline must not
    keep the process alive."""
    logging_module.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == '__main__':
    sys.exit(main())
