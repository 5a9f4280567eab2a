import warnings

from oslo_service import backend

# futurist imports eventlet whenever it is installed, and eventlet (kept as
# a dependency for a later eventlet mode) then warns that it is deprecated
# on every start, although the threading backend below never uses it.
warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')

# The threading backend must be chosen before oslo_messaging (which
# imports oslo_service.service) is imported anywhere; the default would be
# eventlet.
backend.init_backend(backend.BackendType.THREADING)
