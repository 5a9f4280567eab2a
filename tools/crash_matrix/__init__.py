"""The crash matrix: the agent killed at each named failpoint
(compute_agent/failpoints.py) on real QEMU guests, restarted by its
systemd, and what that leaves checked on both hosts.

tox -e crash-matrix -- [--report PATH] [--only REGEX] [--sample N] ...
(tools/crash_matrix/cli.py). Cases are in cases.py (single host, and
the power-off wait) and migration_cases.py (two hosts); matrix.py runs
one case; checks.py looks at both hosts afterwards; report.py makes the
table and the JSON.
"""

# tests/__init__ selects the concurrency mode (and with it oslo.service's
# backend), which has to happen before anything imports oslo_messaging
# (cases.py and checks.py do); the matrix reuses the test fixtures, so it
# takes the same path, as tools/gate does.
import tests  # noqa: F401
