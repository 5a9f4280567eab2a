"""Endpoint for rescue and shelve."""

import oslo_messaging

from compute_agent import endpoints
from compute_agent.remotable import remotable
from compute_agent import validation


class RescueShelveEndpoint:
    target = oslo_messaging.Target(version=endpoints.RPC_API_VERSION)

    def __init__(self, rescue_shelve):
        self._flow = rescue_shelve

    @remotable
    def rescue_instance(self, ctxt, instance_uuid, rescue_image=None,
                        clean_shutdown=True, shutdown_timeout=None):
        uuid, clean, timeout = validation.power_off_request(
            instance_uuid, clean_shutdown, shutdown_timeout)
        # rescue_image is checked by the flow, which may find it in the
        # image store.
        return self._flow.rescue(ctxt, uuid, rescue_image, clean, timeout)

    @remotable
    def unrescue_instance(self, ctxt, instance_uuid):
        return self._flow.unrescue(ctxt,
                                   validation.instance_uuid(instance_uuid))

    @remotable
    def shelve_instance(self, ctxt, instance_uuid, clean_shutdown=True,
                        shutdown_timeout=None):
        return self._flow.shelve(ctxt, *validation.power_off_request(
            instance_uuid, clean_shutdown, shutdown_timeout))

    @remotable
    def shelve_offload_instance(self, ctxt, instance_uuid,
                                clean_shutdown=True, shutdown_timeout=None):
        return self._flow.shelve_offload(ctxt, *validation.power_off_request(
            instance_uuid, clean_shutdown, shutdown_timeout))

    @remotable
    def unshelve_instance(self, ctxt, instance_uuid):
        return self._flow.unshelve(ctxt,
                                   validation.instance_uuid(instance_uuid))
