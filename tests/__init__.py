# Must precede any oslo_messaging import, which settles on eventlet otherwise.
from oslo_service import backend

backend.init_backend(backend.BackendType.THREADING)
