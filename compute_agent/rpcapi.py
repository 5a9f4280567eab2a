"""Client side of the compute RPC API.

API version history (the endpoint's target version and SERVICE_VERSION
move with it; a unit test keeps the three in step):

* 1.0 - One server on topic ``compute``: get_service_status,
  list_instances, get_instance, build_and_run_instance, start_instance,
  stop_instance(clean_shutdown, shutdown_timeout), reboot_instance,
  terminate_instance(clean_shutdown, shutdown_timeout). SERVICE_VERSION 1.
* 1.1 - The agent also serves topic ``compute-alt`` (same methods), which
  carries the continuation of work already started so that it can finish
  while the agent drains; get_service_status answers on both topics.
  SERVICE_VERSION 2.
* 1.2 - rescue_instance(rescue_image, clean_shutdown, shutdown_timeout),
  unrescue_instance, shelve_instance(clean_shutdown, shutdown_timeout),
  shelve_offload_instance(clean_shutdown, shutdown_timeout),
  unshelve_instance and get_instance_actions, all on topic ``compute``.
  get_service_status's in_flight entries may carry ``power_off`` (elapsed,
  timeout, method, requests) while a clean power-off waits for the guest;
  last_power_off.method may be 'guest-agent'; a forced request overrides
  a clean power-off still waiting. An image may give kernel+ramdisk
  together with disk. SERVICE_VERSION 3.
* 1.3 - get_console_output(instance_uuid, max_bytes), on topic
  ``compute-alt``: the tail of the guest's serial console log.
  SERVICE_VERSION 4.
* 1.4 - Live migration, cold migration and resize, external events.
  On topic ``compute`` (new work): live_migrate_instance(instance_uuid,
  dest_host, block_migration, wait_for_events) to the source,
  check_can_live_migrate_destination(instance, block_migration) to the
  destination, live_migration_abort(migration_id) and
  live_migration_force_complete(migration_id) to the source;
  prep_resize(instance_uuid, new_flavor, source_host, clean_shutdown,
  shutdown_timeout) to the destination, confirm_resize(migration_id) to the
  source, revert_resize(migration_id) to the destination. On topic
  ``compute-alt`` (the continuation): pre_live_migration,
  post_live_migration_at_destination,
  rollback_live_migration_at_destination, check_instance_shared_storage,
  resize_instance, finish_resize, finish_confirm_resize,
  finish_revert_resize, external_instance_event(instance_uuid, name, tag),
  get_serial_console(instance_uuid), get_migration(migration_id) and
  list_migrations(instance_uuid). build_and_run_instance's instance may
  carry wait_for_events (sent as 1.4 then). vm_state may be 'resized'.
  SERVICE_VERSION 5.
  A migration record is {"id", "kind" ('live-migration', 'migration' or
  'resize'), "instance_uuid", "source_host", "dest_host", "status",
  "request_id", "details", "progress", "message", "created_at",
  "updated_at", "finished_at"}; status is one of queued, preparing,
  running, completed, failed, cancelled, error, and for a cold migration
  or resize also confirming, confirmed, reverting, reverted.
* 1.5 - resize_instance(..., migration_target): the destination's
  migration target ({"libvirt_uri", ...}, as it returns for a live
  migration), through whose libvirtd a source that does not see the
  destination's instance directory streams the disk. A destination sends
  1.4 without it to an older source, which can then only copy through a
  mounted path. SERVICE_VERSION 6.

Note: additions to results that need no new version (a client ignores
keys it does not know): get_service_status's ``hypervisor``, the agent's
link to its hypervisor or null (libvirt: {"driver", "uri", "connected",
"reconnects", "event_loop", "event_loop_restarts", "dispatcher",
"dispatcher_restarts", "last_error"}, the threads' states 'running',
'restarting' or 'stopped'); last_power_off's ``detected_by``, 'event'
or 'poll', when a clean power-off waited for its guest;
get_service_status's ``concurrency``, the mode the agent runs in,
'threading' or 'eventlet' (a peer in either mode serves the same wire).

A capped client degrades deliberately: ``[upgrade_levels] compute`` pins
the version sent (``auto`` asks each agent for its own; one that does not
answer, being stopped, is sent what it last said it speaks, or else each
request at its own version, to wait on the broker), and a request meant
for ``compute-alt`` goes to ``compute`` when the peer is older than 1.1,
with a log line saying so.

The version cap per host, the topic and the reply timeouts are worked out
by compute_agent.rpcapi_versions.VersionedClients, which ComputeAPI sends
through.
"""

import logging
import time

from compute_agent import rpcapi_versions

LOG = logging.getLogger(__name__)

VERSION = '1.5'
# What each agent's SERVICE_VERSION speaks, for [upgrade_levels] compute=auto.
SERVICE_VERSION_TO_RPC = {1: '1.0', 2: '1.1', 3: '1.2', 4: '1.3',
                          5: '1.4', 6: '1.5'}
# Steps of a migration that one agent asks of another: quick checks and
# bookkeeping, and (resize_instance) a power-off plus a disk copy.
PEER_CHECK_TIMEOUT = 60
PEER_STEP_TIMEOUT = 300
DISK_COPY_TIMEOUT = 1800
# The agent's default [compute] instance_event_timeout.
DEFAULT_EVENT_TIMEOUT = 300

# Callers build the context of each request here.
new_context = rpcapi_versions.new_context


class ComputeAPI:
    """One method per RPC method, each sent at the version that gave it
    its current arguments (the history is this module's docstring)."""

    def __init__(self, transport, version_pin=None, retry=None,
                 clock=time.monotonic):
        """:param version_pin: [upgrade_levels] compute: None, a version,
            or 'auto'.
        :param retry: connection attempts per request before giving up
            (None: keep trying, as a service should; the CLI sets a few).
        """
        self._clients = rpcapi_versions.VersionedClients(
            transport, VERSION, SERVICE_VERSION_TO_RPC,
            version_pin=version_pin, retry=retry, clock=clock)

    def version_cap(self, host, needed='1.0'):
        """The newest version this client may send to host; needed, the
        version of the request at hand, when auto cannot tell."""
        return self._clients.version_cap(host, needed)

    def prepare_for_alt_rpcserver(self, host, version, timeout=None):
        """A client for work that continues something already started:
        topic compute-alt, or compute when the peer predates it."""
        return self._clients.prepare_for_alt_rpcserver(host, version,
                                                       timeout)

    # -- methods --------------------------------------------------------

    def get_service_status(self, ctxt, host, alt=False, timeout=None):
        if alt:
            client = self.prepare_for_alt_rpcserver(host, '1.0', timeout)
        else:
            client = self._clients.prepare(host, '1.0', timeout)
        return client.call(ctxt, 'get_service_status')

    def list_instances(self, ctxt, host):
        return self._clients.prepare(host, '1.0').call(ctxt, 'list_instances')

    def get_instance(self, ctxt, host, instance_uuid, timeout=None):
        return self._clients.prepare(host, '1.0', timeout).call(
            ctxt, 'get_instance', instance_uuid=instance_uuid)

    def build_and_run_instance(self, ctxt, host, instance, timeout=None,
                               event_timeout=None):
        """:param event_timeout: how long the agent waits for the
            instance's wait_for_events (its instance_event_timeout), which
            the reply timeout must cover; None when the caller cannot say.
        """
        if not instance.get('wait_for_events'):
            return self._clients.prepare(host, '1.0', timeout).call(
                ctxt, 'build_and_run_instance', instance=instance)
        # Events need 1.4; an older agent would refuse the unknown field.
        wait = DEFAULT_EVENT_TIMEOUT if event_timeout is None \
            else event_timeout
        client = self._clients.prepare(
            host, '1.4', timeout or wait + rpcapi_versions.POWER_CALL_MARGIN)
        return client.call(ctxt, 'build_and_run_instance', instance=instance)

    def start_instance(self, ctxt, host, instance_uuid):
        return self._clients.prepare(host, '1.0').call(
            ctxt, 'start_instance', instance_uuid=instance_uuid)

    def stop_instance(self, ctxt, host, instance_uuid, clean_shutdown=True,
                      shutdown_timeout=None, timeout=None):
        client = self._clients.prepare_power(
            host, '1.0', shutdown_timeout, timeout)
        return client.call(ctxt, 'stop_instance',
                           instance_uuid=instance_uuid,
                           clean_shutdown=clean_shutdown,
                           shutdown_timeout=shutdown_timeout)

    def reboot_instance(self, ctxt, host, instance_uuid, reboot_type='SOFT',
                        timeout=None):
        client = self._clients.prepare_power(host, '1.0', None, timeout)
        return client.call(ctxt, 'reboot_instance',
                           instance_uuid=instance_uuid,
                           reboot_type=reboot_type)

    def terminate_instance(self, ctxt, host, instance_uuid,
                           clean_shutdown=True, shutdown_timeout=None,
                           timeout=None):
        client = self._clients.prepare_power(
            host, '1.0', shutdown_timeout, timeout)
        return client.call(ctxt, 'terminate_instance',
                           instance_uuid=instance_uuid,
                           clean_shutdown=clean_shutdown,
                           shutdown_timeout=shutdown_timeout)

    def rescue_instance(self, ctxt, host, instance_uuid, rescue_image=None,
                        clean_shutdown=True, shutdown_timeout=None,
                        timeout=None):
        """:param rescue_image: None (the instance's own image), an image
            dict shaped like build_and_run_instance's, or the id of a
            snapshot in the agent's local image store.
        """
        client = self._clients.prepare_power(
            host, '1.2', shutdown_timeout, timeout)
        return client.call(ctxt, 'rescue_instance',
                           instance_uuid=instance_uuid,
                           rescue_image=rescue_image,
                           clean_shutdown=clean_shutdown,
                           shutdown_timeout=shutdown_timeout)

    def unrescue_instance(self, ctxt, host, instance_uuid, timeout=None):
        return self._clients.prepare(host, '1.2', timeout).call(
            ctxt, 'unrescue_instance', instance_uuid=instance_uuid)

    def shelve_instance(self, ctxt, host, instance_uuid, clean_shutdown=True,
                        shutdown_timeout=None, timeout=None):
        client = self._clients.prepare_power(
            host, '1.2', shutdown_timeout, timeout)
        return client.call(ctxt, 'shelve_instance',
                           instance_uuid=instance_uuid,
                           clean_shutdown=clean_shutdown,
                           shutdown_timeout=shutdown_timeout)

    def shelve_offload_instance(self, ctxt, host, instance_uuid,
                                clean_shutdown=True, shutdown_timeout=None,
                                timeout=None):
        client = self._clients.prepare_power(
            host, '1.2', shutdown_timeout, timeout)
        return client.call(ctxt, 'shelve_offload_instance',
                           instance_uuid=instance_uuid,
                           clean_shutdown=clean_shutdown,
                           shutdown_timeout=shutdown_timeout)

    def unshelve_instance(self, ctxt, host, instance_uuid, timeout=None):
        return self._clients.prepare(host, '1.2', timeout).call(
            ctxt, 'unshelve_instance', instance_uuid=instance_uuid)

    def get_console_output(self, ctxt, host, instance_uuid, max_bytes=None,
                           timeout=None):
        # A console read serves an operator watching work in progress, so
        # it goes to compute-alt: it is answered while the host drains.
        return self.prepare_for_alt_rpcserver(host, '1.3', timeout).call(
            ctxt, 'get_console_output', instance_uuid=instance_uuid,
            max_bytes=max_bytes)

    def get_instance_actions(self, ctxt, host, instance_uuid):
        return self._clients.prepare(host, '1.2').call(
            ctxt, 'get_instance_actions', instance_uuid=instance_uuid)

    # -- migrations (1.4) ---------------------------------------------------

    def live_migrate_instance(self, ctxt, host, instance_uuid, dest_host,
                              block_migration=False, wait_for_events=None,
                              timeout=None):
        """Ask the source host to move a running instance to dest_host.
        Returns the migration record at once; follow it with
        get_migration."""
        client = self._clients.prepare(host, '1.4',
                                       timeout or PEER_STEP_TIMEOUT)
        return client.call(
            ctxt, 'live_migrate_instance', instance_uuid=instance_uuid,
            dest_host=dest_host, block_migration=block_migration,
            wait_for_events=wait_for_events)

    def check_can_live_migrate_destination(self, ctxt, host, instance,
                                           block_migration, timeout=None):
        client = self._clients.prepare(host, '1.4',
                                       timeout or PEER_CHECK_TIMEOUT)
        return client.call(
            ctxt, 'check_can_live_migrate_destination', instance=instance,
            block_migration=block_migration)

    def live_migration_abort(self, ctxt, host, migration_id, timeout=None):
        return self._clients.prepare(host, '1.4', timeout).call(
            ctxt, 'live_migration_abort', migration_id=migration_id)

    def live_migration_force_complete(self, ctxt, host, migration_id,
                                      timeout=None):
        return self._clients.prepare(host, '1.4', timeout).call(
            ctxt, 'live_migration_force_complete', migration_id=migration_id)

    def pre_live_migration(self, ctxt, host, instance, migration,
                           migratable_xml, block_migration, timeout=None):
        client = self.prepare_for_alt_rpcserver(
            host, '1.4', timeout or PEER_STEP_TIMEOUT)
        return client.call(ctxt, 'pre_live_migration', instance=instance,
                           migration=migration,
                           migratable_xml=migratable_xml,
                           block_migration=block_migration)

    def post_live_migration_at_destination(self, ctxt, host, instance,
                                           migration, destination_xml,
                                           timeout=None):
        client = self.prepare_for_alt_rpcserver(
            host, '1.4', timeout or PEER_STEP_TIMEOUT)
        return client.call(ctxt, 'post_live_migration_at_destination',
                           instance=instance, migration=migration,
                           destination_xml=destination_xml)

    def rollback_live_migration_at_destination(self, ctxt, host,
                                               instance_uuid, migration_id,
                                               reason, timeout=None):
        client = self.prepare_for_alt_rpcserver(
            host, '1.4', timeout or PEER_STEP_TIMEOUT)
        return client.call(ctxt, 'rollback_live_migration_at_destination',
                           instance_uuid=instance_uuid,
                           migration_id=migration_id, reason=reason)

    def prep_resize(self, ctxt, host, instance_uuid, new_flavor, source_host,
                    clean_shutdown=True, shutdown_timeout=None,
                    timeout=None):
        """Ask the destination host to take instance_uuid from source_host,
        with new_flavor (None: a cold migration keeping the flavor).
        Returns the migration record at once."""
        client = self._clients.prepare(host, '1.4',
                                       timeout or PEER_STEP_TIMEOUT)
        return client.call(
            ctxt, 'prep_resize', instance_uuid=instance_uuid,
            new_flavor=new_flavor, source_host=source_host,
            clean_shutdown=clean_shutdown, shutdown_timeout=shutdown_timeout)

    def check_instance_shared_storage(self, ctxt, host, instance_uuid,
                                      marker, timeout=None):
        client = self.prepare_for_alt_rpcserver(
            host, '1.4', timeout or PEER_CHECK_TIMEOUT)
        return client.call(ctxt, 'check_instance_shared_storage',
                           instance_uuid=instance_uuid, marker=marker)

    def resize_instance(self, ctxt, host, migration, destination_path,
                        shared_storage, clean_shutdown=True,
                        shutdown_timeout=None, migration_target=None,
                        timeout=None):
        arguments = dict(migration=migration,
                         destination_path=destination_path,
                         shared_storage=shared_storage,
                         clean_shutdown=clean_shutdown,
                         shutdown_timeout=shutdown_timeout)
        version = '1.4'
        if migration_target is not None:
            cap = self.version_cap(host, version)
            if rpcapi_versions.version_at_least(cap, '1.5'):
                version = '1.5'
                arguments['migration_target'] = migration_target
            else:
                LOG.info('Host %s speaks compute RPC %s, older than 1.5: '
                         'it is not told where to stream the disk and can '
                         'only copy it through a mounted path', host, cap)
        client = self.prepare_for_alt_rpcserver(
            host, version,
            timeout or (rpcapi_versions.power_timeout(shutdown_timeout) +
                        DISK_COPY_TIMEOUT))
        return client.call(ctxt, 'resize_instance', **arguments)

    def finish_resize(self, ctxt, host, migration, instance, has_disk,
                      power_on, timeout=None):
        client = self.prepare_for_alt_rpcserver(
            host, '1.4', timeout or PEER_STEP_TIMEOUT)
        return client.call(ctxt, 'finish_resize', migration=migration,
                           instance=instance, has_disk=has_disk,
                           power_on=power_on)

    def confirm_resize(self, ctxt, host, migration_id, timeout=None):
        client = self._clients.prepare(host, '1.4',
                                       timeout or PEER_STEP_TIMEOUT)
        return client.call(
            ctxt, 'confirm_resize', migration_id=migration_id)

    def finish_confirm_resize(self, ctxt, host, migration_id, timeout=None):
        client = self.prepare_for_alt_rpcserver(
            host, '1.4', timeout or PEER_STEP_TIMEOUT)
        return client.call(ctxt, 'finish_confirm_resize',
                           migration_id=migration_id)

    def revert_resize(self, ctxt, host, migration_id, timeout=None):
        client = self._clients.prepare(host, '1.4',
                                       timeout or PEER_STEP_TIMEOUT)
        return client.call(
            ctxt, 'revert_resize', migration_id=migration_id)

    def finish_revert_resize(self, ctxt, host, migration_id, timeout=None):
        client = self.prepare_for_alt_rpcserver(
            host, '1.4', timeout or PEER_STEP_TIMEOUT)
        return client.call(ctxt, 'finish_revert_resize',
                           migration_id=migration_id)

    def get_migration(self, ctxt, host, migration_id, timeout=None):
        # compute-alt: whoever follows a migration keeps seeing it while
        # the host drains.
        return self.prepare_for_alt_rpcserver(host, '1.4', timeout).call(
            ctxt, 'get_migration', migration_id=migration_id)

    def list_migrations(self, ctxt, host, instance_uuid=None, timeout=None):
        return self.prepare_for_alt_rpcserver(host, '1.4', timeout).call(
            ctxt, 'list_migrations', instance_uuid=instance_uuid)

    # -- events and consoles (1.4) ------------------------------------------

    def external_instance_event(self, ctxt, host, instance_uuid, name,
                                tag=None, timeout=None):
        return self.prepare_for_alt_rpcserver(host, '1.4', timeout).call(
            ctxt, 'external_instance_event', instance_uuid=instance_uuid,
            name=name, tag=tag)

    def get_serial_console(self, ctxt, host, instance_uuid, timeout=None):
        return self.prepare_for_alt_rpcserver(host, '1.4', timeout).call(
            ctxt, 'get_serial_console', instance_uuid=instance_uuid)
