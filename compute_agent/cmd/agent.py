"""compute-agent: the daemon. Run by systemd as ``compute-agent
--config-file /etc/compute-agent/compute-agent.conf``.

Signals (handled by oslo.service's launcher, which runs Service.stop):
  SIGTERM  drain: stop taking new work, finish work in flight, exit 0;
           a second SIGTERM during the drain is ignored.
  SIGINT   exit at once with status 1, without draining. Guests keep
           running; operations cut short are reconciled at the next start.
  SIGHUP   ignored during a drain; otherwise oslo.service's default.
"""

import os
import sys

from oslo_log import log as logging
from oslo_service import service as oslo_service

from compute_agent import conf as agent_conf
from compute_agent import db
from compute_agent import image_store
from compute_agent import log_safety
from compute_agent import manager
from compute_agent import manager_base
from compute_agent import rpc
from compute_agent import rpcapi
from compute_agent import service
from compute_agent import state_files
from compute_agent import tracker
from compute_agent.virt.libvirt import driver as libvirt_driver

LOG = logging.getLogger(__name__)
CONF = agent_conf.CONF


def build_service(conf):
    state_files.prepare(conf.state_path)
    driver = libvirt_driver.LibvirtDriver(
        conf.libvirt.connection_uri, conf.libvirt.virt_type,
        conf.state_path,
        live_migration_uri=conf.libvirt.live_migration_uri,
        live_migration_inbound_addr=conf.libvirt.live_migration_inbound_addr,
        live_migration_bandwidth=conf.libvirt.live_migration_bandwidth,
        cold_migration_disk_transfer=(
            conf.libvirt.cold_migration_disk_transfer))
    LOG.info("compute-agent starting as host %s on %s", conf.host,
             conf.libvirt.connection_uri)
    database = db.Database(os.path.join(conf.state_path, 'agent.sqlite'))
    transport = rpc.get_transport(conf)
    compute_manager = manager.ComputeManager(
        host=conf.host, driver=driver, database=database,
        image_store=image_store.ImageStore(
            os.path.join(conf.state_path, 'images'), database),
        default_shutdown_timeout=conf.shutdown_timeout,
        shutdown_retry_interval=conf.compute.shutdown_retry_interval,
        peers=rpcapi.ComputeAPI(transport,
                                version_pin=conf.upgrade_levels.compute),
        settings=manager_base.MigrationSettings(
            max_concurrent_live_migrations=(
                conf.compute.max_concurrent_live_migrations),
            max_concurrent_resizes=conf.compute.max_concurrent_resizes,
            live_migration_completion_timeout=(
                conf.compute.live_migration_completion_timeout),
            instance_event_timeout=conf.compute.instance_event_timeout,
            instance_event_timeout_is_fatal=(
                conf.compute.instance_event_timeout_is_fatal)))
    return service.Service(conf, compute_manager, transport,
                           tracker.InFlightTracker())


def main(argv=None):
    logging.register_options(CONF)
    rpc.set_defaults()
    CONF(sys.argv[1:] if argv is None else argv, project='compute-agent')
    logging.setup(CONF, 'compute-agent')
    log_safety.install()
    try:
        agent = build_service(CONF)
        # Runs start() and then blocks in wait() until a signal ends the
        # process; it returns only if start() fails.
        launcher = oslo_service.launch(CONF, agent, workers=1, no_fork=True)
    except Exception as error:
        LOG.error('compute-agent cannot start: %s', error)
        LOG.debug('Start failure', exc_info=True)
        return 1
    return launcher.wait()


if __name__ == '__main__':
    sys.exit(main())
