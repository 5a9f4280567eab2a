"""The graceful-shutdown gate job: two hosts on one machine, real
RabbitMQ, real libvirtd and QEMU guests, agents SIGTERMed mid-operation.

Run it with ``tox -e gate -- --repeat N --report PATH``.
"""

import warnings

# futurist imports eventlet, which warns that it is deprecated; the gate
# does not use it, and the warning would bury the job's own output.
warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')

# tests/__init__ selects oslo.service's threading backend, which has to
# happen before anything imports oslo_messaging; the gate reuses the test
# fixtures, so it takes the same path.
import tests  # noqa: F401,E402
