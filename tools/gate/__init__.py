"""The graceful-shutdown gate job: two hosts on one machine, real
RabbitMQ, real libvirtd and QEMU guests, agents SIGTERMed mid-operation.

Run it with ``tox -e gate -- --repeat N --report PATH``.
"""

# tests/__init__ selects the concurrency mode (and with it oslo.service's
# backend), which has to happen before anything imports oslo_messaging;
# the gate reuses the test fixtures, so it takes the same path.
import tests  # noqa: F401
