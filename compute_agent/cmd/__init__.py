import sys

from compute_agent import concurrency

# First of all: the mode decides whether the process is monkey-patched
# (eventlet) and which oslo.service backend oslo.messaging finds when the
# programs import it; oslo.service would settle on eventlet otherwise.
try:
    concurrency.select_from_environment()
except concurrency.ModeError as error:
    sys.exit(f'compute-agent cannot start: {error}')
