# The threading backend must be chosen before oslo_messaging (which
# imports oslo_service.service) is imported anywhere; the default would be
# eventlet.
from oslo_service import backend

backend.init_backend(backend.BackendType.THREADING)
