# Must precede any oslo_messaging import: the tests run in the mode
# COMPUTE_AGENT_CONCURRENCY names (threading unless it says eventlet), as
# the agent does.
from compute_agent import concurrency

concurrency.select_from_environment()
