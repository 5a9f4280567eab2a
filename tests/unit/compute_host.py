"""A ComputeManager as the RPC servers see it, for tests that call its
API directly."""

from compute_agent import remotable


class ComputeHost:
    """A remotable method is called on the endpoint that holds it, as the
    RPC dispatcher would; any other name is the manager's (power_offs,
    migrations, work, images, drain_started, ...)."""

    def __init__(self, compute, service):
        """:param service: has a tracker and a status()."""
        self.compute = compute
        self.serve(service)

    def serve(self, service):
        """init_host, reporting to service."""
        self.endpoints = self.compute.init_host(service.tracker,
                                                service.status)

    def __getattr__(self, name):
        for endpoint in self.endpoints:
            method = getattr(endpoint, name, None)
            if remotable.is_remotable(method):
                return method
        return getattr(self.compute, name)
