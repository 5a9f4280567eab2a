import sys

from tools.crash_matrix import cli

sys.exit(cli.main())
