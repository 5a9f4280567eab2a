"""The crash matrix: the agent killed at each named failpoint
(compute_agent/failpoints.py) on real QEMU guests, restarted by its
systemd, and what that leaves checked on both hosts.

tox -e crash-matrix -- [--report PATH] [--only REGEX] [--sample N] ...
(tools/crash_matrix/cli.py). Cases are in cases.py (single host, and
the power-off wait) and migration_cases.py (two hosts); matrix.py runs
one case; checks.py looks at both hosts afterwards; report.py makes the
table and the JSON.
"""

import warnings

# futurist imports eventlet, which warns that it is deprecated; the
# matrix does not use it, and the warning would bury its own output.
warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')

# tests/__init__ selects oslo.service's threading backend, which has to
# happen before anything imports oslo_messaging (cases.py and checks.py
# do); the matrix reuses the test fixtures, so it takes the same path.
import tests  # noqa: F401,E402
