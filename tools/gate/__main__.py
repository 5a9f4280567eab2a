import sys

from tools.gate import cli

sys.exit(cli.main())
